//! Diginetica (CIKM Cup 2016, the SR-GNN split): next item in an anonymous session.
//!
//! Every test session `s` of length n gives n-1 cases: the prefix `s[..i]` as the
//! session's views so far, the target `s[i]`. All 43,097 items are ranked; the prefix's
//! own items stay rankable (a repeat click can be the target). Metrics: HR@20 (= P@20),
//! MRR@20, HR@10, NDCG@10.

use std::path::Path;

use super::baselines::{self, ItemKnn};
use super::metrics::{Metrics, rank_of};
use super::{
    EvalError, Harness, MethodResult, Split, field, gz_rows, most_popular, product_id,
    single_category_catalog,
};
use crate::domain::{Interaction, InteractionKind, Placement};
use crate::ingest::events::RawEvent;
use crate::recommend::Models;

const KS: [usize; 2] = [10, 20];
const KEEP: [&str; 4] = ["hr@20", "mrr@20", "hr@10", "ndcg@10"];
/// Sessions start `GAP` seconds apart (the data carries no times; the real test week
/// had a session every 38 s), views a second apart; training ends at `NOW` and the test
/// sessions follow it on the same clock, so the trend decays through both as it would
/// on a server.
const NOW: i64 = 1_700_000_000;
const GAP: i64 = 30;

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
            let start = NOW - (n - s as i64) * GAP;
            items
                .iter()
                .enumerate()
                .map(move |(pos, &item)| Interaction {
                    session: s as u64,
                    customer: None,
                    order: None,
                    product: item - 1,
                    kind: InteractionKind::View,
                    ts: start + pos as i64,
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
    let mut test = if validation {
        train.split_off(train.len() - train.len() / 10)
    } else {
        sessions(&dir.join("test_sessions.csv.gz"))?
    };
    if let Some(n) = setup.sessions {
        test.truncate(n);
    }
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

    // Item-kNN over whole prefixes, on the training sessions as product indexes.
    let indexed: Sessions = train
        .iter()
        .map(|s| s.iter().map(|&i| i - 1).collect())
        .collect();
    let knn = ItemKnn::train(items, indexed.iter().map(Vec::as_slice), 100);
    drop(indexed);

    // The served side: the same catalog, history and cases through a running server,
    // on a clock shifted so the test sessions end now (a server takes events of the
    // last days only; decay depends on time differences alone).
    let shift = crate::domain::time::unix_now() - 600 - test.len() as i64 * GAP - NOW;
    let client = match &setup.via_http {
        Some(via) => Some(prepare_server(via, items, &train, shift).await?),
        None => None,
    };
    let mut served = Split::default();

    let harness = Harness::new(&models, &catalog, Vec::new(), setup);
    let (mut engine, mut pop, mut spop, mut item_knn) = (
        Split::default(),
        Metrics::default(),
        Split::default(),
        Split::default(),
    );
    for (s, seq) in test.iter().enumerate() {
        let seq: Vec<u32> = seq.iter().map(|&i| i - 1).collect();
        for i in 0..seq.len() - 1 {
            // The view goes through the events path, as a storefront would send it.
            let at = NOW + s as i64 * GAP + i as i64;
            let raw = RawEvent {
                event_id: Some(format!("{s}-{i}")),
                kind: Some("view".into()),
                session_id: Some(format!("test-{s}")),
                product_id: Some(product_id(seq[i] + 1)),
                timestamp: Some(at),
                ..RawEvent::default()
            };
            let profile = harness.feed(vec![raw], at).await?;
            let answer = harness.answer(Placement::Home, &[], 20, profile.as_deref());
            let (prefix, target) = (&seq[..=i], seq[i + 1]);
            let repeat = prefix.contains(&target);
            engine.single(rank_of(&answer, target), &KS, repeat);
            pop.single(rank_of(&popular, target), &KS);
            spop.single(
                rank_of(&baselines::spop(prefix, 20, &popular), target),
                &KS,
                repeat,
            );
            item_knn.single(
                rank_of(&knn.rank(prefix, 20, &popular), target),
                &KS,
                repeat,
            );
            if let Some(client) = &client {
                let session = format!("test-{s}");
                let product = product_id(seq[i] + 1);
                client
                    .view(&session, &format!("{s}-{i}"), &product, at + shift)
                    .await?;
                let (ids, _) = client.home(&session, 20).await?;
                let answer: Vec<u32> = ids
                    .iter()
                    .filter_map(|id| id.parse::<u32>().ok()?.checked_sub(1))
                    .collect();
                served.single(rank_of(&answer, target), &KS, repeat);
            }
        }
    }
    let mut results = engine.results("vitrine", &KEEP);
    if let Some(client) = &client {
        results.extend(served.results("vitrine via http", &KEEP));
        let (a, b) = (served.all.means(&KEEP), engine.all.means(&KEEP));
        let mut gap: std::collections::BTreeMap<String, f64> =
            a.iter().map(|(k, v)| (k.clone(), v - b[k])).collect();
        gap.insert(
            "degraded".into(),
            client.degraded.load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
        results.push(MethodResult {
            method: "via http - in process".into(),
            metrics: gap,
        });
    }
    results.push(MethodResult {
        method: "popularity".into(),
        metrics: pop.means(&KEEP),
    });
    results.extend(spop.results("s-pop", &KEEP));
    results.extend(item_knn.results("item-knn", &KEEP));
    Ok((engine.cases(), results))
}

/// Puts the catalog and the trained models on the server `via` names, as a shop would:
/// products through the admin API, the history as an events file trained on as
/// `vitrine train --events FILE` does. Returns a client once the server answers with
/// the new models.
async fn prepare_server(
    via: &super::served::ViaHttp,
    items: u32,
    train: &Sessions,
    shift: i64,
) -> Result<super::served::Client, EvalError> {
    use std::io::Write;
    let client = super::served::Client::new(via)?;
    client.put_products(items, "all").await?;
    let setup = |e: std::io::Error| EvalError::Setup(format!("events file: {e}"));
    let mut file = tempfile::NamedTempFile::new().map_err(setup)?;
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        for (n, i) in interactions(train).iter().enumerate() {
            writeln!(
                out,
                r#"{{"event_id":"{}-t{n}","type":"view","session_id":"{}-train-{}","product_id":"{}","timestamp":{}}}"#,
                client.run,
                client.run,
                i.session,
                product_id(i.product + 1),
                i.ts + shift
            )
            .map_err(setup)?;
        }
        out.flush().map_err(setup)?;
    }
    let trained = crate::app::train(
        &via.settings,
        Some((file.path(), crate::ingest::import::Format::Ndjson)),
    )
    .await
    .map_err(|e| EvalError::Setup(format!("via http: train: {e}")))?;
    client.wait_for_models(&trained.version).await?;
    Ok(client)
}
