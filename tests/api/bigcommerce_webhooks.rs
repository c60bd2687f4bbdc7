//! `/webhooks/bigcommerce`: webhooks carry ids only, so the app fetches orders, carts,
//! customers and products from a fake BigCommerce REST API that this test serves on
//! loopback, answering with the documented shapes (tests/fixtures/bigcommerce).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::domain::{VisitorId, VisitorKey};

const SECRET: &str = "bc-shared-secret-for-tests";
const TOKEN: &str = "bc-api-token";
const CART: &str = "e6f1d4d2-6b9a-4a1d-9a2e-3c1c6f8b2a10";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/bigcommerce/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fake API's knobs and counters.
#[derive(Default)]
struct Api {
    calls: AtomicUsize,
    /// Answer 500 to this many calls before answering normally.
    fail_next: AtomicU32,
    /// Sleep this long before answering.
    delay_ms: AtomicU64,
    /// The order's `status_id`.
    order_status: AtomicU32,
}

async fn gate(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    api.calls.fetch_add(1, Ordering::SeqCst);
    let delay = api.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if api
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response();
    }
    let token = request
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    next.run(request).await
}

fn found_or_404(found: bool, body: Value) -> Response {
    if found {
        Json(body).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"status": 404, "title": "not found"})),
        )
            .into_response()
    }
}

