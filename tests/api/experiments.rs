//! Experiments through HTTP: definitions live in the ruleset, validated with the rest
//! of it (every problem at its JSON path, nothing published), published and read back.

use crate::common;

use common::{TestApp, settings};
use serde_json::{Value, json};

fn experiment() -> Value {
    json!({
        "id": "pdp-recs-v2", "status": "running", "placements": ["product", "cart"],
        "hash_attribute": "session_id", "seed": "pdp-recs-v2", "bucket_version": 1,
        "coverage": 0.5, "when": {"eq": ["session.country", "GB"]},
        "variants": [
            {"id": "control", "weight": 0.5, "policy": {"baseline": "popularity"}},
            {"id": "personalized", "weight": 0.5, "policy": {}},
            {"id": "more-history", "shadow": true, "policy": {"blend": {"history": 2.0}}}
        ],
        "namespace": {"id": "pdp", "range": [0.0, 0.5]}
    })
}

#[tokio::test]
async fn experiments_are_validated_with_the_ruleset_and_published_with_it() {
    let app = TestApp::spawn(settings()).await;
    let good = json!({
        "experiments": [experiment()],
        "holdout": {"coverage": 0.05, "seed": "global-holdout"}
    });
    let version = app.publish_ruleset(&good).await;
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_eq!(live["version"], version.as_str());

    let mut overlapping = experiment();
    overlapping["id"] = json!("pdp-other");
    overlapping["namespace"] = json!({"id": "pdp", "range": [0.25, 0.75]});
    let mut unweighted = experiment();
    unweighted["id"] = json!("home-v1");
    unweighted["namespace"] = Value::Null;
    unweighted["variants"][1]["weight"] = json!(0.75);
    unweighted["hash_attribute"] = json!("customer_id");
    let bad = json!({"experiments": [experiment(), overlapping, unweighted]});
    let paths: Vec<String> = app
        .refused_ruleset(&bad)
        .await
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    for expected in [
        "$.experiments[1].namespace.range",
        "$.experiments[2].variants",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:?}"
        );
    }
    // The dry run says the same without publishing.
    let dry: Value = app
        .post_json("/admin/v1/ruleset/validate", &bad)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dry["valid"], false, "{dry}");
    let dry_paths: Vec<&str> = dry["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(dry_paths, paths);
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_eq!(live["version"], version.as_str(), "nothing of it published");
}

fn pdp_test(holdout: f64) -> Value {
    json!({
        "experiments": [{
            "id": "pdp-test", "status": "running", "placements": ["product"],
            "hash_attribute": "session_id", "coverage": 1.0,
            "variants": [
                {"id": "control", "weight": 0.5, "policy": {"baseline": "popularity"}},
                {"id": "personalized", "weight": 0.5, "policy": {"blend": {"trending": 0.5}}}
            ]
        }],
        "holdout": {"coverage": holdout, "seed": "global-holdout"}
    })
}

/// A decision's record, once the writer has written it.
async fn recorded(app: &TestApp, id: &str) -> Value {
    let path = format!("/admin/v1/decisions/{id}");
    common::eventually("the decision recorded", || async {
        app.get(&path).await.status() == 200
    })
    .await;
    app.get_json(&path).await
}

