//! Events change answers at once, without a retrain: a new co-purchase appears as
//! `bought_together`, and a product that takes off appears as `trending`.

mod common;

use common::{TestApp, settings};
use serde_json::{Value, json};

async fn answer(app: &TestApp, path: &str) -> Vec<(String, String)> {
    let body: Value = app.get(path).await.json().await.unwrap();
    common::picks(&body)
}

async fn send(app: &TestApp, events: Vec<Value>) {
    let r = app.post_json("/v1/events", &Value::Array(events)).await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn a_new_co_purchase_shows_up_as_bought_together() {
    let app = TestApp::spawn(settings()).await;
    let (a, b) = {
        let snap = app.state.snapshot.load();
        let catalog = &snap.catalog;
        let a = catalog.lookup("p000001").unwrap();
        let known: Vec<u32> = snap
            .models
            .bought
            .of(a)
            .iter()
            .chain(snap.models.viewed.of(a))
            .map(|&(p, _)| p)
            .collect();
        // A product in stock, in another category, never bought or viewed with `a`.
        let b = catalog
            .live()
            .find(|&p| {
                p != a
                    && catalog.in_stock(p)
                    && catalog.product(p).category != catalog.product(a).category
                    && !known.contains(&p)
            })
            .unwrap();
        (
            catalog.product(a).id.to_string(),
            catalog.product(b).id.to_string(),
        )
    };
    let path = format!("/v1/recommend?session_id=look&placement=product&product_id={a}");
    assert!(!answer(&app, &path).await.iter().any(|(p, _)| *p == b));

    let mut events = Vec::new();
    for order in 0..3 {
        for (line, product) in [&a, &b].into_iter().enumerate() {
            events.push(
                json!({"event_id": format!("o{order}-{line}"), "type": "purchase",
                               "session_id": format!("buyer-{order}"), "product_id": product,
                               "order_id": format!("order-{order}"),
                               "price": {"amount": 1000, "currency": "GBP"}}),
            );
        }
    }
    send(&app, events).await;

    let after = answer(&app, &path).await;
    assert!(
        after
            .iter()
            .any(|(p, reason)| *p == b && reason == "bought_together"),
        "{b} should now be bought with {a}: {after:?}"
    );
}

/// Forty purchases of one product by forty visitors.
fn fans(product: &str) -> Vec<Value> {
    (0..40)
        .map(|i| {
            json!({"event_id": format!("t{i}"), "type": "purchase", "session_id": format!("fan-{i}"),
                   "product_id": product, "price": {"amount": 1000, "currency": "GBP"}})
        })
        .collect()
}

#[tokio::test]
async fn a_product_that_takes_off_shows_up_as_trending() {
    let app = TestApp::spawn(settings()).await;
    let home = "/v1/recommend?session_id=new-visitor&placement=home";
    let before = answer(&app, home).await;
    let rising = {
        let snap = app.state.snapshot.load();
        let catalog = &snap.catalog;
        let p = catalog
            .live()
            .filter(|&p| catalog.in_stock(p))
            .last()
            .unwrap();
        catalog.product(p).id.to_string()
    };
    assert!(!before.iter().any(|(p, _)| *p == rising));
    send(&app, fans(&rising)).await;
    let after = answer(&app, &format!("{home}&limit=10")).await;
    assert_eq!(
        after.first(),
        Some(&(rising.clone(), "trending".to_owned())),
        "{after:?}"
    );

    // A repeated batch changes nothing more: events are applied once.
    let score = |v: &Value| v["recommendations"][0]["score"].as_f64().unwrap();
    let first: Value = app.get(home).await.json().await.unwrap();
    send(&app, fans(&rising)).await;
    let second: Value = app.get(home).await.json().await.unwrap();
    assert_eq!(score(&first), score(&second));
}

#[tokio::test]
async fn a_product_passed_over_again_and_again_makes_room_until_it_is_clicked() {
    let app = TestApp::spawn(settings()).await;
    let home = "/v1/recommend?session_id=browser&placement=home&limit=10";
    let first = answer(&app, home).await[0].0.clone();
    let impression = |n: usize| {
        json!({"event_id": format!("imp-{n}"), "type": "impression", "session_id": "browser",
               "product_id": first})
    };
    // Shown twice: no change yet.
    send(&app, (0..2).map(impression).collect()).await;
    assert_eq!(answer(&app, home).await[0].0, first);
    // Passed over twice more: it gives way.
    send(&app, (2..4).map(impression).collect()).await;
    let after = answer(&app, home).await;
    assert_ne!(after[0].0, first, "{after:?}");
    // Another visitor still sees it first.
    let other = answer(&app, "/v1/recommend?session_id=someone-else&placement=home").await;
    assert_eq!(other[0].0, first);
    // A click says it was not passed over.
    send(
        &app,
        vec![json!({"event_id": "click-1", "type": "click", "session_id": "browser", "product_id": first})],
    )
    .await;
    assert!(answer(&app, home).await.iter().any(|(p, _)| *p == first));
}
