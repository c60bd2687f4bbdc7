//! The decisioning seed cases, each against a published ruleset through HTTP:
//! `/v1/cart/evaluate` for the checkout, `/v1/recommend` for prices and offers.

use crate::common;

use common::rules::cart;
use common::{TestApp, error_code, settings};
use serde_json::{Value, json};
use vitrine::domain::profile::ProfileOp;
use vitrine::domain::{VisitorId, VisitorKey};

const DAY: i64 = 86_400;

fn gbp(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

/// A small shop with known prices and costs.
async fn shop() -> TestApp {
    let mut s = settings();
    // Win-back needs an order from months ago.
    s.events.max_age_s = 400 * DAY;
    let app = TestApp::spawn(s).await;
    let products = json!([
        {"id": "mug", "title": "Mug", "category": "Kitchen > Mugs", "price": gbp(1500), "cost": gbp(500), "inventory": 100},
        {"id": "pan", "title": "Pan", "category": "Kitchen > Pans", "price": gbp(4000), "cost": gbp(2000), "inventory": 100},
        {"id": "tea", "title": "Tea", "category": "Pantry > Tea", "price": gbp(1000), "cost": gbp(300), "inventory": 100},
        {"id": "bare", "title": "No cost known", "category": "Pantry > Tea", "price": gbp(2000), "inventory": 100}
    ]);
    app.put_products(&products).await;
    app
}

fn applied(eval: &Value) -> Vec<(String, i64)> {
    eval["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["amount"]["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn rejected(eval: &Value, id: &str) -> Option<String> {
    eval["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["reason"].as_str().unwrap().to_owned())
}

/// A purchase by `customer`, `days_ago`.
async fn order(app: &TestApp, customer: &str, id: &str, days_ago: i64) {
    let now = vitrine::recommend::model::unix_now();
    let r = app
        .post_json(
            "/v1/events",
            &json!({"event_id": format!("{customer}-{id}"), "type": "purchase", "customer_id": customer,
                    "product_id": "tea", "order_id": id, "price": gbp(1000),
                    "timestamp": now - days_ago * DAY}),
        )
        .await;
    assert_eq!(r.status(), 202);
}

/// Sets a customer's account attributes, as a platform's customer webhook or a customer
/// import would.
async fn attributes(app: &TestApp, customer: &str, tier: Option<&str>, company: Option<&str>) {
    let key = app
        .state
        .hasher
        .key(&VisitorKey::Customer(VisitorId::parse(customer).unwrap()));
    app.state
        .store
        .apply(
            &key,
            &[ProfileOp::Attributes {
                id: 7,
                at: vitrine::recommend::model::unix_now(),
                segments: None,
                loyalty_tier: tier.map(str::to_owned),
                company_id: company.map(str::to_owned),
            }],
        )
        .await
        .unwrap();
}

fn first_order_rules() -> Value {
    let first = json!({"or": [{"eq": ["customer.orders_count", 0]},
                              {"not": {"exists": "customer.orders_count"}}]});
    json!({
        "shipping": [{"id": "standard", "amount": gbp(499)}],
        "guardrails": {"min_margin_bps": 1000},
        "promotions": [
            {"id": "first-order", "title": "10% off your first order", "class": "order",
             "eligibility": first, "condition": {"gte": ["cart.subtotal", gbp(3000)]},
             "value": {"percent_bps": 1000}},
            {"id": "first-order-shipping", "title": "Free delivery on your first order",
             "class": "shipping", "eligibility": first,
             "condition": {"gte": ["cart.subtotal", gbp(3000)]}, "value": {"free_shipping": true}}
        ]
    })
}

#[tokio::test]
async fn a_first_order_of_30_pounds_gets_10_percent_off_and_free_shipping() {
    let app = shop().await;
    let version = app.publish_ruleset(&first_order_rules()).await;

    // 2 x 15.00 = 30.00: both apply; the order discount is split over the lines exactly.
    let e = app
        .evaluate_cart(
            json!({"session_id": "new", "cart": cart(&[("mug", 1), ("tea", 1), ("tea", 1)])}),
        )
        .await;
    assert_eq!(e["ruleset_version"], version.as_str());
    assert_eq!(e["subtotal"], gbp(3500));
    assert_eq!(
        applied(&e),
        vec![
            ("first-order".to_owned(), 350),
            ("first-order-shipping".to_owned(), 499)
        ]
    );
    let parts: i64 = e["applied"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"]["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(parts, 350);
    assert_eq!(
        e["shipping"],
        json!({"amount": gbp(499), "discount": gbp(499), "total": gbp(0)})
    );
    assert_eq!(e["total"], gbp(3500 - 350));

    // Under 30.00: neither, and each says why.
    let e = app
        .evaluate_cart(json!({"session_id": "new", "cart": cart(&[("mug", 1)])}))
        .await;
    assert!(applied(&e).is_empty());
    assert_eq!(
        rejected(&e, "first-order").as_deref(),
        Some("condition_not_met")
    );
    assert_eq!(e["total"], gbp(1500 + 499));

    // A returning customer is not eligible.
    order(&app, "regular", "o1", 3).await;
    let e = app
        .evaluate_cart(json!({"customer_id": "regular", "cart": cart(&[("pan", 1)])}))
        .await;
    assert!(applied(&e).is_empty());
    assert_eq!(rejected(&e, "first-order").as_deref(), Some("not_eligible"));
}

#[tokio::test]
async fn a_customer_whose_last_order_is_90_days_old_is_won_back() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
                "promotions": [{"id": "win-back", "title": "We miss you: 10% off", "class": "order",
                                "eligibility": {"gte": ["customer.days_since_last_order", 90]},
                                "value": {"percent_bps": 1000}}]}))
        .await;
    order(&app, "lapsed", "old", 120).await;
    order(&app, "active", "recent", 10).await;
    let e = app
        .evaluate_cart(json!({"customer_id": "lapsed", "cart": cart(&[("pan", 1)])}))
        .await;
    assert_eq!(applied(&e), vec![("win-back".to_owned(), 400)]);
    let e = app
        .evaluate_cart(json!({"customer_id": "active", "cart": cart(&[("pan", 1)])}))
        .await;
    assert_eq!(rejected(&e, "win-back").as_deref(), Some("not_eligible"));
    // A new visitor has no last order: unknown, so not eligible (not even under `not`).
    let e = app
        .evaluate_cart(json!({"session_id": "anon", "cart": cart(&[("pan", 1)])}))
        .await;
    assert_eq!(rejected(&e, "win-back").as_deref(), Some("not_eligible"));
}

fn offer_ids(answer: &Value) -> Vec<String> {
    answer["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `session.first_visit` holds through a visitor's first visit, events and all, and not
/// on a later one (a visit ends after 30 minutes without activity).
#[tokio::test]
async fn a_welcome_offer_lasts_the_first_visit_and_not_beyond() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
                "promotions": [{"id": "welcome", "title": "Welcome: 10% off", "description": "Your first order",
                                "class": "order", "trigger": "offer", "codes": ["HELLO10"],
                                "eligibility": {"eq": ["session.first_visit", true]},
                                "value": {"percent_bps": 1000}}]}))
        .await;
    let now = vitrine::domain::time::unix_now();
    let views = |session: &str, ago: &[i64]| {
        Value::Array(
            ago.iter()
                .enumerate()
                .map(|(n, a)| {
                    json!({"event_id": format!("{session}-{n}"), "type": "view", "session_id": session,
                           "product_id": "mug", "timestamp": now - a})
                })
                .collect(),
        )
    };
    let offered = |session: &'static str| {
        let app = &app;
        async move {
            let page = format!("/v1/recommend?session_id={session}&placement=cart&cart=pan:1");
            offer_ids(&app.get_json(&page).await).contains(&"welcome".to_owned())
        }
    };
    assert!(offered("nothing-yet").await, "a visitor never seen");
    // The storefront sends the page view before it asks for recommendations.
    app.accept_events(&views("viewed-first", &[0])).await;
    assert!(
        offered("viewed-first").await,
        "the page view does not end the first visit"
    );
    app.accept_events(&views("one-long-visit", &[50 * 60, 25 * 60, 60]))
        .await;
    assert!(
        offered("one-long-visit").await,
        "no gap of 30 minutes: one visit"
    );
    app.accept_events(&views("came-back", &[2 * 3600, 60]))
        .await;
    assert!(!offered("came-back").await, "a second visit");
    app.accept_events(&views("back-now", &[2 * 3600])).await;
    assert!(!offered("back-now").await, "returning after two hours");
}

