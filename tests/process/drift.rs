//! Drift through HTTP: a shifted traffic mix (one device, one country, one category)
//! moves those features' PSI past the threshold, the models are retrained from the
//! event log once, and the new version is served.

use crate::common;

use common::{TestApp, eventually, settings};
use serde_json::Value;

fn psi(report: &Value, feature: &str) -> Option<f64> {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == feature)
        .and_then(|f| f["psi"].as_f64())
}

async fn retrains(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("vitrine_drift_retrains_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_shifted_traffic_mix_drifts_and_retrains_once_to_a_new_version() {
    let mut s = settings();
    s.drift.window_s = 600;
    s.drift.min_samples = 60;
    s.drift.retrain_threshold = 0.25;
    s.drift.for_s = 0;
    s.drift.auto_retrain = true;
    s.drift.check_ms = 50;
    let app = TestApp::spawn(s).await;
    let before = app.recommend("session_id=x&placement=home").await["model_version"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = app.get_json("/admin/v1/drift").await;
    assert_eq!(report["model_version"], before.as_str());

    // Everyone on the iOS app, in New Zealand, looking at one product's department.
    for i in 0..200 {
        app.recommend(&format!(
            "session_id=nz-{i}&placement=product&product_id=p000002&device=ios&country=NZ"
        ))
        .await;
    }
    eventually("a new model version served", || async {
        app.recommend("session_id=x&placement=home").await["model_version"] != before.as_str()
    })
    .await;
    assert_eq!(retrains(&app).await, 1.0);
    // The drift that started it: those three features, past the threshold.
    let report = app.get_json("/admin/v1/drift").await;
    let last = &report["last_retrain"];
    assert_eq!(last["from_version"], before.as_str(), "{report}");
    for feature in ["device", "country", "category"] {
        let value = psi(last, feature).unwrap_or_else(|| panic!("{feature} in {last}"));
        assert!(value > 0.25, "{feature}: {value}");
    }
    // The new version has its own reference: the same traffic again is no new drift,
    // and the retrain is not repeated.
    for i in 0..100 {
        app.recommend(&format!(
            "session_id=nz2-{i}&placement=product&product_id=p000002&device=ios&country=NZ"
        ))
        .await;
    }
    let report = app.get_json("/admin/v1/drift").await;
    assert_ne!(report["model_version"], before.as_str());
    assert!(psi(&report, "placement").is_some(), "{report}");
    assert_eq!(retrains(&app).await, 1.0);
}
