//! `vitrine train`: the real binary trains on an events file and stores the models in a
//! private Redis; two running replicas swap them in within seconds, without failing a
//! request.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{TestApp, settings};
use serde_json::{Value, json};
use vitrine::config::StorageBackend;

async fn replica(redis: &RedisServer) -> TestApp {
    let mut s = settings();
    s.storage.backend = StorageBackend::Redis;
    s.redis.url = redis.url();
    s.catalog.sync_ms = 100;
    TestApp::spawn(s).await
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
        let start = Instant::now();
        loop {
            let (status, body) = model_version(app, path).await;
            assert_eq!(status, 200);
            if body["model_version"] == version.as_str() {
                assert_eq!(body["recommendations"][0]["product_id"], "p000002");
                assert_eq!(body["recommendations"][0]["reason"], "bought_together");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "still {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
