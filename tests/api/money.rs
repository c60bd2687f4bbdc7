//! Money is never wrong: categories named any documented way, exclusivity by class,
//! adjustments of prices the visitor could pay, one currency per answer, no overflow,
//! one rounding per split, rollbacks that walk back, error codes that name the problem,
//! and totals that satisfy their formulas. Each through HTTP on a real socket.

use crate::common;

use common::rules::cart;
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};

fn gbp(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

fn money(amount: i64, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

async fn shop(products: Value) -> TestApp {
    let app = TestApp::spawn(settings()).await;
    app.put_products(&products).await;
    app
}

/// A shop with these products and this ruleset published.
async fn shop_with(products: Value, doc: &Value) -> TestApp {
    let app = shop(products).await;
    app.publish_ruleset(doc).await;
    app
}

/// The problems of a refused ruleset, each as "path: message".
async fn problems(app: &TestApp, doc: &Value) -> Vec<String> {
    app.refused_ruleset(doc)
        .await
        .into_iter()
        .map(|(path, message)| format!("{path}: {message}"))
        .collect()
}

fn line<'a>(eval: &'a Value, product: &str) -> &'a Value {
    eval["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["product_id"] == product)
        .unwrap_or_else(|| panic!("no line {product} in {eval}"))
}

fn applied_ids(eval: &Value) -> Vec<&str> {
    eval["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect()
}

fn half_off(id: &str, target: &Value) -> Value {
    json!({"id": id, "title": id, "class": "item", "trigger": "auto",
           "target": target, "value": {"percent_bps": 5000}})
}

#[tokio::test]
async fn a_top_level_category_is_matched_and_protected_by_its_handle() {
    let app = shop_with(json!([
        {"id": "pot", "title": "Pot", "category": "Kitchen", "price": gbp(1000), "cost": gbp(500), "inventory": 5},
        {"id": "cup", "title": "Cup", "category": "Tea Ware", "price": gbp(1000), "cost": gbp(500), "inventory": 5}
    ]), &json!({
            "promotions": [half_off("half", &json!({"in": ["line.category", ["kitchen", "tea-ware"]]}))],
            "guardrails": {"categories": {"kitchen": 4000, "Tea Ware": 2000}}
        })).await;
    let eval = app
        .evaluate_cart(json!({"session_id": "s1", "cart": cart(&[("pot", 1), ("cup", 1)])}))
        .await;
    // Matched by handle (the promotion applies), floored by the category's margin:
    // 500 x 1.4 = 700 for the pot, 500 x 1.2 = 600 for the cup.
    assert_eq!(line(&eval, "pot")["total"]["amount"], 700, "{eval}");
    assert_eq!(line(&eval, "cup")["total"]["amount"], 600, "{eval}");
    assert_eq!(applied_ids(&eval), ["half"]);

    // The catalog answers the handle, and a category page finds it by handle or name.
    let product: Value = app
        .get("/admin/v1/products/cup")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["category"], "tea-ware");
    for name in ["tea-ware", "Tea%20Ware"] {
        let page: Value = app
            .get(&format!(
                "/v1/recommend?session_id=s1&placement=category&category={name}"
            ))
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = page["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["product_id"].as_str().unwrap())
            .collect();
        // The category's own product first (a new arrival), the demo shop's trend after.
        assert_eq!(ids.first(), Some(&"cup"), "{name}: {page}");
        assert!(!ids.contains(&"pot"), "{name}: {page}");
    }
}

#[tokio::test]
async fn categories_written_as_paths_match_in_guardrails_and_adjustments() {
    let app = shop_with(json!([
        {"id": "pan", "title": "Pan", "category": "Kitchen > Cookware", "price": gbp(1000), "cost": gbp(500), "inventory": 5},
        {"id": "tea", "title": "Tea", "category": "Pantry > Tea", "price": gbp(1000), "cost": gbp(500), "inventory": 5}
    ]), &json!({
            "price_lists": [{"id": "cookware-10", "kind": "adjustment", "currency": "GBP",
                             "adjust": {"percent_off_bps": 1000, "categories": ["Kitchen > Cookware"]}}],
            "promotions": [half_off("half", &json!(true))],
            "guardrails": {"categories": {"Kitchen > Cookware": 4000}}
        })).await;
    let eval = app
        .evaluate_cart(json!({"session_id": "s1", "cart": cart(&[("pan", 1), ("tea", 1)])}))
        .await;
    let pan = line(&eval, "pan");
    assert_eq!(
        pan["unit_price"]["amount"], 900,
        "the adjustment names the path: {eval}"
    );
    assert_eq!(pan["price_list"], "cookware-10");
    assert_eq!(
        pan["total"]["amount"], 700,
        "the floor names the path: {eval}"
    );
    assert_eq!(line(&eval, "tea")["unit_price"]["amount"], 1000);

    // What cannot name a category, or names one twice, is refused.
    let errors = problems(&app, &json!({"guardrails": {"categories": {"!!!": 1000, "Kitchen > Cookware": 1000, "kitchen/cookware": 2000}}}),
    )
    .await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("names no category")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("names the same category")),
        "{errors:?}"
    );
    let errors = problems(
        &app,
        &json!({"promotions": [half_off("h", &json!({"in": ["line.category", ["> >"]]}))]}),
    )
    .await;
    assert!(errors[0].contains("names no category"), "{errors:?}");
}

