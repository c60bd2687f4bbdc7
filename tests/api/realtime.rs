//! Events change answers at once, without a retrain: a new co-purchase appears as
//! `bought_together`, and a product that takes off appears as `trending`; on every
//! replica, through the shared event log; and visitors with no history get what their
//! audience (country, device) favours.

use crate::common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{TestApp, settings};
use serde_json::{Value, json};
use vitrine::config::StorageBackend;

async fn answer(app: &TestApp, path: &str) -> Vec<(String, String)> {
    let body: Value = app.get(path).await.json().await.unwrap();
    common::picks(&body)
}

/// Two products of different categories, in stock, never bought or viewed together.
fn unrelated_pair(app: &TestApp) -> (String, String) {
    {
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
    }
}

/// Three orders of both products.
fn co_purchases(a: &str, b: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for order in 0..3 {
        for (line, product) in [a, b].into_iter().enumerate() {
            events.push(
                json!({"event_id": format!("o{order}-{line}"), "type": "purchase",
                       "session_id": format!("buyer-{order}"), "product_id": product,
                       "order_id": format!("order-{order}"),
                       "price": {"amount": 1000, "currency": "GBP"}}),
            );
        }
    }
    events
}

#[tokio::test]
async fn a_new_co_purchase_shows_up_as_bought_together() {
    let app = TestApp::spawn(settings()).await;
    let (a, b) = unrelated_pair(&app);
    let path = format!("/v1/recommend?session_id=look&placement=product&product_id={a}");
    assert!(!answer(&app, &path).await.iter().any(|(p, _)| *p == b));

    app.accept_events(&Value::Array(co_purchases(&a, &b))).await;

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
    app.accept_events(&Value::Array(fans(&rising))).await;
    let after = answer(&app, &format!("{home}&limit=10")).await;
    assert_eq!(
        after.first(),
        Some(&(rising.clone(), "trending".to_owned())),
        "{after:?}"
    );

    // A repeated batch changes nothing more: events are applied once.
    let score = |v: &Value| v["recommendations"][0]["score"].as_f64().unwrap();
    let first: Value = app.get(home).await.json().await.unwrap();
    app.accept_events(&Value::Array(fans(&rising))).await;
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
    app.accept_events(&Value::Array((0..2).map(impression).collect()))
        .await;
    assert_eq!(answer(&app, home).await[0].0, first);
    // Passed over twice more: it gives way.
    app.accept_events(&Value::Array((2..4).map(impression).collect()))
        .await;
    let after = answer(&app, home).await;
    assert_ne!(after[0].0, first, "{after:?}");
    // Another visitor still sees it first.
    let other = answer(&app, "/v1/recommend?session_id=someone-else&placement=home").await;
    assert_eq!(other[0].0, first);
    // A click says it was not passed over.
    app.accept_events(&Value::Array(vec![json!({"event_id": "click-1", "type": "click", "session_id": "browser", "product_id": first})])).await;
    assert!(answer(&app, home).await.iter().any(|(p, _)| *p == first));
}

async fn replica(redis: &RedisServer) -> TestApp {
    let mut s = settings();
    s.storage.backend = StorageBackend::Redis;
    s.redis.url = redis.url();
    s.events.log_poll_ms = 100;
    TestApp::spawn(s).await
}

#[tokio::test]
async fn what_one_replica_learns_every_replica_learns() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis).await, replica(&redis).await);
    let (x, y) = unrelated_pair(&a);
    let path = format!("/v1/recommend?session_id=look&placement=product&product_id={x}");
    assert!(!answer(&b, &path).await.iter().any(|(p, _)| *p == y));

    // The orders reach replica a only; b learns them from the log.
    a.accept_events(&Value::Array(co_purchases(&x, &y))).await;
    common::eventually_within(
        &format!("{y} bought with {x} on the other replica too"),
        Duration::from_secs(2),
        || async {
            answer(&b, &path)
                .await
                .iter()
                .any(|(p, r)| *p == y && r == "bought_together")
        },
    )
    .await;
    // Each learned the orders once: the same answer on both (a wrote the entries and
    // does not learn them a second time from the log), with both followers at the end
    // of the log.
    for app in [&a, &b] {
        app.state.learning.flush().await.unwrap();
    }
    for app in [&a, &b] {
        app.state.learning.follow().await.unwrap();
    }
    let scores = |body: Value| -> Vec<Value> {
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["product_id"], r["score"]]))
            .collect()
    };
    let on_a = scores(a.get(&path).await.json().await.unwrap());
    let on_b = scores(b.get(&path).await.json().await.unwrap());
    assert_eq!(on_a, on_b);
    for app in [&a, &b] {
        let snapshot = app.state.snapshot.load();
        let p = snapshot.catalog.lookup(&x).unwrap();
        assert_eq!(snapshot.models.live.occurrences(p), 3.0, "three orders");
    }
}

/// Views of `product` by `n` visitors of one audience.
fn audience_views(product: &str, n: usize, context: &Value) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"event_id": format!("{product}-{i}"), "type": "view",
                   "session_id": format!("{product}-visitor-{i}"), "product_id": product,
                   "context": context})
        })
        .collect()
}

#[tokio::test]
async fn visitors_with_no_history_get_what_their_audience_favours() {
    let app = TestApp::spawn(settings()).await;
    let (german, french) = unrelated_pair(&app);
    // Popular in Germany on tablets; more popular still in France on desktops.
    app.accept_events(&Value::Array(audience_views(
        &german,
        30,
        &json!({"country": "DE", "device": "tablet"}),
    )))
    .await;
    app.accept_events(&Value::Array(audience_views(
        &french,
        40,
        &json!({"country": "fr", "device": "Desktop"}),
    )))
    .await;

    let home = |who: &str, context: &str| {
        format!("/v1/recommend?session_id={who}&placement=home&limit=5{context}")
    };
    let first = |picks: Vec<(String, String)>| picks.into_iter().next().unwrap();
    assert_eq!(
        first(answer(&app, &home("new-de", "&country=DE")).await),
        (german.clone(), "trending_in_country".to_owned())
    );
    assert_eq!(
        first(answer(&app, &home("new-fr", "&country=FR")).await),
        (french.clone(), "trending_in_country".to_owned())
    );
    assert_eq!(
        first(answer(&app, &home("new-tablet", "&device=Tablet")).await),
        (german.clone(), "trending_on_device".to_owned())
    );
    // No audience named: no audience trend.
    let anon = answer(&app, &home("new-anon", "&device=fridge")).await;
    assert!(
        !anon.iter().any(|(_, r)| r.starts_with("trending_")),
        "{anon:?}"
    );

    // A visitor with a history of their own is answered from it, not the audience.
    app.accept_events(&Value::Array(vec![
        json!({"event_id": "own-1", "type": "view", "session_id": "regular",
                    "product_id": french, "context": {"country": "DE"}}),
    ]))
    .await;
    let regular = answer(&app, &home("regular", "&country=DE")).await;
    assert!(
        !regular
            .iter()
            .any(|(_, r)| r == "trending_in_country" || r == "trending_on_device"),
        "{regular:?}"
    );

    // A bad context is refused like any other bad field.
    let bad = app
        .post_json(
            "/v1/events",
            &json!({"event_id": "bad-ctx", "type": "view", "session_id": "s",
                    "product_id": german, "context": {"country": "Germany"}}),
        )
        .await;
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["results"][0]["error"]["code"], "invalid_context");
}
