//! `/v1/recommend` end to end: the real app on a real socket.

use crate::common;

use common::{TestApp, error_code, settings};
use serde_json::{Value, json};

fn without_decision_id(mut v: Value) -> Value {
    let id = v["decision_id"].as_str().expect("decision_id").to_owned();
    assert_eq!(id.len(), 36, "decision ids are UUIDs");
    v.as_object_mut().unwrap().remove("decision_id");
    v
}

/// An in-stock product with the most bought-together neighbours in the demo shop, whose
/// best neighbour is in stock too.
fn product_with_neighbours(app: &TestApp) -> String {
    let snap = app.state.snapshot.load();
    let idx = (0..snap.catalog.len() as u32)
        .filter(|&i| snap.catalog.in_stock(i))
        .filter(|&i| {
            snap.models
                .bought
                .of(i)
                .first()
                .is_some_and(|&(n, _)| snap.catalog.in_stock(n))
        })
        .max_by_key(|&i| snap.models.bought.of(i).len())
        .unwrap();
    snap.catalog.product(idx).id.to_string()
}

#[tokio::test]
async fn get_and_post_give_the_same_answer() {
    let app = TestApp::spawn(settings()).await;
    let product = product_with_neighbours(&app);
    let get = app
        .get(&format!(
            "/v1/recommend?session_id=s-1&placement=product&product_id={product}&limit=7&cart=p000003:2,p000004&country=gb&currency=GBP&device=mobile"
        ))
        .await;
    assert_eq!(get.status(), 200);
    let get_etag = get.headers()["etag"].to_str().unwrap().to_owned();
    let get_body: Value = get.json().await.unwrap();
    let post = app
        .post_json(
            "/v1/recommend",
            &json!({
                "session_id": "s-1", "placement": "product", "product_id": product, "limit": 7,
                "cart": [{"product_id": "p000003", "quantity": 2}, {"product_id": "p000004"}],
                "context": {"country": "gb", "currency": "GBP", "device": "mobile"}
            }),
        )
        .await;
    assert_eq!(post.status(), 200);
    assert_eq!(post.headers()["etag"].to_str().unwrap(), get_etag);
    let post_body: Value = post.json().await.unwrap();
    assert_ne!(
        get_body["decision_id"], post_body["decision_id"],
        "every decision has its own id"
    );
    assert_eq!(
        without_decision_id(get_body),
        without_decision_id(post_body)
    );
}