/// The decision's record names `arms`, and a replay decides it identically.
async fn replays_with_arms(app: &TestApp, id: &str, arms: Value) {
    let record = recorded(app, id).await;
    assert_eq!(record["experiments"], arms);
    let replay: Value = app
        .post_json(&format!("/admin/v1/decisions/{id}/replay"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replay["identical"], true, "{replay}");
}

fn reasons(answer: &Value) -> Vec<String> {
    answer["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn answers_serve_and_name_the_arm_the_published_scheme_gives_and_replay_it() {
    use vitrine::domain::bucket;
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&pdp_test(0.0)).await;
    let mut arms = [0usize; 2];
    let mut a_control = None;
    let mut personalized_reasons = Vec::new();
    for i in 0..200 {
        let session = format!("s-{i}");
        let answer = app
            .get_json(&format!(
                "/v1/recommend?session_id={session}&placement=product&product_id=p000001"
            ))
            .await;
        let n = bucket::hash("pdp-test", &session, 2).unwrap();
        let expected = if n < 0.5 { "control" } else { "personalized" };
        assert_eq!(
            answer["experiments"],
            json!([{"id": "pdp-test", "variant": expected}]),
            "{session}"
        );
        if expected == "control" {
            arms[0] += 1;
            // The popularity baseline: the global trend only.
            assert!(reasons(&answer).iter().all(|r| r == "trending"), "{answer}");
            a_control.get_or_insert_with(|| answer["decision_id"].as_str().unwrap().to_owned());
        } else {
            arms[1] += 1;
            personalized_reasons.extend(reasons(&answer));
        }
        // Not on another placement.
        let home = app
            .get_json(&format!(
                "/v1/recommend?session_id={session}&placement=home"
            ))
            .await;
        assert!(home.get("experiments").is_none(), "{home}");
    }
    assert!(arms[0] > 70 && arms[1] > 70, "{arms:?}");
    assert!(
        personalized_reasons.iter().any(|r| r != "trending"),
        "the other arm is personalized: {personalized_reasons:?}"
    );
    // The record holds the arm, and a replay serves it again.
    let id = a_control.unwrap();
    replays_with_arms(&app, &id, json!([["pdp-test", "control"]])).await;

    // Held out: the baseline everywhere, named as such.
    app.publish_ruleset(&pdp_test(1.0)).await;
    let answer = app
        .get_json("/v1/recommend?session_id=s-1&placement=product&product_id=p000001")
        .await;
    assert_eq!(
        answer["experiments"],
        json!([{"id": "holdout", "variant": "baseline"}])
    );
    assert!(reasons(&answer).iter().all(|r| r == "trending"), "{answer}");
}

#[tokio::test]
async fn a_shadow_variants_answer_is_in_the_record_and_never_in_the_answer() {
    let app = TestApp::spawn(settings()).await;
    let mut doc = pdp_test(0.0);
    doc["experiments"][0]["variants"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"id": "popular-shadow", "shadow": true, "policy": {"baseline": "popularity"}}),
        );
    app.publish_ruleset(&doc).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let answer = app
            .get_json(&format!(
                "/v1/recommend?session_id=s-{i}&placement=product&product_id=p000001"
            ))
            .await;
        assert!(
            !answer.to_string().contains("popular-shadow"),
            "a shadow is never shown: {answer}"
        );
        if answer["experiments"][0]["variant"] == "personalized" {
            ids.push((
                answer["decision_id"].as_str().unwrap().to_owned(),
                format!("s-{i}"),
            ));
        }
    }
    assert!(!ids.is_empty());
    for (id, _) in &ids {
        let record = recorded(&app, id).await;
        assert_eq!(record["experiments"], json!([["pdp-test", "personalized"]]));
        let shadow = &record["shadow"];
        assert_eq!(
            shadow["experiments"],
            json!([["pdp-test", "popular-shadow"]]),
            "{record}"
        );
        let items = shadow["output"]["page"]["items"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(
            items.iter().all(|i| i["reason"] == "trending"),
            "the shadow's own policy: {shadow}"
        );
    }

    // What the visitor then clicked: in the served list, the shadow's, or both.
    let (id, session) = &ids[0];
    let record = recorded(&app, id).await;
    let products = |items: &Value| -> Vec<String> {
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let served = products(&record["output"]["page"]["items"]);
    let shadowed = products(&record["shadow"]["output"]["page"]["items"]);
    let mut clicked = vec![served[0].clone()];
    clicked.extend(shadowed.iter().find(|p| !served.contains(p)).cloned());
    let events: Vec<Value> = clicked
        .iter()
        .enumerate()
        .map(|(k, p)| {
            json!({"event_id": format!("shadow-click-{k}"), "type": "click",
                   "session_id": session, "product_id": p, "decision_id": id})
        })
        .collect();
    app.accept_events(&Value::Array(events)).await;
    let in_list = |list: &[String]| clicked.iter().filter(|p| list.contains(p)).count();
    let want = json!({"checked": clicked.len(), "in_served": in_list(&served),
                      "in_shadow": in_list(&shadowed)});
    common::eventually("the clicks checked against both lists", || async {
        let r = app.get_json("/admin/v1/experiments/pdp-test/results").await;
        let hits = &r["arms"][1]["shadow_hits"];
        ["checked", "in_served", "in_shadow"]
            .iter()
            .all(|k| hits[*k] == want[*k])
    })
    .await;
}

#[tokio::test]
async fn the_holdout_is_compared_with_an_equal_slice_of_everyone_else() {
    use vitrine::domain::bucket;
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&pdp_test(0.2)).await;
    let mut counts = [0i64; 2];
    for i in 0..300 {
        let s = format!("h-{i}");
        let answer = app
            .recommend(&format!("session_id={s}&placement=home"))
            .await;
        let n = bucket::hash("global-holdout", &s, 2).unwrap();
        let named = answer["experiments"].to_string();
        if n < 0.2 {
            assert!(named.contains("baseline"), "{s}: {answer}");
            assert!(reasons(&answer).iter().all(|r| r == "trending"));
            counts[0] += 1;
        } else if n < 0.4 {
            assert!(named.contains("comparison"), "{s}: {answer}");
            counts[1] += 1;
        } else {
            assert!(answer.get("experiments").is_none(), "{s}: {answer}");
        }
    }
    common::eventually("both slices exposed", || async {
        let r = app.get_json("/admin/v1/experiments/holdout/results").await;
        r["arms"][0]["exposed"] == counts[0] && r["arms"][1]["exposed"] == counts[1]
    })
    .await;
    let r = app.get_json("/admin/v1/experiments/holdout/results").await;
    assert_eq!(r["control"], "baseline");
    assert_eq!(r["comparisons"][0]["variant"], "comparison");
}

