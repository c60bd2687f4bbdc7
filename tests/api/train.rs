//! `vitrine train`: the real binary trains on an events file and stores the models in a
//! private Redis; two running replicas swap them in within seconds, without failing a
//! request.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::TestApp;
use common::redis::RedisServer;
use serde_json::{Value, json};
use vitrine::store::redis::RedisOptions;
use vitrine::store::{CatalogStore, RedisStore};

async fn replica(redis: &RedisServer) -> TestApp {
    TestApp::on_redis(redis).await
}

async fn model_version(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn trained_models_reach_every_replica_without_a_failed_request() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis).await, replica(&redis).await);
    let path = "/v1/recommend?session_id=s&placement=product&product_id=p000001";
    let (_, before) = model_version(&a, path).await;

    // An event history: p000001 and p000002 bought together, again and again.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut lines = String::new();
    for order in 0..20 {
        for product in ["p000001", "p000002"] {
            lines.push_str(&format!(
                "{}\n",
                json!({"event_id": format!("{order}-{product}"), "type": "purchase",
                       "session_id": format!("s{order}"), "product_id": product,
                       "order_id": format!("o{order}"), "timestamp": 1_700_000_000 + order})
            ));
        }
    }
    lines.push_str("{\"event_id\": \"bad\", \"type\": \"hover\", \"session_id\": \"x\"}\n");
    std::fs::write(&file, lines).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["train", "--events"])
        .arg(&file)
        .args(["--redis", &redis.url(), "--max-errors", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("trained on 40 interactions from 41 rows (1 bad"),
        "{stdout}"
    );
    let version = stdout.split(':').next().unwrap().to_owned();
    assert_ne!(before["model_version"], version.as_str());

    // Both replicas switch within seconds; every request meanwhile answers 200.
    for app in [&a, &b] {
        common::eventually_within("the new models", Duration::from_secs(5), || async {
            let (status, body) = model_version(app, path).await;
            assert_eq!(status, 200, "{body}");
            body["model_version"] == version.as_str()
        })
        .await;
        let (_, body) = model_version(app, path).await;
        assert_eq!(body["recommendations"][0]["product_id"], "p000002");
        assert_eq!(body["recommendations"][0]["reason"], "bought_together");
    }

    // Too many bad rows: exit 1 (the models are still stored).
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["train", "--events"])
        .arg(&file)
        .args(["--redis", &redis.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("events.ndjson:41: rejected: invalid_event_type")
    );
}

/// Waits until `app` answers `path` with `want` (product, reason), on models of
/// `version` when given; returns that item's score.
async fn wait_for(app: &TestApp, path: &str, want: (&str, &str), version: Option<&str>) -> Value {
    let found = |body: &Value| -> Option<Value> {
        let item = body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["product_id"] == want.0 && r["reason"] == want.1)?;
        version
            .is_none_or(|v| body["model_version"] == v)
            .then(|| item["score"].clone())
    };
    let score = std::sync::Mutex::new(None);
    common::eventually_within(
        &format!("{want:?} on {version:?}"),
        Duration::from_secs(5),
        || async {
            let (status, body) = model_version(app, path).await;
            assert_eq!(status, 200, "{body}");
            let hit = found(&body);
            let done = hit.is_some();
            *score.lock().unwrap() = hit;
            done
        },
    )
    .await;
    score.into_inner().unwrap().expect("found")
}

#[tokio::test]
async fn without_a_file_train_learns_the_stored_event_log() {
    let redis = RedisServer::start();
    // A shop's own catalog (the log cannot retrain a demo store: see import.rs).
    let a = TestApp::spawn(common::empty_shop_on_redis(&redis)).await;
    let products: Vec<Value> = (1..=6)
        .map(|n| {
            json!({"id": format!("p{n:06}"), "title": format!("Product {n}"), "category": "Kitchen > Mugs",
                   "url": format!("https://shop.example/products/{n}"),
                   "price": {"amount": 1000 + n, "currency": "GBP"}, "inventory": 10})
        })
        .collect();
    a.put_products(&Value::Array(products)).await;
    // A history imported into the store goes to its event log.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    let now = vitrine::recommend::model::unix_now();
    let mut lines = String::new();
    for order in 0..20 {
        for product in ["p000003", "p000004"] {
            lines.push_str(&format!(
                "{}\n",
                json!({"event_id": format!("h{order}-{product}"), "type": "purchase",
                       "customer_id": format!("c{order}"), "product_id": product,
                       "order_id": format!("ho{order}"), "timestamp": now - 3_600 + order})
            ));
        }
    }
    std::fs::write(&file, lines).unwrap();
    let file = file.to_str().unwrap();
    let (code, _, stderr) = common::vitrine(&["import", "events", file, "--redis", &redis.url()]);
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stdout, stderr) = common::vitrine(&["train", "--redis", &redis.url()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("trained on 40 interactions from 40 event log entries (0 bad, 0 about"),
        "{stdout}"
    );
    let version = stdout.split(':').next().unwrap().to_owned();
    let path = "/v1/recommend?session_id=s&placement=product&product_id=p000003";
    wait_for(&a, path, ("p000004", "bought_together"), Some(&version)).await;
}

#[tokio::test]
async fn new_models_relearn_what_the_log_gained_after_their_training() {
    let redis = RedisServer::start();
    let a = replica(&redis).await;
    // Orders that reach the replica live: in its live models and in the log.
    let mut events = Vec::new();
    for order in 0..3 {
        for product in ["p000005", "p000006"] {
            events.push(
                json!({"event_id": format!("{order}-{product}"), "type": "purchase",
                               "session_id": format!("b{order}"), "product_id": product,
                               "order_id": format!("live-{order}")}),
            );
        }
    }
    let r = a.post_json("/v1/events", &Value::Array(events)).await;
    assert_eq!(r.status(), 202);
    let path = "/v1/recommend?session_id=s&placement=product&product_id=p000005";
    wait_for(&a, path, ("p000006", "bought_together"), None).await;

    // Models trained on nothing of the log (say, on an older history): once swapped
    // in, their live part starts empty and relearns the log after their training.
    let store = RedisStore::connect(&RedisOptions {
        url: redis.url(),
        key_prefix: "vitrine:".into(),
        retention: vitrine::store::Retention {
            profile_ttl: Duration::from_secs(3_600),
            ..vitrine::store::Retention::default()
        },
        timeout: Duration::from_secs(2),
    })
    .await
    .unwrap();
    let catalog = vitrine::ingest::import::load_catalog(&store).await.unwrap();
    let mut models = vitrine::recommend::Models::train(&catalog, &[], &Default::default());
    models.version = "before-the-orders".into();
    assert_eq!(models.log_cursor, "");
    let bytes = vitrine::recommend::portable::encode(&models, &catalog).unwrap();
    store.save_models(&models.version, &bytes).await.unwrap();
    wait_for(
        &a,
        path,
        ("p000006", "bought_together"),
        Some("before-the-orders"),
    )
    .await;
    // Learned once: three orders of each, though the replica wrote the entries itself
    // (and keeps following the log: here to its end).
    a.state.learning.follow().await.unwrap();
    let snapshot = a.state.snapshot.load();
    let p5 = snapshot.catalog.lookup("p000005").unwrap();
    assert_eq!(snapshot.models.version, "before-the-orders");
    assert_eq!(snapshot.models.live.occurrences(p5), 3.0);
}