#[tokio::test]
async fn exclusive_promotions_of_different_classes_both_apply() {
    let app = shop_with(json!([
        {"id": "mug", "title": "Mug", "category": "Kitchen", "price": gbp(2000), "cost": gbp(500), "inventory": 5}
    ]), &json!({
            "promotions": [
                {"id": "ten", "title": "10%", "class": "item", "trigger": "auto", "exclusive": "class",
                 "value": {"percent_bps": 1000}},
                {"id": "ship", "title": "Free shipping", "class": "shipping", "trigger": "auto",
                 "exclusive": "class", "value": {"free_shipping": true}},
                {"id": "five", "title": "5%", "class": "item", "trigger": "auto", "value": {"percent_bps": 500}}
            ],
            "shipping": [{"id": "std", "amount": gbp(499)}]
        })).await;
    let eval = app
        .evaluate_cart(json!({"session_id": "s1", "cart": cart(&[("mug", 1)])}))
        .await;
    let mut ids = applied_ids(&eval);
    ids.sort_unstable();
    assert_eq!(ids, ["ship", "ten"], "{eval}");
    // The 5% is left out by the 10% exclusive of its class, not by shipping.
    let five = eval["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "five")
        .unwrap();
    assert_eq!(five["reason"], "excluded_by");
    assert_eq!(five["by"], "ten");
    assert_eq!(eval["shipping"]["total"]["amount"], 0);
    assert_eq!(eval["total"]["amount"], 1800);
}

#[tokio::test]
async fn an_adjustment_takes_only_a_parent_price_the_visitor_could_pay() {
    let app = shop_with(
        json!([
            {"id": "pan", "title": "Pan", "category": "Kitchen", "price": gbp(1000), "inventory": 5}
        ]),
        &json!({"price_lists": [
            {"id": "acme", "kind": "contract", "currency": "GBP",
             "scope": {"eq": ["customer.company_id", "acme"]},
             "entries": [{"product_id": "pan", "amount": 600}]},
            {"id": "acme-10", "kind": "adjustment", "currency": "GBP",
             "adjust": {"percent_off_bps": 1000, "parent": "acme"}},
            {"id": "old", "kind": "sale", "currency": "GBP",
             "window": {"from": "2020-01-01T00:00:00Z", "until": "2021-01-01T00:00:00Z"},
             "entries": [{"product_id": "pan", "amount": 500}]},
            {"id": "old-10", "kind": "adjustment", "currency": "GBP",
             "adjust": {"percent_off_bps": 1000, "parent": "old"}}
        ]}),
    )
    .await;
    let eval = app
        .evaluate_cart(json!({"session_id": "anon", "cart": cart(&[("pan", 1)])}))
        .await;
    let pan = line(&eval, "pan");
    assert_eq!(pan["unit_price"]["amount"], 1000, "{eval}");
    assert!(pan.get("price_list").is_none(), "{eval}");
}

#[tokio::test]
async fn money_of_two_currencies_is_never_added_or_relabelled() {
    let app = shop(json!([
        {"id": "uk", "title": "UK", "category": "Kitchen", "price": gbp(549), "inventory": 5},
        {"id": "us", "title": "US", "category": "Kitchen", "price": money(700, "USD"), "inventory": 5}
    ]))
    .await;
    // A cart in two currencies, none named.
    let r = app
        .post_json(
            "/v1/cart/evaluate",
            &json!({"session_id": "s", "cart": cart(&[("us", 1), ("uk", 1)])}),
        )
        .await;
    assert_eq!(error_code(r).await, (422, "mixed_currency".to_owned()));
    // A currency the shop does not sell in, on both routes.
    let r = app
        .post_json(
            "/v1/cart/evaluate",
            &json!({"session_id": "s", "cart": cart(&[("uk", 1)]), "context": {"currency": "EUR"}}),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (422, "unsupported_currency".to_owned())
    );
    let r = app
        .post_json(
            "/v1/recommend",
            &json!({"session_id": "s", "placement": "home", "context": {"currency": "EUR"}}),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (422, "unsupported_currency".to_owned())
    );
    // A currency it sells in, with a line that has no price in it.
    let r = app
        .post_json(
            "/v1/cart/evaluate",
            &json!({"session_id": "s", "cart": cart(&[("uk", 1)]), "context": {"currency": "USD"}}),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (422, "unsupported_currency".to_owned())
    );

    // A EUR price list makes EUR a currency of the shop: priced lines are answered in
    // it, and recommendations leave out what has no EUR price.
    app.publish_ruleset(
        &json!({"price_lists": [{"id": "eu", "kind": "base", "currency": "EUR",
                                 "entries": [{"product_id": "uk", "amount": 629}]}]}),
    )
    .await;
    let eval = app
        .evaluate_cart(
            json!({"session_id": "s", "cart": cart(&[("uk", 2)]), "context": {"currency": "EUR"}}),
        )
        .await;
    assert_eq!(eval["currency"], "EUR");
    assert_eq!(line(&eval, "uk")["unit_price"], money(629, "EUR"));
    assert_eq!(eval["subtotal"], money(1258, "EUR"));
    let page: Value = app
        .post_json(
            "/v1/recommend",
            &json!({"session_id": "s", "placement": "home", "context": {"currency": "EUR"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    for r in page["recommendations"].as_array().unwrap() {
        assert_eq!(r["price"]["currency"], "EUR", "{page}");
    }
}

#[tokio::test]
async fn amounts_are_bounded_so_no_sum_overflows() {
    let app = shop(json!([
        {"id": "big", "title": "Big", "category": "Kitchen", "price": gbp(100_000_000_000), "inventory": 5}
    ]))
    .await;
    let r = app
        .client
        .put(app.url("/admin/v1/products"))
        .json(
            &json!([{"id": "huge", "title": "Huge", "category": "Kitchen",
                       "price": gbp(92_233_720_368_547), "inventory": 5}]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (422, "invalid_product".to_owned()));
    let errors = problems(&app, &json!({"price_lists": [{"id": "x", "kind": "sale", "currency": "GBP",
                                 "entries": [{"product_id": "big", "amount": 92_233_720_368_547i64}]}],
                "shipping": [{"id": "s", "amount": gbp(i64::MAX)}]}),
    )
    .await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    // The largest price at the largest quantity, on every line the API takes.
    let lines: Vec<Value> = (0..200)
        .map(|_| json!({"product_id": "big", "quantity": 100_000}))
        .collect();
    let eval = app
        .evaluate_cart(json!({"session_id": "s", "cart": lines}))
        .await;
    assert_eq!(
        eval["subtotal"]["amount"],
        200 * 100_000 * 100_000_000_000i64
    );
    assert_eq!(eval["total"]["amount"], eval["subtotal"]["amount"]);
}

#[tokio::test]
async fn a_capped_order_discount_is_split_once_by_largest_remainder() {
    let app = shop_with(json!([
        {"id": "a", "title": "A", "category": "Kitchen", "price": gbp(100), "cost": gbp(0), "inventory": 5},
        {"id": "d", "title": "D", "category": "Kitchen", "price": gbp(633), "cost": gbp(0), "inventory": 5}
    ]), &json!({"promotions": [
            {"id": "half", "title": "Half", "class": "order", "trigger": "auto",
             "value": {"percent_bps": 5000}, "max_discount": gbp(11)}
        ]})).await;
    let eval = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("a", 1), ("d", 1)])}))
        .await;
    // 11 over 100 and 633: 1.5007 and 9.4993, so the one unit left goes to a.
    assert_eq!(line(&eval, "a")["discount"]["amount"], 2, "{eval}");
    assert_eq!(line(&eval, "d")["discount"]["amount"], 9, "{eval}");
    // The same 11 as an amount off splits the same way.
    app.publish_ruleset(&json!({"promotions": [
        {"id": "eleven", "title": "11 off", "class": "order", "trigger": "auto",
         "value": {"amount_off": gbp(11)}}
    ]}))
    .await;
    let eval = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("a", 1), ("d", 1)])}))
        .await;
    assert_eq!(line(&eval, "a")["discount"]["amount"], 2, "{eval}");
    assert_eq!(line(&eval, "d")["discount"]["amount"], 9, "{eval}");
}

