//! Diginetica (CIKM Cup 2016, the SR-GNN split): next item in an anonymous session.
//!
//! Every test session `s` of length n gives n-1 cases: the prefix `s[..i]` as the
//! session's views so far, the target `s[i]`. All 43,097 items are ranked; the prefix's
//! own items stay rankable (a repeat click can be the target). Metrics: HR@20 (= P@20),
//! MRR@20, HR@10, NDCG@10.

use std::path::Path;

use super::metrics::{Metrics, rank_of};
use super::{
    EvalError, Harness, MethodResult, field, fill_up, gz_rows, most_popular,
    single_category_catalog,
};
use crate::domain::{Interaction, InteractionKind, Placement};
use crate::ingest::events::RawEvent;
use crate::recommend::Models;

const KS: [usize; 2] = [10, 20];
const KEEP: [&str; 4] = ["hr@20", "mrr@20", "hr@10", "ndcg@10"];
/// Training sessions are spaced an hour apart, ending at `NOW`.
const NOW: i64 = 1_700_000_000;

type Sessions = Vec<Vec<u32>>;

fn sessions(path: &Path) -> Result<Sessions, EvalError> {
    let mut out: Sessions = Vec::new();
    let mut current = None;
    for (line, row) in gz_rows(path, ',')? {
        let session: u64 = field(path, line, &row, 0)?;
        let item: u32 = field(path, line, &row, 2)?;
        if current != Some(session) {
            out.push(Vec::new());
            current = Some(session);
        }
        if let Some(s) = out.last_mut() {
            s.push(item);
        }
    }
    Ok(out)
}

fn interactions(train: &Sessions) -> Vec<Interaction> {
    let n = train.len() as i64;
    train
        .iter()
        .enumerate()
        .flat_map(|(s, items)| {
            let start = NOW - (n - s as i64) * 3_600;
            items
                .iter()
                .enumerate()
                .map(move |(pos, &item)| Interaction {
                    session: s as u64,
                    customer: None,
                    order: None,
                    product: item - 1,
                    kind: InteractionKind::View,
                    ts: start + pos as i64 * 30,
                    audience: Default::default(),
                })
        })
        .collect()
}

/// `validation`: the last tenth of the training sessions (chronological) stand in for
/// the test sessions, and the model sees only the rest; tuning happens there, never on
/// the test sessions.
pub async fn evaluate(
    dir: &Path,
    validation: bool,
    setup: &super::Setup,
) -> Result<(u64, Vec<MethodResult>), EvalError> {
    let mut train = sessions(&dir.join("train_sessions.csv.gz"))?;
    let test = if validation {
        train.split_off(train.len() - train.len() / 10)
    } else {
        sessions(&dir.join("test_sessions.csv.gz"))?
    };
    let items = train
        .iter()
        .chain(&test)
        .flatten()
        .copied()
        .max()
        .unwrap_or(0);
    // Item `n` (1-based in the files) is product index `n - 1`, id `n`.
    let catalog = single_category_catalog(items, 1, "all")?;
    let interactions = interactions(&train);
    let models = Models::train(&catalog, &interactions, &setup.recommend);
    // Popularity: clicks in training, most first.
    let (_, popular) = most_popular(items, interactions.iter().map(|i| i.product), 20);
    drop(interactions);

    let harness = Harness::new(&models, &catalog, Vec::new(), setup);
    let (mut engine, mut pop, mut spop) =
        (Metrics::default(), Metrics::default(), Metrics::default());
    for (s, seq) in test.iter().enumerate() {
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for i in 0..seq.len() - 1 {
            let item = seq[i];
            // The view goes through the events path, as a storefront would send it.
            let raw = RawEvent {
                event_id: Some(format!("{s}-{i}")),
                kind: Some("view".into()),
                session_id: Some(format!("test-{s}")),
                product_id: Some(item.to_string()),
                timestamp: Some(NOW + i as i64),
                ..RawEvent::default()
            };
            let profile = harness.feed(vec![raw], NOW + 3_600).await?;
            let answer = harness.answer(Placement::Home, &[], 20, profile.as_deref());
            let target = seq[i + 1] - 1;
            engine.single(rank_of(&answer, target), &KS);
            pop.single(rank_of(&popular, target), &KS);

            // S-POP: the session's own items by count (latest first on ties), then
            // global popularity.
            match counts.iter_mut().find(|(p, _)| *p == item - 1) {
                Some(c) => c.1 += 1,
                None => counts.insert(0, (item - 1, 1)),
            }
            let mut own = counts.clone();
            own.sort_by_key(|c| std::cmp::Reverse(c.1));
            let mut answer: Vec<u32> = own.iter().map(|c| c.0).collect();
            fill_up(&mut answer, &popular, 20);
            spop.single(rank_of(&answer, target), &KS);
        }
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
            result("s-pop", &spop),
        ],
    ))
}
