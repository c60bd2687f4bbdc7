//! The decision log through HTTP: every answer of `/v1/recommend` and
//! `/v1/cart/evaluate` is on the record, replays exactly (also after a retrain and a
//! publish, against the versions it names), holds no raw id, keeps no profile without
//! consent, and goes with an erasure. (A full writer queue: `tests/process`.)

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis::RedisServer;
use common::rules::cart;
use common::{TestApp, eventually, settings};
use serde_json::{Value, json};

/// Customer and session ids no stored byte may hold.
const CUSTOMER: &str = "c0000003";
const SESSIONS: [&str; 4] = [
    "sess-zq81x-alpha",
    "sess-zq81x-bravo",
    "sess-zq81x-charlie",
    "sess-zq81x-delta",
];

fn gbp(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

/// Prices, offers (one budgeted, one by code), merchandising and content: a live
/// ruleset that touches every part of an answer.
fn ruleset(sale_bps: i64) -> Value {
    json!({
        "guardrails": {"min_margin_bps": 500},
        "price_lists": [
            {"id": "vip", "kind": "segment", "currency": "GBP",
             "scope": {"contains": ["customer.segments", "vip"]},
             "entries": (1..40).map(|i| json!({"product_id": format!("p{i:06}"), "amount": 1000 + i})).collect::<Vec<_>>()},
            {"id": "sale", "kind": "adjustment", "currency": "GBP",
             "adjust": {"percent_off_bps": sale_bps, "parent": null, "categories": ["kitchen"]}}
        ],
        "promotions": [
            {"id": "ten-off", "title": "10% off", "class": "order", "value": {"percent_bps": 1000},
             "condition": {"gte": ["cart.subtotal", gbp(5000)]}, "budget": {"max_uses": 1000}},
            {"id": "code", "title": "5 off", "class": "order", "trigger": "code", "codes": ["FIVE"],
             "value": {"amount_off": gbp(500)}}
        ],
        "merchandising": [
            {"id": "pin-p5", "placements": ["home"], "action": {"pin": {"product_id": "p000005", "position": 2}}},
            {"id": "bury-cheap", "action": {"bury": {"where": {"lt": ["product.price", gbp(1500)]}, "by_bps": 5000}}}
        ],
        "content": {
            "banners": [{"id": "uk", "placements": ["home", "product"], "title": "UK", "image_url": "https://example.com/uk.jpg",
                         "link_url": "https://example.com/uk", "when": {"eq": ["session.country", "GB"]}},
                        {"id": "all", "placements": ["home", "cart"], "title": "All", "image_url": "https://example.com/a.jpg",
                         "link_url": "https://example.com/a", "frequency_cap": {"max_impressions": 3}}],
            "collections": [{"id": "picks", "placements": ["home"], "title": "Picks", "product_ids": ["p000010", "p000011", "p000012"]}],
            "modules": [{"id": "m", "placements": ["home"], "order": ["banners", "recommendations"]}]
        }
    })
}

/// Live learning and stock that move while answers are made: views and orders (live
/// trend and live pairs), and a product sold out.
async fn traffic(app: &TestApp, round: usize) {
    let mut events = Vec::new();
    for (i, s) in SESSIONS.iter().enumerate() {
        for p in 0..5 {
            let product = format!("p{:06}", 1 + (i * 7 + p * 3 + round) % 60);
            events.push(json!({"event_id": format!("v-{round}-{i}-{p}"), "type": "view",
                               "session_id": s, "product_id": product, "context": {"country": "GB", "device": "mobile"}}));
        }
        events.push(json!({"event_id": format!("o-{round}-{i}-a"), "type": "purchase", "session_id": s,
                           "product_id": format!("p{:06}", 1 + i), "order_id": format!("ord-{round}-{i}"),
                           "price": gbp(2000), "quantity": 1}));
        events.push(json!({"event_id": format!("o-{round}-{i}-b"), "type": "purchase", "session_id": s,
                           "product_id": format!("p{:06}", 2 + i), "order_id": format!("ord-{round}-{i}"),
                           "price": gbp(2500), "quantity": 1}));
    }
    events.push(
        json!({"event_id": format!("c-{round}"), "type": "view", "customer_id": CUSTOMER,
                       "product_id": format!("p{:06}", 20 + round)}),
    );
    app.accept_events(&Value::from(events)).await;
}

/// A mix of page views and cart evaluations: every placement, customers and sessions,
/// carts, codes, GET and POST. Each answer's decision id.
async fn answers(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let visitor = match i % 3 {
            0 => format!("customer_id={CUSTOMER}"),
            1 => format!("session_id={}", SESSIONS[i % SESSIONS.len()]),
            _ => format!("session_id=fresh-{i}"),
        };
        let p = 1 + (i * 13) % 90;
        let page = match i % 9 {
            0 => "placement=home&country=GB".to_owned(),
            1 => format!("placement=product&product_id=p{p:06}"),
            2 => format!("placement=cart&cart=p{p:06}:2,p{:06}:1", p + 1),
            3 => "placement=category&category=kitchen".to_owned(),
            4 => "placement=search&query=set".to_owned(),
            5 => format!("placement=checkout&cart=p{p:06}:1"),
            6 => "placement=post_purchase&device=ios".to_owned(),
            7 => format!("placement=search&candidates=p{p:06},p000003,p000004,p000050"),
            _ => "placement=home&device=mobile&limit=20".to_owned(),
        };
        if i % 10 == 9 {
            let who = if i % 20 == 9 {
                json!({"customer_id": CUSTOMER})
            } else {
                json!({"session_id": SESSIONS[i % SESSIONS.len()]})
            };
            let mut body = json!({"cart": cart(&[(&format!("p{p:06}"), 2), ("p000045", 3)]), "codes": ["five"]});
            body.as_object_mut()
                .unwrap()
                .extend(who.as_object().unwrap().clone());
            let e = app.evaluate_cart(body).await;
            ids.push(e["decision_id"].as_str().unwrap().to_owned());
            continue;
        }
        let a = app.recommend(&format!("{visitor}&{page}")).await;
        ids.push(a["decision_id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn record(app: &TestApp, id: &str) -> (u16, Value) {
    let r = app.get(&format!("/admin/v1/decisions/{id}")).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn replay(app: &TestApp, id: &str) -> Value {
    let r = app
        .post_json(&format!("/admin/v1/decisions/{id}/replay"), &json!({}))
        .await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{id}: {body}");
    body
}

/// Waits until every decision is readable.
async fn recorded(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        eventually(&format!("decision {id} recorded"), || async {
            record(app, id).await.0 == 200
        })
        .await;
        out.push(record(app, id).await.1);
    }
    out
}

async fn all_identical(app: &TestApp, ids: &[String]) {
    for id in ids {
        let r = replay(app, id).await;
        assert_eq!(
            r["identical"],
            true,
            "{id}: {}",
            serde_json::to_string_pretty(&r["differences"]).unwrap()
        );
    }
}

/// Every byte the Redis holds: each key and its values, whatever their type.
fn redis_bytes(redis: &RedisServer) -> Vec<u8> {
    let mut c = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut out = Vec::new();
    for k in keys {
        out.extend_from_slice(&k);
        let kind: String = ::redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![::redis::cmd("GET").arg(&k).query(&mut c).unwrap()],
            "hash" => ::redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
            "zset" => ::redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            "set" => ::redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
            "list" => ::redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            "stream" => {
                let entries: Vec<(String, Vec<Vec<u8>>)> = ::redis::cmd("XRANGE")
                    .arg(&k)
                    .arg("-")
                    .arg("+")
                    .query(&mut c)
                    .unwrap();
                entries.into_iter().flat_map(|(_, f)| f).collect()
            }
            other => panic!("a key of type {other}"),
        };
        for v in values {
            out.extend_from_slice(&v);
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn every_answer_is_recorded_and_replays_identically_after_a_retrain_and_a_publish() {
    let redis = RedisServer::start();
    let mut s = common::on_redis(&redis);
    s.audit.candidates = 5;
    let app = TestApp::spawn(s.clone()).await;
    let first = app.publish_ruleset(&ruleset(2000)).await;
    // Sold out: read as out of stock by the answers that meet it.
    app.put_products(
        &json!([{"id": "p000004", "title": "Gone", "category": "Kitchen > Cookware",
                               "price": gbp(3000), "inventory": 0}]),
    )
    .await;

    let mut ids = Vec::new();
    for round in 0..4 {
        traffic(&app, round).await;
        ids.extend(answers(&app, 50).await);
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200, "one id each");
    let records = recorded(&app, &ids).await;
    for r in &records {
        assert_eq!(r["versions"]["ruleset"], first.as_str());
    }
    let cart = records
        .iter()
        .find(|r| r["endpoint"] == "cart_evaluate")
        .unwrap();
    assert_eq!(cart["request"]["codes"], json!(["FIVE"]));
    assert!(
        records
            .iter()
            .any(|r| !r["reads"]["trend"].as_array().unwrap().is_empty()),
        "live trend was read and kept"
    );
    assert!(
        records
            .iter()
            .any(|r| !r["candidates"].as_array().unwrap().is_empty()),
        "candidates with their sources"
    );
    all_identical(&app, &ids).await;

    // A new model version (trained on the event log) and a new ruleset.
    let old_model = records[0]["versions"]["model"].as_str().unwrap().to_owned();
    let trained = vitrine::app::train(&s, None).await.unwrap();
    assert_ne!(trained.version, old_model);
    eventually("the retrained models served", || async {
        app.recommend("session_id=x&placement=home").await["model_version"]
            == trained.version.as_str()
    })
    .await;
    let second = app.publish_ruleset(&ruleset(3500)).await;
    assert_ne!(first, second);
    eventually("the new ruleset served", || async {
        app.recommend("session_id=x&placement=home").await["ruleset_version"] == second.as_str()
    })
    .await;
    traffic(&app, 9).await;
    all_identical(&app, &ids).await;

    // The export streams them for a warehouse: every one, oldest first, as JSON lines.
    let (code, stdout, stderr) = common::vitrine(&[
        "decisions",
        "export",
        "--since",
        "0",
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let exported: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported_ids: HashSet<&str> = exported
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(exported_ids.contains(id.as_str()), "{id} exported");
    }
    let times: Vec<i64> = exported
        .iter()
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1] + 1_000),
        "oldest first"
    );

    // No raw id in any stored byte: profiles, events, decisions are keyed hashes.
    let bytes = redis_bytes(&redis);
    assert!(holds(&bytes, "p000004"), "the scan reads values");
    for raw in SESSIONS.iter().chain([&CUSTOMER]) {
        assert!(!holds(&bytes, raw), "{raw} is stored in Redis");
    }
}

#[tokio::test]
async fn a_visitor_without_consent_has_no_profile_in_their_records_and_erasure_takes_them() {
    let app = TestApp::spawn(settings()).await;
    // c0000001 has a demo profile; take back consent to personalization.
    app.accept_events(
        &json!([{"event_id": "consent-1", "type": "view", "customer_id": "c0000001",
                               "product_id": "p000009",
                               "consent": {"personalization": false, "marketing": false}}]),
    )
    .await;
    let a = app.recommend("customer_id=c0000001&placement=home").await;
    let b = app
        .recommend("customer_id=c0000002&placement=product&product_id=p000007")
        .await;
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|x| x["decision_id"].as_str().unwrap().to_owned())
        .collect();
    let records = recorded(&app, &ids).await;
    assert_eq!(records[0]["consent"]["personalization"], false);
    assert_eq!(records[0]["profile"], Value::Null, "{}", records[0]);
    assert!(records[1]["profile"]["recently_viewed"].is_array());
    all_identical(&app, &ids).await;

    // The list by visitor, newest first, through the keyed hash.
    let more = app.recommend("customer_id=c0000002&placement=home").await;
    let _ = recorded(&app, &[more["decision_id"].as_str().unwrap().to_owned()]).await;
    let listed = app
        .get_json("/admin/v1/decisions?customer_id=c0000002&limit=10")
        .await;
    let listed: Vec<&str> = listed["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![more["decision_id"].as_str().unwrap(), &ids[1]]);
    let only_products = app
        .get_json("/admin/v1/decisions?customer_id=c0000002&placement=product")
        .await;
    assert_eq!(only_products["decisions"].as_array().unwrap().len(), 1);

    // Erasing the customer erases what was decided for them.
    assert_eq!(app.erase_profile("c0000002").await, 204);
    assert_eq!(record(&app, &ids[1]).await.0, 404);
    let listed = app
        .get_json("/admin/v1/decisions?customer_id=c0000002")
        .await;
    assert_eq!(listed["decisions"], json!([]));
    assert_eq!(record(&app, &ids[0]).await.0, 200, "others stay");
}

#[tokio::test]
async fn unknown_and_malformed_decision_ids_are_told_apart() {
    let app = TestApp::spawn(settings()).await;
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = record(&app, &unknown.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("decision_not_found"))
    );
    let r = app
        .post_json(&format!("/admin/v1/decisions/{unknown}/replay"), &json!({}))
        .await;
    assert_eq!(
        common::error_code(r).await,
        (404, "decision_not_found".into())
    );
    for bad in ["nope", "%FF", "123"] {
        let (status, body) = record(&app, bad).await;
        assert!(
            (400..500).contains(&status) && status != 404,
            "{bad}: {status} {body}"
        );
    }
    for (query, code) in [
        ("", "missing_visitor_id"),
        ("customer_id=a&session_id=b", "missing_visitor_id"),
        ("customer_id=a&limit=0", "invalid_parameter"),
        ("customer_id=a&limit=501", "invalid_parameter"),
        ("customer_id=a&since=yesterday", "invalid_parameter"),
        ("customer_id=a&placement=attic", "invalid_placement"),
        ("customer_id=a&colour=red", "malformed_query"),
    ] {
        let r = app.get(&format!("/admin/v1/decisions?{query}")).await;
        assert_eq!(common::error_code(r).await.1, code, "{query}");
    }
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn the_embedded_store_holds_no_raw_id_of_a_recorded_visitor() {
    let mut app = TestApp::spawn(settings()).await;
    let dir = app.state.settings.storage.path.parent().unwrap().to_owned();
    traffic(&app, 0).await;
    let ids = answers(&app, 40).await;
    let _ = recorded(&app, &ids).await;
    all_identical(&app, &ids).await;
    app.stop().await.unwrap();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(holds(&bytes, "p000004"), "the scan reads the files");
    for raw in SESSIONS.iter().chain([&CUSTOMER]) {
        assert!(!holds(&bytes, raw), "{raw} is stored on disk");
    }
}

/// A pending decision over the demo shop's first products: every part a record names
/// products in (reads, candidates), one product the catalog does not have, a profile.
fn pending(
    snapshot: &std::sync::Arc<vitrine::recommend::Snapshot>,
) -> vitrine::decide::record::Pending {
    use vitrine::decide::record::{Endpoint, ItemOut, Output, PageOutput, Pending, PendingRequest};
    use vitrine::domain::{Currency, Money, PageContext, Placement, Profile};
    use vitrine::recommend::reads::Tape;
    use vitrine::recommend::{Considered, Reason};
    let gbp = Currency::parse("GBP").unwrap();
    let profile = Profile {
        segments: vec!["vip".into()],
        recently_viewed: vec![demo_id(3)],
        ..Profile::default()
    };
    Pending {
        decision_id: uuid::Uuid::now_v7(),
        at_ms: 1_700_000_000_123,
        endpoint: Endpoint::Recommend,
        placement: Placement::Product,
        visitor: vitrine::store::ProfileKey([7; 16]),
        profile: Some(std::sync::Arc::new(profile)),
        snapshot: snapshot.clone(),
        ruleset_version: "r-1".into(),
        settings_version: "s-1".into(),
        request: PendingRequest {
            product_id: Some(demo_id(1)),
            category: None,
            query: None,
            cart: Vec::new(),
            candidates: Vec::new(),
            limit: 4,
            context: PageContext::default(),
            codes: Vec::new(),
        },
        usage: vec![("ten-off".into(), 3, 500)],
        exhausted: Vec::new(),
        now: 1_700_000_000,
        tape: Tape {
            clock: Some(1_700_000_000),
            trending: Some(vec![(2, 1.5), (5, 0.25)]),
            trend: vec![(2, 1.5)],
            segments: Vec::new(),
            pairs: vec![(1, vec![(2, 3.0, 4.0)])],
            occurrences: vec![(1, 4.0)],
            out_of_stock: vec![6],
        },
        experiments: vec![("pdp".into(), "control".into())],
        considered: [2, 5, 9_999_999]
            .iter()
            .map(|&p| Considered {
                product: p,
                score: 0.5,
                sources: vec![(Reason::BoughtTogether, 0.5)],
            })
            .collect(),
        output: Output::Page(PageOutput {
            items: vec![ItemOut {
                product_id: demo_id(2),
                price: Money {
                    amount: 1999,
                    currency: gbp,
                },
                compare_at: None,
                price_list: Some("vip".into()),
                score: 0.5,
                reason: Reason::BoughtTogether,
            }],
            offers: json!([]),
            banners: vec!["uk".into()],
            collections: Vec::new(),
            modules: Vec::new(),
            merchandising: json!({}),
        }),
        latency_us: 250,
        degraded: None,
        shadow: None,
    }
}

fn demo_id(i: usize) -> String {
    vitrine::ingest::demo::product_id(i)
}

#[test]
fn a_record_encoded_from_borrowed_ids_is_the_record_encoded() {
    use vitrine::config::{DemoSettings, RecommendSettings};
    use vitrine::decide::record;
    let shop = vitrine::ingest::demo::generate(
        &DemoSettings {
            products: 50,
            customers: 5,
            events: 500,
            ..DemoSettings::default()
        },
        1_700_000_000,
    )
    .unwrap();
    let models = vitrine::recommend::Models::train(
        &shop.catalog,
        &shop.interactions,
        &RecommendSettings::default(),
    );
    let snapshot = std::sync::Arc::new(vitrine::recommend::Snapshot {
        catalog: shop.catalog,
        models: std::sync::Arc::new(models),
    });
    let a = pending(&snapshot);
    let mut b = pending(&snapshot);
    b.decision_id = a.decision_id;
    let owned = a.into_record();
    assert_eq!(
        owned.candidates.len(),
        2,
        "a product the catalog lacks is left out"
    );
    assert_eq!(owned.reads.out_of_stock, [demo_id(6)]);
    let mut borrowed = Vec::new();
    b.encode_into(&mut borrowed).unwrap();
    assert_eq!(borrowed, record::encode(&owned).unwrap());
    assert_eq!(record::decode(&borrowed).unwrap(), owned);
    // A record written before the shadow field existed still reads (it has none).
    let mut fields = match rmpv::decode::read_value(&mut borrowed.as_slice()).unwrap() {
        rmpv::Value::Array(fields) => fields,
        other => panic!("a record is an array: {other}"),
    };
    assert_eq!(fields.pop(), Some(rmpv::Value::Nil), "the shadow is last");
    let mut earlier = Vec::new();
    rmpv::encode::write_value(&mut earlier, &rmpv::Value::Array(fields)).unwrap();
    assert_eq!(record::decode(&earlier).unwrap(), owned);
}
