//! `/webhooks/shopify` with payloads shaped as Shopify sends them (tests/fixtures/shopify).

use crate::common;

use common::shopify::{SECRET, deliver, send, sign};
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::domain::{VisitorId, VisitorKey};

const CUSTOMER: &str = "115310627314723954";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/shopify/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn app() -> TestApp {
    let mut s = settings();
    s.shopify.webhook_secret = SECRET.into();
    s.shopify.shop_currency = "USD".into();
    TestApp::spawn(s).await
}

#[tokio::test]
async fn an_order_counts_once_across_create_paid_and_redelivery() {
    let app = app().await;
    let body = fixture("orders_create");
    assert_eq!(
        send(&app, "orders/create", "w-1", &body).await,
        (200, json!({"status": "applied"}))
    );
    assert_eq!(
        send(&app, "orders/create", "w-1", &body).await.1["status"],
        "duplicate"
    );
    assert_eq!(send(&app, "orders/paid", "w-2", &body).await.0, 200);
    let p = app.export_profile(CUSTOMER).await.unwrap();
    assert_eq!(p["orders_count"], 1);
    assert_eq!(
        p["total_spent"],
        json!({"amount": 40300, "currency": "USD"})
    );
    let purchased = common::purchased_ids(&p);
    assert_eq!(purchased.len(), 2);
    assert!(purchased.contains(&"632910392"));
    assert!(
        !p.to_string().contains("example.com"),
        "no email reaches the profile"
    );
    assert!(
        !p.to_string().contains("Shipping Street"),
        "no address reaches the profile"
    );

    let (status, _) = send(&app, "orders/cancelled", "w-3", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.export_profile(CUSTOMER).await.unwrap()["orders_count"],
        0
    );
}

/// `orders/paid` for an order counted long before (a new delivery id, after more
/// activity than a profile's ring of recent ids holds) changes nothing.
#[tokio::test]
async fn an_order_counts_once_whatever_happens_between_its_topics() {
    let app = app().await;
    let body = fixture("orders_create");
    assert_eq!(send(&app, "orders/create", "w-10", &body).await.0, 200);
    let views: Vec<Value> = (0..130)
        .map(|i| json!({"event_id": format!("between-{i}"), "type": "view", "customer_id": CUSTOMER, "product_id": format!("p{:06}", 1 + i % 50)}))
        .collect();
    let r = app.post_json("/v1/events", &Value::Array(views)).await;
    assert_eq!(r.status(), 202);
    let before = app.export_profile(CUSTOMER).await.unwrap();
    assert_eq!(send(&app, "orders/paid", "w-11", &body).await.0, 200);
    let after = app.export_profile(CUSTOMER).await.unwrap();
    assert_eq!(after["orders_count"], 1);
    assert_eq!(after["total_spent"], before["total_spent"]);
    assert_eq!(after["purchased"], before["purchased"]);
}

#[tokio::test]
async fn a_bad_signature_is_rejected_and_not_applied() {
    let app = app().await;
    let body = fixture("orders_create");
    let wrong = sign(b"some other body");
    let r = deliver(&app, "orders/create", "w-bad", &body, &wrong).await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));
    let r = deliver(&app, "orders/create", "w-bad", &body, "not base64!").await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));
    assert!(app.export_profile(CUSTOMER).await.is_none());
    // The same webhook id with a good signature is then applied: the rejection was not
    // remembered as a delivery.
    assert_eq!(send(&app, "orders/create", "w-bad", &body).await.0, 200);
}

