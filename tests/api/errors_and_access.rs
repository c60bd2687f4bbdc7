//! Every error code of the API, the two key scopes, and garbage input never giving 5xx.

use crate::common;

use common::{ADMIN_KEY, STOREFRONT_KEY, TestApp, error_code, settings};
use rand::{Rng, SeedableRng};
use serde_json::json;

async fn get_code(app: &TestApp, path: &str) -> (u16, String) {
    error_code(app.get(path).await).await
}

#[tokio::test]
async fn malformed_input_is_400() {
    let app = TestApp::spawn(settings()).await;
    let r = app
        .client
        .post(app.url("/v1/recommend"))
        .header("content-type", "application/json")
        .body("{\"session_id\": \"s\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "malformed_json".into()));
    assert_eq!(
        get_code(&app, "/v1/recommend?session_id=s&placement=home&limit=ten").await,
        (400, "malformed_query".into())
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn(settings()).await;
    let big = format!(
        "{{\"session_id\":\"s\",\"placement\":\"home\",\"query\":\"{}\"}}",
        "x".repeat(70_000)
    );
    let r = app
        .client
        .post(app.url("/v1/recommend"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn(settings()).await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = app.client.post(app.url("/v1/recommend")).body("{}");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            error_code(r).await,
            (415, "unsupported_media_type".into()),
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn well_formed_but_invalid_requests_are_422_with_a_stable_code() {
    let app = TestApp::spawn(settings()).await;
    let cases = [
        (json!({"placement": "home"}), "missing_visitor_id"),
        (json!({"session_id": "", "placement": "home"}), "invalid_id"),
        (
            json!({"session_id": "x".repeat(129), "placement": "home"}),
            "invalid_id",
        ),
        (
            json!({"customer_id": "a b", "placement": "home"}),
            "invalid_id",
        ),
        (json!({"session_id": "s"}), "invalid_placement"),
        (
            json!({"session_id": "s", "placement": "landing"}),
            "invalid_placement",
        ),
        (
            json!({"session_id": "s", "placement": "product"}),
            "missing_product_id",
        ),
        (
            json!({"session_id": "s", "placement": "category"}),
            "missing_category",
        ),
        (
            json!({"session_id": "s", "placement": "search"}),
            "missing_query",
        ),
        (
            json!({"session_id": "s", "placement": "search", "query": ""}),
            "missing_query",
        ),
        (
            json!({"session_id": "s", "placement": "home", "limit": 0}),
            "invalid_limit",
        ),
        (
            json!({"session_id": "s", "placement": "home", "limit": 101}),
            "invalid_limit",
        ),
        (
            json!({"session_id": "s", "placement": "home", "limit": -5}),
            "invalid_limit",
        ),
        (
            json!({"session_id": "s", "placement": "cart", "cart": [{"product_id": "p1", "quantity": 0}]}),
            "invalid_cart",
        ),
        (
            json!({"session_id": "s", "placement": "cart", "cart": [{"product_id": "", "quantity": 1}]}),
            "invalid_id",
        ),
        (
            json!({"session_id": "s", "placement": "home", "context": {"country": "GBR"}}),
            "invalid_context",
        ),
        (
            json!({"session_id": "s", "placement": "home", "context": {"currency": "pounds"}}),
            "invalid_context",
        ),
        (
            json!({"session_id": "s", "placement": "home", "limt": 5}),
            "invalid_body",
        ),
        (
            json!({"session_id": "s", "placement": "home", "limit": "5"}),
            "invalid_body",
        ),
        (
            json!({"session_id": 7, "placement": "home"}),
            "invalid_body",
        ),
        (json!([1, 2, 3]), "invalid_body"),
    ];
    for (body, expected) in cases {
        let got = error_code(app.post_json("/v1/recommend", &body).await).await;
        assert_eq!(got, (422, expected.to_owned()), "{body}");
    }
    let too_many: Vec<_> = (0..201)
        .map(|i| json!({"product_id": format!("p{i}")}))
        .collect();
    let got = error_code(
        app.post_json(
            "/v1/recommend",
            &json!({"session_id": "s", "placement": "cart", "cart": too_many}),
        )
        .await,
    )
    .await;
    assert_eq!(got, (422, "invalid_cart".into()));
    assert_eq!(
        get_code(&app, "/v1/recommend?session_id=s&placement=cart&cart=p1:x").await,
        (422, "invalid_cart".into())
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn(settings()).await;
    assert_eq!(
        get_code(&app, "/v2/nothing").await,
        (404, "not_found".into())
    );
    let r = app
        .client
        .delete(app.url("/v1/recommend"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (405, "method_not_allowed".into()));
}

fn keyed_settings() -> vitrine::config::Settings {
    let mut s = settings();
    s.auth.storefront_keys = vec![STOREFRONT_KEY.into()];
    s.auth.admin_keys = vec![ADMIN_KEY.into()];
    s
}

#[tokio::test]
async fn keys_are_checked_per_scope() {
    let app = TestApp::spawn(keyed_settings()).await;
    let rec = app.url("/v1/recommend?session_id=s&placement=home");
    let admin = app.url("/admin/v1/status");
    let send = |url: String, key: Option<&'static str>| {
        let mut req = app.client.get(url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    assert_eq!(
        error_code(send(rec.clone(), None).await.unwrap()).await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        error_code(
            send(rec.clone(), Some("not-a-key-at-all-000"))
                .await
                .unwrap()
        )
        .await,
        (401, "invalid_api_key".into())
    );
    assert_eq!(
        send(rec.clone(), Some(STOREFRONT_KEY))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(send(rec, Some(ADMIN_KEY)).await.unwrap().status(), 200);

    assert_eq!(
        error_code(send(admin.clone(), Some(STOREFRONT_KEY)).await.unwrap()).await,
        (403, "wrong_scope".into())
    );
    assert_eq!(
        error_code(send(admin.clone(), None).await.unwrap()).await,
        (401, "missing_api_key".into())
    );
    let ok = send(admin, Some(ADMIN_KEY)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let status: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(status["products"], 400);

    // Ops endpoints are for scrapers and probes: no key.
    assert_eq!(app.get("/livez").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
}

#[tokio::test]
async fn open_access_when_no_keys_are_configured() {
    let app = TestApp::spawn(settings()).await;
    assert_eq!(app.get("/admin/v1/status").await.status(), 200);
    assert_eq!(
        app.get("/v1/recommend?session_id=s&placement=home")
            .await
            .status(),
        200
    );
}

/// Random bytes as bodies and query strings: every answer is an answer, never a 5xx.
#[tokio::test]
async fn garbage_never_causes_a_server_error() {
    let app = TestApp::spawn(settings()).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pieces = [
        "session_id=",
        "customer_id=",
        "placement=",
        "product",
        "home",
        "cart",
        "search",
        "category",
        "limit=",
        "&",
        "=",
        "%",
        "%00",
        "%ff",
        ":",
        ",",
        "query=",
        "cart=",
        "p000001",
        "-1",
        "999999999999999999999",
        "\u{1F600}",
        "{",
        "}",
        "[",
        "\"",
        "null",
        "true",
        "1e309",
        "country=",
        "currency=",
    ];
    for _ in 0..400 {
        let n = rng.random_range(0..12);
        let s: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        let encoded: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '#')
            .collect();
        let r = app
            .client
            .get(app.url(&format!("/v1/recommend?{encoded}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "GET {encoded} -> {}", r.status());
        let r = app
            .client
            .post(app.url("/v1/recommend"))
            .header("content-type", "application/json")
            .body(s.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "POST {s} -> {}", r.status());
    }
    let raw: Vec<u8> = (0..2048).map(|_| rng.random()).collect();
    let r = app
        .client
        .post(app.url("/v1/recommend"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
}

/// Every answer is in the error shape, also where a library would answer in plain text:
/// undecodable path segments and bodies over the limit on every route that takes one.
#[tokio::test]
async fn undecodable_paths_and_oversized_bodies_answer_in_the_error_shape() {
    let mut s = settings();
    s.shopify.webhook_secret = "shopify-secret-for-error-shape".into();
    s.bigcommerce.webhook_secret = "bigcommerce-secret-for-error-shape".into();
    s.bigcommerce.store_hash = "abc".into();
    s.bigcommerce.access_token = "token".into();
    s.rules.body_limit_bytes = 4096;
    let app = TestApp::spawn(s).await;
    for path in [
        "/admin/v1/profiles/%FF",
        "/admin/v1/products/%FF",
        "/admin/v1/products/%C3%28",
    ] {
        assert_eq!(
            error_code(app.get(path).await).await,
            (422, "invalid_id".into()),
            "GET {path}"
        );
        let r = app.client.delete(app.url(path)).send().await.unwrap();
        assert_eq!(
            error_code(r).await,
            (422, "invalid_id".into()),
            "DELETE {path}"
        );
    }
    let r = app
        .client
        .patch(app.url("/admin/v1/products/%FF"))
        .json(&json!({"inventory": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (422, "invalid_id".into()));

    let big = "x".repeat(2 * 1024 * 1024);
    for path in [
        "/webhooks/shopify",
        "/webhooks/bigcommerce",
        "/admin/v1/ruleset/rollback",
        "/admin/v1/ruleset/validate",
        "/v1/events",
    ] {
        let r = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (413, "payload_too_large".into()),
            "POST {path}"
        );
    }
}

#[tokio::test]
async fn the_authorization_scheme_is_case_insensitive() {
    let mut s = settings();
    s.auth.storefront_keys = vec![STOREFRONT_KEY.into()];
    let app = TestApp::spawn(s).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .client
            .get(app.url("/v1/recommend?session_id=s&placement=home"))
            .header("authorization", format!("{scheme} {STOREFRONT_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = app
        .client
        .get(app.url("/v1/recommend?session_id=s&placement=home"))
        .header("authorization", format!("Basic {STOREFRONT_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "missing_api_key".into()));
}
