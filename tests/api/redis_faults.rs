//! Redis going away while serving, and coming back: answers keep coming (from L1 or the
//! fallback), readiness says so, events are buffered and written on return, and past
//! the buffer the API says 503 rather than dropping anything.

use crate::common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::config::StorageBackend;

#[tokio::test]
async fn serving_survives_a_redis_outage_and_buffered_events_land_when_it_returns() {
    let mut server = RedisServer::start();
    let mut s = settings();
    s.storage.backend = StorageBackend::Redis;
    s.redis.url = server.url();
    s.redis.timeout_ms = 100;
    s.privacy.id_hash_secret = "fault-test-secret".into();
    s.cache.l1_ttl_ms = 60_000;
    s.events.buffer_capacity = 50;
    let app = TestApp::spawn(s).await;

    // A known customer, read once so their profile sits in L1.
    let known = "/v1/recommend?customer_id=c0000001&placement=home";
    let before: Value = app.get(known).await.json().await.unwrap();
    assert_eq!(before["degraded"], false);

    server.kill();

    // From L1: still personalized, not degraded.
    let r = app.get(known).await;
    assert_eq!(r.status(), 200);
    let from_l1: Value = r.json().await.unwrap();
    assert_eq!(from_l1["degraded"], false);
    assert_eq!(from_l1["recommendations"], before["recommendations"]);

    // Not in L1: the fallback, flagged, within the deadline.
    let started = Instant::now();
    let r = app
        .get("/v1/recommend?session_id=unknown-during-outage&placement=home")
        .await;
    assert_eq!(r.status(), 200);
    let fallback: Value = r.json().await.unwrap();
    assert_eq!(fallback["degraded"], true);
    assert!(started.elapsed() < Duration::from_secs(1));

    let (status, code) = error_code(app.get("/readyz").await).await;
    assert_eq!((status, code.as_str()), (503, "not_ready"));

    // Events are buffered...
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"event_id": format!("outage-{i}"), "type": "view", "customer_id": "outage-customer", "product_id": format!("p{:06}", 100 + i)}))
        .collect();
    let r = app.post_json("/v1/events", &Value::Array(events)).await;
    let status = r.status();
    let report: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["buffered"], 20);
    assert_eq!(report["results"][0]["status"], "buffered");

    // ...up to the buffer's size; past it, 503 and nothing of the batch is kept.
    let too_many: Vec<Value> = (0..40)
        .map(|i| json!({"event_id": format!("overflow-{i}"), "type": "view", "customer_id": "outage-customer", "product_id": "p000001"}))
        .collect();
    let r = app.post_json("/v1/events", &Value::Array(too_many)).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await, (503, "store_unavailable".into()));

    server.restart();
    common::eventually("readyz", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    common::eventually("buffered events in the profile", || async {
        let r = app.get("/admin/v1/profiles/outage-customer").await;
        if r.status() != 200 {
            return false;
        }
        let p: Value = r.json().await.unwrap();
        p["recently_viewed"].as_array().map(Vec::len) == Some(20)
    })
    .await;
    let p: Value = app
        .get("/admin/v1/profiles/outage-customer")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        p["recently_viewed"][0], "p000119",
        "applied in the order they arrived"
    );
    assert!(
        !p["recently_viewed"]
            .as_array()
            .unwrap()
            .contains(&json!("p000001")),
        "the refused batch left no trace"
    );
    let after: Value = app
        .recommend("session_id=after-outage&placement=home")
        .await;
    assert_eq!(after["degraded"], false);
}
