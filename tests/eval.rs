//! `vitrine eval` on small datasets written by the test in each dataset's format, with a
//! pattern the serving engine must learn (the real datasets are measured in
//! docs/quality.md): the JSON report's shape, the figures, and that a run is
//! reproducible.

use std::io::Write;
use std::path::Path;
use std::process::Command;

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