#[tokio::test]
async fn an_empty_rollback_walks_back_one_version_each_time() {
    let app = shop(json!([])).await;
    let v1 = app
        .publish_ruleset(&json!({"shipping": [{"id": "a", "amount": gbp(1)}]}))
        .await;
    let v2 = app
        .publish_ruleset(&json!({"shipping": [{"id": "b", "amount": gbp(2)}]}))
        .await;
    let _v3 = app
        .publish_ruleset(&json!({"shipping": [{"id": "c", "amount": gbp(3)}]}))
        .await;
    for expected in [&v2, &v1] {
        let r = app
            .client
            .post(app.url("/admin/v1/ruleset/rollback"))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["version"], expected.as_str(), "{body}");
    }
    let r = app
        .client
        .post(app.url("/admin/v1/ruleset/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "ruleset_not_found".to_owned()));
}

#[tokio::test]
async fn error_codes_name_the_problem() {
    let app = shop(json!([
        {"id": "mug", "title": "Mug", "category": "Kitchen", "price": gbp(1000), "inventory": 5}
    ]))
    .await;
    let long = "q".repeat(300);
    let r = app
        .get(&format!(
            "/v1/recommend?session_id=s&placement=search&query={long}"
        ))
        .await;
    assert_eq!(error_code(r).await, (422, "invalid_query".to_owned()));
    let r = app
        .get(&format!(
            "/v1/recommend?session_id=s&placement=category&category={long}"
        ))
        .await;
    assert_eq!(error_code(r).await, (422, "invalid_category".to_owned()));
    let r = app
        .post_json(
            "/v1/events",
            &json!([
                {"event_id": "e".repeat(200), "type": "view", "session_id": "s", "product_id": "mug"},
                {"event_id": "e2", "type": "search", "session_id": "s", "query": long}
            ]),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(codes, ["invalid_event_id", "invalid_query"], "{body}");
    // `true` and `false` are the JSON values, as the rules document says.
    app.publish_ruleset(&json!({"promotions": [half_off("all", &json!(true))]}))
        .await;
    let errors = problems(
        &app,
        &json!({"promotions": [half_off("all", &json!({"true": null}))]}),
    )
    .await;
    assert!(
        errors[0].contains("write the JSON value true"),
        "{errors:?}"
    );
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")).unwrap();
    assert!(docs.contains("the JSON values `true` and `false`"));
}

#[tokio::test]
async fn shipping_reads_the_subtotal_after_discounts_and_totals_satisfy_their_formulas() {
    let app = shop_with(json!([
        {"id": "mug", "title": "Mug", "category": "Kitchen", "price": gbp(2600), "cost": gbp(500), "inventory": 50}
    ]), &json!({
            "promotions": [
                {"id": "ten", "title": "10%", "class": "item", "trigger": "auto", "value": {"percent_bps": 1000}},
                {"id": "ship-half", "title": "Half shipping", "class": "shipping", "trigger": "auto",
                 "condition": {"lt": ["cart.subtotal", gbp(5000)]}, "value": {"percent_bps": 5000}}
            ],
            "shipping": [
                {"id": "small", "when": {"lt": ["cart.subtotal", gbp(5000)]}, "amount": gbp(500)},
                {"id": "large", "amount": gbp(0)}
            ]
        })).await;
    // 5,200 before the 10% and 4,680 after: the rate and the shipping promotion both
    // read 4,680.
    let eval = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("mug", 2)])}))
        .await;
    assert_eq!(eval["subtotal"]["amount"], 5200);
    assert_eq!(
        eval["discount"]["amount"], 520,
        "the goods' discount: {eval}"
    );
    assert_eq!(eval["shipping"]["amount"]["amount"], 500, "{eval}");
    assert_eq!(eval["shipping"]["discount"]["amount"], 250, "{eval}");
    assert_eq!(eval["shipping"]["total"]["amount"], 250);
    assert_eq!(eval["total"]["amount"], 5200 - 520 + 250);
}
