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
use std::sync::Arc;

use super::metrics::{Metrics, rank_of};
use super::{EvalError, MethodResult, single_category_catalog};
use crate::config::{MaxPerCategory, RecommendSettings};
use crate::domain::{Interaction, InteractionKind, Placement, ProductIdx};
use crate::ingest::events::{RawEvent, ingest};
use crate::recommend::Models;
use crate::recommend::engine::{Policy, Query, recommend};
use crate::store::{KeyHasher, MemoryStore, ProfileStore};

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

pub async fn evaluate(dir: &Path, validation: bool) -> Result<(u64, Vec<MethodResult>), EvalError> {
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
            });
        }
    }
    let models = Models::train(&catalog, &interactions, &RecommendSettings::default());
    let mut counts = vec![0u32; items as usize];
    for i in &interactions {
        counts[i.product as usize] += 1;
    }
    drop(interactions);
    let mut popular: Vec<u32> = (0..items).collect();
    popular.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    popular.truncate(300);

    // The items have no categories here: no diversity cap.
    let policy = Policy {
        repeatable: Vec::new(),
        max_per_category: MaxPerCategory::OFF,
        ..Policy::default()
    };
    let store: Arc<dyn ProfileStore> = Arc::new(MemoryStore::new());
    let hasher = KeyHasher::new(b"eval");
    let (mut engine, mut pop) = (Metrics::default(), Metrics::default());
    for (u, seq) in users.iter().enumerate() {
        let history = &seq[..seq.len() - held_out];
        let target = seq[seq.len() - held_out] - 1;
        let mut events = Vec::with_capacity(history.len());
        for (pos, &item) in history.iter().enumerate() {
            let raw = RawEvent {
                event_id: Some(format!("{u}-{pos}")),
                kind: Some("view".into()),
                customer_id: Some(format!("customer-{u}")),
                product_id: Some(item.to_string()),
                timestamp: Some(NOW - (history.len() - pos) as i64 * DAY),
                ..RawEvent::default()
            };
            events.push(
                raw.validate(NOW, i64::MAX / 4)
                    .map_err(|r| EvalError::Setup(format!("event rejected: {}", r.as_str())))?,
            );
        }
        let Some(first) = events.first() else {
            continue;
        };
        let key = hasher.key(&first.visitor);
        ingest(store.as_ref(), &hasher, &catalog, &events)
            .await
            .map_err(|e| EvalError::Setup(e.to_string()))?;
        let profile = store
            .get(&key)
            .await
            .map_err(|e| EvalError::Setup(e.to_string()))?;
        let seen: Vec<ProductIdx> = history.iter().map(|&i| i - 1).collect();
        let query = Query {
            policy: &policy,
            placement: Placement::Home,
            product: None,
            category: None,
            search: None,
            cart: &[],
            candidates: &[],
            limit: 20 + seen.len().min(80),
        };
        // The protocol ranks only items the customer has not had.
        let answer: Vec<ProductIdx> = recommend(&models, &catalog, &query, profile.as_deref())
            .iter()
            .map(|s| s.product)
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
    }
    let result = |method: &str, m: &Metrics| MethodResult {
        method: method.into(),
        metrics: m.means(&KEEP),
    };
    Ok((
        engine.cases(),
        vec![result("vitrine", &engine), result("popularity", &pop)],
    ))
}
