//! Answers as long as asked for while something can be sold: the diversity cap orders,
//! it does not cut; a department page answers its own products; a shop with no history
//! yet answers its in-stock products; the storefront's candidates are all answered.
//! Through HTTP on a real socket, on catalogs loaded through the admin API.

use crate::common;

use common::{TestApp, settings};
use serde_json::{Value, json};

/// A shop with no generated history: only the products given.
async fn shop(products: &[Value]) -> TestApp {
    let mut s = settings();
    s.demo.enabled = false;
    let app = TestApp::spawn(s).await;
    for chunk in products.chunks(1_000) {
        app.put_products(&Value::from(chunk.to_vec())).await;
    }
    app
}

fn product(i: usize, category: &str, inventory: i64) -> Value {
    json!({"id": format!("p{i}"), "title": format!("Product {i}"), "category": category,
           "price": {"amount": 1000 + i as i64, "currency": "GBP"}, "inventory": inventory,
           "tags": ["set"]})
}

async fn answer(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .get(&format!("/v1/recommend?session_id=s1&{query}"))
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["product_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_and_two_category_shops_answer_the_limit_on_every_placement() {
    for categories in [&["Kitchen"][..], &["Kitchen", "Garden"][..]] {
        let products: Vec<Value> = (0..60)
            .map(|i| product(i, categories[i % categories.len()], 5))
            .collect();
        let app = shop(&products).await;
        for placement in [
            "placement=home",
            "placement=product&product_id=p1",
            "placement=cart&cart=p2:1",
            "placement=checkout&cart=p2:1",
            "placement=post_purchase",
            "placement=category&category=kitchen",
            "placement=search&query=set",
        ] {
            for limit in [10, 20] {
                let got = answer(&app, &format!("{placement}&limit={limit}")).await;
                assert_eq!(got.len(), limit, "{categories:?} {placement}: {got:?}");
                let distinct: std::collections::HashSet<_> = got.iter().collect();
                assert_eq!(distinct.len(), got.len(), "no repeats: {got:?}");
                assert!(!got.contains(&"p1".to_owned()) || !placement.contains("p1"));
            }
        }
    }
}

#[tokio::test]
async fn a_department_page_answers_its_own_products_and_an_unknown_one_is_refused() {
    let mut products = Vec::new();
    for i in 0..30 {
        let category = [
            "Kitchen > Cookware",
            "Kitchen > Tea",
            "Pantry > Tea",
            "Beauty",
        ][i % 4];
        products.push(product(i, category, 5));
    }
    let app = shop(&products).await;
    let kitchen: Vec<String> = (0..30)
        .filter(|i| i % 4 < 2)
        .map(|i| format!("p{i}"))
        .collect();
    for name in ["kitchen", "Kitchen"] {
        let got = answer(
            &app,
            &format!("placement=category&category={name}&limit=20"),
        )
        .await;
        assert_eq!(got.len(), kitchen.len().min(20), "{got:?}");
        assert!(
            got.iter().all(|p| kitchen.contains(p)),
            "only the department's: {got:?}"
        );
    }
    let tea = answer(&app, "placement=category&category=kitchen/tea&limit=20").await;
    assert!(
        !tea.is_empty()
            && tea.iter().all(|p| {
                let i: usize = p[1..].parse().unwrap();
                i % 4 == 1
            }),
        "{tea:?}"
    );
    let r = app
        .get("/v1/recommend?session_id=s1&placement=category&category=garden")
        .await;
    assert_eq!(
        common::error_code(r).await,
        (422, "unknown_category".to_owned())
    );
}

#[tokio::test]
async fn a_shop_with_no_history_answers_its_in_stock_products() {
    let mut products: Vec<Value> = (0..20).map(|i| product(i, "Kitchen", 5)).collect();
    products.push(product(20, "Kitchen", 0));
    let app = shop(&products).await;
    let got = answer(&app, "placement=home&limit=10").await;
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(!got.contains(&"p20".to_owned()), "out of stock: {got:?}");
}

#[tokio::test]
async fn every_candidate_of_the_storefront_is_answered() {
    let products: Vec<Value> = (0..10)
        .map(|i| product(i, "Kitchen", if i == 3 { 0 } else { 5 }))
        .collect();
    let app = shop(&products).await;
    let candidates: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let r = app
        .post_json(
            "/v1/recommend",
            &json!({"session_id": "s1", "placement": "search", "query": "set",
                    "candidates": candidates, "limit": 10, "cart": [{"product_id": "p5"}]}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let got: Vec<&str> = body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 10, "{body}");
    // Out of stock and in the cart: kept, last.
    let tail: std::collections::HashSet<&str> = got[8..].iter().copied().collect();
    assert_eq!(tail, ["p3", "p5"].into_iter().collect(), "{got:?}");
}

#[tokio::test]
async fn a_thousand_products_go_in_one_request() {
    let products: Vec<Value> = (0..1_000)
        .map(|i| {
            let mut p = product(i, "Kitchen > Cookware", 5);
            p["image_url"] = json!(format!(
                "https://cdn.example.com/images/products/{i}/main-large.jpg"
            ));
            p["tags"] = json!(["cast-iron", "oven-safe", "induction", "gift", "bestseller"]);
            p
        })
        .collect();
    let body = serde_json::to_vec(&products).unwrap();
    assert!(body.len() > 64 * 1024, "more than the default body limit");
    let app = shop(&products).await;
    let r = app.get("/admin/v1/products/p999").await;
    assert_eq!(r.status(), 200);
}
