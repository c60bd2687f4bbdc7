//! No anonymous caller can stall the service: slow bodies never hold API permits, slow
//! headers and idle connections are closed, connections are bounded, and nothing a
//! client invents grows the metrics.

use crate::common;

use std::time::{Duration, Instant};

use common::{STOREFRONT_KEY, TestApp, settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vitrine::config::Settings;

const ADMIN_KEY: &str = common::ADMIN_KEY;

fn keyed() -> Settings {
    let mut s = settings();
    s.auth.storefront_keys = vec![STOREFRONT_KEY.into()];
    s.auth.admin_keys = vec![ADMIN_KEY.into()];
    s.shopify.webhook_secret = "shopify-secret-for-slow-clients".into();
    s
}

/// Reads until the server closes the connection or `within` passes; true when it
/// closed (EOF or reset), with whatever it sent before.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (false, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_anyone_never_stop_a_keyed_client_and_are_cut_off() {
    let mut s = keyed();
    s.server.body_read_timeout_ms = 2_000;
    let app = TestApp::spawn(s).await;
    let addr = format!("127.0.0.1:{}", app.port);

    // 1,100 sockets, each sending headers announcing 60,000 bytes (under every limit)
    // and then 6 of them: to the webhooks (no key is needed to reach them) and to the
    // events API with the publishable key (anyone has it); and 200 more without a key.
    let mut attackers = Vec::new();
    for i in 0..1_300 {
        let mut sock = TcpStream::connect(&addr).await.unwrap();
        let (path, auth) = match i % 2 {
            _ if i >= 1_100 => ("/v1/events", String::new()),
            0 => ("/webhooks/shopify", String::new()),
            _ => (
                "/v1/events",
                format!("authorization: Bearer {STOREFRONT_KEY}\r\n"),
            ),
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}\
             x-shopify-topic: orders/create\r\ncontent-length: 60000\r\n\r\n[{{\"a\""
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        attackers.push(sock);
    }

    // Meanwhile a keyed storefront keeps being answered.
    let started = Instant::now();
    for i in 0..20 {
        let r = app
            .client
            .get(app.url(&format!(
                "/v1/recommend?session_id=keyed-{i}&placement=home"
            )))
            .bearer_auth(STOREFRONT_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i} while 1,100 bodies trickle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "keyed requests were not held up"
    );

    // Every attacker is answered and cut off: without a key, at once (401); with one or
    // on a webhook, when the body timeout passes (408).
    let mut unauthorized = 0;
    let mut timed_out = 0;
    for (i, sock) in attackers.iter_mut().enumerate() {
        let (closed, answer) = closed_within(sock, Duration::from_secs(20)).await;
        assert!(closed, "attacker {i} still connected: {answer:?}");
        if answer.starts_with("HTTP/1.1 401") {
            unauthorized += 1;
        } else if answer.starts_with("HTTP/1.1 408") {
            assert!(answer.contains("\"request_timeout\""), "{answer}");
            timed_out += 1;
        }
    }
    assert_eq!(
        unauthorized, 200,
        "no key: refused before the body was read"
    );
    assert_eq!(timed_out, 1_100, "slow bodies: 408 request_timeout");
}

#[tokio::test]
async fn headers_sent_slowly_are_cut_off_and_idle_connections_closed() {
    let mut s = keyed();
    s.server.header_read_timeout_ms = 500;
    s.server.idle_timeout_ms = 1_000;
    let app = TestApp::spawn(s).await;
    let addr = format!("127.0.0.1:{}", app.port);

    // Slowloris: a header line every 200 ms never completes the head.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
    let mut cut = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow
            .write_all(format!("x-trickle-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickling for 8 s was never cut off");

    // A kept-alive connection that asks nothing more is closed after the idle timeout.
    let mut idle = common::kept_alive(app.port).await;
    let (closed, _) = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(closed, "an idle kept-alive connection stays open");

    // A connection that keeps asking is not idle.
    let mut busy = TcpStream::connect(&addr).await.unwrap();
    for _ in 0..6 {
        common::livez_on(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let mut s = keyed();
    s.server.max_connections = 16;
    let app = TestApp::spawn(s).await;
    let addr = format!("127.0.0.1:{}", app.port);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(common::kept_alive(app.port).await);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), extra.read(&mut buf))
            .await
            .is_err(),
        "a 17th connection was served while 16 were open"
    );
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// The series in `/metrics` of requests to routes the server does not have (the other
/// tests of this binary add series of their own routes meanwhile).
async fn unmatched_series(app: &TestApp) -> usize {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains("route=\"unmatched\""))
        .count()
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let app = TestApp::spawn(settings()).await;
    let send = |i: usize| {
        let method = reqwest::Method::from_bytes(format!("X{i}ZZZQ").as_bytes()).unwrap();
        app.client
            .request(method, app.url(&format!("/nope/{i}")))
            .send()
    };
    for i in 0..10 {
        send(i).await.unwrap();
    }
    let before = unmatched_series(&app).await;
    for i in 10..1_010 {
        let r = send(i).await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let after = unmatched_series(&app).await;
    assert!(before > 0, "the first ten are counted");
    assert_eq!(
        after, before,
        "1,000 invented methods and paths added series"
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("route=\"unmatched\""));
}