#[tokio::test]
async fn an_exit_intent_offer_is_made_only_when_the_request_says_so() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
                "promotions": [{"id": "stay", "title": "Wait! 15% off", "description": "Today only",
                                "class": "order", "trigger": "offer", "codes": ["STAY15"],
                                "eligibility": {"eq": ["session.exit_intent", true]},
                                "value": {"percent_bps": 1500}}]}))
        .await;
    let page = "/v1/recommend?session_id=s1&placement=cart&cart=pan:1";
    let calm = app.get_json(page).await;
    assert!(offer_ids(&calm).is_empty(), "{calm}");
    let leaving = app.get_json(&format!("{page}&exit_intent=true")).await;
    assert_eq!(leaving["offers"][0]["id"], "stay");
    assert_eq!(leaving["offers"][0]["code"], "STAY15");
    assert_eq!(leaving["offers"][0]["reason"], "eligible");
    assert_eq!(leaving["offers"][0]["value"], gbp(600));
    assert!(
        leaving["ruleset_version"]
            .as_str()
            .unwrap()
            .starts_with("rs-")
    );

    // At checkout the code works only with the exit intent; a code nobody has is named.
    let body = |exit: bool| {
        json!({"session_id": "s1", "cart": cart(&[("pan", 1)]), "codes": ["stay15", "NOPE"],
               "context": {"exit_intent": exit}})
    };
    let e = app.evaluate_cart(body(true)).await;
    assert_eq!(applied(&e), vec![("stay".to_owned(), 600)]);
    assert_eq!(e["applied"][0]["code"], "STAY15");
    assert_eq!(e["unknown_codes"], json!(["NOPE"]));
    let e = app.evaluate_cart(body(false)).await;
    assert_eq!(rejected(&e, "stay").as_deref(), Some("not_eligible"));
}

