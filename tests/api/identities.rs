//! One product and one customer per Shopify object, whichever way it arrives: a product
//! export keyed by handle and webhooks keyed by numeric id; an order export naming the
//! buyer by email and webhooks naming the customer by id. The shop's currency is stated
//! or refused, and untracked stock is shown as such. The real binary imports into a
//! Redis the harness starts, while a running app on it takes the webhooks.

use crate::common;

use common::redis::RedisServer;
use common::shopify::{SECRET, send};
use common::{TestApp, eventually, import, settings};
use serde_json::{Value, json};
use vitrine::config::StorageBackend;

async fn app_on(redis: &RedisServer) -> TestApp {
    let mut s = settings();
    s.storage.backend = StorageBackend::Redis;
    s.redis.url = redis.url();
    s.catalog.sync_ms = 100;
    s.shopify.webhook_secret = SECRET.into();
    s.shopify.shop_currency = "USD".into();
    TestApp::spawn(s).await
}

async fn product(app: &TestApp, id: &str) -> Option<Value> {
    let r = app.get(&format!("/admin/v1/products/{id}")).await;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Delivers `products/create` or `products/update`; it must be applied.
async fn product_webhook(app: &TestApp, topic: &str, delivery: &str, body: &[u8]) {
    let (status, answer) = send(app, topic, delivery, body).await;
    assert_eq!(status, 200, "{answer}");
}

/// A product as Shopify's `products/create` sends it (the fields Vitrine reads).
fn product_payload(id: u64, handle: &str, price: &str, tracked: bool) -> Vec<u8> {
    let management = if tracked {
        json!("shopify")
    } else {
        Value::Null
    };
    serde_json::to_vec(&json!({
        "id": id, "title": handle, "handle": handle, "product_type": "Shirts",
        "status": "active", "tags": "",
        "variants": [{"price": price, "inventory_item_id": id + 1,
                      "inventory_quantity": 12, "inventory_management": management}]
    }))
    .unwrap()
}

async fn id_of(app: &TestApp, name: &str) -> Option<String> {
    product(app, name)
        .await
        .and_then(|p| p["id"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_product_exported_by_handle_and_sent_by_id_is_one_product() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;

    // The webhook first: the export's row for that handle updates it.
    product_webhook(
        &app,
        "products/create",
        "p-1",
        &product_payload(900, "classic-leather-jacket", "75.00", true),
    )
    .await;
    let out = import(
        &redis,
        "products",
        "shopify_products.csv",
        &["--currency", "USD"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the export's price reaches product 900", || async {
        product(&app, "900")
            .await
            .is_some_and(|p| p["price"] == json!({"amount": 8000, "currency": "USD"}))
    })
    .await;
    assert_eq!(
        id_of(&app, "classic-leather-jacket").await.as_deref(),
        Some("900")
    );

    // The export first: the webhook's numeric id takes the handle's product over.
    assert_eq!(
        id_of(&app, "ocean-blue-shirt").await.as_deref(),
        Some("ocean-blue-shirt")
    );
    product_webhook(
        &app,
        "products/update",
        "p-2",
        &product_payload(632_910_392, "ocean-blue-shirt", "50.00", true),
    )
    .await;
    let shirt = product(&app, "ocean-blue-shirt").await.unwrap();
    assert_eq!(shirt["id"], "632910392", "the handle is an alias: {shirt}");
    // The export again: still one product, under the platform id.
    let out = import(
        &redis,
        "products",
        "shopify_products.csv",
        &["--currency", "USD"],
    );
    assert_eq!(out.status.code(), Some(0));
    // The replica takes what the import wrote, as its follower would.
    app.state.catalog.sync().await.unwrap();
    assert_eq!(
        id_of(&app, "ocean-blue-shirt").await.as_deref(),
        Some("632910392")
    );

    // A storefront naming the product by its handle is answered for it.
    let r = app
        .get("/v1/recommend?session_id=s1&placement=product&product_id=ocean-blue-shirt")
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn untracked_stock_is_shown_as_untracked() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    product_webhook(
        &app,
        "products/create",
        "p-1",
        &product_payload(700, "gift-card", "10.00", false),
    )
    .await;
    let p = product(&app, "700").await.unwrap();
    assert_eq!(p["inventory"], Value::Null, "{p}");
    assert_eq!(p["inventory_tracked"], false);
    assert_eq!(p["in_stock"], true);
    // Tracked: a number.
    product_webhook(
        &app,
        "products/create",
        "p-2",
        &product_payload(800, "mug", "10.00", true),
    )
    .await;
    let p = product(&app, "800").await.unwrap();
    assert_eq!(p["inventory"], 12);
    assert_eq!(p["inventory_tracked"], true);
    // The export's product without a tracker: untracked too.
    import(
        &redis,
        "products",
        "shopify_products.csv",
        &["--currency", "USD"],
    );
    eventually("the export is served", || async {
        product(&app, "classic-leather-jacket").await.is_some()
    })
    .await;
    let jacket = product(&app, "classic-leather-jacket").await.unwrap();
    assert_eq!(jacket["inventory"], Value::Null, "{jacket}");
    assert_eq!(jacket["inventory_tracked"], false);
}

#[tokio::test]
async fn a_buyer_named_by_email_is_the_customer_the_platform_names() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    import(
        &redis,
        "products",
        "shopify_products.csv",
        &["--currency", "USD"],
    );
    // The order export first: the buyer only by email.
    let out = import(&redis, "orders", "shopify_orders.csv", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(app.export_profile("5001").await.is_none());

    // The platform says which customer has that email (any case): one profile.
    let customer = serde_json::to_vec(&json!({
        "id": 5001, "email": "JANE.DOE@example.com", "tags": "",
        "email_marketing_consent": {"state": "subscribed"}
    }))
    .unwrap();
    assert_eq!(
        send(&app, "customers/update", "c-1", &customer).await.0,
        200
    );
    let jane = app
        .export_profile("5001")
        .await
        .expect("the customer's profile");
    assert_eq!(
        jane["orders_count"], 1,
        "the refunded order is not counted: {jane}"
    );
    assert_eq!(
        jane["total_spent"],
        json!({"amount": 13000, "currency": "USD"})
    );
    let bought = common::purchased_ids(&jane);
    assert!(bought.contains(&"ocean-blue-shirt") && bought.contains(&"classic-leather-jacket"));

    // The export again, and the same order by webhook: still one order, in one profile.
    let out = import(&redis, "orders", "shopify_orders.csv", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 applied,"));
    let order = serde_json::to_vec(&json!({
        "id": 5_551_001, "email": "jane.doe@example.com", "created_at": "2024-03-05T10:00:00Z",
        "currency": "USD", "total_price": "130.00",
        "customer": {"id": 5001, "email": "jane.doe@example.com"}, "line_items": []
    }))
    .unwrap();
    assert_eq!(send(&app, "orders/create", "o-1", &order).await.0, 200);
    let jane = app.export_profile("5001").await.unwrap();
    assert_eq!(jane["orders_count"], 1, "{jane}");

    // Erasing the customer erases the alias: the export's next order by that email is
    // not tied to the erased customer.
    assert_eq!(app.erase_profile("5001").await, 204);
    import(&redis, "orders", "shopify_orders.csv", &[]);
    assert!(app.export_profile("5001").await.is_none());
}
