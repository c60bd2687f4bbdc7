//! `GET /proxy/shopify/*` as Shopify's app proxy calls it. The signatures are computed
//! here, as Shopify documents them, not by the server's code.

use crate::common;

use common::shopify::SECRET;
use common::{TestApp, error_code, settings};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SHOP: &str = "vitrine-demo.myshopify.com";

async fn app() -> TestApp {
    let mut s = settings();
    s.shopify.webhook_secret = SECRET.into();
    s.shopify.shop_currency = "GBP".into();
    TestApp::spawn(s).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Shopify's signature over `params`: each key's values joined by `,`, `key=value`
/// sorted, concatenated, HMAC-SHA256 with the app's secret, hex.
fn signature(secret: &str, params: &[(&str, String)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for k in params.iter().map(|(k, _)| *k) {
        if parts.iter().any(|p| p.starts_with(&format!("{k}="))) {
            continue;
        }
        let values: Vec<&str> = params
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
            .collect();
        parts.push(format!("{k}={}", values.join(",")));
    }
    parts.sort();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(parts.concat().as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The query string Shopify forwards for a storefront request with `page` parameters,
/// a logged-in `customer` (empty: nobody), at `timestamp`, signed with `secret`.
fn forwarded(page: &[(&str, &str)], customer: &str, timestamp: i64, secret: &str) -> String {
    let mut params: Vec<(&str, String)> = page.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    params.push(("shop", SHOP.to_owned()));
    params.push(("logged_in_customer_id", customer.to_owned()));
    params.push(("path_prefix", "/apps/vitrine".to_owned()));
    params.push(("timestamp", timestamp.to_string()));
    let sig = signature(secret, &params);
    params.push(("signature", sig));
    serde_urlencoded::to_string(&params).unwrap()
}

async fn get(app: &TestApp, path: &str, query: &str) -> reqwest::Response {
    app.get(&format!("/proxy/shopify/{path}?{query}")).await
}

fn ids(answer: &Value) -> Vec<&str> {
    answer["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_logged_in_customer_gets_their_own_answer() {
    let app = app().await;
    let page = [("placement", "home"), ("limit", "6")];
    let r = get(
        &app,
        "recommend",
        &forwarded(&page, "c0000001", now(), SECRET),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    let proxied: Value = r.json().await.unwrap();
    let direct = app
        .recommend("customer_id=c0000001&placement=home&limit=6")
        .await;
    assert_eq!(ids(&proxied), ids(&direct), "the same answer as the API's");
    let anonymous = app
        .recommend("session_id=nobody&placement=home&limit=6")
        .await;
    assert_ne!(
        ids(&proxied),
        ids(&anonymous),
        "personalized for the customer Shopify names"
    );
}

#[tokio::test]
async fn an_anonymous_visitor_is_named_by_the_themes_session() {
    let app = app().await;
    let page = [
        ("placement", "product"),
        ("product_id", "p000007"),
        ("session_id", "theme-session-1"),
    ];
    let r = get(&app, "recommend", &forwarded(&page, "", now(), SECRET)).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(!ids(&answer).is_empty());

    let nobody = [("placement", "home")];
    let r = get(&app, "recommend", &forwarded(&nobody, "", now(), SECRET)).await;
    assert_eq!(error_code(r).await, (422, "missing_visitor_id".into()));
}

#[tokio::test]
async fn unsigned_tampered_and_stale_requests_are_refused() {
    let app = app().await;
    let page = [("placement", "home")];

    let r = get(
        &app,
        "recommend",
        "placement=home&logged_in_customer_id=c0000001",
    )
    .await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));

    let other = forwarded(&page, "c0000001", now(), "not-the-app-secret");
    let r = get(&app, "recommend", &other).await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));

    // Signed for one customer, sent for another.
    let signed = forwarded(&page, "c0000001", now(), SECRET);
    let tampered = signed.replace(
        "logged_in_customer_id=c0000001",
        "logged_in_customer_id=c0000002",
    );
    assert_ne!(signed, tampered);
    let r = get(&app, "recommend", &tampered).await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));

    // A parameter added after signing.
    let r = get(&app, "recommend", &format!("{signed}&limit=2")).await;
    assert_eq!(error_code(r).await, (401, "invalid_signature".into()));

    let old = forwarded(&page, "c0000001", now() - 301, SECRET);
    let r = get(&app, "recommend", &old).await;
    assert_eq!(error_code(r).await, (401, "stale_signature".into()));
    let ahead = forwarded(&page, "c0000001", now() + 301, SECRET);
    let r = get(&app, "recommend", &ahead).await;
    assert_eq!(error_code(r).await, (401, "stale_signature".into()));
    let recent = forwarded(&page, "c0000001", now() - 240, SECRET);
    assert_eq!(get(&app, "recommend", &recent).await.status(), 200);

    // The customer is Shopify's to name, even in a signed request.
    let named = [("placement", "home"), ("customer_id", "c0000002")];
    let r = get(&app, "recommend", &forwarded(&named, "", now(), SECRET)).await;
    assert_eq!(error_code(r).await, (422, "invalid_parameter".into()));

    let r = get(&app, "elsewhere", &forwarded(&page, "", now(), SECRET)).await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}

