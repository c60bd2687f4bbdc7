//! A Redis outage does not make requests wait: after a few failures the circuit opens,
//! requests answer at once from the fallback without calling Redis, and a background
//! probe closes it when Redis is back.

use crate::common;

use common::TestApp;
use common::redis::RedisServer;
use serde_json::Value;

/// A metric's value in the app's `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_outage_opens_the_circuit_and_requests_stop_waiting_for_redis() {
    let mut redis = RedisServer::start();
    let mut s = common::on_redis(&redis);
    // A long deadline: without the breaker every request would wait on Redis.
    s.recommend.deadline_ms = 5_000;
    s.redis.timeout_ms = 1_000;
    s.cache.l1_ttl_ms = 1;
    let app = TestApp::spawn(s).await;
    let visitor = |i: usize| format!("/v1/recommend?session_id=outage-{i}&placement=home");
    let answer = |i: usize| {
        let path = visitor(i);
        let app = &app;
        async move { app.get(&path).await.json::<Value>().await.unwrap() }
    };
    assert_eq!(answer(0).await["degraded"], false);
    assert_eq!(metric(&app, "vitrine_store_circuit_open").await, 0.0);

    redis.kill();
    let mut i = 1;
    common::eventually("the circuit to open", || {
        i += 1;
        let next = answer(i);
        let app = &app;
        async move {
            let a = next.await;
            assert_eq!(a["degraded"], true);
            metric(app, "vitrine_store_circuit_open").await == 1.0
        }
    })
    .await;

    // Open: answers come at once from the fallback, and Redis is not called.
    let errors = "vitrine_store_reads_total{tier=\"redis\",result=\"error\"}";
    let before = metric(&app, errors).await;
    for n in 0..50 {
        let a = answer(1_000 + n).await;
        assert_eq!(a["degraded"], true);
        assert_eq!(
            a["degraded_reason"], "store_error",
            "failed at once, not at the deadline"
        );
        assert!(
            !a["recommendations"].as_array().unwrap().is_empty(),
            "the fallback is complete"
        );
    }
    assert_eq!(metric(&app, errors).await, before, "no call reached Redis");
    let (status, _) = common::error_code(app.get("/readyz").await).await;
    assert_eq!(status, 503);

    // Back: a probe closes the circuit and answers are personalized again.
    redis.restart();
    common::eventually("the circuit to close", || async {
        metric(&app, "vitrine_store_circuit_open").await == 0.0
    })
    .await;
    assert_eq!(answer(5_000).await["degraded"], false);
    assert_eq!(app.get("/readyz").await.status(), 200);
}
