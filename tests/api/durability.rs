//! A 2xx is a promise: events answered `buffered` while Redis hangs survive SIGKILL and
//! SIGTERM of the process that took them, and are applied exactly once when a server
//! starts again on the same data directory.

use crate::common;

use std::time::{Duration, Instant};

use common::process::Process;
use common::redis::RedisServer;
use serde_json::{Value, json};

fn env(redis: &RedisServer, data: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("VITRINE__STORAGE__BACKEND", "redis".into()),
        ("VITRINE__REDIS__URL", redis.url()),
        ("VITRINE__REDIS__TIMEOUT_MS", "100".into()),
        (
            "VITRINE__STORAGE__PATH",
            data.join("vitrine.redb").display().to_string(),
        ),
        (
            "VITRINE__PRIVACY__ID_HASH_SECRET",
            "durability-secret".into(),
        ),
        ("VITRINE__SERVER__SHUTDOWN_TIMEOUT_MS", "1500".into()),
    ]
}

/// Ten batches of ten purchases, each its own order of 1.00, for one customer.
fn batches(customer: &str) -> Vec<Value> {
    (0..10)
        .map(|b| {
            Value::Array(
                (0..10)
                    .map(|i| {
                        let n = b * 10 + i;
                        json!({"event_id": format!("{customer}-e{n}"), "type": "purchase",
                            "customer_id": customer, "product_id": format!("p{:06}", 1 + n),
                            "order_id": format!("{customer}-o{n}"),
                            "price": {"amount": 100, "currency": "GBP"}})
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Sends every batch; each must be answered 202 with every event `buffered`.
async fn send_while_down(client: &reqwest::Client, server: &Process, customer: &str) {
    for batch in batches(customer) {
        let r = client
            .post(server.url("/v1/events"))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let report: Value = r.json().await.unwrap();
        assert_eq!(report["buffered"], 10, "{report}");
    }
}

/// Waits until the customer's profile shows all 100 orders, and checks nothing was
/// applied twice.
async fn all_applied_once(client: &reqwest::Client, server: &Process, customer: &str) {
    let profile = server.url(&format!("/admin/v1/profiles/{customer}"));
    common::eventually_within(
        "acknowledged events in the profile",
        Duration::from_secs(30),
        || async {
            let r = client.get(&profile).send().await.unwrap();
            if r.status() != 200 {
                return false;
            }
            let p: Value = r.json().await.unwrap();
            p["orders_count"] == 100
        },
    )
    .await;
    let p: Value = client
        .get(&profile)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        p["total_spent"],
        json!({"amount": 10_000, "currency": "GBP"})
    );
    // Sent again, every event is a duplicate: each was applied exactly once.
    for batch in batches(customer) {
        let report: Value = client
            .post(server.url("/v1/events"))
            .json(&batch)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["duplicates"], 10, "{report}");
    }
}

/// A server on Redis that hangs (SIGSTOP) after the server came up, and the customer's
/// 100 events accepted by it meanwhile, every one answered `buffered`.
struct Outage {
    redis: RedisServer,
    _data: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    client: reqwest::Client,
    server: Process,
}

async fn accepted_during_an_outage(customer: &str) -> Outage {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let env = env(&redis, data.path());
    let client = common::client();
    let server = Process::start(&env);
    redis.pause();
    send_while_down(&client, &server, customer).await;
    Outage {
        redis,
        _data: data,
        env,
        client,
        server,
    }
}

#[tokio::test]
async fn buffered_events_survive_sigkill_and_are_applied_once_at_the_next_start() {
    let mut o = accepted_during_an_outage("killed-cust").await;
    o.server.kill9();
    o.redis.resume();
    let next = Process::start(&o.env);
    all_applied_once(&o.client, &next, "killed-cust").await;
}

#[tokio::test]
async fn buffered_events_survive_sigterm_while_the_store_is_still_down() {
    let mut o = accepted_during_an_outage("termed-cust").await;
    let started = Instant::now();
    assert_eq!(o.server.terminate().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown is bounded by server.shutdown_timeout_ms"
    );
    o.redis.resume();
    let next = Process::start(&o.env);
    all_applied_once(&o.client, &next, "termed-cust").await;
}

#[tokio::test]
async fn on_sigterm_buffered_events_are_written_once_the_store_answers() {
    let mut o = accepted_during_an_outage("drained-cust").await;
    o.redis.resume();
    assert_eq!(o.server.terminate().code(), Some(0));
    // A server on a fresh data directory (no journal) sees them: they reached Redis
    // before the first one exited.
    let elsewhere = tempfile::tempdir().unwrap();
    let next = Process::start(&env(&o.redis, elsewhere.path()));
    all_applied_once(&o.client, &next, "drained-cust").await;
}