async fn serve_api(api: Arc<Api>) -> SocketAddr {
    let stores = Router::new()
        .route(
            "/v2/orders/{id}",
            get(|State(api): State<Arc<Api>>, Path(id): Path<u64>| async move {
                let mut order = fixture("order");
                order["status_id"] = json!(api.order_status.load(Ordering::SeqCst));
                found_or_404(id == 250, order)
            }),
        )
        .route(
            "/v2/orders/{id}/products",
            get(|Path(id): Path<u64>| async move { found_or_404(id == 250, fixture("order_products")) }),
        )
        .route(
            "/v3/carts/{id}",
            get(|Path(id): Path<String>| async move { found_or_404(id == CART, fixture("cart")) }),
        )
        .route(
            "/v3/customers",
            get(|request: Request| async move {
                let query = request.uri().query().unwrap_or_default().to_owned();
                if query.contains("id:in=11") {
                    Json(fixture("customers"))
                } else {
                    Json(json!({"data": [], "meta": {}}))
                }
            }),
        )
        .route(
            "/v3/catalog/products/{id}",
            get(|Path(id): Path<u64>| async move { found_or_404(id == 111, fixture("product")) }),
        )
        .route(
            "/v3/catalog/categories/{id}",
            get(|Path(id): Path<u64>| async move { found_or_404(id == 23, fixture("category")) }),
        )
        .with_state(api.clone());
    let app = Router::new()
        .nest("/stores/abc123", stores)
        .layer(axum::middleware::from_fn_with_state(api, gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Setup {
    app: TestApp,
    api: Arc<Api>,
}

async fn setup_with(timeout_ms: u64, retries: u32) -> Setup {
    let api = Arc::new(Api {
        order_status: AtomicU32::new(11),
        ..Api::default()
    });
    let addr = serve_api(api.clone()).await;
    let mut s = settings();
    s.bigcommerce.webhook_secret = SECRET.into();
    s.bigcommerce.store_hash = "abc123".into();
    s.bigcommerce.access_token = TOKEN.into();
    s.bigcommerce.api_url = format!("http://{addr}");
    s.bigcommerce.timeout_ms = timeout_ms;
    s.bigcommerce.retries = retries;
    s.bigcommerce.backoff_ms = 10;
    Setup {
        app: TestApp::spawn(s).await,
        api,
    }
}

async fn setup() -> Setup {
    setup_with(2_000, 2).await
}

fn hook(scope: &str, kind: &str, id: impl Into<Value>, created_at: i64) -> Value {
    let id: Value = id.into();
    json!({
        "created_at": created_at,
        "store_id": "1025646",
        "producer": "stores/abc123",
        "scope": scope,
        "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "data": {"type": kind, "id": id}
    })
}

async fn deliver_raw(app: &TestApp, body: &[u8], secret: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/webhooks/bigcommerce"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = secret {
        request = request.header("x-webhook-secret", s);
    }
    request.send().await.unwrap()
}

async fn deliver(app: &TestApp, body: &Value) -> (u16, Value) {
    let r = deliver_raw(app, body.to_string().as_bytes(), Some(SECRET)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn an_order_is_fetched_counted_once_and_taken_back_when_cancelled() {
    let Setup { app, api } = setup().await;
    let created = fixture("webhook_order_created");
    assert_eq!(
        deliver(&app, &created).await,
        (200, json!({"status": "applied"}))
    );
    let p = app.export_profile("11").await.unwrap();
    assert_eq!(p["orders_count"], 1);
    assert_eq!(p["total_spent"], json!({"amount": 5999, "currency": "USD"}));
    assert_eq!(p["last_order_at"], 1_709_674_545);
    let purchased = common::purchased_ids(&p);
    assert_eq!(purchased.len(), 2);
    assert!(purchased.contains(&"111") && purchased.contains(&"112"));
    let text = p.to_string();
    assert!(!text.contains("Jane") && !text.contains("janedoe") && !text.contains("Austin"));

    // A redelivery is answered without calling the API again.
    let calls = api.calls.load(Ordering::SeqCst);
    assert_eq!(
        deliver(&app, &created).await,
        (200, json!({"status": "duplicate"}))
    );
    assert_eq!(api.calls.load(Ordering::SeqCst), calls);

    // Another event about the same order (shipped) does not count it twice.
    api.order_status.store(2, Ordering::SeqCst);
    let (status, _) = deliver(
        &app,
        &hook("store/order/statusUpdated", "order", 250, 1_709_700_000),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.export_profile("11").await.unwrap()["orders_count"], 1);

    // Cancelled: taken back.
    api.order_status.store(5, Ordering::SeqCst);
    let (status, _) = deliver(
        &app,
        &hook("store/order/statusUpdated", "order", 250, 1_709_800_000),
    )
    .await;
    assert_eq!(status, 200);
    let p = app.export_profile("11").await.unwrap();
    assert_eq!(p["orders_count"], 0);
    assert_eq!(p["total_spent"]["amount"], 0);
}

#[tokio::test]
async fn a_bad_or_missing_secret_is_401_and_nothing_is_fetched_or_applied() {
    let Setup { app, api } = setup().await;
    let body = fixture("webhook_order_created").to_string();
    for secret in [Some("wrong"), Some(""), None] {
        let r = deliver_raw(&app, body.as_bytes(), secret).await;
        assert_eq!(error_code(r).await, (401, "invalid_signature".into()));
    }
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
    assert!(app.export_profile("11").await.is_none());
}

#[tokio::test]
async fn a_malformed_webhook_is_400_and_nothing_is_fetched_or_applied() {
    let Setup { app, api } = setup().await;
    let bodies = [
        b"not json".to_vec(),
        b"{}".to_vec(),
        json!({"scope": "store/order/created", "data": {"type": "order"}})
            .to_string()
            .into_bytes(),
        hook("store/order/created", "order", "abc", 1)
            .to_string()
            .into_bytes(),
        json!({"scope": "store/cart/lineItem/updated", "data": {"type": "cart_line_item", "id": "x"}})
            .to_string()
            .into_bytes(),
        // Ids that would walk out of the resource's path are refused, never fetched.
        hook("store/cart/updated", "cart", "../../../v2/customers?limit=250#", 1)
            .to_string()
            .into_bytes(),
        hook("store/cart/deleted", "cart", "../x", 1)
            .to_string()
            .into_bytes(),
        json!({"scope": "store/cart/lineItem/created", "data": {"type": "cart_line_item", "id": "1", "cartId": "../../v2/orders#"}})
            .to_string()
            .into_bytes(),
        hook("store/customer/updated", "customer", "../11", 1)
            .to_string()
            .into_bytes(),
        hook("store/product/updated", "product", "111/../../v2/customers", 1)
            .to_string()
            .into_bytes(),
    ];
    for body in bodies {
        let r = deliver_raw(&app, &body, Some(SECRET)).await;
        assert_eq!(
            error_code(r).await,
            (400, "malformed_payload".into()),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
    assert!(app.export_profile("11").await.is_none());
}

#[tokio::test]
async fn an_unknown_scope_is_accepted_ignored_and_counted() {
    let Setup { app, api } = setup().await;
    let (status, body) = deliver(&app, &hook("store/shipment/created", "shipment", 3, 1)).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "vitrine_webhooks_total{platform=\"bigcommerce\",topic=\"other\",result=\"ignored\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_503_then_the_redelivery_applies() {
    let Setup { app, api } = setup_with(200, 1).await;
    let created = fixture("webhook_order_created");

    // Slower than the timeout on every attempt: 503 with Retry-After, nothing applied.
    api.delay_ms.store(1_000, Ordering::SeqCst);
    let r = deliver_raw(&app, created.to_string().as_bytes(), Some(SECRET)).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await, (503, "upstream_unavailable".into()));
    assert!(app.export_profile("11").await.is_none());

    // Failing with 500 more often than the retries allow: 503 again.
    api.delay_ms.store(0, Ordering::SeqCst);
    api.fail_next.store(4, Ordering::SeqCst);
    let r = deliver_raw(&app, created.to_string().as_bytes(), Some(SECRET)).await;
    assert_eq!(error_code(r).await, (503, "upstream_unavailable".into()));
    assert!(app.export_profile("11").await.is_none());

    // A 500 the retries absorb, then BigCommerce's redelivery goes through, once.
    api.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(deliver(&app, &created).await.0, 200);
    assert_eq!(deliver(&app, &created).await.1["status"], "duplicate");
    assert_eq!(app.export_profile("11").await.unwrap()["orders_count"], 1);
}

#[tokio::test]
async fn an_api_that_is_not_listening_is_503() {
    let port = common::redis::free_port();
    let mut s = settings();
    s.bigcommerce.webhook_secret = SECRET.into();
    s.bigcommerce.store_hash = "abc123".into();
    s.bigcommerce.access_token = TOKEN.into();
    s.bigcommerce.api_url = format!("http://127.0.0.1:{port}");
    s.bigcommerce.backoff_ms = 1;
    let app = TestApp::spawn(s).await;
    let r = deliver_raw(
        &app,
        fixture("webhook_order_created").to_string().as_bytes(),
        Some(SECRET),
    )
    .await;
    assert_eq!(error_code(r).await, (503, "upstream_unavailable".into()));
}

#[tokio::test]
async fn a_cart_update_sets_the_carts_session_and_a_converted_cart_empties_it() {
    let Setup { app, .. } = setup().await;
    let (status, _) = deliver(&app, &hook("store/cart/updated", "cart", CART, 10)).await;
    assert_eq!(status, 200);
    let key = app
        .state
        .hasher
        .key(&VisitorKey::Session(VisitorId::parse(CART).unwrap()));
    let p = app.state.store.get(&key).await.unwrap().unwrap();
    assert_eq!(p.cart.len(), 1);
    assert_eq!(
        (p.cart[0].product_id.as_str(), p.cart[0].quantity),
        ("111", 3)
    );

    let (status, _) = deliver(&app, &hook("store/cart/converted", "cart", CART, 11)).await;
    assert_eq!(status, 200);
    assert!(
        app.state
            .store
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .cart
            .is_empty()
    );
}

#[tokio::test]
async fn a_customer_update_sets_the_group_segment_and_consent_without_pii() {
    let Setup { app, .. } = setup().await;
    let (status, _) = deliver(&app, &hook("store/customer/updated", "customer", 11, 10)).await;
    assert_eq!(status, 200);
    let p = app.export_profile("11").await.unwrap();
    assert_eq!(p["segments"], json!(["customer_group:2"]));
    assert_eq!(p["consent"]["marketing"], true);
    let text = p.to_string();
    assert!(!text.contains("Jane") && !text.contains("555-555"));

    // A customer the API no longer has: nothing to apply.
    let (status, body) = deliver(&app, &hook("store/customer/updated", "customer", 99, 10)).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));

    // Deleted on the platform: erased here.
    let (status, body) = deliver(&app, &hook("store/customer/deleted", "customer", 11, 11)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("erased")));
    assert!(app.export_profile("11").await.is_none());
}

#[tokio::test]
async fn product_webhooks_reach_the_catalog_and_answers() {
    let Setup { app, .. } = setup().await;
    let (status, _) = deliver(&app, &hook("store/product/updated", "product", 111, 10)).await;
    assert_eq!(status, 200);
    let p: Value = app
        .get("/admin/v1/products/111")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["price"], json!({"amount": 10999, "currency": "USD"}));
    assert_eq!(p["cost"], json!({"amount": 4000, "currency": "USD"}));
    assert_eq!(p["inventory"], 7, "variant stock summed");
    assert_eq!(p["category"], "garden/terrariums");
    assert_eq!(p["in_stock"], true);

    // Deleted on the platform: gone from the catalog.
    let (status, _) = deliver(&app, &hook("store/product/deleted", "product", 111, 11)).await;
    assert_eq!(status, 200);
    let r = app.get("/admin/v1/products/111").await;
    assert_eq!(error_code(r).await, (404, "product_not_found".into()));
}

#[tokio::test]
async fn without_a_secret_the_endpoint_is_off() {
    let app = TestApp::spawn(settings()).await;
    let r = deliver_raw(
        &app,
        fixture("webhook_order_created").to_string().as_bytes(),
        Some(SECRET),
    )
    .await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}
