//! Experiments through HTTP: definitions live in the ruleset, validated with the rest
//! of it (every problem at its JSON path, nothing published), published and read back.

use crate::common;

use common::{TestApp, settings};
use serde_json::{Value, json};

fn experiment() -> Value {
    json!({
        "id": "pdp-recs-v2", "status": "running", "placements": ["product", "cart"],
        "hash_attribute": "session_id", "seed": "pdp-recs-v2", "bucket_version": 1,
        "coverage": 0.5, "when": {"eq": ["session.country", "GB"]},
        "variants": [
            {"id": "control", "weight": 0.5, "policy": {"baseline": "popularity"}},
            {"id": "personalized", "weight": 0.5, "policy": {}},
            {"id": "more-history", "shadow": true, "policy": {"blend": {"history": 2.0}}}
        ],
        "namespace": {"id": "pdp", "range": [0.0, 0.5]}
    })
}

#[tokio::test]
async fn experiments_are_validated_with_the_ruleset_and_published_with_it() {
    let app = TestApp::spawn(settings()).await;
    let good = json!({
        "experiments": [experiment()],
        "holdout": {"coverage": 0.05, "seed": "global-holdout"}
    });
    let version = app.publish_ruleset(&good).await;
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_eq!(live["version"], version.as_str());

    let mut overlapping = experiment();
    overlapping["id"] = json!("pdp-other");
    overlapping["namespace"] = json!({"id": "pdp", "range": [0.25, 0.75]});
    let mut unweighted = experiment();
    unweighted["id"] = json!("home-v1");
    unweighted["namespace"] = Value::Null;
    unweighted["variants"][1]["weight"] = json!(0.75);
    unweighted["hash_attribute"] = json!("customer_id");
    let bad = json!({"experiments": [experiment(), overlapping, unweighted]});
    let r = app.post_json("/admin/v1/ruleset/validate", &bad).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["valid"], false, "{body}");
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"$.experiments[1].namespace.range"),
        "{paths:?}"
    );
    assert!(paths.contains(&"$.experiments[2].variants"), "{paths:?}");
    let r = app
        .client
        .put(app.url("/admin/v1/ruleset"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_ruleset");
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_eq!(live["version"], version.as_str(), "nothing of it published");
}
