//! `/v1/events` end to end, profile export and erasure, and two instances sharing one
//! Redis.

use crate::common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::config::{Settings, StorageBackend};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn reasons(app: &TestApp, path: &str) -> Vec<String> {
    let body: Value = app.get(path).await.json().await.unwrap();
    body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_next_recommendation_sees_the_events_just_sent() {
    let app = TestApp::spawn(settings()).await;
    let home = "/v1/recommend?session_id=fresh-visitor&placement=home";
    assert!(reasons(&app, home).await.iter().all(|r| r == "trending"));
    let views: Vec<Value> = (1..=5)
        .map(|i| json!({"event_id": format!("v{i}"), "type": "view", "session_id": "fresh-visitor", "product_id": format!("p{:06}", i * 7)}))
        .collect();
    let (status, report) = app.send_events(&Value::Array(views)).await;
    assert_eq!(status, 202);
    assert_eq!(report["accepted"], 5);
    assert!(
        reasons(&app, home)
            .await
            .iter()
            .any(|r| r == "based_on_your_history"),
        "read-your-writes: the views shape the very next answer"
    );
}

#[tokio::test]
async fn a_repeated_event_is_applied_once() {
    let app = TestApp::spawn(settings()).await;
    let batch = json!([
        {"event_id": "o-1", "type": "purchase", "customer_id": "new-cust", "product_id": "p000001", "quantity": 2,
         "price": {"amount": 1250, "currency": "GBP"}, "order_id": "order-1"},
        {"event_id": "o-2", "type": "purchase", "customer_id": "new-cust", "product_id": "p000002",
         "price": {"amount": 500, "currency": "GBP"}, "order_id": "order-1"}
    ]);
    let (_, first) = app.send_events(&batch.clone()).await;
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let (status, second) = app.send_events(&batch).await;
    assert_eq!(status, 202);
    assert_eq!(
        (second["accepted"].as_u64(), second["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(second["results"][0]["status"], "duplicate");
    let p = app.export_profile("new-cust").await.expect("a profile");
    assert_eq!(p["orders_count"], 1, "two lines of one order");
    assert_eq!(p["total_spent"], json!({"amount": 3000, "currency": "GBP"}));
    assert_eq!(p["purchased"].as_array().unwrap().len(), 2);
}

/// An event id is applied once within `events.max_age_s`, however many events come
/// between (more than a profile's own ring of recent ids holds), on every backend.
#[tokio::test]
async fn a_repeated_event_is_applied_once_however_much_happens_between() {
    let redis = RedisServer::start();
    let mut on_redis = settings();
    on_redis.storage.backend = StorageBackend::Redis;
    on_redis.redis.url = redis.url();
    for s in [settings(), on_redis] {
        let app = TestApp::spawn(s).await;
        let purchase = json!({"event_id": "big-1", "type": "purchase", "customer_id": "repeat-cust",
            "product_id": "p000001", "price": {"amount": 4000, "currency": "GBP"}});
        assert_eq!(app.send_events(&purchase.clone()).await.1["accepted"], 1);
        let views: Vec<Value> = (0..130)
            .map(|i| json!({"event_id": format!("between-{i}"), "type": "view", "customer_id": "repeat-cust", "product_id": format!("p{:06}", 2 + i % 50)}))
            .collect();
        assert_eq!(
            app.send_events(&Value::Array(views)).await.1["accepted"],
            130
        );
        let (status, again) = app.send_events(&purchase).await;
        assert_eq!(status, 202);
        assert_eq!(again["results"][0]["status"], "duplicate", "{again}");
        let p = app.export_profile("repeat-cust").await.expect("a profile");
        assert_eq!(p["orders_count"], 1);
        assert_eq!(p["total_spent"], json!({"amount": 4000, "currency": "GBP"}));
    }
}

#[tokio::test]
async fn an_invalid_event_is_rejected_with_its_code_and_the_rest_go_on() {
    let app = TestApp::spawn(settings()).await;
    let (status, report) = app.send_events(&json!([
            {"event_id": "ok-1", "type": "view", "customer_id": "mixed", "product_id": "p000010"},
            {"event_id": "bad-1", "type": "hover", "customer_id": "mixed", "product_id": "p000011"},
            {"event_id": "bad-2", "type": "view", "customer_id": "mixed"},
            {"event_id": "bad-3", "type": "add_to_cart", "customer_id": "mixed", "product_id": "p000012", "quantity": 0},
            {"event_id": "bad-4", "type": "view", "customer_id": "mixed", "product_id": "p000013", "email": "a@b.c"},
            {"event_id": "bad-5", "type": "view", "customer_id": "mixed", "product_id": "p000014", "timestamp": 1000},
            {"type": "view", "customer_id": "mixed", "product_id": "p000015"},
            {"event_id": "bad-7", "type": "search", "customer_id": "mixed"},
            {"event_id": "bad-8", "type": "purchase", "customer_id": "mixed", "product_id": "p1", "price": {"amount": 5, "currency": "pounds"}},
            {"event_id": "bad-9", "type": "view", "product_id": "p000016"},
            "not an object",
            {"event_id": "ok-2", "type": "click", "customer_id": "placed", "product_id": "p000017", "position": 3},
            {"event_id": "bad-10", "type": "click", "customer_id": "mixed", "product_id": "p000017", "position": 100}
        ]),
    )
    .await;
    assert_eq!(status, 202);
    let codes: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["error"]["code"]
                .as_str()
                .unwrap_or(r["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "accepted",
            "invalid_event_type",
            "missing_product_id",
            "invalid_quantity",
            "invalid_event",
            "invalid_timestamp",
            "missing_event_id",
            "missing_query",
            "invalid_price",
            "missing_visitor_id",
            "invalid_event",
            "accepted",
            "invalid_position"
        ]
    );
    assert_eq!(report["rejected"], 11);
    let p = app.export_profile("mixed").await.expect("a profile");
    assert_eq!(
        p["recently_viewed"],
        json!(["p000010"]),
        "nothing of the rejected events was applied"
    );
}

#[tokio::test]
async fn batches_have_a_size_limit_and_a_shape() {
    let app = TestApp::spawn(settings()).await;
    let big: Vec<Value> = (0..501)
        .map(|i| json!({"event_id": format!("e{i}"), "type": "view", "session_id": "s", "product_id": "p000001"}))
        .collect();
    let r = app.post_json("/v1/events", &Value::Array(big)).await;
    assert_eq!(error_code(r).await, (422, "batch_too_large".into()));
    let r = app.post_json("/v1/events", &json!("view")).await;
    assert_eq!(error_code(r).await, (422, "invalid_body".into()));
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "malformed_json".into()));
    let (status, single) = app.send_events(&json!({"event_id": "one", "type": "click", "session_id": "s", "product_id": "p000002", "decision_id": "d-1"})).await;
    assert_eq!(status, 202);
    assert_eq!(single["accepted"], 1);
}

#[tokio::test]
async fn without_consent_nothing_is_kept_and_answers_are_not_personalized() {
    let app = TestApp::spawn(settings()).await;
    let home = "/v1/recommend?customer_id=c0000001&placement=home";
    let personal = ["based_on_your_history", "recently_viewed", "buy_again"];
    assert!(
        reasons(&app, home)
            .await
            .iter()
            .any(|r| personal.contains(&r.as_str()))
    );
    let (_, report) = app.send_events(&json!({"event_id": "consent-1", "type": "view", "customer_id": "c0000001", "product_id": "p000003",
               "consent": {"personalization": false, "marketing": false}}),
    )
    .await;
    assert_eq!(report["accepted"], 1);
    let p = app.export_profile("c0000001").await.expect("a profile");
    assert_eq!(
        p["consent"],
        json!({"personalization": false, "marketing": false})
    );
    assert_eq!(p["recently_viewed"], json!([]));
    assert_eq!(p["category_affinities"], json!([]));
    assert!(reasons(&app, home).await.iter().all(|r| r == "trending"));
}

#[tokio::test]
async fn a_session_is_merged_into_the_customer_once() {
    let app = TestApp::spawn(settings()).await;
    app.send_events(&json!([
        {"event_id": "s-v1", "type": "view", "session_id": "anon-77", "product_id": "p000021"},
        {"event_id": "s-v2", "type": "view", "session_id": "anon-77", "product_id": "p000022"}
    ]))
    .await;
    let (_, report) = app.send_events(&json!({"event_id": "login-1", "type": "view", "customer_id": "cust-77", "session_id": "anon-77", "product_id": "p000023"}),
    )
    .await;
    assert_eq!(report["accepted"], 1);
    let p = app.export_profile("cust-77").await.expect("a profile");
    assert_eq!(
        p["recently_viewed"],
        json!(["p000023", "p000022", "p000021"])
    );
    // The session's own profile is gone: its history now lives with the customer only.
    assert!(
        reasons(&app, "/v1/recommend?session_id=anon-77&placement=home")
            .await
            .iter()
            .all(|r| r == "trending")
    );
    app.send_events(&json!({"event_id": "login-2", "type": "view", "customer_id": "cust-77", "session_id": "anon-77", "product_id": "p000024"}),
    )
    .await;
    let p = app.export_profile("cust-77").await.expect("a profile");
    assert_eq!(p["recently_viewed"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_profile_exports_and_erases() {
    let app = TestApp::spawn(settings()).await;
    let p = app.export_profile("c0000002").await.expect("a profile");
    for field in [
        "orders_count",
        "total_spent",
        "recently_viewed",
        "consent",
        "lifecycle",
        "churn_risk_bp",
        "clv_12m",
    ] {
        assert!(p.get(field).is_some(), "{field} in {p}");
    }
    assert_eq!(app.erase_profile("c0000002").await, 204);
    let r = app.get("/admin/v1/profiles/c0000002").await;
    assert_eq!(error_code(r).await, (404, "profile_not_found".into()));
    assert_eq!(
        app.erase_profile("c0000002").await,
        204,
        "erasure is repeatable"
    );
}

fn redis_settings(server: &RedisServer) -> Settings {
    let mut s = common::on_redis(server);
    s.privacy.id_hash_secret = "shared-test-secret".into();
    s
}

#[tokio::test]
async fn two_instances_on_one_redis_lose_no_update() {
    let server = RedisServer::start();
    let a = TestApp::spawn(redis_settings(&server)).await;
    let b = TestApp::spawn(redis_settings(&server)).await;
    let t0 = now();
    let batch = |instance: &'static str, n: usize| {
        json!((0..20)
            .map(|i| json!({"event_id": format!("{instance}-{n}-{i}"), "type": "purchase", "customer_id": "shared-customer",
                            "product_id": format!("p{:06}", 1 + (n * 20 + i) % 300), "price": {"amount": 100, "currency": "GBP"},
                            "timestamp": t0}))
            .collect::<Vec<_>>())
    };
    let mut tasks = Vec::new();
    for n in 0..10 {
        for (app, name) in [(&a, "a"), (&b, "b")] {
            let client = app.client.clone();
            let url = app.url("/v1/events");
            let body = batch(name, n);
            tasks.push(tokio::spawn(async move {
                let r = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
                let report: Value = r.json().await.unwrap();
                assert_eq!(report["accepted"], 20, "{report}");
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A's L1 may hold A's own last write for up to `cache.l1_ttl_ms`; then both
    // instances show every purchase, counted once (never more).
    for app in [&a, &b] {
        common::eventually("every purchase from both instances counted", || async {
            let p = app
                .export_profile("shared-customer")
                .await
                .expect("a profile");
            assert!(
                p["orders_count"].as_u64().unwrap() <= 400,
                "counted once: {p}"
            );
            p["orders_count"] == 400
        })
        .await;
        let p = app
            .export_profile("shared-customer")
            .await
            .expect("a profile");
        assert_eq!(p["total_spent"]["amount"], 40_000);
    }
}

#[tokio::test]
async fn an_update_through_one_instance_is_visible_through_another_within_a_second() {
    let server = RedisServer::start();
    let a = TestApp::spawn(redis_settings(&server)).await;
    let b = TestApp::spawn(redis_settings(&server)).await;
    a.send_events(&json!({"event_id": "c-1", "type": "view", "customer_id": "coherent", "product_id": "p000031"})).await;
    // B reads it, so B's L1 now holds the old profile.
    assert_eq!(
        b.export_profile("coherent").await.expect("a profile")["recently_viewed"],
        json!(["p000031"])
    );
    a.send_events(&json!({"event_id": "c-2", "type": "view", "customer_id": "coherent", "product_id": "p000032"})).await;
    common::eventually_within(
        "B serving the new profile",
        Duration::from_secs(1),
        || async {
            b.export_profile("coherent").await.expect("a profile")["recently_viewed"][0]
                == "p000032"
        },
    )
    .await;
}

#[tokio::test]
async fn redis_holds_no_raw_customer_id() {
    let server = RedisServer::start();
    let app = TestApp::spawn(redis_settings(&server)).await;
    app.send_events(&json!({"event_id": "pii-1", "type": "view", "customer_id": "alice@example.com", "product_id": "p000005"})).await;
    // The event log is written off the request path.
    common::eventually("the view in the event log", || async {
        !app.state
            .catalog
            .store()
            .log_end()
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut profiles = 0;
    for key in keys {
        let name = String::from_utf8_lossy(&key).into_owned();
        assert!(!name.contains("alice"), "{name}");
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // Every value, whatever its type, as raw bytes.
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "hash" => redis::cmd("HVALS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            // A profile's applied op ids (8-byte keyed hashes).
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            // The event log: every entry's fields and values.
            "stream" => {
                let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(!entries.is_empty(), "the view was logged");
                entries.into_iter().flat_map(|(_, fields)| fields).collect()
            }
            other => panic!("{name} is a {other}"),
        };
        for v in values {
            assert!(!String::from_utf8_lossy(&v).contains("alice"), "{name}");
        }
        if name.starts_with("vitrine:p:") {
            profiles += usize::from(kind == "string");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "every profile key (and op-id set) expires");
        }
    }
    assert!(profiles > 0, "the profile was written");
}

#[tokio::test]
async fn a_recommendation_request_naming_both_ids_merges_the_session() {
    let app = TestApp::spawn(settings()).await;
    app.send_events(&json!({"event_id": "rs-1", "type": "view", "session_id": "anon-88", "product_id": "p000041"})).await;
    let r = app
        .get("/v1/recommend?customer_id=cust-88&session_id=anon-88&placement=home")
        .await;
    assert_eq!(r.status(), 200);
    // The merge runs after the answer; it lands within moments.
    common::eventually_within("the session merged", Duration::from_secs(5), || async {
        app.export_profile("cust-88")
            .await
            .is_some_and(|p| p["recently_viewed"] == json!(["p000041"]))
    })
    .await;
}