#[tokio::test]
async fn arms_serve_their_baseline_their_content_and_a_promotion_set_the_checkout_honours() {
    use vitrine::domain::bucket;
    let app = TestApp::spawn(settings()).await;
    let banner = |id: &str, extra: Value| {
        let mut b = json!({"id": id, "placements": ["product"], "title": id,
            "image_url": "https://example.com/b.jpg", "link_url": "https://example.com/b"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let mut doc = json!({
        "promotions": [{"id": "arm-b-10", "title": "10% off", "class": "order",
                        "set": "b-offers", "value": {"percent_bps": 1000}}],
        "content": {"banners": [
            banner("plain", json!({})),
            banner("bold", json!({"priority": 10, "variant": "bold"}))
        ]},
        "experiments": [{
            "id": "mix", "status": "running", "placements": ["product", "search"],
            "hash_attribute": "session_id",
            "variants": [
                {"id": "none", "weight": 0.34, "policy": {"baseline": "none"}},
                {"id": "random", "weight": 0.33, "policy": {"baseline": "random"}},
                {"id": "b", "weight": 0.33, "policy": {"content": "bold", "promotions": "b-offers"}}
            ]
        }]
    });
    // A set or variant nothing carries is refused at its path.
    let mut wrong = doc.clone();
    wrong["experiments"][0]["variants"][2]["policy"]["promotions"] = json!("nope");
    let paths: Vec<String> = app
        .refused_ruleset(&wrong)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["$.experiments[0].variants[2].policy.promotions"]);
    app.publish_ruleset(&doc).await;

    let arm_of = |s: &str| {
        let n = bucket::hash("mix", s, 2).unwrap();
        if n < 0.34 {
            "none"
        } else if n < 0.67 {
            "random"
        } else {
            "b"
        }
    };
    let session = |arm: &str| {
        (0..)
            .map(|i| format!("mix-{i}"))
            .find(|s| arm_of(s) == arm)
            .unwrap()
    };
    let page = |s: &str| format!("session_id={s}&placement=product&product_id=p000001");
    let ids = |a: &Value| -> Vec<String> {
        a["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["product_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let banners = |a: &Value| -> Vec<String> {
        a["banners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let offered = |a: &Value| a["offers"].to_string().contains("arm-b-10");

    // `none`: the storefront's list as sent (once each); no offer of the set, the
    // content everyone sees.
    let s = session("none");
    let none = app
        .recommend(&format!(
            "session_id={s}&placement=search&query=tea&candidates=p000009,p000003,p000005,p000003"
        ))
        .await;
    assert_eq!(ids(&none), ["p000009", "p000003", "p000005"], "{none}");
    assert!(reasons(&none).iter().all(|r| r == "storefront"));
    let none = app.recommend(&page(&s)).await;
    assert!(ids(&none).is_empty(), "no list sent, none answered: {none}");
    assert!(!offered(&none));
    assert_eq!(banners(&none)[0], "plain");

    // `random`: in-stock products drawn by the visitor's seed, the same on a reload.
    let s = session("random");
    let random = app.recommend(&page(&s)).await;
    assert!(reasons(&random).iter().all(|r| r == "random"), "{random}");
    assert!(!ids(&random).contains(&"p000001".to_owned()));
    assert_eq!(ids(&app.recommend(&page(&s)).await), ids(&random));

    // `b`: its content variant first, and its promotion set offered...
    let s = session("b");
    let b = app.recommend(&page(&s)).await;
    assert_eq!(banners(&b)[0], "bold", "{b}");
    assert!(offered(&b), "{b}");
    // ... and applied at checkout, for this visitor only; the record replays it.
    let cart = json!([{"product_id": "p000001", "quantity": 2}]);
    let applied = |e: &Value| e["applied"].to_string().contains("arm-b-10");
    let theirs = app
        .evaluate_cart(json!({"session_id": s, "cart": cart}))
        .await;
    assert!(applied(&theirs), "{theirs}");
    let others = app
        .evaluate_cart(json!({"session_id": session("none"), "cart": cart}))
        .await;
    assert!(!applied(&others), "{others}");
    let id = theirs["decision_id"].as_str().unwrap();
    replays_with_arms(&app, id, json!([["mix", "b"]])).await;

    // Stopped: nobody gets the set any more.
    doc["experiments"][0]["status"] = json!("stopped");
    app.publish_ruleset(&doc).await;
    let after = app
        .evaluate_cart(json!({"session_id": s, "cart": cart}))
        .await;
    assert!(!applied(&after), "{after}");
}