#[tokio::test]
async fn a_campaign_applies_inside_its_window_only() {
    let app = shop().await;
    let now = vitrine::recommend::model::unix_now();
    let at = vitrine::domain::time::format_rfc3339;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
    "promotions": [
        {"id": "running", "title": "Spring sale", "class": "item",
         "window": {"from": at(now - DAY), "until": at(now + DAY)},
         "value": {"percent_bps": 2000}},
        {"id": "over", "title": "Winter sale", "class": "item",
         "window": {"from": at(now - 10 * DAY), "until": at(now - DAY)},
         "value": {"percent_bps": 3000}},
        {"id": "later", "title": "Summer sale", "class": "item",
         "window": {"from": at(now + DAY)}, "value": {"percent_bps": 3000}}
    ]}))
    .await;
    let e = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("mug", 2)])}))
        .await;
    assert_eq!(applied(&e), vec![("running".to_owned(), 600)]);
    assert_eq!(rejected(&e, "over").as_deref(), Some("out_of_window"));
    assert_eq!(rejected(&e, "later").as_deref(), Some("out_of_window"));
    // The running one is offered with its end.
    let home = app
        .get_json("/v1/recommend?session_id=s&placement=home")
        .await;
    assert_eq!(offer_ids(&home), vec!["running"]);
    assert_eq!(home["offers"][0]["expires_at"], at(now + DAY).as_str());
}

