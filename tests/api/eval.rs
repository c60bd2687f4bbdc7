//! `vitrine eval` on small datasets written by the test in each dataset's format, with a
//! pattern the serving engine must learn (the real datasets are measured in
//! docs/quality.md): the JSON report's shape, the figures, that a run is reproducible,
//! the repeat and new targets reported apart beside S-POP and item-kNN, and that the same
//! cases replayed through a running server (`--via-http`) score what the evaluation
//! scores.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::TestApp;
use common::redis::RedisServer;
use serde_json::Value;

fn gz(path: &Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}

fn eval(dataset: &str, dir: &Path) -> Value {
    eval_with(dataset, dir, &[])
}

fn eval_with(dataset: &str, dir: &Path, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["eval", "--dataset", dataset, "--format", "json", "--data"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dataset"], dataset);
    report.as_object_mut().unwrap().remove("seconds");
    report
}

fn method<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn metric(report: &Value, name: &str, key: &str) -> f64 {
    method(report, name)[key].as_f64().unwrap()
}

fn all_metrics_are_fractions(report: &Value) {
    for r in report["results"].as_array().unwrap() {
        for (k, v) in r.as_object().unwrap() {
            if k != "method" {
                let v = v.as_f64().unwrap();
                assert!((0.0..=1.0).contains(&v), "{k} = {v}");
            }
        }
    }
}

/// Sessions walk a chain of 40 items (i -> i+1 -> i+2); the next item is learnable.
#[test]
fn diginetica_sessions_are_learnt_and_the_report_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = String::from("session_id,position,item_id\n");
    for s in 0..400u32 {
        let start = 1 + s % 38;
        for (pos, item) in [start, start + 1, start + 2].iter().enumerate() {
            train.push_str(&format!("{},{pos},{item}\n", s + 1));
        }
    }
    let mut test = String::from("session_id,position,item_id\n");
    for s in 0..30u32 {
        let start = 1 + (s * 7) % 38;
        for (pos, item) in [start, start + 1, start + 2].iter().enumerate() {
            test.push_str(&format!("{},{pos},{item}\n", s + 1));
        }
    }
    gz(&dir.path().join("train_sessions.csv.gz"), &train);
    gz(&dir.path().join("test_sessions.csv.gz"), &test);
    let report = eval("diginetica", dir.path());
    assert_eq!(report["cases"], 60, "two cases per 3-item session");
    all_metrics_are_fractions(&report);
    let engine = method(&report, "vitrine");
    assert!(engine["hr@20"].as_f64().unwrap() > 0.95, "{engine}");
    assert!(engine["mrr@20"].as_f64().unwrap() > 0.3, "{engine}");
    for key in ["hr@10", "hr@20", "mrr@20", "ndcg@10"] {
        assert!(engine.get(key).is_some(), "{key} in {engine}");
    }
    assert!(
        method(&report, "popularity")["hr@20"].as_f64().unwrap()
            < engine["hr@20"].as_f64().unwrap()
    );
    assert_eq!(
        eval("diginetica", dir.path()),
        report,
        "seeded and reproducible"
    );
    // It ran what the server runs, and says so; a protocol switch is explicit and
    // reported.
    assert_eq!(
        report["settings"]["max_per_category"]["home"], 3,
        "{}",
        report["settings"]
    );
    assert_eq!(report["settings"]["neighbors"], 200);
    let off = eval_with("diginetica", dir.path(), &["--no-diversity"]);
    assert_eq!(off["settings"]["max_per_category"], "off (--no-diversity)");
    let mut tuned = tempfile::NamedTempFile::new().unwrap();
    writeln!(tuned, "[recommend]\nneighbors = 7").unwrap();
    let tuned = eval_with(
        "diginetica",
        dir.path(),
        &["--config", tuned.path().to_str().unwrap()],
    );
    assert_eq!(tuned["settings"]["neighbors"], 7, "--config is read");
}

/// Item x is always bought with item x + 50; customers rebuy their own staples.
#[test]
fn tafeng_baskets_complete_and_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("user_id,basket_index,item_id\n");
    for user in 0..120u32 {
        let staple = 100 + user % 20;
        for basket in 0..4u32 {
            let x = (user * 3 + basket * 7) % 50;
            for item in [x, x + 50, staple] {
                rows.push_str(&format!("{user},{basket},{item}\n"));
            }
        }
    }
    gz(&dir.path().join("baskets.csv.gz"), &rows);
    let report = eval("tafeng", dir.path());
    assert_eq!(report["cases"], 120);
    all_metrics_are_fractions(&report);
    let basket = method(&report, "vitrine (next basket)");
    assert!(
        basket["recall@10"].as_f64().unwrap() > 0.3,
        "the staple is a third of every basket: {basket}"
    );
    let fbt = method(&report, "vitrine (cart: fbt)");
    assert!(fbt["fbt_hr@10"].as_f64().unwrap() > 0.6, "{fbt}");
    assert!(
        fbt["fbt_hr@10"].as_f64().unwrap()
            > method(&report, "popularity (fbt)")["fbt_hr@10"]
                .as_f64()
                .unwrap()
    );
    // Basket items bought before and the others, apart; shares are of the baskets.
    for m in ["vitrine (next basket)", "gp-topfreq", "item-knn"] {
        let repeat = method(&report, &format!("{m} · repeat"));
        let share = repeat["share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0, "{repeat}");
        assert!(method(&report, &format!("{m} · new"))["recall@10"].is_f64());
    }
}

