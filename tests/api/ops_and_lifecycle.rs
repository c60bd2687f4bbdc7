//! Degraded answers, overload, readiness, metrics, the ops listener and shutdown.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{FaultyStore, TestApp, error_code, settings};
use serde_json::Value;

#[tokio::test]
async fn a_slow_store_past_the_deadline_gives_the_fallback_not_an_error() {
    let mut s = settings();
    s.recommend.deadline_ms = 30;
    let store = FaultyStore::new();
    let app = TestApp::spawn_with_store(s, store.clone()).await;
    let path = "/v1/recommend?customer_id=c0000001&placement=home";
    let normal: Value = app.get(path).await.json().await.unwrap();
    assert_eq!(normal["degraded"], false);

    store.delay_ms.store(2_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = app.get(path).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    let slow: Value = r.json().await.unwrap();
    assert_eq!(slow["degraded"], true);
    assert_eq!(slow["degraded_reason"], "deadline");
    assert!(
        waited < Duration::from_millis(1_500),
        "the answer did not wait for the store"
    );
    // The fallback is the non-personalized answer: what an unknown visitor gets.
    let anonymous: Value = app.recommend("session_id=nobody&placement=home").await;
    assert_eq!(slow["recommendations"], anonymous["recommendations"]);
    assert_ne!(slow["recommendations"], normal["recommendations"]);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("vitrine_recommend_degraded_total{reason=\"deadline\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_store_gives_the_fallback_and_readyz_says_not_ready() {
    let store = FaultyStore::new();
    let app = TestApp::spawn_with_store(settings(), store.clone()).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    store.failing.store(true, Ordering::SeqCst);
    let r = app
        .get("/v1/recommend?customer_id=c0000001&placement=product&product_id=p000001")
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["degraded"], true);
    assert_eq!(body["degraded_reason"], "store_error");
    assert!(!body["recommendations"].as_array().unwrap().is_empty());

    let ready = app.get("/readyz").await;
    assert!(ready.headers().contains_key("retry-after"));
    let (status, code) = error_code(ready).await;
    assert_eq!((status, code.as_str()), (503, "not_ready"));
    assert_eq!(
        app.get("/livez").await.status(),
        200,
        "alive even when not ready"
    );

    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn past_max_concurrency_requests_are_shed_with_503_and_retry_after() {
    let mut s = settings();
    s.server.max_concurrency = 2;
    s.recommend.deadline_ms = 5_000;
    let store = FaultyStore::new();
    store.delay_ms.store(1_000, Ordering::SeqCst);
    let app = TestApp::spawn_with_store(s, store.clone()).await;
    let url = app.url("/v1/recommend?session_id=s&placement=home");
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.client.get(url.clone()).send()))
        .collect();
    common::eventually("two requests in flight", || async {
        store.in_flight.load(Ordering::SeqCst) >= 2
    })
    .await;
    let shed = app.get("/v1/recommend?session_id=s&placement=home").await;
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(error_code(shed).await, (503, "overloaded".into()));
    // Ops endpoints are not shed.
    assert_eq!(app.get("/livez").await.status(), 200);
    for b in busy {
        assert_eq!(b.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_bounded_labels() {
    let app = TestApp::spawn(settings()).await;
    app.get("/v1/recommend?session_id=s&placement=home").await;
    for _ in 0..2 {
        app.get("/v1/recommend?customer_id=c0000003&placement=home")
            .await;
    }
    app.get("/no/such/route").await;
    let r = app.get("/metrics").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for needle in [
        "vitrine_http_requests_total{",
        "route=\"/v1/recommend\"",
        "route=\"unmatched\"",
        "vitrine_http_request_duration_seconds_bucket{",
        "vitrine_store_reads_total{tier=\"l1\",result=\"hit\"}",
        "vitrine_store_reads_total{tier=\"l1\",result=\"miss\"}",
        "vitrine_store_reads_total{tier=\"embedded\",result=\"hit\"}",
        "vitrine_store_reads_total{tier=\"embedded\",result=\"miss\"}",
        "vitrine_http_errors_total{code=\"not_found\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("c0000003"), "ids never become labels");
    assert!(
        !text.contains("/no/such/route"),
        "unmatched paths are not labels"
    );
}

#[tokio::test]
async fn ops_endpoints_can_move_to_their_own_listener() {
    let mut s = settings();
    s.ops.addr = Some("127.0.0.1:0".parse().unwrap());
    let app = TestApp::spawn(s).await;
    let ops = format!("http://127.0.0.1:{}", app.ops_port.unwrap());
    for path in ["/livez", "/readyz", "/metrics"] {
        let r = app.client.get(format!("{ops}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            app.get(path).await.status(),
            404,
            "{path} is not on the API listener"
        );
    }
    assert_eq!(
        app.get("/v1/recommend?session_id=s&placement=home")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let mut s = settings();
    s.recommend.deadline_ms = 5_000;
    let store = FaultyStore::new();
    store.delay_ms.store(300, Ordering::SeqCst);
    let mut app = TestApp::spawn_with_store(s, store.clone()).await;
    let url = app.url("/v1/recommend?customer_id=c0000001&placement=home");
    let requests: Vec<_> = (0..20)
        .map(|_| tokio::spawn(common::client().get(url.clone()).send()))
        .collect();
    common::eventually("twenty requests in flight", || async {
        store.in_flight.load(Ordering::SeqCst) >= 20
    })
    .await;
    app.trigger_shutdown();
    for r in requests {
        let r = r.await.unwrap().expect("no request fails");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["degraded"], false,
            "in-flight requests complete normally"
        );
    }
    app.stop().await.expect("clean exit");
    assert!(
        common::client().get(url).send().await.is_err(),
        "no new connections after shutdown"
    );
}

/// A request sent on a kept-alive connection just after SIGTERM is answered (with
/// `Connection: close`), never met with a closed socket.
#[tokio::test]
async fn requests_on_kept_alive_connections_during_shutdown_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut app = TestApp::spawn(settings()).await;
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(common::kept_alive(app.port).await);
    }
    app.trigger_shutdown();
    // The server has seen the signal once it stops accepting connections.
    let addr = format!("127.0.0.1:{}", app.port);
    common::eventually("the listener closed", || async {
        tokio::net::TcpStream::connect(&addr).await.is_err()
    })
    .await;
    for c in &mut conns {
        c.write_all(b"GET /v1/recommend?session_id=s&placement=home HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut answer = Vec::new();
        c.read_to_end(&mut answer)
            .await
            .expect("an answer, not a reset");
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(
            answer.starts_with("http/1.1 200"),
            "connection {i}: {answer:?}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }
    app.stop().await.expect("clean exit");
}