#[tokio::test]
async fn volume_tiers_price_by_quantity() {
    let app = shop().await;
    app.publish_ruleset(&json!({"price_lists": [{"id": "volume", "kind": "base", "currency": "GBP",
                                 "entries": [{"product_id": "tea", "amount": 1000,
                                              "tiers": [{"min_qty": 10, "amount": 900}, {"min_qty": 50, "amount": 800}]}]}]}),
    )
    .await;
    for (qty, unit) in [(1, 1000), (9, 1000), (10, 900), (49, 900), (50, 800)] {
        let e = app
            .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("tea", qty)])}))
            .await;
        assert_eq!(e["lines"][0]["unit_price"], gbp(unit), "{qty}");
        assert_eq!(e["lines"][0]["subtotal"], gbp(unit * i64::from(qty)));
        assert_eq!(e["lines"][0]["price_list"], "volume");
    }
}

#[tokio::test]
async fn one_companys_buyers_get_its_contract_price() {
    let app = shop().await;
    app.publish_ruleset(&json!({"price_lists": [
        {"id": "acme-contract", "kind": "contract", "currency": "GBP",
         "scope": {"eq": ["customer.company_id", "acme"]},
         "entries": [{"product_id": "pan", "amount": 3200}]},
        {"id": "spring-sale", "kind": "sale", "currency": "GBP",
         "entries": [{"product_id": "pan", "amount": 3600}]}
    ]}))
    .await;
    attributes(&app, "buyer-at-acme", None, Some("acme")).await;
    attributes(&app, "buyer-elsewhere", None, Some("globex")).await;
    let price = |who: &'static str| {
        let app = &app;
        async move {
            let e = app
                .evaluate_cart(json!({"customer_id": who, "cart": cart(&[("pan", 1)])}))
                .await;
            (
                e["lines"][0]["unit_price"]["amount"].as_i64().unwrap(),
                e["lines"][0]["compare_at_price"].clone(),
            )
        }
    };
    // The contract wins; no compare-at: the list price is not one they could pay.
    assert_eq!(price("buyer-at-acme").await, (3200, Value::Null));
    // Everyone else gets the sale, with the regular price as compare-at.
    assert_eq!(price("buyer-elsewhere").await, (3600, gbp(4000)));

    // Recommendations carry the same personalized price.
    let answer = app
        .get_json("/v1/recommend?customer_id=buyer-at-acme&placement=category&candidates=pan,mug")
        .await;
    let pan = answer["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["product_id"] == "pan")
        .unwrap();
    assert_eq!(pan["price"], gbp(3200));
}

#[tokio::test]
async fn loyalty_tiers_get_their_discount_on_every_price() {
    let app = shop().await;
    app.publish_ruleset(
        &json!({"price_lists": [{"id": "gold-5", "kind": "adjustment", "currency": "GBP",
                                 "scope": {"eq": ["customer.loyalty_tier", "gold"]},
                                 "adjust": {"percent_off_bps": 500}}]}),
    )
    .await;
    attributes(&app, "goldie", Some("gold"), None).await;
    attributes(&app, "silvia", Some("silver"), None).await;
    let e = app
        .evaluate_cart(json!({"customer_id": "goldie", "cart": cart(&[("mug", 1), ("pan", 2)])}))
        .await;
    assert_eq!(e["lines"][0]["unit_price"], gbp(1425));
    assert_eq!(e["lines"][1]["unit_price"], gbp(3800));
    assert_eq!(e["subtotal"], gbp(1425 + 7600));
    let e = app
        .evaluate_cart(json!({"customer_id": "silvia", "cart": cart(&[("mug", 1)])}))
        .await;
    assert_eq!(e["lines"][0]["unit_price"], gbp(1500));
    let answer = app
        .get_json("/v1/recommend?customer_id=goldie&placement=category&candidates=mug")
        .await;
    assert_eq!(answer["recommendations"][0]["price"], gbp(1425));
}

