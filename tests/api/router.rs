//! The router without a socket (`tower::ServiceExt::oneshot`): every refusal, whatever
//! layer makes it (the extractors, the body limit, the fallbacks, the handlers), comes
//! in the one error shape with its stable code and status.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::{self, TestApp};

/// One request through the app's router; the status and the JSON body.
async fn oneshot(app: &TestApp, request: Request<Body>) -> (StatusCode, Value) {
    let router = vitrine::http::router(&app.state, true);
    let response = router.oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_refusal_has_the_error_shape_with_its_code_and_status() {
    let mut s = common::settings();
    s.server.body_limit_bytes = 4096;
    let app = TestApp::spawn(s).await;
    let json = "application/json";
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (get("/nowhere"), StatusCode::NOT_FOUND, "not_found"),
        (
            Request::delete("/v1/recommend")
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            post("/v1/recommend", json, "{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post("/v1/recommend", "text/plain", "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post(
                "/v1/recommend",
                json,
                r#"{"session_id": "s", "placement": 7}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            get("/v1/recommend?session_id=s&placement=home&limit=1000"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
        ),
        (
            get("/v1/recommend?session_id=s&placement=nowhere"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_placement",
        ),
        (
            get("/v1/recommend?session_id=s&placement=category&category=no-such-aisle"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (
            get("/v1/recommend?placement=home"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_visitor_id",
        ),
        (
            get("/v1/recommend?session_id=s&placement=home&limit=x"),
            StatusCode::BAD_REQUEST,
            "malformed_query",
        ),
        (
            post("/v1/events", json, vec![b' '; 8192]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            post(
                "/v1/cart/evaluate",
                json,
                r#"{"session_id": "s", "cart": [{"product_id": "no-such-product"}]}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cart",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, body) = oneshot(&app, request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
}
