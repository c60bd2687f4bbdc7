//! No ruleset can make a request expensive: documented limits, checked at validation with
//! the path and the limit; and a stored ruleset past them (from an older release) never
//! stops a replica.

use crate::common;

use common::redis::RedisServer;
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};

fn promotion(i: usize, target: &Value) -> Value {
    json!({"id": format!("p-{i}"), "title": "Ten off", "class": "item",
           "value": {"percent_bps": 1000}, "target": target})
}

#[tokio::test]
async fn rulesets_past_a_limit_are_refused_naming_the_path_and_the_limit() {
    let app = TestApp::spawn(settings()).await;
    let categories: Vec<String> = (0..800_000).map(|i| format!("c{i}")).collect();
    let problems = app
        .refused_ruleset(
            &json!({"promotions": [promotion(0, &json!({"in": ["line.category", categories]}))]}),
        )
        .await;
    assert_eq!(problems[0].0, "$.promotions[0].target");
    assert!(
        problems[0].1.contains("800000 values; the limit is 10000"),
        "{problems:?}"
    );

    let ids: Vec<String> = (0..900_000).map(|i| format!("p{i}")).collect();
    let problems = app.refused_ruleset(&json!({"merchandising": [{"id": "hide-all", "action": {"hide": {"in": ["product.id", ids]}}}]}),
    )
    .await;
    assert_eq!(problems[0].0, "$.merchandising[0].action");

    let many: Vec<Value> = (0..2_000).map(|i| promotion(i, &json!(true))).collect();
    let problems = app.refused_ruleset(&json!({"promotions": many})).await;
    assert_eq!(
        problems,
        vec![(
            "$.promotions".to_owned(),
            "2000 promotions; the limit is 500".to_owned()
        )]
    );

    let mut deep = json!({"eq": ["session.country", "GB"]});
    for _ in 0..20 {
        deep = json!({"not": deep});
    }
    let problems = app
        .refused_ruleset(
            &json!({"promotions": [{"id": "deep", "title": "Deep", "class": "order",
                                "value": {"percent_bps": 100}, "eligibility": deep}]}),
        )
        .await;
    assert_eq!(problems[0].0, "$.promotions[0].eligibility");
    assert!(problems[0].1.contains("the limit is 8"), "{problems:?}");

    // Within every cap, but too much work together: 200 promotions whose targets name
    // categories, with conditions over every line.
    let heavy: Vec<Value> = (0..200)
        .map(|i| {
            let mut p = promotion(i, &json!({"in": ["line.category", ["kitchen", "garden"]]}));
            p["condition"] = json!({"all": {"in": ["line.category", ["kitchen", "garden"]]}});
            p
        })
        .collect();
    let problems = app.refused_ruleset(&json!({"promotions": heavy})).await;
    assert_eq!(problems[0].0, "$");
    assert!(
        problems[0].1.contains("a cart evaluation costs") && problems[0].1.contains("200000"),
        "{problems:?}"
    );

    // Nothing of them is live.
    let live: Value = app.get("/admin/v1/ruleset").await.json().await.unwrap();
    assert_eq!(live["version"], "none");
    // The validate route says the same without publishing.
    let r = app
        .post_json(
            "/admin/v1/ruleset/validate",
            &json!({"promotions": (0..600).map(|i| promotion(i, &json!(true))).collect::<Vec<_>>()}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["valid"], false);
    assert_eq!(body["errors"][0]["path"], "$.promotions");
}

/// A stored live version past this release's limits: replicas start and serve the newest
/// version that compiles, say so on /readyz and in a metric, and keep accepting valid
/// publishes.
#[tokio::test]
async fn a_stored_ruleset_that_no_longer_compiles_never_stops_a_replica() {
    let redis = RedisServer::start();
    let a = TestApp::on_redis(&redis).await;
    let good = json!({"promotions": [promotion(1, &json!(true))]});
    let r = a.put_ruleset(&good).await;
    assert_eq!(r.status(), 200);
    let good_version = r.json::<Value>().await.unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    // What an older release could have stored: 600 promotions.
    let old =
        json!({"promotions": (0..600).map(|i| promotion(i, &json!(true))).collect::<Vec<_>>()});
    a.state
        .catalog
        .store()
        .publish_ruleset("rs-old-release", &serde_json::to_vec(&old).unwrap(), 1)
        .await
        .unwrap();

    let b = TestApp::on_redis(&redis).await;
    for app in [&a, &b] {
        common::eventually("the problem reported", || async {
            let ready: Value = app.get("/readyz").await.json().await.unwrap();
            ready["ruleset"]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("rs-old-release"))
        })
        .await;
        let live: Value = app.get("/admin/v1/ruleset").await.json().await.unwrap();
        assert_eq!(
            live["version"],
            good_version.as_str(),
            "the newest that compiles"
        );
    }
    let metrics = b.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("vitrine_ruleset_unusable 1"), "{metrics}");

    // A valid publish clears it; an invalid one is still refused.
    let newer = json!({"promotions": [promotion(2, &json!(true))]});
    assert_eq!(b.put_ruleset(&newer).await.status(), 200);
    let ready: Value = b.get("/readyz").await.json().await.unwrap();
    assert!(ready.get("ruleset").is_none(), "{ready}");
    assert_eq!(
        error_code(b.put_ruleset(&old).await).await.1,
        "invalid_ruleset"
    );
}