/// Customers buy along a chain; the item after their last is the target.
#[test]
fn beauty_sequences_are_learnt_and_history_is_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for user in 0..300u32 {
        let start = 1 + user % 55;
        let items: Vec<String> = (start..start + 6).map(|i| i.to_string()).collect();
        lines.push_str(&format!("{} {}\n", user + 1, items.join(" ")));
    }
    gz(&dir.path().join("Beauty.txt.gz"), &lines);
    let report = eval("beauty", dir.path());
    assert_eq!(report["cases"], 300);
    all_metrics_are_fractions(&report);
    let engine = method(&report, "vitrine");
    assert!(engine["hr@10"].as_f64().unwrap() > 0.8, "{engine}");
    // The chain is what item-kNN learns too.
    assert!(method(&report, "item-knn")["hr@10"].as_f64().unwrap() > 0.5);
}

#[test]
fn a_missing_dataset_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["eval", "--dataset", "tafeng", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("baskets.csv.gz"));
}

/// The served replay is Diginetica's; anywhere else it is refused before any work, and
/// a server that is not there is a clear error, not a hang.
#[test]
fn via_http_is_refused_where_it_does_not_apply_or_cannot_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = common::vitrine(&[
        "eval",
        "--dataset",
        "beauty",
        "--data",
        dir.path().to_str().unwrap(),
        "--via-http",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--via-http and --sessions are for the diginetica protocol"),
        "{stderr}"
    );
    dataset(dir.path());
    let (code, _, stderr) = common::vitrine(&[
        "eval",
        "--dataset",
        "diginetica",
        "--data",
        dir.path().to_str().unwrap(),
        "--via-http",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("via http: PUT /admin/v1/products"),
        "{stderr}"
    );
}

/// Sessions over 60 items that step on (`i`, `i + 1`, `i + 3`) and often go back to
/// an item seen earlier in the session: repeat and new targets both.
fn dataset(dir: &Path) {
    let session = |s: u32| {
        let a = 1 + (s * 7) % 55;
        match s % 3 {
            0 => vec![a, a + 1, a, a + 3],
            1 => vec![a, a + 1, a + 3, a + 1],
            _ => vec![a, a + 1, a + 3, a + 4],
        }
    };
    let csv = |range: std::ops::Range<u32>| {
        let mut out = String::from("session_id,position,item_id\n");
        for s in range {
            for (pos, item) in session(s).iter().enumerate() {
                out.push_str(&format!("{},{pos},{item}\n", s + 1));
            }
        }
        out
    };
    gz(&dir.join("train_sessions.csv.gz"), &csv(0..600));
    gz(&dir.join("test_sessions.csv.gz"), &csv(600..700));
}

#[test]
fn every_eval_reports_repeat_and_new_targets_beside_s_pop_and_item_knn() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let report = eval("diginetica", dir.path());
    assert_eq!(report["cases"], 300);
    for m in ["vitrine", "s-pop", "item-knn"] {
        let (repeat, new) = (
            metric(&report, &format!("{m} · repeat"), "share"),
            metric(&report, &format!("{m} · new"), "share"),
        );
        // One target in each session whose number is 0 or 1 mod 3 is a repeat: 34 + 33
        // of the 300 cases.
        assert!((repeat - 67.0 / 300.0).abs() < 1e-9, "{m}: {repeat}");
        assert!((repeat + new - 1.0).abs() < 1e-9);
        // The whole is the share-weighted mean of its parts.
        for key in ["hr@20", "mrr@20"] {
            let whole = metric(&report, m, key);
            let parts = repeat * metric(&report, &format!("{m} · repeat"), key)
                + new * metric(&report, &format!("{m} · new"), key);
            assert!((whole - parts).abs() < 1e-9, "{m} {key}");
        }
    }
    // S-POP answers the session's own items: every repeat is a hit, no new one is.
    assert_eq!(metric(&report, "s-pop · repeat", "hr@20"), 1.0);
    // The engine remembers repeats as S-POP does and finds new targets as item-kNN.
    assert_eq!(metric(&report, "vitrine · repeat", "hr@20"), 1.0);
    assert!(
        metric(&report, "vitrine · new", "hr@20") >= metric(&report, "item-knn · new", "hr@20")
    );
    assert!(
        report["settings"]["via_http"].is_null(),
        "{}",
        report["settings"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_scores_what_the_evaluation_scores_case_for_case() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(common::empty_shop_on_redis(&redis)).await;
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let url = app.base.clone();
    let redis_url = redis.url();
    let report = tokio::task::spawn_blocking(move || {
        eval_with(
            "diginetica",
            dir.path(),
            &["--via-http", &url, "--redis", &redis_url],
        )
    })
    .await
    .unwrap();
    assert_eq!(report["settings"]["via_http"], app.base.as_str());
    let gap = method(&report, "via http - in process");
    for key in ["hr@10", "hr@20", "mrr@20", "ndcg@10"] {
        let d = gap[key].as_f64().unwrap();
        assert!(d.abs() < 0.005, "{key}: served - evaluated = {d}");
    }
    assert_eq!(gap["degraded"], 0.0);
    assert_eq!(
        metric(&report, "vitrine via http", "hr@20"),
        metric(&report, "vitrine", "hr@20")
    );
    // Through the server indeed: its views and answers.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let count = |line: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("vitrine_events_total{type=\"view\",result=\"valid\"}") >= 300.0);
    assert!(
        count("vitrine_http_requests_total{route=\"/v1/recommend\",method=\"GET\",status=\"200\"}")
            >= 300.0,
        "{metrics}"
    );
    assert!(
        count(
            "vitrine_http_requests_total{route=\"/admin/v1/products\",method=\"PUT\",status=\"200\"}"
        ) >= 1.0
    );
}