#[tokio::test]
async fn a_promotion_that_would_break_the_margin_floor_is_clamped() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 3000},
                "promotions": [{"id": "clearance", "title": "60% off", "class": "item",
                                "value": {"percent_bps": 6000}}]}))
        .await;
    // Pan: 40.00, cost 20.00, floor 26.00. 60% would be 24.00 off; 14.00 is allowed.
    // "bare" has no cost and no minimum price: never discounted.
    let e = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("pan", 1), ("bare", 1)])}))
        .await;
    assert_eq!(applied(&e), vec![("clearance".to_owned(), 1400)]);
    assert_eq!(e["applied"][0]["clamped"], gbp(1000 + 1200));
    assert_eq!(e["lines"][0]["total"], gbp(2600));
    assert_eq!(e["lines"][1]["total"], gbp(2000));
    // Only the bare product: nothing can be taken off, and that is the reason given.
    let e = app
        .evaluate_cart(json!({"session_id": "s", "cart": cart(&[("bare", 1)])}))
        .await;
    assert_eq!(rejected(&e, "clearance").as_deref(), Some("clamped"));
}

#[tokio::test]
async fn an_invalid_ruleset_is_refused_with_every_error_and_the_live_one_stays() {
    let app = shop().await;
    let good = app.publish_ruleset(&first_order_rules()).await;
    let bad = json!({"promotions": [
        {"id": "a", "title": "A", "class": "order", "value": {"percent_bps": 20000}},
        {"id": "b", "title": "B", "class": "item", "eligibility": {"eq": ["customer.tier", "gold"]},
         "value": {"percent_bps": 100}}
    ]});
    let r = app
        .client
        .put(app.url("/admin/v1/ruleset"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_ruleset");
    let paths: Vec<&str> = body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "$.promotions[0].value.percent_bps",
            "$.promotions[1].eligibility.eq[0]"
        ]
    );
    // The dry run says the same without publishing; the live version is unchanged.
    let dry: Value = app
        .post_json("/admin/v1/ruleset/validate", &bad)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dry["valid"], false);
    assert_eq!(dry["errors"].as_array().unwrap().len(), 2);
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_eq!(live["version"], good.as_str());

    // Versions and rollback.
    let second = app.publish_ruleset(&json!({"promotions": []})).await;
    let versions = app.get_json("/admin/v1/ruleset/versions").await;
    assert_eq!(versions["live"], second.as_str());
    assert_eq!(versions["versions"][0]["version"], second.as_str());
    assert_eq!(versions["versions"][1]["version"], good.as_str());
    let back: Value = app
        .post_json("/admin/v1/ruleset/rollback", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["version"], good.as_str());
    let r = app
        .post_json("/admin/v1/ruleset/rollback", &json!({"version": "rs-nope"}))
        .await;
    assert_eq!(error_code(r).await, (404, "ruleset_not_found".to_owned()));
}

