//! Overrides (`docs/rules.md`, Overrides): a blocked pair leaves every replica's answers
//! at once and is never learned back, by `vitrine train` or by live learning; pins,
//! exclusions and boosts apply with their effects reported; every change is in the change
//! log, and a publish over a version that is no longer live is refused.

use crate::common;

use std::time::Duration;

use common::TestApp;
use common::redis::RedisServer;
use serde_json::{Value, json};

/// p000001's product page.
const A: &str = "session_id=s&placement=product&product_id=p000001";

/// The events file of orders: p000001 with p000002 twenty times, with p000003 ten.
fn orders_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("orders.ndjson");
    let mut lines = String::new();
    for (with, n) in [("p000002", 20), ("p000003", 10)] {
        for order in 0..n {
            for product in ["p000001", with] {
                lines.push_str(&format!(
                    "{}\n",
                    json!({"event_id": format!("{with}-{order}-{product}"), "type": "purchase",
                           "session_id": format!("s{with}{order}"), "product_id": product,
                           "order_id": format!("o{with}{order}"), "timestamp": 1_700_000_000 + order})
                ));
            }
        }
    }
    std::fs::write(&file, lines).unwrap();
    file
}

fn train(redis: &RedisServer, file: &std::path::Path) -> String {
    let (code, stdout, stderr) = common::vitrine(&[
        "train",
        "--events",
        file.to_str().unwrap(),
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout.split(':').next().unwrap().to_owned()
}

fn bought_with(answer: &Value) -> Vec<String> {
    common::picks(answer)
        .into_iter()
        .filter(|(_, r)| r == "bought_together")
        .map(|(p, _)| p)
        .collect()
}

async fn on_version(app: &TestApp, version: &str) {
    common::eventually_within("the new models", Duration::from_secs(5), || async {
        app.recommend(A).await["model_version"] == version
    })
    .await;
}

async fn put(app: &TestApp, doc: &Value, if_match: Option<&str>) -> reqwest::Response {
    let mut r = app.client.put(app.url("/admin/v1/ruleset")).json(doc);
    if let Some(v) = if_match {
        r = r.header("If-Match", v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn a_blocked_pair_leaves_every_replica_at_once_and_is_never_learned_back() {
    let redis = RedisServer::start();
    let (a, b) = (
        TestApp::on_redis(&redis).await,
        TestApp::on_redis(&redis).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = orders_file(dir.path());
    let v1 = train(&redis, &file);
    on_version(&b, &v1).await;
    assert_eq!(
        bought_with(&b.recommend(A).await)[..2],
        ["p000002", "p000003"]
    );

    // Blocked on replica a: replica b no longer shows p000002 with p000001 (nor the
    // other way) within a second, and says which rule hid it.
    let blocked = json!({"overrides": {"blocked_pairs": [
        {"a": "p000001", "b": "p000002", "note": "not a real pairing"}]}});
    let published = std::time::Instant::now();
    let version = a.publish_ruleset(&blocked).await;
    common::eventually_within("the block on replica b", Duration::from_secs(1), || async {
        let answer = b.recommend(A).await;
        !common::picks(&answer).iter().any(|(p, _)| p == "p000002")
    })
    .await;
    assert!(published.elapsed() < Duration::from_secs(1));
    let answer = b.recommend(A).await;
    assert_eq!(answer["ruleset_version"], version.as_str());
    assert!(
        answer["merchandising"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["rule"] == "override:block:p000001" && e["effect"] == "hidden"),
        "{answer}"
    );
    let other = b
        .recommend("session_id=s&placement=product&product_id=p000002")
        .await;
    assert!(!common::picks(&other).iter().any(|(p, _)| p == "p000001"));

    // Trained again with the block live: the model has no such pair. Rolled back to no
    // overrides, p000002 still is not bought with p000001; p000003 still is.
    let v2 = train(&redis, &file);
    assert_ne!(v2, v1);
    on_version(&b, &v2).await;
    let empty = a.publish_ruleset(&json!({})).await;
    common::eventually_within("no overrides on b", Duration::from_secs(2), || async {
        b.recommend(A).await["ruleset_version"] == empty.as_str()
    })
    .await;
    let learned = bought_with(&b.recommend(A).await);
    assert!(learned.contains(&"p000003".to_owned()), "{learned:?}");
    assert!(!learned.contains(&"p000002".to_owned()), "{learned:?}");

    // Live learning: orders of the pair arriving while it is blocked teach nothing of it,
    // on the replica that took them and on the one following the log.
    a.publish_ruleset(&blocked).await;
    common::eventually_within("the block again on b", Duration::from_secs(2), || async {
        b.recommend(A).await["ruleset_version"] == version.as_str()
    })
    .await;
    let mut events = Vec::new();
    for order in 0..30 {
        for product in ["p000001", "p000002", "p000004"] {
            events.push(
                json!({"event_id": format!("live-{order}-{product}"), "type": "purchase",
                "session_id": format!("live{order}"), "product_id": product,
                "order_id": format!("live-{order}")}),
            );
        }
    }
    a.accept_events(&Value::Array(events)).await;
    // p000004 was learned with p000001 live (so the orders were learned) ...
    for app in [&a, &b] {
        common::eventually_within("the live orders", Duration::from_secs(5), || async {
            bought_with(&app.recommend(A).await).contains(&"p000004".to_owned())
        })
        .await;
    }
    // ... and once the block is lifted, p000002 is not.
    a.publish_ruleset(&json!({})).await;
    for app in [&a, &b] {
        common::eventually_within("no overrides", Duration::from_secs(2), || async {
            app.recommend(A).await["ruleset_version"] == empty.as_str()
        })
        .await;
        let learned = bought_with(&app.recommend(A).await);
        assert!(!learned.contains(&"p000002".to_owned()), "{learned:?}");
    }
}

#[tokio::test]
async fn pins_exclusions_and_boosts_apply_with_their_effects() {
    let app = TestApp::spawn(common::settings()).await;
    let before = common::picks(&app.recommend(A).await);
    let home = common::picks(&app.recommend("session_id=s&placement=home").await);
    // A product not in p000001's answer, pinned second; the first home product excluded.
    let pinned = (2..200)
        .map(|n| format!("p{n:06}"))
        .find(|p| !before.iter().any(|(q, _)| q == p))
        .unwrap();
    let gone = home[0].0.clone();
    app.publish_ruleset(&json!({"overrides": {
        "pinned_pairs": [{"a": "p000001", "b": pinned, "position": 2}],
        "excluded_products": [{"product_id": gone}],
    }}))
    .await;
    let answer = app.recommend(A).await;
    let picks = common::picks(&answer);
    assert_eq!(picks[1], (pinned.clone(), "pinned".to_owned()), "{answer}");
    assert!(answer["merchandising"].as_array().unwrap().iter().any(|e| {
        e["rule"] == format!("override:pin:p000001:{pinned}").as_str() && e["effect"] == "pinned"
    }));
    let home_now = app.recommend("session_id=s&placement=home").await;
    assert!(!common::picks(&home_now).iter().any(|(p, _)| *p == gone));
    assert!(
        home_now["merchandising"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["rule"] == "override:exclude" && e["effect"] == "hidden" && e["count"] == 1
            })
    );
    // The pin holds only where p000001 is in view.
    let elsewhere = app
        .recommend("session_id=s&placement=product&product_id=p000003")
        .await;
    assert!(
        !common::picks(&elsewhere)
            .iter()
            .any(|(p, r)| *p == pinned && r == "pinned")
    );

    // A category boosted on home: its products move up, and the effect says how many.
    let last = home.last().unwrap().0.clone();
    let category_of = |id: String| {
        let app = &app;
        async move {
            app.get_json(&format!("/admin/v1/products/{id}")).await["category"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let category = category_of(last).await;
    app.publish_ruleset(&json!({"overrides": {
        "boosts": [{"placement": "home", "category": category, "by_bps": 100000}]}}))
        .await;
    let boosted = app.recommend("session_id=s&placement=home").await;
    let first = common::picks(&boosted)[0].0.clone();
    assert_eq!(category_of(first).await, category, "{boosted}");
    assert!(
        boosted["merchandising"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["rule"] == format!("override:boost:home:category:{category}").as_str()
                    && e["effect"] == "boosted"
            })
    );
}

#[tokio::test]
async fn every_change_is_logged_and_a_stale_publish_is_refused() {
    let app = TestApp::spawn(common::settings()).await;
    let first = json!({"overrides": {"excluded_products": [{"product_id": "p000009"}]}});
    // If-Match none: only while nothing is live.
    let r = put(&app, &first, Some("none")).await;
    assert_eq!(r.status(), 200);
    let v1 = r.json::<Value>().await.unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = json!({"overrides": {"excluded_products": [{"product_id": "p000010"}]}});
    let (status, code) = common::error_code(put(&app, &second, Some("none")).await).await;
    assert_eq!((status, code.as_str()), (412, "ruleset_moved"));
    assert_eq!(
        app.get_json("/admin/v1/ruleset").await["version"],
        v1.as_str()
    );
    let r = put(&app, &second, Some(&v1)).await;
    assert_eq!(r.status(), 200);
    let v2 = r.json::<Value>().await.unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .post(app.url("/admin/v1/ruleset/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let log = app.get_json("/admin/v1/ruleset/changes").await;
    let entries = log["changes"].as_array().unwrap();
    let summary: Vec<(&str, Option<&str>, &str)> = entries
        .iter()
        .map(|c| {
            (
                c["what"].as_str().unwrap(),
                c["from_version"].as_str(),
                c["to_version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                format!("rolled back to {v1}").as_str(),
                Some(v2.as_str()),
                v1.as_str()
            ),
            ("published a ruleset", Some(v1.as_str()), v2.as_str()),
            ("published a ruleset", None, v1.as_str()),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|c| c["who"] == "open" && c["at"].is_string())
    );
    let (status, code) =
        common::error_code(app.get("/admin/v1/ruleset/changes?limit=x").await).await;
    assert_eq!((status, code.as_str()), (400, "malformed_query"));
    let (status, code) =
        common::error_code(app.get("/admin/v1/ruleset/changes?limit=0").await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_parameter"));
    let one = app.get_json("/admin/v1/ruleset/changes?limit=1").await;
    assert_eq!(one["changes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn overrides_are_validated_at_their_paths_and_their_ids_are_their_own() {
    let app = TestApp::spawn(common::settings()).await;
    let doc = json!({
        "merchandising": [{"id": "override:exclude", "action": {"hide": {"eq": ["product.id", "x"]}}}],
        "overrides": {"blocked_pairs": [{"a": "p000001", "b": "p000001"}],
                      "boosts": [{"placement": "home", "tag": "sale", "category": "kitchen", "by_bps": 10}]}
    });
    let body: Value = app
        .post_json("/admin/v1/ruleset/validate", &doc)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["valid"], false);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "$.merchandising[0].id",
            "$.overrides.blocked_pairs[0].b",
            "$.overrides.boosts[0]"
        ]
    );
}
