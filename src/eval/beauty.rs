//! Amazon Beauty (5-core, the S3-Rec files): personalised top-N for known customers,
//! leave-one-out.
//!
//! Each customer's last item is the test target (the second-to-last for validation,
//! with the last never seen); everything before it trains the models and reaches the
//! customer's profile through the events path. All 12,101 items are ranked; the
//! customer's earlier items are excluded from the ranking, as the protocol says.
//! HR@10, NDCG@10 (also @5 and @20).

use std::io::BufRead;
use std::path::Path;

use super::baselines::ItemKnn;
use super::metrics::{Metrics, rank_of};
use super::{EvalError, Harness, MethodResult, most_popular, product_id, single_category_catalog};
use crate::domain::{Interaction, InteractionKind, Placement, ProductIdx};
use crate::ingest::events::RawEvent;
use crate::recommend::Models;

const KS: [usize; 3] = [5, 10, 20];
const KEEP: [&str; 6] = ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"];
const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn sequences(path: &Path) -> Result<(Vec<Vec<u32>>, u32), EvalError> {
    let io = |source| EvalError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    let mut items = 0u32;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        let mut fields = line.split_whitespace().skip(1);
        let mut seq = Vec::new();
        for f in fields.by_ref() {
            let item: u32 = f.parse().map_err(|_| EvalError::Data {
                path: path.display().to_string(),
                line: i + 1,
                message: format!("{f:?} is not an item id"),
            })?;
            items = items.max(item);
            seq.push(item);
        }
        if seq.len() >= 3 {
            out.push(seq);
        }
    }
    Ok((out, items))
}

pub async fn evaluate(
    dir: &Path,
    validation: bool,
    setup: &super::Setup,
) -> Result<(u64, Vec<MethodResult>), EvalError> {
    let (users, items) = sequences(&dir.join("Beauty.txt.gz"))?;
    // Item `n` (1-based) is product index `n - 1`, id `n`.
    let catalog = single_category_catalog(items, 1, "beauty")?;
    let held_out = 1 + usize::from(validation);

    // Each customer's history is one session of views in order, a day apart.
    let mut interactions = Vec::new();
    for (u, seq) in users.iter().enumerate() {
        let history = &seq[..seq.len() - held_out];
        for (pos, &item) in history.iter().enumerate() {
            interactions.push(Interaction {
                session: u as u64,
                customer: Some(u as u32),
                order: None,
                product: item - 1,
                kind: InteractionKind::View,
                ts: NOW - (history.len() - pos) as i64 * DAY,
                audience: Default::default(),
            });
        }
    }
    let models = Models::train(&catalog, &interactions, &setup.recommend);
    let (_, popular) = most_popular(items, interactions.iter().map(|i| i.product), 300);
    drop(interactions);
    // Item-kNN over each customer's whole history (what the protocol lets it see).
    let histories: Vec<Vec<u32>> = users
        .iter()
        .map(|seq| seq[..seq.len() - held_out].iter().map(|&i| i - 1).collect())
        .collect();
    let knn = ItemKnn::train(items, histories.iter().map(Vec::as_slice), 100);

    let harness = Harness::new(&models, &catalog, Vec::new(), setup);
    let (mut engine, mut pop, mut item_knn) =
        (Metrics::default(), Metrics::default(), Metrics::default());
    for (u, seq) in users.iter().enumerate() {
        let history = &seq[..seq.len() - held_out];
        let target = seq[seq.len() - held_out] - 1;
        let raws = history
            .iter()
            .enumerate()
            .map(|(pos, &item)| RawEvent {
                event_id: Some(format!("{u}-{pos}")),
                kind: Some("view".into()),
                customer_id: Some(format!("customer-{u}")),
                product_id: Some(product_id(item)),
                timestamp: Some(NOW - (history.len() - pos) as i64 * DAY),
                ..RawEvent::default()
            })
            .collect();
        let Some(profile) = harness.recall(raws, NOW).await? else {
            continue;
        };
        let seen: Vec<ProductIdx> = history.iter().map(|&i| i - 1).collect();
        // The protocol ranks only items the customer has not had.
        let answer: Vec<ProductIdx> = harness
            .answer(
                Placement::Home,
                &[],
                20 + seen.len().min(80),
                Some(&profile),
            )
            .into_iter()
            .filter(|p| !seen.contains(p))
            .take(20)
            .collect();
        engine.single(rank_of(&answer, target), &KS);
        let baseline: Vec<u32> = popular
            .iter()
            .copied()
            .filter(|p| !seen.contains(p))
            .take(20)
            .collect();
        pop.single(rank_of(&baseline, target), &KS);
        let knn_answer: Vec<u32> = knn
            .rank(&seen, 20 + seen.len().min(80), &popular)
            .into_iter()
            .filter(|p| !seen.contains(p))
            .take(20)
            .collect();
        item_knn.single(rank_of(&knn_answer, target), &KS);
    }
    let result = |method: &str, m: &Metrics| MethodResult {
        method: method.into(),
        metrics: m.means(&KEEP),
    };
    Ok((
        engine.cases(),
        vec![
            result("vitrine", &engine),
            result("popularity", &pop),
            result("item-knn", &item_knn),
        ],
    ))
}