fn picks(answer: &Value) -> Vec<String> {
    answer["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["product_id"].as_str().unwrap().to_owned())
        .collect()
}

fn effects(answer: &Value) -> Vec<(String, String)> {
    answer["merchandising"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["rule"].as_str().unwrap().to_owned(),
                e["effect"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn merchandising_rules_shape_the_answer_and_each_effect_is_reported() {
    let app = shop().await;
    let page = "/v1/recommend?session_id=m&placement=category&candidates=mug,pan,tea,bare";
    let before = app.get_json(page).await;
    assert_eq!(picks(&before).len(), 4);
    assert!(effects(&before).is_empty());
    app.publish_ruleset(&json!({"merchandising": [
            {"id": "no-tea-here", "placements": ["category"], "action": {"hide": {"eq": ["product.id", "tea"]}}},
            {"id": "pantry-first", "action": {"boost": {"where": {"in": ["product.category", ["pantry"]]}, "by_bps": 100000}}},
            {"id": "cheap-last", "action": {"bury": {"where": {"lt": ["product.price", gbp(1600)]}, "by_bps": 9000}}},
            {"id": "hero-pan", "priority": 10, "action": {"pin": {"product_id": "pan", "position": 1}}},
            {"id": "only-home", "placements": ["home"], "action": {"hide": {"eq": ["product.id", "mug"]}}}
        ]}),
    )
    .await;
    let after = app.get_json(page).await;
    // Tea hidden; pan pinned first; the pantry product boosted above the buried mug.
    assert_eq!(picks(&after), vec!["pan", "bare", "mug"], "{after}");
    let got = effects(&after);
    for want in [
        ("no-tea-here", "hidden"),
        ("pantry-first", "boosted"),
        ("cheap-last", "buried"),
        ("hero-pan", "pinned"),
    ] {
        assert!(
            got.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {got:?}"
        );
    }
    assert!(!got.iter().any(|(r, _)| r == "only-home"));

    // A slot for the pantry's best at the top, and one product per category.
    app.publish_ruleset(&json!({"merchandising": [
            {"id": "pantry-slot", "action": {"slot": {"where": {"in": ["product.category", ["pantry"]]}, "position": 1}}},
            {"id": "one-each", "action": {"diversity": {"max_per_category": 1}}}
        ]}),
    )
    .await;
    let slotted = app.get_json(page).await;
    let ids = picks(&slotted);
    assert_eq!(ids.len(), 3, "{slotted}");
    assert!(ids[0] == "tea" || ids[0] == "bare", "{ids:?}");
    let got = effects(&slotted);
    assert!(
        got.contains(&("one-each".to_owned(), "capped".to_owned())),
        "{got:?}"
    );
    assert!(
        got.contains(&("pantry-slot".to_owned(), "slotted".to_owned())),
        "{got:?}"
    );

    // A filter that leaves nothing falls back to the baseline, filtered the same way.
    app.publish_ruleset(&json!({"merchandising": [
        {"id": "in-stock-pantry", "action": {"filter": {"in": ["product.category", ["pantry"]]}}}
    ]}))
    .await;
    let answer = app
        .get_json("/v1/recommend?session_id=m&placement=category&candidates=mug,pan")
        .await;
    assert!(
        effects(&answer).contains(&("in-stock-pantry".to_owned(), "fallback".to_owned())),
        "{answer}"
    );
    let snapshot = app.state.snapshot.load();
    assert!(!picks(&answer).is_empty());
    for id in picks(&answer) {
        let p = snapshot.catalog.lookup(&id).unwrap();
        let c = &snapshot.catalog.categories()[usize::from(snapshot.catalog.product(p).category)];
        assert!(c.handle.starts_with("pantry"), "{id} in {}", c.handle);
    }
}

fn banner_ids(answer: &Value) -> Vec<String> {
    answer["banners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn content_is_chosen_by_targeting_window_weight_and_frequency_cap() {
    let app = shop().await;
    let now = vitrine::recommend::model::unix_now();
    let at = vitrine::domain::time::format_rfc3339;
    let banner = |id: &str, extra: Value| {
        let mut b = json!({"id": id, "placements": ["home"], "title": id, "image_url": format!("https://img.example/{id}.jpg"),
                           "link_url": format!("https://shop.example/{id}")});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    app.publish_ruleset(&json!({"content": {
            "banners": [
                banner("uk-only", json!({"priority": 10, "when": {"eq": ["session.country", "GB"]}})),
                banner("expired", json!({"priority": 20, "window": {"until": at(now - 60)}})),
                banner("capped", json!({"priority": 5, "frequency_cap": {"max_impressions": 2}})),
                banner("a", json!({"weight": 3})),
                banner("b", json!({"weight": 1}))
            ],
            "collections": [{"id": "gifts", "placements": ["home"], "title": "Gifts", "product_ids": ["mug", "tea", "gone"]}],
            "modules": [
                {"id": "returning", "placements": ["home"], "priority": 1, "when": {"gte": ["customer.orders_count", 1]},
                 "order": ["recommendations", "banners"]},
                {"id": "default", "placements": ["home"], "order": ["banners", "collections", "recommendations"]}
            ]
        }}),
    )
    .await;
    let home =
        |who: &str, extra: &str| format!("/v1/recommend?session_id={who}&placement=home{extra}");
    let uk = app.get_json(&home("v1", "&country=GB")).await;
    let ids = banner_ids(&uk);
    assert_eq!(&ids[..2], ["uk-only", "capped"], "{ids:?}");
    assert!(!ids.contains(&"expired".to_owned()));
    assert_eq!(
        uk["collections"],
        json!([{"id": "gifts", "title": "Gifts", "product_ids": ["mug", "tea"]}])
    );
    assert_eq!(
        uk["modules"],
        json!(["banners", "collections", "recommendations"])
    );
    let fr = app.get_json(&home("v1", "&country=FR")).await;
    assert_eq!(banner_ids(&fr)[0], "capped");

    // The weighted choice is the same on every view for one visitor, and splits
    // visitors about 3:1.
    let first_of = |v: &Value| {
        banner_ids(v)
            .into_iter()
            .find(|b| b == "a" || b == "b")
            .unwrap()
    };
    assert_eq!(first_of(&uk), first_of(&fr));
    let mut a_first = 0;
    for i in 0..200 {
        let v = app.get_json(&home(&format!("w{i}"), "")).await;
        if first_of(&v) == "a" {
            a_first += 1;
        }
    }
    assert!((120..=180).contains(&a_first), "{a_first} of 200");

    // Two impressions of the capped banner and it is no longer shown to that visitor.
    for n in 0..2 {
        let r = app
            .post_json(
                "/v1/events",
                &json!({"event_id": format!("imp-{n}"), "type": "impression", "session_id": "v1", "content_id": "capped"}),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    let after = app.get_json(&home("v1", "&country=FR")).await;
    assert!(
        !banner_ids(&after).contains(&"capped".to_owned()),
        "{after}"
    );
    let other = app.get_json(&home("v2", "&country=FR")).await;
    assert!(banner_ids(&other).contains(&"capped".to_owned()));
}

/// A ruleset whose every decision says which version it is: a price for the pan and an
/// offer named after the tag.
fn tagged(tag: i64) -> Value {
    json!({
        "price_lists": [{"id": format!("list-{tag}"), "kind": "base", "currency": "GBP",
                         "entries": [{"product_id": "pan", "amount": 3000 + tag}]}],
        "promotions": [{"id": format!("offer-{tag}"), "title": "Offer", "class": "order",
                        "value": {"percent_bps": 500}}]
    })
}

#[tokio::test]
async fn a_publish_reaches_every_replica_within_a_second_and_no_answer_mixes_versions() {
    let redis = common::redis::RedisServer::start();
    let replica = || {
        let mut s = settings();
        s.storage.backend = vitrine::config::StorageBackend::Redis;
        s.redis.url = redis.url();
        TestApp::spawn(s)
    };
    let a = replica().await;
    let b = replica().await;
    let products = json!([{"id": "pan", "title": "Pan", "category": "Kitchen > Pans", "price": gbp(4000),
                           "cost": gbp(2000), "inventory": 100}]);
    let r = a
        .client
        .put(a.url("/admin/v1/products"))
        .json(&products)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    common::eventually("b to follow the catalog", || async {
        b.get("/admin/v1/products/pan").await.status() == 200
    })
    .await;
    let v1 = a.publish_ruleset(&tagged(1)).await;

    // Readers on b for the whole test, checking each answer against its own version.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let reader = {
        let (client, url, stop) = (b.client.clone(), b.url("/v1/cart/evaluate"), stop.clone());
        let seen = seen.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let e: Value = client
                    .post(&url)
                    .json(
                        &json!({"session_id": "r", "cart": [{"product_id": "pan", "quantity": 1}]}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let tag = e["lines"][0]["unit_price"]["amount"].as_i64().unwrap() - 3000;
                assert!(tag == 1 || tag == 2 || tag == 1000, "{e}");
                if tag != 1000 {
                    assert_eq!(e["lines"][0]["price_list"], format!("list-{tag}"), "{e}");
                    assert_eq!(e["applied"][0]["id"], format!("offer-{tag}"), "{e}");
                }
                seen.lock()
                    .unwrap()
                    .insert(e["ruleset_version"].as_str().unwrap().to_owned());
            }
        })
    };
    // b takes v1, then v2 within a second of its publish on a.
    let mut v2 = String::new();
    for (version, tag) in [(v1.clone(), 1), (String::new(), 2)] {
        let version = if tag == 1 {
            version
        } else {
            a.publish_ruleset(&tagged(tag)).await
        };
        common::eventually_within(
            &format!("replica b on {version} a second after its publish"),
            std::time::Duration::from_secs(1),
            || async { b.get_json("/admin/v1/ruleset").await["version"] == version.as_str() },
        )
        .await;
        v2 = version;
    }
    // The readers' answers reach the second version too, each consistent with its own.
    common::eventually(
        "the readers to be answered with the second version",
        || async { seen.lock().unwrap().contains(&v2) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.await.unwrap();
    assert!(seen.lock().unwrap().len() >= 2, "{seen:?}");
}

#[tokio::test]
async fn budgets_count_down_with_committed_orders_once_per_order() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
                "promotions": [{"id": "launch", "title": "Launch: 20% off", "class": "order",
                                "value": {"percent_bps": 2000},
                                "budget": {"max_uses": 2, "per_customer_uses": 1}}]}))
        .await;
    let checkout = |who: &str, order: Option<&str>| {
        let mut body = json!({"customer_id": who, "cart": cart(&[("pan", 1)])});
        if let Some(o) = order {
            body["order_id"] = json!(o);
        }
        body
    };
    let home = app
        .get_json("/v1/recommend?session_id=new&placement=home")
        .await;
    assert_eq!(offer_ids(&home), vec!["launch"]);
    let e = app.evaluate_cart(checkout("ann", Some("o-1"))).await;
    assert_eq!(applied(&e), vec![("launch".to_owned(), 800)]);
    assert_eq!(e["commit"], "recorded");
    // Ann has used her one; committing the same order again counts nothing.
    let e = app.evaluate_cart(checkout("ann", None)).await;
    assert_eq!(rejected(&e, "launch").as_deref(), Some("budget_exhausted"));
    let e = app.evaluate_cart(checkout("ann", Some("o-1"))).await;
    assert_eq!(e["commit"], "already_recorded");
    // Bob takes the second and last use; then nobody gets it.
    let e = app.evaluate_cart(checkout("bob", Some("o-2"))).await;
    assert_eq!(applied(&e), vec![("launch".to_owned(), 800)]);
    let e = app.evaluate_cart(checkout("cid", Some("o-3"))).await;
    assert!(applied(&e).is_empty(), "{e}");
    assert_eq!(rejected(&e, "launch").as_deref(), Some("budget_exhausted"));
    assert_eq!(e["commit"], "recorded");
    // Offers follow: an exhausted budget is no longer offered (within rules.sync_ms).
    common::eventually_within(
        "the exhausted budget no longer offered",
        std::time::Duration::from_secs(2),
        || async { offer_ids(&app.recommend("session_id=new&placement=home").await).is_empty() },
    )
    .await;
}

/// "Once per customer" holds under concurrent checkouts: the customer's uses are counted
/// in the store in the same atomic step as the budget, not read from the profile.
#[tokio::test]
async fn simultaneous_checkouts_of_one_customer_use_a_once_per_customer_promotion_once() {
    let app = shop().await;
    app.publish_ruleset(&json!({"guardrails": {"min_margin_bps": 1000},
                "promotions": [{"id": "welcome", "title": "Welcome: 20% off", "class": "order",
                                "value": {"percent_bps": 2000},
                                "budget": {"per_customer_uses": 1}}]}))
        .await;
    let checkouts: Vec<_> = (0..8)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/v1/cart/evaluate");
            tokio::spawn(async move {
                let body = json!({"customer_id": "dana", "cart": cart(&[("pan", 1)]),
                                  "order_id": format!("dana-{i}")});
                let r = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut discounted = 0;
    for c in checkouts {
        let e = c.await.unwrap();
        assert_eq!(e["commit"], "recorded", "{e}");
        if applied(&e) == vec![("welcome".to_owned(), 800)] {
            discounted += 1;
        } else {
            assert_eq!(
                rejected(&e, "welcome").as_deref(),
                Some("budget_exhausted"),
                "{e}"
            );
        }
    }
    assert_eq!(discounted, 1, "one of eight simultaneous checkouts gets it");
}
