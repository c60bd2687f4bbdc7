//! Redis restarted empty is a store reset, never a deletion: replicas keep serving what
//! they hold, one of them writes the catalog, the live ruleset and the promotion
//! budgets back, and following resumes.

use crate::common;

use std::time::{Duration, Instant};

use common::TestApp;
use common::redis::RedisServer;
use serde_json::{Value, json};

async fn replica(redis: &RedisServer) -> TestApp {
    let mut s = common::on_redis(redis);
    s.redis.timeout_ms = 200;
    s.privacy.id_hash_secret = "reset-test-secret".into();
    TestApp::spawn(s).await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_a_reset_and_one_replica_writes_everything_back() {
    let mut redis = RedisServer::start();
    let a = replica(&redis).await;
    // Trained models in the store (as `vitrine train` leaves them), which b starts on.
    let models_version = {
        let snapshot = a.state.snapshot.load();
        let bytes =
            vitrine::recommend::portable::encode(&snapshot.models, &snapshot.catalog).unwrap();
        a.state
            .catalog
            .store()
            .save_models(&snapshot.models.version, &bytes)
            .await
            .unwrap();
        snapshot.models.version.clone()
    };
    let b = replica(&redis).await;
    let ruleset = json!({
        "promotions": [{"id": "first-100", "title": "10% off, first 100 orders", "class": "order",
                        "value": {"percent_bps": 1000}, "budget": {"max_uses": 100}}]
    });
    let r = a
        .client
        .put(a.url("/admin/v1/ruleset"))
        .json(&ruleset)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let version = r.json::<Value>().await.unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    // Three uses of the budget recorded.
    for order in ["o-1", "o-2", "o-3"] {
        let r = a
            .post_json(
                "/v1/cart/evaluate",
                &json!({"session_id": "buyer", "cart": [{"product_id": "p000124"}], "order_id": order}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    common::eventually("b follows the ruleset", || async {
        get(&b, "/admin/v1/ruleset").await.1["version"] == version.as_str()
    })
    .await;
    let (_, before) = get(&a, "/admin/v1/status").await;
    assert_eq!(before["products"], 400);

    // Redis dies and comes back empty on the same port.
    redis.kill();
    redis.restart();

    // Throughout, both replicas keep every product and complete answers.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for app in [&a, &b] {
            assert_eq!(get(app, "/admin/v1/products/p000124").await.0, 200);
            let (_, status) = get(app, "/admin/v1/status").await;
            assert_eq!(status["products"], before["products"]);
            assert_eq!(
                status["products_out_of_stock"],
                before["products_out_of_stock"]
            );
            let (code, answer) = get(
                app,
                "/v1/recommend?session_id=s&placement=product&product_id=p000124",
            )
            .await;
            assert_eq!(code, 200);
            assert!(
                !answer["recommendations"].as_array().unwrap().is_empty(),
                "{answer}"
            );
            assert_eq!(answer["ruleset_version"], version.as_str());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The store holds the catalog, the live ruleset, the models and the budget again,
    // written once.
    common::eventually("the store restored", || async {
        redis
            .command(&["HLEN", "vitrine:catalog:products"])
            .is_some_and(|r| r.starts_with(":400"))
            && redis
                .command(&["GET", "vitrine:{rules}:live"])
                .is_some_and(|r| r.contains(&version))
            && redis
                .command(&["GET", "vitrine:models:current"])
                .is_some_and(|r| r.contains(&models_version))
            // The budget's uses, from whichever replica knew them.
            && redis
                .command(&["HGET", "vitrine:{promo}:usage", "first-100:uses"])
                .is_some_and(|r| r.contains("\r\n3\r\n"))
    })
    .await;
    let catalog_version = redis.command(&["GET", "vitrine:catalog:version"]).unwrap();
    assert!(
        catalog_version.contains("\r\n1\r\n"),
        "one replica wrote the catalog back, once: {catalog_version}"
    );
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("vitrine_store_resets_total"), "counted");

    // Following resumes: a change through one replica reaches the other.
    let r = b
        .client
        .patch(b.url("/admin/v1/products/p000124"))
        .json(&json!({"title": "Renamed after the reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    common::eventually("a follows b's change", || async {
        get(&a, "/admin/v1/products/p000124").await.1["title"] == "Renamed after the reset"
    })
    .await;
    assert_eq!(get(&a, "/admin/v1/status").await.1["products"], 400);
}