#[tokio::test]
async fn an_answer_has_every_documented_field() {
    let app = TestApp::spawn(settings()).await;
    let product = product_with_neighbours(&app);
    let r = app
        .get(&format!(
            "/v1/recommend?session_id=s-2&placement=product&product_id={product}&limit=5"
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["placement"], "product");
    assert!(
        body["model_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(body["degraded"], false);
    assert!(body.get("degraded_reason").is_none());
    assert!(body["offers"].as_array().is_some());
    assert!(body["banners"].as_array().is_some());
    let recs = body["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 5);
    let mut last = f64::INFINITY;
    for item in recs {
        for field in ["product_id", "title", "url", "image_url", "reason"] {
            assert!(
                item[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} in {item}"
            );
        }
        assert!(
            item["price"]["amount"].is_i64(),
            "money is integer minor units: {item}"
        );
        assert_eq!(item["price"]["currency"], "GBP");
        let score = item["score"].as_f64().unwrap();
        assert!(score <= last, "ranked by score");
        last = score;
    }
    assert_eq!(recs[0]["reason"], "bought_together");
}

#[tokio::test]
async fn the_limit_defaults_to_ten_and_banners_follow_the_placement() {
    let app = TestApp::spawn(settings()).await;
    let home: Value = app.recommend("session_id=s-3&placement=home").await;
    assert_eq!(home["recommendations"].as_array().unwrap().len(), 10);
    assert_eq!(home["banners"][0]["id"], "winter-sale");
    let cart: Value = app.recommend("session_id=s-3&placement=cart").await;
    assert_eq!(cart["banners"][0]["id"], "free-delivery");
    let search: Value = app
        .recommend("session_id=s-3&placement=search&query=skillet")
        .await;
    assert!(search["banners"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn out_of_stock_products_the_product_in_view_and_cart_items_are_never_recommended() {
    let app = TestApp::spawn(settings()).await;
    let product = product_with_neighbours(&app);
    let path =
        format!("/v1/recommend?session_id=s-4&placement=product&product_id={product}&limit=20");
    let before: Value = app.get(&path).await.json().await.unwrap();
    let ids: Vec<String> = before["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.contains(&product));
    // Take the first two recommended items out of stock, put the next in the cart.
    let snap = app.state.snapshot.load();
    for id in &ids[..2] {
        snap.catalog
            .set_inventory(snap.catalog.lookup(id).unwrap(), 0);
    }
    let after: Value = app
        .get(&format!("{path}&cart={}:1", ids[2]))
        .await
        .json()
        .await
        .unwrap();
    let after_ids: Vec<&str> = after["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(after_ids.len(), 20, "the list is refilled");
    for gone in &ids[..3] {
        assert!(
            !after_ids.contains(&gone.as_str()),
            "{gone} should be filtered"
        );
    }
    assert!(!after_ids.contains(&product.as_str()));
    for id in after_ids {
        assert!(snap.catalog.in_stock(snap.catalog.lookup(id).unwrap()));
    }
}

#[tokio::test]
async fn a_cart_gets_products_bought_with_its_lines() {
    let app = TestApp::spawn(settings()).await;
    let product = product_with_neighbours(&app);
    let body: Value = app
        .post_json(
            "/v1/recommend",
            &json!({"session_id": "s-5", "placement": "cart", "cart": [{"product_id": product, "quantity": 1}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let snap = app.state.snapshot.load();
    let neighbours: Vec<&str> = snap
        .models
        .bought
        .of(snap.catalog.lookup(&product).unwrap())
        .iter()
        .map(|&(p, _)| &*snap.catalog.product(p).id)
        .collect();
    let first = body["recommendations"][0]["product_id"].as_str().unwrap();
    assert!(
        neighbours.contains(&first),
        "{first} should be bought with {product}"
    );
    assert_eq!(body["recommendations"][0]["reason"], "bought_together");
}

#[tokio::test]
async fn category_and_search_placements_stay_on_topic() {
    let app = TestApp::spawn(settings()).await;
    let body: Value = app
        .recommend("session_id=s-6&placement=category&category=kitchen/cookware&limit=5")
        .await;
    let snap = app.state.snapshot.load();
    let cookware = snap.catalog.category("kitchen/cookware").unwrap();
    for item in body["recommendations"].as_array().unwrap() {
        let idx = snap
            .catalog
            .lookup(item["product_id"].as_str().unwrap())
            .unwrap();
        assert_eq!(snap.catalog.product(idx).category, cookware);
        assert_eq!(item["reason"], "trending_in_category");
    }
    let body: Value = app
        .recommend("session_id=s-6&placement=search&query=Skillet&limit=3")
        .await;
    for item in body["recommendations"].as_array().unwrap() {
        assert!(
            item["title"].as_str().unwrap().contains("Skillet"),
            "{item}"
        );
        assert_eq!(item["reason"], "matches_search");
    }
}

#[tokio::test]
async fn a_known_customer_gets_an_answer_shaped_by_their_history() {
    let app = TestApp::spawn(settings()).await;
    // The demo's most active customers have the longest histories.
    let customer: Value = app.recommend("customer_id=c0000001&placement=home").await;
    let anonymous: Value = app.recommend("session_id=never-seen&placement=home").await;
    let personal = ["based_on_your_history", "recently_viewed", "buy_again"];
    assert!(
        customer["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| personal.iter().any(|r| i["reason"] == *r))
    );
    assert!(
        anonymous["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["reason"] == "trending")
    );
    assert_ne!(customer["recommendations"], anonymous["recommendations"]);
}

#[tokio::test]
async fn cache_headers_etag_and_304() {
    let app = TestApp::spawn(settings()).await;
    let path = "/v1/recommend?session_id=s-7&placement=home";
    let r = app.get(path).await;
    assert_eq!(r.headers()["cache-control"], "private, max-age=5");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let timing = r.headers()["server-timing"].to_str().unwrap();
    assert!(
        timing.contains("store;dur=") && timing.contains("total;dur="),
        "{timing}"
    );
    assert!(
        r.headers().get("x-request-id").is_some(),
        "a request id is generated"
    );

    let not_modified = app
        .client
        .get(app.url(path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        not_modified.headers()["cache-control"],
        "private, max-age=5"
    );
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let stale = app
        .client
        .get(app.url(path))
        .header("if-none-match", "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    let echoed = app
        .client
        .get(app.url(path))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-abc-123");
}

#[tokio::test]
async fn compressed_answers_vary_on_accept_encoding() {
    let app = TestApp::spawn(settings()).await;
    let r = app
        .client
        .get(app.url("/v1/recommend?session_id=s-8&placement=home&limit=50"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
}

#[tokio::test]
async fn the_same_request_gets_the_same_recommendations() {
    let app = TestApp::spawn(settings()).await;
    let path = "/v1/recommend?customer_id=c0000002&placement=home&limit=20";
    let a: Value = app.get(path).await.json().await.unwrap();
    let b: Value = app.get(path).await.json().await.unwrap();
    assert_eq!(without_decision_id(a), without_decision_id(b));
}

#[tokio::test]
async fn unknown_products_and_queries_fall_back_to_trending_and_unknown_categories_are_refused() {
    let app = TestApp::spawn(settings()).await;
    let r = app
        .get("/v1/recommend?session_id=s-9&placement=category&category=no/such")
        .await;
    assert_eq!(error_code(r).await, (422, "unknown_category".into()));
    for path in [
        "/v1/recommend?session_id=s-9&placement=product&product_id=not-in-catalog",
        "/v1/recommend?session_id=s-9&placement=search&query=zzzzzz",
    ] {
        let body: Value = app.get(path).await.json().await.unwrap();
        let recs = body["recommendations"].as_array().unwrap();
        assert_eq!(recs.len(), 10, "{path}");
        assert!(recs.iter().all(|i| i["reason"] == "trending"), "{path}");
    }
}

#[tokio::test]
async fn an_empty_shop_answers_with_an_empty_list() {
    let mut s = settings();
    s.demo.enabled = false;
    let app = TestApp::spawn(s).await;
    let r = app.get("/v1/recommend?session_id=s&placement=home").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["recommendations"].as_array().unwrap().is_empty());
    let (status, code) = error_code(app.get("/v1/recommend?placement=home").await).await;
    assert_eq!((status, code.as_str()), (422, "missing_visitor_id"));
}

#[tokio::test]
async fn a_product_bought_is_not_recommended_again_unless_its_category_is_repeatable() {
    let ids = |body: &Value| -> Vec<String> {
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_str().unwrap().to_owned())
            .collect()
    };
    for repeatable in [false, true] {
        let mut s = settings();
        if repeatable {
            // Every department of the demo shop.
            s.recommend.repeatable_categories = [
                "kitchen",
                "home",
                "outdoor",
                "fashion",
                "beauty",
                "electronics",
                "sports",
                "pantry",
            ]
            .map(String::from)
            .to_vec();
        }
        let app = TestApp::spawn(s).await;
        let path = "/v1/recommend?session_id=buyer-1&placement=home&limit=20";
        // View a product first, so it is recommended as recently viewed.
        let viewed = ids(&app.get(path).await.json().await.unwrap())[0].clone();
        let r = app
            .post_json(
                "/v1/events",
                &json!([
                    {"event_id": "b-1", "type": "view", "session_id": "buyer-1", "product_id": viewed},
                ]),
            )
            .await;
        assert_eq!(r.status(), 202);
        assert!(ids(&app.get(path).await.json().await.unwrap()).contains(&viewed));
        let r = app
            .post_json(
                "/v1/events",
                &json!({"event_id": "b-2", "type": "purchase", "session_id": "buyer-1", "product_id": viewed,
                        "price": {"amount": 1000, "currency": "GBP"}}),
            )
            .await;
        assert_eq!(r.status(), 202);
        let after = ids(&app.get(path).await.json().await.unwrap());
        if repeatable {
            assert!(
                after.contains(&viewed),
                "a consumable may be bought again: {after:?}"
            );
        } else {
            assert!(
                !after.contains(&viewed),
                "bought, not repeatable: {after:?}"
            );
        }
    }
}

#[tokio::test]
async fn candidates_are_re_ranked_for_the_visitor_and_only_they_are_answered() {
    let app = TestApp::spawn(settings()).await;
    let ids = common::picks;
    // A product the visitor looked at, its closest viewed-together neighbour, and three
    // products that have nothing to do with either.
    let (seen, near, others) = {
        let snap = app.state.snapshot.load();
        let c = &snap.catalog;
        // The product with the closest neighbour of all.
        let (seen, near) = c
            .live()
            .filter(|&p| c.in_stock(p))
            .filter_map(|p| {
                let first = snap.models.viewed.of(p).first()?;
                c.in_stock(first.0).then_some((p, first.0, first.1))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(p, n, _)| (p, n))
            .unwrap();
        let related: Vec<u32> = snap.models.viewed.of(seen).iter().map(|x| x.0).collect();
        let others: Vec<String> = c
            .live()
            .filter(|&p| p != seen && c.in_stock(p) && !related.contains(&p))
            .filter(|&p| snap.models.viewed.of(near).iter().all(|x| x.0 != p))
            .take(3)
            .map(|p| c.product(p).id.to_string())
            .collect();
        (
            c.product(seen).id.to_string(),
            c.product(near).id.to_string(),
            others,
        )
    };
    let mut candidates = others.clone();
    candidates.push(near.clone()); // the storefront ranks it last
    let ask = |session: &str| json!({"session_id": session, "placement": "search", "candidates": candidates});

    // Anonymous: the storefront's order stands.
    let body: Value = app
        .post_json("/v1/recommend", &ask("anon"))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<String> = ids(&body).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, candidates, "no history, the storefront's order");

    // After a view of `seen`, its neighbour moves up, for a reason.
    let r = app
        .post_json(
            "/v1/events",
            &json!({"event_id": "v-1", "type": "view", "session_id": "shopper", "product_id": seen}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = app
        .post_json("/v1/recommend", &ask("shopper"))
        .await
        .json()
        .await
        .unwrap();
    let got = ids(&body);
    assert_eq!(got.len(), 4, "only the candidates: {got:?}");
    assert_eq!(got[0], (near.clone(), "based_on_your_history".to_owned()));
    assert!(got.iter().all(|(p, _)| candidates.contains(p)));

    // GET takes them comma-separated; category pages too.
    let list = candidates.join(",");
    let body: Value = app
        .get(&format!(
            "/v1/recommend?session_id=shopper&placement=category&candidates={list}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&body)[0].0, near);

    // Bad candidate lists.
    let too_many: Vec<String> = (0..501).map(|i| format!("p{i:06}")).collect();
    for (body, why) in [
        (
            json!({"session_id": "s", "placement": "search", "candidates": too_many}),
            "over 500",
        ),
        (
            json!({"session_id": "s", "placement": "search", "candidates": ["a b"]}),
            "a bad id",
        ),
        (
            json!({"session_id": "s", "placement": "home", "candidates": ["p000001"]}),
            "not search or category",
        ),
    ] {
        let r = app.post_json("/v1/recommend", &body).await;
        assert_eq!(
            error_code(r).await,
            (422, "invalid_candidates".into()),
            "{why}"
        );
    }
}

#[tokio::test]
async fn blend_weights_are_settings_and_zero_turns_a_source_off() {
    let product = "/v1/recommend?session_id=s&placement=product&product_id=p000001&limit=20";
    let home = "/v1/recommend?session_id=new&placement=home";
    let app = TestApp::spawn(settings()).await;
    let reasons =
        |body: Value| -> Vec<String> { common::picks(&body).into_iter().map(|(_, r)| r).collect() };
    assert!(
        reasons(app.get(product).await.json().await.unwrap())
            .contains(&"bought_together".to_owned())
    );
    assert!(!reasons(app.get(home).await.json().await.unwrap()).is_empty());

    let mut s = settings();
    s.recommend.blend.product.bought_together = 0.0;
    s.recommend.blend.home.trending = 0.0;
    s.recommend.blend.home.category_trend = 0.0;
    let app = TestApp::spawn(s).await;
    let got = reasons(app.get(product).await.json().await.unwrap());
    assert!(
        !got.is_empty() && !got.contains(&"bought_together".to_owned()),
        "{got:?}"
    );
    // Every ranked source off for an anonymous visitor: the shop's newest in-stock
    // products, never an empty answer.
    let got = reasons(app.get(home).await.json().await.unwrap());
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|r| r == "new_arrival"), "{got:?}");
}

/// A session remembers how often it viewed each product: one viewed three times comes
/// back before two viewed once since (recency alone would put it last).
#[tokio::test]
async fn products_viewed_again_and_again_come_back_first() {
    let app = TestApp::spawn(settings()).await;
    let ids: Vec<String> = {
        let snap = app.state.snapshot.load();
        (0..snap.catalog.len() as u32)
            .filter(|&i| snap.catalog.in_stock(i))
            .take(3)
            .map(|i| snap.catalog.product(i).id.to_string())
            .collect()
    };
    let views: Vec<Value> = [&ids[0], &ids[0], &ids[0], &ids[1], &ids[2]]
        .iter()
        .enumerate()
        .map(|(n, p)| json!({"event_id": format!("rv{n}"), "type": "view", "session_id": "again", "product_id": p}))
        .collect();
    let r = app.post_json("/v1/events", &json!(views)).await;
    assert_eq!(r.status(), 202);
    let answer: Value = app
        .recommend("placement=home&session_id=again&limit=20")
        .await;
    let again: Vec<&str> = answer["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"] == "recently_viewed")
        .filter_map(|r| r["product_id"].as_str())
        .collect();
    assert_eq!(again.first(), Some(&ids[0].as_str()), "{answer}");
    let key = app.state.hasher.key(&vitrine::domain::VisitorKey::Session(
        vitrine::domain::VisitorId::parse("again").unwrap(),
    ));
    let profile = app.state.store.get(&key).await.unwrap().unwrap();
    assert_eq!(profile.views().next(), Some((ids[2].as_str(), 1)));
    assert!(profile.views().any(|v| v == (ids[0].as_str(), 3)));
}

/// The API's contract is served as the code generates it, and names the storefront's
/// recommend operations with their answer and error schemas.
#[tokio::test]
async fn the_openapi_document_is_served() {
    let app = TestApp::spawn(settings()).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    assert_eq!(
        served,
        serde_json::to_value(vitrine::http::openapi::document()).unwrap()
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    for method in ["get", "post"] {
        let op = &served["paths"]["/v1/recommend"][method];
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RecommendAnswer"
        );
        assert_eq!(
            op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }
    let codes = &served["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
    assert!(
        codes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "invalid_placement")
    );
}
