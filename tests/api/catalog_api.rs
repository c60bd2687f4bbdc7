//! The catalog admin API, and catalog changes reaching recommendations at once.

use crate::common;

use common::{TestApp, error_code, settings};
use serde_json::{Value, json};

async fn recommended(app: &TestApp, path: &str) -> Vec<String> {
    let body: Value = app.get(path).await.json().await.unwrap();
    body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap().to_owned())
        .collect()
}

fn product(id: &str, category: &str, stock: i64) -> Value {
    json!({"id": id, "title": format!("Test Teapot {id}"), "category": category, "tags": ["ceramic"],
           "price": {"amount": 2499, "currency": "GBP"}, "cost": {"amount": 900, "currency": "GBP"}, "inventory": stock,
           "image_url": format!("https://img.example/{id}.jpg")})
}

async fn put(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .put(app.url("/admin/v1/products"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn new_products_are_served_in_their_new_category_and_in_search() {
    let app = TestApp::spawn(settings()).await;
    let r = put(
        &app,
        json!([
            product("tea-1", "Kitchen > Tea Ware", 5),
            product("tea-2", "Kitchen > Tea Ware", 5)
        ]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let got: Value = app
        .get("/admin/v1/products/tea-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["category"], "kitchen/tea-ware");
    assert_eq!(got["price"], json!({"amount": 2499, "currency": "GBP"}));
    assert_eq!(got["inventory"], 5);
    let in_category = recommended(
        &app,
        "/v1/recommend?session_id=s&placement=category&category=kitchen/tea-ware",
    )
    .await;
    assert_eq!(
        &in_category[..2],
        &["tea-1".to_owned(), "tea-2".to_owned()],
        "{in_category:?}"
    );
    let found = recommended(
        &app,
        "/v1/recommend?session_id=s&placement=search&query=teapot",
    )
    .await;
    assert!(found.contains(&"tea-1".to_owned()), "{found:?}");
}

#[tokio::test]
async fn a_product_out_of_stock_or_deleted_disappears_at_once() {
    let app = TestApp::spawn(settings()).await;
    let home = "/v1/recommend?session_id=s&placement=home&limit=20";
    let before = recommended(&app, home).await;
    let (first, second) = (before[0].clone(), before[1].clone());
    let r = app
        .client
        .patch(app.url(&format!("/admin/v1/products/{first}")))
        .json(&json!({"inventory": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .delete(app.url(&format!("/admin/v1/products/{second}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after = recommended(&app, home).await;
    assert!(
        !after.contains(&first) && !after.contains(&second),
        "{after:?}"
    );
    assert_eq!(after.len(), 20);
    assert_eq!(
        error_code(app.get(&format!("/admin/v1/products/{second}")).await).await,
        (404, "product_not_found".into())
    );
    let r = app
        .client
        .delete(app.url(&format!("/admin/v1/products/{second}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "product_not_found".into()));
    // Back in stock, back in the answers.
    app.client
        .patch(app.url(&format!("/admin/v1/products/{first}")))
        .json(&json!({"inventory": 10, "title": "Renamed"}))
        .send()
        .await
        .unwrap();
    let got: Value = app
        .get(&format!("/admin/v1/products/{first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], "Renamed");
    assert!(recommended(&app, home).await.contains(&first));
}

#[tokio::test]
async fn an_invalid_product_fails_the_whole_batch() {
    let app = TestApp::spawn(settings()).await;
    let mut bad = product("bad", "x", 1);
    bad["price"]["amount"] = json!(-5);
    let r = put(&app, json!([product("good", "x", 1), bad])).await;
    let (status, code) = error_code(r).await;
    assert_eq!((status, code.as_str()), (422, "invalid_product"));
    assert_eq!(
        error_code(app.get("/admin/v1/products/good").await).await.0,
        404,
        "nothing applied"
    );
    let mut float_price = product("f", "x", 1);
    float_price["price"]["amount"] = json!(24.99);
    assert_eq!(
        error_code(put(&app, json!([float_price])).await).await.1,
        "invalid_product",
        "money is integers"
    );
    let r = app
        .client
        .patch(app.url("/admin/v1/products/p000001"))
        .json(&json!({"colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (422, "invalid_body".into()));
}

#[tokio::test]
async fn concurrent_catalog_writes_lose_nothing() {
    let app = TestApp::spawn(settings()).await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let client = app.client.clone();
            let url = app.url("/admin/v1/products");
            tokio::spawn(async move {
                let body: Vec<Value> = (0..5)
                    .map(|i| product(&format!("w{n}-{i}"), "kitchen/cookware", 3))
                    .collect();
                assert_eq!(
                    client.put(url).json(&body).send().await.unwrap().status(),
                    200
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for n in 0..8 {
        for i in 0..5 {
            assert_eq!(
                app.get(&format!("/admin/v1/products/w{n}-{i}"))
                    .await
                    .status(),
                200
            );
        }
    }
}

/// Until `check` holds for `path` on `app` (its status and JSON body), for at most
/// `within`.
async fn eventually(
    app: &TestApp,
    path: &str,
    within: std::time::Duration,
    check: impl Fn(u16, &Value) -> bool,
) {
    common::eventually_within(path, within, || async {
        let r = app.get(path).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        check(status, &body)
    })
    .await;
}

#[tokio::test]
async fn catalog_changes_on_one_instance_reach_another_within_a_second() {
    let server = common::redis::RedisServer::start();
    let a = TestApp::on_redis(&server).await;
    let b = TestApp::on_redis(&server).await;
    let second = std::time::Duration::from_secs(1);

    // A new product through A, changed through B at once: B catches up first.
    let r = put(&a, json!([product("tea-8", "Kitchen > Tea Ware", 5)])).await;
    assert_eq!(r.status(), 200);
    let r = b
        .client
        .patch(b.url("/admin/v1/products/tea-8"))
        .json(&json!({"inventory": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(&a, "/admin/v1/products/tea-8", second, |_, p| {
        p["inventory"] == 2
    })
    .await;

    // A new product, through A.
    assert_eq!(
        put(&a, json!([product("tea-9", "Kitchen > Tea Ware", 5)]))
            .await
            .status(),
        200
    );
    eventually(&b, "/admin/v1/products/tea-9", second, |s, p| {
        s == 200 && p["category"] == "kitchen/tea-ware" && p["inventory"] == 5
    })
    .await;

    // A price change and a stock change, through A.
    let r = a
        .client
        .patch(a.url("/admin/v1/products/tea-9"))
        .json(&json!({"price": {"amount": 1999, "currency": "GBP"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(&b, "/admin/v1/products/tea-9", second, |_, p| {
        p["price"]["amount"] == 1999
    })
    .await;
    let home = "/v1/recommend?session_id=s&placement=home&limit=20";
    let shown = recommended(&b, home).await;
    let top = shown[0].clone();
    let r = a
        .client
        .patch(a.url(&format!("/admin/v1/products/{top}")))
        .json(&json!({"inventory": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let path = format!("/admin/v1/products/{top}");
    eventually(&b, &path, second, |_, p| p["in_stock"] == false).await;
    assert!(
        !recommended(&b, home).await.contains(&top),
        "out of stock on B too"
    );

    // A delete, through B this time, reaches A.
    let r = b
        .client
        .delete(b.url("/admin/v1/products/tea-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(&a, "/admin/v1/products/tea-9", second, |s, _| s == 404).await;
}

#[tokio::test]
async fn the_catalog_survives_a_restart_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.storage.path = dir.path().join("vitrine.redb");
    let mut app = TestApp::spawn(s.clone()).await;
    assert_eq!(
        put(&app, json!([product("tea-7", "Kitchen > Tea Ware", 3)]))
            .await
            .status(),
        200
    );
    let r = app
        .client
        .delete(app.url("/admin/v1/products/p000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.stop().await.unwrap();
    drop(app);

    let app = TestApp::spawn(s).await;
    let got: Value = app
        .get("/admin/v1/products/tea-7")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["inventory"], 3);
    let r = app.get("/admin/v1/products/p000001").await;
    assert_eq!(
        error_code(r).await,
        (404, "product_not_found".into()),
        "the delete stays"
    );
}

#[tokio::test]
async fn a_catalog_change_the_store_cannot_take_is_503_and_not_applied() {
    let mut server = common::redis::RedisServer::start();
    let app = TestApp::on_redis(&server).await;
    server.kill();
    let r = put(&app, json!([product("tea-5", "Kitchen > Tea Ware", 5)])).await;
    assert_eq!(error_code(r).await, (503, "store_unavailable".into()));
    let r = app.get("/admin/v1/products/tea-5").await;
    assert_eq!(error_code(r).await, (404, "product_not_found".into()));
    let r = app
        .client
        .patch(app.url("/admin/v1/products/p000002"))
        .json(&json!({"inventory": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (503, "store_unavailable".into()));
    let p: Value = app
        .get("/admin/v1/products/p000002")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(p["inventory"], 0, "stock unchanged");
}

#[tokio::test]
async fn a_new_product_gets_neighbours_by_category_and_tags_and_is_shown_beside_its_kind() {
    let app = TestApp::spawn(settings()).await;
    let (category, tags) = {
        let snap = app.state.snapshot.load();
        let c = &snap.catalog;
        let p = c.product(c.lookup("p000005").unwrap());
        (
            c.categories()[usize::from(p.category)].handle.to_string(),
            p.tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
    };
    let new = |id: &str| {
        json!({"id": id, "title": format!("Brand New {id}"), "category": category, "tags": tags,
               "price": {"amount": 1999, "currency": "GBP"}, "inventory": 5})
    };
    assert_eq!(
        put(&app, json!([new("cold-1"), new("cold-2")]))
            .await
            .status(),
        200
    );
    let body: Value = app
        .recommend("session_id=s&placement=product&product_id=cold-1&limit=10")
        .await;
    let picks = common::picks(&body);
    assert!(!picks.is_empty());
    // p000005 and the other new product share every tag; p000005 has a trend.
    let first_two: Vec<&(String, String)> = picks.iter().take(2).collect();
    for id in ["p000005", "cold-2"] {
        assert!(
            first_two.contains(&&(id.to_owned(), "similar_item".to_owned())),
            "{id} shares every tag: {picks:?}"
        );
    }
    let snap = app.state.snapshot.load();
    let cat = snap.catalog.category(&category).unwrap();
    for (id, reason) in picks.iter().filter(|(_, r)| r == "similar_item") {
        let p = snap.catalog.lookup(id).unwrap();
        assert_eq!(snap.catalog.product(p).category, cat, "{id} ({reason})");
    }
}
