//! The console's changes through HTTP: overrides made from forms (published, logged with
//! who made them, taken back to the same version), drafts validated at their paths and
//! published only over the version they started from, diffs and rollbacks, previews of a
//! B2B first-order visitor under the live ruleset and a draft, a product's placements,
//! and experiments' results drawn with their intervals, started, stopped and rolled out.

use crate::common;

use super::console::{KEY, csrf, get, keyed_app, no_redirects, sign_in};
use common::{TestApp, settings};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};

/// A form post with the session cookie.
async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    session: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(app.url(path))
        .header(COOKIE, format!("vitrine_console={session}"))
        .form(fields)
        .send()
        .await
        .unwrap()
}

async fn admin_json(app: &TestApp, path: &str) -> Value {
    app.client
        .get(app.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The preview page for these form fields, by GET.
async fn preview_get(app: &TestApp, fields: &[(&str, &str)]) -> reqwest::Response {
    let query = serde_urlencoded::to_string(fields).unwrap();
    app.get(&format!("/console/preview?{query}")).await
}

async fn html(r: reqwest::Response) -> String {
    r.text().await.unwrap()
}

#[tokio::test]
async fn an_override_made_in_the_console_is_published_logged_and_taken_back() {
    let app = keyed_app().await;
    let client = no_redirects();
    let session = sign_in(&app, &client).await;
    let page = html(get(&app, &client, "/console/overrides", &session).await).await;
    let token = csrf(&page);
    let before = admin_json(&app, "/admin/v1/ruleset").await["version"].clone();

    // Without the session's token: refused, nothing published.
    let forged = post(
        &app,
        &client,
        "/console/overrides",
        &session,
        &[
            ("csrf", "forged"),
            ("op", "block"),
            ("a", "p000001"),
            ("b", "p000002"),
        ],
    )
    .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(
        admin_json(&app, "/admin/v1/ruleset").await["version"],
        before
    );
    // A product that is not in the catalog: refused, nothing published.
    let typo = post(
        &app,
        &client,
        "/console/overrides",
        &session,
        &[
            ("csrf", &token),
            ("op", "block"),
            ("a", "p000001"),
            ("b", "p9999999"),
        ],
    )
    .await;
    assert_eq!(typo.status(), 422);
    assert!(html(typo).await.contains("no product"));

    let blocked = post(
        &app,
        &client,
        "/console/overrides",
        &session,
        &[
            ("csrf", &token),
            ("op", "block"),
            ("a", "p000001"),
            ("b", "p000002"),
            ("note", "not a pairing"),
            ("back", "/console/review?q=p000001"),
        ],
    )
    .await;
    assert_eq!(blocked.status(), 303);
    assert_eq!(blocked.headers()[LOCATION], "/console/review?q=p000001");
    let live = admin_json(&app, "/admin/v1/ruleset").await;
    assert_eq!(
        live["ruleset"]["overrides"]["blocked_pairs"],
        json!([{"a": "p000001", "b": "p000002", "note": "not a pairing"}])
    );
    let answer = admin_json(
        &app,
        "/v1/recommend?session_id=s&placement=product&product_id=p000001",
    )
    .await;
    assert_eq!(answer["ruleset_version"], live["version"]);
    assert!(!common::picks(&answer).iter().any(|(p, _)| p == "p000002"));
    // Blocking it again (either way round) changes nothing.
    let again = post(
        &app,
        &client,
        "/console/overrides",
        &session,
        &[
            ("csrf", &token),
            ("op", "block"),
            ("a", "p000002"),
            ("b", "p000001"),
        ],
    )
    .await;
    assert_eq!(again.status(), 409);

    // The change log says who, what, and the entry after.
    let log = admin_json(&app, "/admin/v1/ruleset/changes").await;
    let last = &log["changes"][0];
    assert_eq!(last["who"], "ops");
    assert_eq!(last["what"], "blocked p000001 with p000002");
    assert_eq!(
        last["from_version"].as_str().unwrap_or("none"),
        before.as_str().unwrap()
    );
    assert_eq!(last["to_version"], live["version"]);
    assert_eq!(last["after"]["b"], "p000002");
    let page = html(get(&app, &client, "/console/overrides", &session).await).await;
    assert!(page.contains("id=\"blocked\"") && page.contains("not a pairing"));
    assert!(page.contains("blocked p000001 with p000002"));

    // Taken back: the document, and so the version, is the one before.
    let unblocked = post(
        &app,
        &client,
        "/console/overrides",
        &session,
        &[
            ("csrf", &token),
            ("op", "unblock"),
            ("a", "p000002"),
            ("b", "p000001"),
        ],
    )
    .await;
    assert_eq!(unblocked.status(), 303);
    let after = admin_json(&app, "/admin/v1/ruleset").await;
    assert!(after["ruleset"].get("overrides").is_none(), "{after}");
    let log = admin_json(&app, "/admin/v1/ruleset/changes").await;
    assert_eq!(log["changes"][0]["what"], "unblocked p000002 with p000001");
    assert_eq!(log["changes"][0]["before"]["note"], "not a pairing");

    // Boost, pin and exclude forms publish too, and the review page shows the pin.
    for fields in [
        vec![
            ("op", "pin"),
            ("a", "p000001"),
            ("b", "p000009"),
            ("position", "2"),
        ],
        vec![("op", "exclude"), ("product_id", "p000010")],
        vec![
            ("op", "boost"),
            ("placement", "home"),
            ("kind", "tag"),
            ("target", "sale"),
            ("percent", "30"),
        ],
        vec![
            ("op", "bury"),
            ("placement", "home"),
            ("kind", "category"),
            ("target", "pantry"),
            ("percent", "40"),
        ],
    ] {
        let mut fields = fields;
        fields.push(("csrf", &token));
        let r = post(&app, &client, "/console/overrides", &session, &fields).await;
        assert_eq!(r.status(), 303, "{fields:?}: {}", html(r).await);
    }
    let o = &admin_json(&app, "/admin/v1/ruleset").await["ruleset"]["overrides"];
    assert_eq!(
        o["pinned_pairs"],
        json!([{"a": "p000001", "b": "p000009", "position": 2}])
    );
    assert_eq!(o["excluded_products"], json!([{"product_id": "p000010"}]));
    assert_eq!(
        o["boosts"],
        json!([{"placement": "home", "tag": "sale", "by_bps": 3000}])
    );
    assert_eq!(
        o["buries"],
        json!([{"placement": "home", "category": "pantry", "by_bps": 4000}])
    );
    let answer = admin_json(
        &app,
        "/v1/recommend?session_id=s&placement=product&product_id=p000001",
    )
    .await;
    assert_eq!(
        common::picks(&answer)[1],
        ("p000009".to_owned(), "pinned".to_owned())
    );
}

#[tokio::test]
async fn a_draft_with_an_error_shows_it_at_its_path_and_is_not_published() {
    let app = keyed_app().await;
    let client = no_redirects();
    let session = sign_in(&app, &client).await;
    let page = html(get(&app, &client, "/console/rulesets/draft", &session).await).await;
    let token = csrf(&page);
    assert!(page.contains("name=\"base\" value=\"none\""), "{page}");
    let bad = json!({"promotions": [{"id": "x", "title": "X", "class": "order",
        "value": {"percent_bps": 20000}}]})
    .to_string();
    for action in ["validate", "publish"] {
        let r = post(
            &app,
            &client,
            "/console/rulesets/draft",
            &session,
            &[
                ("csrf", &token),
                ("base", "none"),
                ("draft", &bad),
                ("action", action),
            ],
        )
        .await;
        assert_eq!(r.status(), 422);
        let body = html(r).await;
        assert!(
            body.contains("<code class=\"path\">$.promotions[0].value.percent_bps</code>"),
            "{body}"
        );
    }
    assert_eq!(
        admin_json(&app, "/admin/v1/ruleset").await["version"],
        "none"
    );
    let not_json = post(
        &app,
        &client,
        "/console/rulesets/draft",
        &session,
        &[
            ("csrf", &token),
            ("base", "none"),
            ("draft", "{\"promotions\": ["),
            ("action", "validate"),
        ],
    )
    .await;
    assert_eq!(not_json.status(), 422);

    // A valid draft: validated, then published over the version it started from.
    let good = json!({"overrides": {"excluded_products": [{"product_id": "p000003"}]}}).to_string();
    let r = post(
        &app,
        &client,
        "/console/rulesets/draft",
        &session,
        &[
            ("csrf", &token),
            ("base", "none"),
            ("draft", &good),
            ("action", "validate"),
        ],
    )
    .await;
    assert!(
        html(r)
            .await
            .contains("Valid: published, it would be version rs-")
    );
    let r = post(
        &app,
        &client,
        "/console/rulesets/draft",
        &session,
        &[
            ("csrf", &token),
            ("base", "none"),
            ("draft", &good),
            ("action", "publish"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let v1 = admin_json(&app, "/admin/v1/ruleset").await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r.headers()[LOCATION].to_str().unwrap().contains(&v1));
    // A second draft started from "none" too is stale now: refused, v1 stays.
    let other =
        json!({"overrides": {"excluded_products": [{"product_id": "p000004"}]}}).to_string();
    let stale = post(
        &app,
        &client,
        "/console/rulesets/draft",
        &session,
        &[
            ("csrf", &token),
            ("base", "none"),
            ("draft", &other),
            ("action", "publish"),
        ],
    )
    .await;
    assert_eq!(stale.status(), 409);
    assert!(html(stale).await.contains("changed meanwhile"));
    assert_eq!(
        admin_json(&app, "/admin/v1/ruleset").await["version"],
        v1.as_str()
    );
    let r = post(
        &app,
        &client,
        "/console/rulesets/draft",
        &session,
        &[
            ("csrf", &token),
            ("base", &v1),
            ("draft", &other),
            ("action", "publish"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let v2 = admin_json(&app, "/admin/v1/ruleset").await["version"]
        .as_str()
        .unwrap()
        .to_owned();

    // The versions page: both, the live one marked, and the diff between them.
    let page = html(get(&app, &client, "/console/rulesets", &session).await).await;
    assert!(page.contains(&v1) && page.contains(&v2));
    let line_with = |kind: &str, text: &str| {
        page.lines()
            .any(|l| l.contains(&format!("<span class=\"{kind}\">")) && l.contains(text))
    };
    assert!(
        line_with("del", "p000003") && line_with("add", "p000004"),
        "{page}"
    );
    // Rolled back from the page: v1 is live again, and the log says who.
    let r = post(
        &app,
        &client,
        "/console/rulesets/rollback",
        &session,
        &[("csrf", &token), ("version", &v1)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        admin_json(&app, "/admin/v1/ruleset").await["version"],
        v1.as_str()
    );
    let log = admin_json(&app, "/admin/v1/ruleset/changes").await;
    assert_eq!(
        log["changes"][0]["what"],
        format!("rolled back to {v1}").as_str()
    );
    assert_eq!(log["changes"][0]["who"], "ops");
    // An unknown version: refused.
    let r = post(
        &app,
        &client,
        "/console/rulesets/rollback",
        &session,
        &[("csrf", &token), ("version", "rs-000000000000")],
    )
    .await;
    assert_eq!(r.status(), 404);
}

/// A contract price for company acme on every demo product, and a first-order offer.
pub fn b2b_first_order_rules(products: usize) -> Value {
    let entries: Vec<Value> = (1..=products)
        .map(|n| json!({"product_id": format!("p{n:06}"), "amount": 1999}))
        .collect();
    let first = json!({"or": [{"eq": ["customer.orders_count", 0]},
                              {"not": {"exists": "customer.orders_count"}}]});
    json!({
        "price_lists": [{"id": "acme-contract", "kind": "contract", "currency": "GBP",
                         "scope": {"eq": ["customer.company_id", "acme"]}, "entries": entries}],
        "promotions": [{"id": "first-order", "title": "10% off your first order", "class": "order",
                        "eligibility": first, "value": {"percent_bps": 1000}}]
    })
}

#[tokio::test]
async fn the_preview_shows_a_b2b_first_order_visitor_under_the_live_ruleset_and_a_draft() {
    let app = TestApp::spawn(settings()).await;
    let live = app.publish_ruleset(&b2b_first_order_rules(2000)).await;
    let form = [
        ("who", "made_up"),
        ("company", "acme"),
        ("orders", "0"),
        ("placement", "product"),
        ("product_id", "p000001"),
    ];
    let page = html(preview_get(&app, &form).await).await;
    assert!(
        page.contains(&format!("ruleset <code>{live}</code>")),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"amount\">19.99 GBP</span>"),
        "{page}"
    );
    assert!(page.contains("price list acme-contract"));
    assert!(page.contains("<strong>10% off your first order</strong>"));
    // Someone else's company: catalog prices.
    let other = html(
        preview_get(
            &app,
            &[
                ("who", "made_up"),
                ("company", "globex"),
                ("placement", "home"),
            ],
        )
        .await,
    )
    .await;
    assert!(!other.contains("acme-contract"));

    // Beside a draft (validated, not published) without the offer.
    let token = csrf(&page);
    let mut draft = b2b_first_order_rules(2000);
    draft.as_object_mut().unwrap().remove("promotions");
    let draft = draft.to_string();
    let mut fields = form.to_vec();
    fields.extend([("csrf", token.as_str()), ("draft", draft.as_str())]);
    let r = app
        .client
        .post(app.url("/console/preview"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let page = html(r).await;
    let (live_side, draft_side) = page
        .split_once("<section class=\"draft\">")
        .unwrap_or_else(|| panic!("a draft side: {page}"));
    assert!(live_side.contains("10% off your first order"));
    assert!(!draft_side.contains("10% off your first order"));
    assert!(draft_side.contains("19.99 GBP"));
    assert_eq!(
        app.get_json("/admin/v1/ruleset").await["version"],
        live.as_str()
    );
    // A draft with an error shows it at its path, and no draft side.
    fields.pop();
    fields.push(("draft", "{\"shipping\": [{\"id\": \"s\"}]}"));
    let page = html(
        app.client
            .post(app.url("/console/preview"))
            .form(&fields)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        page.contains("<code class=\"path\">$.shipping[0]</code>"),
        "{page}"
    );
    assert!(!page.contains("<section class=\"draft\">"));

    // A customer, found through the keyed hash of their id: their stored profile.
    app.accept_events(
        &json!([{"event_id": "pv-1", "type": "view", "customer_id": "preview-c",
        "product_id": "p000005"}]),
    )
    .await;
    common::eventually("the profile", || async {
        app.export_profile("preview-c").await.is_some()
    })
    .await;
    let page = html(
        preview_get(
            &app,
            &[
                ("who", "customer"),
                ("customer_id", "preview-c"),
                ("placement", "home"),
            ],
        )
        .await,
    )
    .await;
    assert!(
        page.contains("As customer preview-c: their stored profile"),
        "{page}"
    );
    // Bad input is a 422 page, not an error.
    let r = preview_get(&app, &[("who", "made_up"), ("placement", "product")]).await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn a_products_page_shows_each_placement_with_reasons() {
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(
        &json!({"overrides": {"blocked_pairs": [{"a": "p000001", "b": "p000002"}]}}),
    )
    .await;
    let page = html(app.get("/console/product?id=p000001").await).await;
    for placement in ["product", "cart", "checkout", "post_purchase", "category"] {
        assert!(
            page.contains(&format!("data-placement=\"{placement}\"")),
            "{placement}"
        );
    }
    assert!(page.contains("class=\"reason\""));
    assert!(
        page.contains("override:block:p000001 hidden")
            || !page.contains("data-product=\"p000002\"")
    );
    assert_eq!(app.get("/console/product?id=nope").await.status(), 404);
}

#[tokio::test]
async fn an_experiments_results_are_drawn_and_it_is_stopped_started_and_rolled_out() {
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&json!({"experiments": [{
        "id": "home-recs", "status": "running", "placements": ["home"], "hash_attribute": "session_id",
        "seed": "home-recs", "variants": [
            {"id": "control", "weight": 0.5, "policy": {"baseline": "popularity"}},
            {"id": "personalized", "weight": 0.5, "policy": {}}]}]}))
    .await;
    // Visitors see the page, and some click: more in one arm.
    for n in 0..400 {
        let session = format!("x-{n}");
        let answer = app
            .recommend(&format!("session_id={session}&placement=home"))
            .await;
        let id = answer["decision_id"].as_str().unwrap().to_owned();
        let arm = answer["experiments"][0]["variant"]
            .as_str()
            .unwrap()
            .to_owned();
        let product = answer["recommendations"][0]["product_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut events = vec![json!({"event_id": format!("i-{n}"), "type": "impression",
            "session_id": session, "product_id": product, "decision_id": id})];
        if n % if arm == "control" { 5 } else { 3 } == 0 {
            events.push(json!({"event_id": format!("c-{n}"), "type": "click",
                "session_id": session, "product_id": product, "decision_id": id}));
        }
        app.accept_events(&Value::Array(events)).await;
    }
    common::eventually("the clicks counted", || async {
        let r = app
            .get_json("/admin/v1/experiments/home-recs/results")
            .await;
        r["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["clicks"].as_i64().unwrap())
            .sum::<i64>()
            > 90
    })
    .await;
    let page = html(app.get("/console/experiments/home-recs").await).await;
    assert!(page.contains("<svg class=\"ci\""), "{page}");
    assert!(
        page.contains("personalized vs control · click_through"),
        "{page}"
    );
    assert!(page.matches("<line class=\"interval\"").count() >= 1);
    assert!(page.contains("Sample ratio: exposed"));
    let list = html(app.get("/console/experiments").await).await;
    assert!(list.contains("href=\"/console/experiments/home-recs\""));

    let token = csrf(&page);
    let client = no_redirects();
    let act = |action: &'static str, variant: &'static str| {
        let (client, app, token) = (&client, &app, &token);
        async move {
            client
                .post(app.url("/console/experiments/home-recs"))
                .form(&[
                    ("csrf", token.as_str()),
                    ("action", action),
                    ("variant", variant),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(act("stop", "").await, 303);
    let status = |v: Value| v["ruleset"]["experiments"][0]["status"].clone();
    assert_eq!(status(app.get_json("/admin/v1/ruleset").await), "stopped");
    assert_eq!(act("stop", "").await, 409);
    assert_eq!(act("start", "").await, 303);
    assert_eq!(act("rollout", "personalized").await, 303);
    let e = &app.get_json("/admin/v1/ruleset").await["ruleset"]["experiments"][0];
    assert_eq!(e["variants"][1]["weight"], 1);
    assert_eq!(e["bucket_version"], 2);
    // Everyone is drawn again, into the rolled-out variant.
    for n in 0..20 {
        let answer = app
            .recommend(&format!("session_id=x-{n}&placement=home"))
            .await;
        assert_eq!(answer["experiments"][0]["variant"], "personalized");
    }
    assert_eq!(app.get("/console/experiments/nope").await.status(), 404);
}