#[tokio::test]
async fn a_malformed_payload_is_400_and_not_applied() {
    let app = app().await;
    for (topic, body) in [
        ("orders/create", br#"{"id": 1, "currency": "USD"}"#.to_vec()),
        (
            "orders/create",
            br#"{"id": 1, "currency": "USD", "total_price": "12.345", "customer": {"id": 7}}"#
                .to_vec(),
        ),
        ("orders/create", b"not json".to_vec()),
        (
            "products/update",
            br#"{"id": 5, "title": "No variants", "variants": []}"#.to_vec(),
        ),
    ] {
        let r = deliver(&app, topic, "w-m", &body, &sign(&body)).await;
        assert_eq!(
            error_code(r).await,
            (400, "malformed_payload".into()),
            "{topic}"
        );
    }
    let body = fixture("orders_create");
    let r = app
        .client
        .post(app.url("/webhooks/shopify"))
        .header("x-shopify-hmac-sha256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (400, "malformed_payload".into()),
        "no topic"
    );
}

#[tokio::test]
async fn an_unknown_topic_is_accepted_ignored_and_counted() {
    let app = app().await;
    let (status, body) = send(&app, "fulfillments/create", "w-u", b"{}").await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("topic=\"other\",result=\"ignored\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn customer_updates_set_segments_and_marketing_consent_without_pii() {
    let app = app().await;
    assert_eq!(
        send(
            &app,
            "customers/update",
            "w-c",
            &fixture("customers_update")
        )
        .await
        .0,
        200
    );
    let p = app.export_profile(CUSTOMER).await.unwrap();
    assert_eq!(p["segments"], json!(["VIP", "wholesale"]));
    assert_eq!(p["consent"]["marketing"], true);
    assert!(!p.to_string().contains("John") && !p.to_string().contains("ice cream"));
}

#[tokio::test]
async fn a_cart_update_sets_the_sessions_cart() {
    let app = app().await;
    assert_eq!(
        send(&app, "carts/update", "w-cart", &fixture("carts_update"))
            .await
            .0,
        200
    );
    let key = app.state.hasher.key(&VisitorKey::Session(
        VisitorId::parse("eeafa272cebfd4b22385bc4b645e762c").unwrap(),
    ));
    let p = app.state.store.get(&key).await.unwrap().unwrap();
    assert_eq!(p.cart.len(), 1);
    assert_eq!(p.cart[0].product_id, "788032119674292922");
    assert_eq!(p.cart[0].quantity, 3);
}

#[tokio::test]
async fn product_and_inventory_webhooks_reach_the_catalog() {
    let app = app().await;
    assert_eq!(
        send(&app, "products/update", "w-p", &fixture("products_update"))
            .await
            .0,
        200
    );
    let p: Value = app
        .get("/admin/v1/products/788032119674292922")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["price"], json!({"amount": 1999, "currency": "USD"}));
    assert_eq!(p["inventory"], 125);
    assert_eq!(p["category"], "shirts");
    // One variant sold out at its location: the other still has stock.
    assert_eq!(
        send(
            &app,
            "inventory_levels/update",
            "w-i1",
            &fixture("inventory_levels_update")
        )
        .await
        .0,
        200
    );
    let p: Value = app
        .get("/admin/v1/products/788032119674292922")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["inventory"], 50);
    let other = br#"{"inventory_item_id": 808950811, "location_id": 905684977, "available": 0}"#;
    assert_eq!(
        send(&app, "inventory_levels/update", "w-i2", other).await.0,
        200
    );
    let p: Value = app
        .get("/admin/v1/products/788032119674292922")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["in_stock"], false);
}

#[tokio::test]
async fn privacy_topics_erase_and_acknowledge() {
    let app = app().await;
    send(&app, "orders/create", "w-o", &fixture("orders_create")).await;
    assert!(app.export_profile(CUSTOMER).await.is_some());
    assert_eq!(
        send(
            &app,
            "customers/data_request",
            "w-d",
            &fixture("customers_data_request")
        )
        .await
        .1["status"],
        "acknowledged"
    );
    assert_eq!(
        send(
            &app,
            "customers/redact",
            "w-r",
            &fixture("customers_redact")
        )
        .await
        .1["status"],
        "erased"
    );
    assert!(app.export_profile(CUSTOMER).await.is_none());
    assert!(app.export_profile("c0000001").await.is_some());
    assert_eq!(
        send(&app, "shop/redact", "w-s", &fixture("shop_redact"))
            .await
            .1["status"],
        "erased"
    );
    assert!(
        app.export_profile("c0000001").await.is_none(),
        "every profile erased"
    );
}

#[tokio::test]
async fn large_orders_fit_the_webhook_body_limit() {
    let app = app().await;
    let mut order: Value = serde_json::from_slice(&fixture("orders_create")).unwrap();
    let line = order["line_items"][0].clone();
    order["line_items"] = Value::Array((0..150).map(|_| line.clone()).collect());
    let body = serde_json::to_vec(&order).unwrap();
    assert!(body.len() > 64 * 1024);
    assert_eq!(send(&app, "orders/create", "w-big", &body).await.0, 200);
}

#[tokio::test]
async fn without_a_secret_the_endpoint_is_off() {
    let app = TestApp::spawn(settings()).await;
    let body = fixture("orders_create");
    let r = deliver(&app, "orders/create", "w", &body, &sign(&body)).await;
    assert_eq!(error_code(r).await.0, 404);
}

#[tokio::test]
async fn an_inventory_level_landing_on_another_replica_still_finds_its_product() {
    let redis = common::redis::RedisServer::start();
    let replica = || {
        let mut s = settings();
        s.shopify.webhook_secret = SECRET.into();
        s.shopify.shop_currency = "USD".into();
        s.storage.backend = vitrine::config::StorageBackend::Redis;
        s.redis.url = redis.url();
        s.catalog.sync_ms = 100;
        TestApp::spawn(s)
    };
    let (a, b) = (replica().await, replica().await);
    assert_eq!(
        send(&a, "products/update", "w-p", &fixture("products_update"))
            .await
            .0,
        200
    );
    // The level update goes to B, which never saw the product webhook.
    let (status, body) = send(
        &b,
        "inventory_levels/update",
        "w-i1",
        &fixture("inventory_levels_update"),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")));
    let p: Value = b
        .get("/admin/v1/products/788032119674292922")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["inventory"], 50, "the other variant's 50 remain");
    // And A follows within a second.
    common::eventually_within(
        "A follows the inventory",
        std::time::Duration::from_secs(1),
        || async { a.get_json("/admin/v1/products/788032119674292922").await["inventory"] == 50 },
    )
    .await;
}
