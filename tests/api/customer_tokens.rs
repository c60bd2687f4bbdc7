//! A publishable storefront key can never read or change a customer's data: naming a
//! customer takes a token the shop's backend signed, and what money depends on changes
//! only through trusted callers.

use crate::common;

use common::{ADMIN_KEY, STOREFRONT_KEY, TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::http::auth::CustomerTokens;

const SECRET: &str = "customer-token-secret-for-tests-0123456789";

async fn app() -> TestApp {
    let mut s = settings();
    s.auth.storefront_keys = vec![STOREFRONT_KEY.into()];
    s.auth.admin_keys = vec![ADMIN_KEY.into()];
    s.auth.customer_token_secret = SECRET.into();
    TestApp::spawn(s).await
}

fn token(customer: &str, expires_in: i64) -> String {
    CustomerTokens::new(SECRET)
        .sign(customer, vitrine::domain::time::unix_now() + expires_in)
        .unwrap()
}

fn storefront(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .bearer_auth(STOREFRONT_KEY)
}

async fn profile(app: &TestApp, customer: &str) -> Value {
    app.client
        .get(app.url(&format!("/admin/v1/profiles/{customer}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_storefront_key_names_a_customer_only_with_a_valid_token() {
    let app = app().await;
    let home = "/v1/recommend?customer_id=c0000001&placement=home";
    let get = |path: String| storefront(&app, reqwest::Method::GET, &path).send();

    // No token, another customer's, an expired one, a forged one: 401, for GET and POST.
    let bad = [
        None,
        Some(token("c0000002", 600)),
        Some(token("c0000001", -1)),
        Some(
            CustomerTokens::new("another-secret-of-32-characters-xx")
                .sign("c0000001", i64::MAX)
                .unwrap(),
        ),
        Some("garbage".to_owned()),
    ];
    for t in &bad {
        let path = match t {
            Some(t) => format!("{home}&customer_token={t}"),
            None => home.to_owned(),
        };
        let r = get(path.clone()).await.unwrap();
        assert_eq!(
            error_code(r).await,
            (401, "invalid_customer_token".into()),
            "{path}"
        );
        let r = storefront(&app, reqwest::Method::POST, "/v1/recommend")
            .json(&json!({"customer_id": "c0000001", "customer_token": t, "placement": "home"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (401, "invalid_customer_token".into()));
        let r = storefront(&app, reqwest::Method::POST, "/v1/cart/evaluate")
            .json(&json!({"customer_id": "c0000001", "customer_token": t, "cart": [{"product_id": "p000001"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (401, "invalid_customer_token".into()));
    }

    // A valid token, in the query, the body or the header.
    let good = token("c0000001", 600);
    let r = get(format!("{home}&customer_token={good}")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = storefront(&app, reqwest::Method::GET, home)
        .header("x-vitrine-customer-token", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = storefront(&app, reqwest::Method::POST, "/v1/cart/evaluate")
        .json(&json!({"customer_id": "c0000001", "customer_token": good, "cart": [{"product_id": "p000001"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Sessions need no token; admin keys are trusted.
    let r = get("/v1/recommend?session_id=anon-1&placement=home".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url(home))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn without_a_token_a_storefront_key_changes_nothing_of_a_customer() {
    let app = app().await;
    let before = profile(&app, "c0000001").await;
    let attacks = [
        json!({"event_id": "x1", "type": "view", "customer_id": "c0000001", "product_id": "p000009",
               "consent": {"marketing": true, "personalization": false}}),
        json!([{"event_id": "x2", "type": "view", "session_id": "s-ok", "product_id": "p000009"},
               {"event_id": "x3", "type": "purchase", "customer_id": "c0000001", "product_id": "p000009",
                "price": {"amount": i64::MAX, "currency": "GBP"}}]),
        json!({"event_id": "x4", "type": "view", "customer_id": "c0000001", "product_id": "p000009",
               "customer_token": token("c0000002", 600)}),
    ];
    for body in attacks {
        let r = storefront(&app, reqwest::Method::POST, "/v1/events")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (401, "invalid_customer_token".into()),
            "{body}"
        );
    }
    assert_eq!(
        profile(&app, "c0000001").await,
        before,
        "nothing was applied"
    );
    // The session's event in the refused batch did not land either: its answer shows
    // no history.
    let answer: Value = app
        .client
        .get(app.url("/v1/recommend?session_id=s-ok&placement=home"))
        .bearer_auth(STOREFRONT_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        common::picks(&answer)
            .iter()
            .all(|(_, reason)| reason != "recently_viewed" && reason != "based_on_your_history"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_customers_own_purchases_teach_but_never_change_spend_or_lifecycle() {
    let app = app().await;
    let customer = "token-buyer";
    let t = token(customer, 600);
    // A price past the largest amount Vitrine takes is refused outright.
    let absurd = json!({"event_id": "buy-0", "type": "purchase", "customer_id": customer,
        "customer_token": t, "product_id": "p000009", "order_id": "o-0",
        "price": {"amount": i64::MAX, "currency": "GBP"}});
    let r = storefront(&app, reqwest::Method::POST, "/v1/events")
        .json(&absurd)
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        report["results"][0]["error"]["code"], "invalid_price",
        "{report}"
    );
    // The largest one is taken, and teaches, but never counts as spend.
    let purchase = json!({"event_id": "buy-1", "type": "purchase", "customer_id": customer,
        "customer_token": t, "product_id": "p000009", "order_id": "o-1",
        "price": {"amount": 100_000_000_000_i64, "currency": "GBP"}});
    let r = storefront(&app, reqwest::Method::POST, "/v1/events")
        .json(&purchase)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["accepted"], 1, "{report}");
    let p = profile(&app, customer).await;
    assert_eq!(p["orders_count"], 0, "{p}");
    assert_eq!(p["total_spent"], Value::Null);
    assert_eq!(p["lifecycle"], "new");
    assert_eq!(
        common::purchased_ids(&p),
        vec!["p000009"],
        "history still learns"
    );

    // The same through an admin key (the shop's backend) is an order.
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"event_id": "buy-2", "type": "purchase", "customer_id": customer,
            "product_id": "p000010", "order_id": "o-2", "price": {"amount": 2_500, "currency": "GBP"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let p = profile(&app, customer).await;
    assert_eq!(p["orders_count"], 1);
    assert_eq!(
        p["total_spent"],
        json!({"amount": 2_500, "currency": "GBP"})
    );
}

#[tokio::test]
async fn without_the_secret_customers_are_taken_at_their_word() {
    let mut s = settings();
    s.auth.storefront_keys = vec![STOREFRONT_KEY.into()];
    let app = TestApp::spawn(s).await;
    let r = storefront(
        &app,
        reqwest::Method::GET,
        "/v1/recommend?customer_id=c0000001&placement=home",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
}