/// A key's values are signed joined by `,` in the order sent, as Shopify does.
#[tokio::test]
async fn repeated_parameters_are_signed_as_shopify_signs_them() {
    let app = app().await;
    let page = [
        ("placement", "home"),
        ("session_id", "s-repeat"),
        ("tag", "a"),
        ("tag", "b"),
    ];
    let r = get(&app, "recommend", &forwarded(&page, "", now(), SECRET)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_proxy_is_off_without_the_apps_secret() {
    let app = TestApp::spawn(settings()).await;
    let r = get(
        &app,
        "recommend",
        &forwarded(&[("placement", "home")], "", now(), SECRET),
    )
    .await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}

#[tokio::test]
async fn a_liquid_snippet_shows_the_answer_and_never_runs_a_title() {
    let app = app().await;
    app.put_products(&json!([{
        "id": "liquid-mug",
        "title": "Mug {{ customer.email }} <script>alert(1)</script> & {% comment %}",
        "url": "https://example.com/products/liquid-mug",
        "image_url": "https://example.com/liquid-mug.jpg",
        "price": {"amount": 1250, "currency": "GBP"},
        "category": "Kitchen > Mugs",
        "inventory": 10
    }]))
    .await;
    let page = [
        ("placement", "search"),
        ("session_id", "liquid-visitor"),
        ("candidates", "liquid-mug,p000007"),
    ];
    let r = get(
        &app,
        "recommend.liquid",
        &forwarded(&page, "", now(), SECRET),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/liquid");
    let decision = r.headers()["x-vitrine-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = r.text().await.unwrap();
    // Without the theme's layout: the one Liquid tag, then the section.
    let html = text.strip_prefix("{% layout none %}\n").expect(&text);
    assert!(html.starts_with("<section class=\"vitrine\""), "{html}");
    assert!(html.contains(&format!("data-decision-id=\"{decision}\"")));
    assert!(html.contains("data-product-id=\"liquid-mug\""), "{html}");
    assert!(html.contains("data-product-id=\"p000007\""), "{html}");
    assert!(html.contains(
        "Mug &#123;&#123; customer.email &#125;&#125; &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#123;&#37; comment &#37;&#125;"
    ));
    assert!(
        html.contains(
            "<span class=\"vitrine-price\" data-amount=\"1250\" data-currency=\"GBP\">12.50 GBP</span>"
        ),
        "{html}"
    );
    for forbidden in ["{{", "{%", "<script>"] {
        assert!(!html.contains(forbidden), "{forbidden} in {html}");
    }
    // The decision is on the record under the id the snippet carries.
    let record = format!("/admin/v1/decisions/{decision}");
    common::eventually("the snippet's decision on the record", || async {
        app.get(&record).await.status() == 200
    })
    .await;
}
