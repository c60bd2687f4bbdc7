//! Experiments end to end through HTTP: visitors split by the published scheme and
//! counted once, arms kept when weights change, namespaces exclusive; a simulated
//! experiment whose events credit the arms, with results checked against figures
//! derived here by hand; and a platform order credited on a replica other than the one
//! that answered.

use crate::common;

use common::redis::RedisServer;
use common::{TestApp, settings};
use serde_json::{Value, json};
use vitrine::domain::bucket;

fn two_arms(id: &str, placement: &str, weights: [f64; 2], bucket_version: u32) -> Value {
    json!({
        "id": id, "status": "running", "placements": [placement],
        "hash_attribute": "session_id", "bucket_version": bucket_version,
        "variants": [
            {"id": "control", "weight": weights[0], "policy": {"baseline": "popularity"}},
            {"id": "treatment", "weight": weights[1], "policy": {}}
        ]
    })
}

async fn results(app: &TestApp, id: &str) -> Value {
    let r = app
        .get(&format!("/admin/v1/experiments/{id}/results"))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn arm<'a>(results: &'a Value, variant: &str) -> &'a Value {
    results["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["variant"] == variant)
        .unwrap_or_else(|| panic!("{variant} in {results}"))
}

/// Waits until the experiment's exposed visitors add up to `n`.
async fn exposed(app: &TestApp, id: &str, n: i64) -> Value {
    let path = format!("/admin/v1/experiments/{id}/results");
    common::eventually(&format!("{n} visitors exposed to {id}"), || async {
        let r: Value = app.get_json(&path).await;
        r["arms"].as_array().is_some_and(|a| {
            a.iter()
                .map(|a| a["exposed"].as_i64().unwrap())
                .sum::<i64>()
                == n
        })
    })
    .await;
    results(app, id).await
}

/// GETs every path, 16 at a time, and returns the answers in order.
async fn answers(app: &TestApp, paths: Vec<String>) -> Vec<Value> {
    let mut out = vec![Value::Null; paths.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    let spawn = |set: &mut tokio::task::JoinSet<(usize, Value)>, i: usize| {
        let (client, url) = (app.client.clone(), app.url(&paths[i]));
        set.spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            (i, r.json().await.unwrap())
        });
    };
    while next < paths.len().min(16) {
        spawn(&mut set, next);
        next += 1;
    }
    while let Some(done) = set.join_next().await {
        let (i, v) = done.unwrap();
        out[i] = v;
        if next < paths.len() {
            spawn(&mut set, next);
            next += 1;
        }
    }
    out
}

fn variant_of(answer: &Value, id: &str) -> Option<String> {
    answer["experiments"]
        .as_array()?
        .iter()
        .find(|e| e["id"] == id)
        .map(|e| e["variant"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_visitors_split_by_the_weights_and_the_sample_ratio_check_stays_quiet() {
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&json!({"experiments": [two_arms("split", "home", [0.3, 0.7], 1)]}))
        .await;
    let n = 10_000;
    let paths = (0..n)
        .map(|i| format!("/v1/recommend?session_id=v-{i}&placement=home"))
        .collect();
    let mut control = 0i64;
    for (i, answer) in answers(&app, paths).await.iter().enumerate() {
        // The published scheme: the same arm an edge function or SDK computes.
        let h = bucket::hash("split", &format!("v-{i}"), 2).unwrap();
        let expected = if h < 0.3 { "control" } else { "treatment" };
        assert_eq!(variant_of(answer, "split").as_deref(), Some(expected));
        control += i64::from(expected == "control");
    }
    // Within 4.5 standard deviations of the binomial mean (a false alarm about once in
    // 150,000 runs; the assignment is deterministic, so this run always passes or not).
    let sd = (n as f64 * 0.3 * 0.7).sqrt();
    assert!(
        (control as f64 - 0.3 * n as f64).abs() < 4.5 * sd,
        "{control} of {n} in control"
    );
    let r = exposed(&app, "split", n).await;
    assert_eq!(
        arm(&r, "control")["exposed"],
        control,
        "each visitor once: {r}"
    );
    assert_eq!(arm(&r, "treatment")["exposed"], n - control);
    assert_eq!(r["sample_ratio"]["mismatch"], false, "{r}");
    assert!(r["sample_ratio"]["p_value"].as_f64().unwrap() > 0.001);
    assert_eq!(r["sample_ratio"]["expected"], json!([0.3, 0.7]));

    // Visitors seen again are not counted again.
    let again = (0..200)
        .map(|i| format!("/v1/recommend?session_id=v-{i}&placement=home"))
        .collect();
    answers(&app, again).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = results(&app, "split").await;
    assert_eq!(
        arm(&r, "control")["exposed"].as_i64().unwrap()
            + arm(&r, "treatment")["exposed"].as_i64().unwrap(),
        n
    );
    // Listed with its definition.
    let list = app.get_json("/admin/v1/experiments").await;
    assert_eq!(list["experiments"][0]["id"], "split", "{list}");
    assert_eq!(list["experiments"][0]["variants"][1]["weight"], 0.7);
    let missing = app.get("/admin/v1/experiments/nope/results").await;
    assert_eq!(
        common::error_code(missing).await,
        (404, "experiment_not_found".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_arm_stays_when_the_weights_change_and_moves_with_the_bucket_version() {
    let app = TestApp::spawn(settings()).await;
    let doc =
        |weights, version| json!({"experiments": [two_arms("sticky", "home", weights, version)]});
    app.publish_ruleset(&doc([0.5, 0.5], 1)).await;
    let sessions: Vec<String> = (0..300).map(|i| format!("st-{i}")).collect();
    let path = |s: &String| format!("/v1/recommend?session_id={s}&placement=home");
    let first: Vec<Option<String>> = answers(&app, sessions.iter().map(path).collect())
        .await
        .iter()
        .map(|a| variant_of(a, "sticky"))
        .collect();
    exposed(&app, "sticky", 300).await;

    // 90/10: the visitors already in an arm keep it, new ones follow the new weights.
    app.publish_ruleset(&doc([0.9, 0.1], 1)).await;
    let moved_by_hash = sessions
        .iter()
        .filter(|s| {
            let h = bucket::hash("sticky", s, 2).unwrap();
            (0.5..0.9).contains(&h)
        })
        .count();
    assert!(
        moved_by_hash > 50,
        "the change would move {moved_by_hash} by hash alone"
    );
    let later: Vec<Option<String>> = answers(&app, sessions.iter().map(path).collect())
        .await
        .iter()
        .map(|a| variant_of(a, "sticky"))
        .collect();
    assert_eq!(first, later, "no one moved");
    // Each session's arm as the scheme gives it for `seed`, 90/10.
    let by_hash = |sessions: Vec<String>, seed: &'static str| {
        let app = &app;
        async move {
            let got = answers(app, sessions.iter().map(path).collect()).await;
            for (s, a) in sessions.iter().zip(got) {
                let h = bucket::hash(seed, s, 2).unwrap();
                let expected = if h < 0.9 { "control" } else { "treatment" };
                assert_eq!(variant_of(&a, "sticky").as_deref(), Some(expected), "{s}");
            }
        }
    };
    by_hash((0..300).map(|i| format!("new-{i}")).collect(), "sticky").await;

    // A new bucket version splits everyone afresh, by the versioned seed.
    app.publish_ruleset(&doc([0.9, 0.1], 2)).await;
    by_hash(sessions, "sticky:v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_sharing_a_namespace_never_share_a_visitor() {
    let app = TestApp::spawn(settings()).await;
    let mut left = two_arms("left", "home", [0.5, 0.5], 1);
    left["namespace"] = json!({"id": "home-ns", "range": [0.0, 0.4]});
    let mut right = two_arms("right", "home", [0.5, 0.5], 1);
    right["namespace"] = json!({"id": "home-ns", "range": [0.4, 1.0]});
    app.publish_ruleset(&json!({"experiments": [left, right]}))
        .await;
    let sessions: Vec<String> = (0..1000).map(|i| format!("ns-{i}")).collect();
    let got = answers(
        &app,
        sessions
            .iter()
            .map(|s| format!("/v1/recommend?session_id={s}&placement=home"))
            .collect(),
    )
    .await;
    let mut in_each = [0; 2];
    for (s, a) in sessions.iter().zip(&got) {
        let (l, r) = (variant_of(a, "left"), variant_of(a, "right"));
        assert!(l.is_none() || r.is_none(), "{s} in both: {a}");
        assert_eq!(
            l.is_some(),
            bucket::in_namespace(s, "home-ns", 0.0, 0.4),
            "{s}"
        );
        assert_eq!(
            r.is_some(),
            bucket::in_namespace(s, "home-ns", 0.4, 1.0),
            "{s}"
        );
        in_each[0] += usize::from(l.is_some());
        in_each[1] += usize::from(r.is_some());
    }
    assert_eq!(
        in_each[0] + in_each[1],
        1000,
        "the ranges cover the namespace"
    );
    assert!(in_each[0] > 300 && in_each[1] > 500, "{in_each:?}");
}

/// SplitMix64: the simulation's own reproducible coin.
struct Coin(u64);

impl Coin {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the simulation sent to one arm.
#[derive(Default, Debug)]
struct Truth {
    visitors: i64,
    impressions: i64,
    clicks: i64,
    clickers: i64,
    orders: i64,
    converters: i64,
    /// Each visitor's revenue (minor units), 0 for most.
    revenue: Vec<i64>,
}

fn close(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    assert!(
        (got - want).abs() < 5e-5,
        "{what}: reported {got}, by hand {want}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_experiment_reports_a_lift_whose_interval_covers_the_truth() {
    use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&json!({"experiments": [two_arms("sim", "product", [0.5, 0.5], 1)]}))
        .await;
    // The model: each impression is clicked with 5% in control, 6% in treatment (a
    // true relative lift of 0.2); a visitor buys with 4% / 5%, for 10.00 to 90.00.
    let ctr = [0.05, 0.06];
    let buys = [0.04, 0.05];
    let visitors = 2_000;
    let paths = (0..visitors)
        .map(|i| format!("/v1/recommend?session_id=sim-{i}&placement=product&product_id=p000001"))
        .collect();
    let served = answers(&app, paths).await;
    let mut coin = Coin(2026);
    let mut truth = [Truth::default(), Truth::default()];
    let mut currency = String::new();
    for (i, answer) in served.iter().enumerate() {
        let arm = usize::from(variant_of(answer, "sim").unwrap() == "treatment");
        let t = &mut truth[arm];
        t.visitors += 1;
        let decision = answer["decision_id"].as_str().unwrap();
        let items = answer["recommendations"].as_array().unwrap();
        currency = items[0]["price"]["currency"].as_str().unwrap().to_owned();
        let session = format!("sim-{i}");
        let mut events = Vec::new();
        let mut clicked = false;
        for k in 0..10 {
            let product = items[k % items.len()]["product_id"].as_str().unwrap();
            events.push(
                json!({"event_id": format!("{session}-i{k}"), "type": "impression",
                "session_id": session, "product_id": product, "decision_id": decision}),
            );
            t.impressions += 1;
            if coin.next() < ctr[arm] {
                events.push(
                    json!({"event_id": format!("{session}-c{k}"), "type": "click",
                    "session_id": session, "product_id": product, "decision_id": decision}),
                );
                t.clicks += 1;
                clicked = true;
            }
        }
        t.clickers += i64::from(clicked);
        let mut spent = 0;
        if coin.next() < buys[arm] {
            let amount = 1000 + (coin.next() * 8000.0) as i64;
            let product = items[0]["product_id"].as_str().unwrap();
            events.push(
                json!({"event_id": format!("{session}-p"), "type": "purchase",
                "session_id": session, "product_id": product, "decision_id": decision,
                "order_id": format!("order-{session}"),
                "price": {"amount": amount, "currency": currency}}),
            );
            t.orders += 1;
            t.converters += 1;
            spent = amount;
        }
        t.revenue.push(spent);
        let (status, report) = app.send_events(&Value::Array(events)).await;
        assert_eq!(status, 202, "{report}");
        assert_eq!(report["rejected"], 0, "{report}");
    }
    let impressions = truth[0].impressions + truth[1].impressions;
    let path = "/admin/v1/experiments/sim/results";
    common::eventually("every impression credited", || async {
        let r: Value = app.get_json(path).await;
        r["arms"].as_array().is_some_and(|a| {
            a.iter()
                .map(|a| a["impressions"].as_i64().unwrap())
                .sum::<i64>()
                == impressions
                && a.iter().map(|a| a["orders"].as_i64().unwrap()).sum::<i64>()
                    == truth[0].orders + truth[1].orders
        })
    })
    .await;
    let r = results(&app, "sim").await;
    for (t, name) in truth.iter().zip(["control", "treatment"]) {
        let a = arm(&r, name);
        let sum: i64 = t.revenue.iter().sum();
        assert_eq!(
            (
                &a["exposed"],
                &a["impressions"],
                &a["clicks"],
                &a["visitors_clicked"],
                &a["orders"],
                &a["visitors_ordered"],
            ),
            (
                &json!(t.visitors),
                &json!(t.impressions),
                &json!(t.clicks),
                &json!(t.clickers),
                &json!(t.orders),
                &json!(t.converters),
            ),
            "{name}: {a}"
        );
        assert_eq!(a["revenue"], json!([{"amount": sum, "currency": currency}]));
    }

    // By hand: the delta method's relative lift of click-through, a normal interval.
    let normal = Normal::standard();
    let z = normal.inverse_cdf(0.975);
    let p = |t: &Truth| t.clicks as f64 / t.impressions as f64;
    let (pc, pv) = (p(&truth[0]), p(&truth[1]));
    let (vc, vv) = (
        pc * (1.0 - pc) / truth[0].impressions as f64,
        pv * (1.0 - pv) / truth[1].impressions as f64,
    );
    let lift = pv / pc - 1.0;
    let se = (vv / pc.powi(2) + pv.powi(2) * vc / pc.powi(4)).sqrt();
    let ctr_lift = &r["comparisons"][0]["metrics"][0];
    assert_eq!(ctr_lift["metric"], "click_through");
    close(&ctr_lift["lift"]["lift"], lift, "CTR lift");
    close(&ctr_lift["lift"]["low"], lift - z * se, "CTR lift low");
    close(&ctr_lift["lift"]["high"], lift + z * se, "CTR lift high");
    close(
        &ctr_lift["lift"]["p_value"],
        2.0 * (1.0 - normal.cdf(lift.abs() / se)),
        "CTR p-value",
    );
    let (low, high) = (
        ctr_lift["lift"]["low"].as_f64().unwrap(),
        ctr_lift["lift"]["high"].as_f64().unwrap(),
    );
    assert!(
        low < 0.2 && 0.2 < high,
        "the true lift 0.2 in [{low}, {high}]"
    );

    // Revenue per visitor: Welch's t on each visitor's revenue.
    let moments = |t: &Truth| {
        let n = t.revenue.len() as f64;
        let mean = t.revenue.iter().sum::<i64>() as f64 / n;
        let var = t
            .revenue
            .iter()
            .map(|x| (*x as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, var / n, n)
    };
    let ((mc, vc, nc), (mv, vv, nv)) = (moments(&truth[0]), moments(&truth[1]));
    let lift = mv / mc - 1.0;
    let se = (vv / mc.powi(2) + mv.powi(2) * vc / mc.powi(4)).sqrt();
    let df = (vc + vv).powi(2) / (vc * vc / (nc - 1.0) + vv * vv / (nv - 1.0));
    let t = StudentsT::new(0.0, 1.0, df).unwrap();
    let q = t.inverse_cdf(0.975);
    let rpv = r["comparisons"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == format!("revenue_per_visitor.{currency}"))
        .unwrap_or_else(|| panic!("{r}"));
    close(&rpv["control"], mc, "control's revenue per visitor");
    close(&rpv["lift"]["lift"], lift, "RPV lift");
    close(&rpv["lift"]["low"], lift - q * se, "RPV lift low");
    close(&rpv["lift"]["high"], lift + q * se, "RPV lift high");
    close(
        &rpv["lift"]["p_value"],
        2.0 * (1.0 - t.cdf(lift.abs() / se)),
        "RPV p-value",
    );
    // Conversion per visitor: a rate of visitors.
    let conv = &r["comparisons"][0]["metrics"][2];
    assert_eq!(conv["metric"], "conversion");
    close(
        &conv["control"],
        truth[0].converters as f64 / truth[0].visitors as f64,
        "control's conversion",
    );
    assert_eq!(r["sample_ratio"]["mismatch"], false);

    // Per arm as metrics too.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vitrine_experiment_counts_total")
                && l.contains("experiment=\"sim\"")
                && l.contains("count=\"clicks\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_order_is_credited_to_the_answer_that_showed_it_on_another_replica() {
    use common::shopify::{SECRET, send};
    let redis = RedisServer::start();
    let replica = || {
        let mut s = common::on_redis(&redis);
        s.shopify.webhook_secret = SECRET.into();
        s.privacy.id_hash_secret = "attribution-test-secret".into();
        TestApp::spawn(s)
    };
    let (a, b) = (replica().await, replica().await);
    a.publish_ruleset(&json!({"experiments": [two_arms("orders", "product", [0.5, 0.5], 1)]}))
        .await;
    common::eventually("b follows the ruleset", || async {
        b.get_json("/admin/v1/experiments").await["experiments"][0]["id"] == "orders"
    })
    .await;
    // The customer is answered by a; the decision lands in the shared log.
    let answer = a
        .recommend("customer_id=c-77&session_id=s-77&placement=product&product_id=p000001")
        .await;
    let variant = variant_of(&answer, "orders").unwrap();
    let shown = answer["recommendations"][0]["product_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let currency = answer["recommendations"][0]["price"]["currency"]
        .as_str()
        .unwrap()
        .to_owned();
    let decision = answer["decision_id"].as_str().unwrap();
    common::eventually("the decision in the shared log", || async {
        b.get(&format!("/admin/v1/decisions/{decision}"))
            .await
            .status()
            == 200
    })
    .await;
    // The order reaches b by webhook: one product shown, one not.
    let order = json!({
        "id": 5_550_001, "created_at": null, "currency": currency, "total_price": "100.00",
        "customer": {"id": "c-77"},
        "line_items": [
            {"product_id": shown, "quantity": 1},
            {"product_id": "never-shown", "quantity": 1}
        ]
    });
    let body = serde_json::to_vec(&order).unwrap();
    assert_eq!(send(&b, "orders/create", "w-order-1", &body).await.0, 200);
    let r = {
        let path = "/admin/v1/experiments/orders/results";
        common::eventually("the order credited", || async {
            let r: Value = a.get_json(path).await;
            r["arms"]
                .as_array()
                .is_some_and(|arms| arms.iter().any(|x| x["orders"] == 1))
        })
        .await;
        results(&a, "orders").await
    };
    let credited = arm(&r, &variant);
    assert_eq!(credited["orders"], 1, "{r}");
    assert_eq!(credited["visitors_ordered"], 1);
    // The shown product's share of the total: the other line, never shown, is not
    // credited (a product the catalog does not hold weighs the mean price: half).
    assert_eq!(credited["revenue"][0]["amount"], 5_000, "{credited}");
    assert_eq!(credited["revenue"][0]["currency"], currency.as_str());
    let other = if variant == "control" {
        "treatment"
    } else {
        "control"
    };
    assert_eq!(arm(&r, other)["orders"], 0);
    // Delivered again (created, then paid): credited once.
    assert_eq!(send(&b, "orders/paid", "w-order-2", &body).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(arm(&results(&b, "orders").await, &variant)["orders"], 1);
}

#[tokio::test]
async fn answers_give_the_arms_the_growthbook_vectors_give() {
    let vectors: Value =
        serde_json::from_str(include_str!("../fixtures/experiments/bucketing.json")).unwrap();
    let app = TestApp::spawn(settings()).await;
    // One experiment per seed of the vectors (on `home`, 50/50 over everyone), and two
    // halves of the `pdp` namespace (on `product`).
    let hashes: Vec<&Value> = vectors["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["version"] == 2 && h["seed"] != "" && h["value"] != "")
        .collect();
    let mut seeds: Vec<&str> = hashes.iter().map(|h| h["seed"].as_str().unwrap()).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut experiments: Vec<Value> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let mut e = two_arms(&format!("seed-{i}"), "home", [0.5, 0.5], 1);
            e["seed"] = json!(seed);
            e
        })
        .collect();
    for (id, range) in [("ns-low", [0.0, 0.5]), ("ns-high", [0.5, 1.0])] {
        let mut e = two_arms(id, "product", [0.5, 0.5], 1);
        e["namespace"] = json!({"id": "pdp", "range": range});
        experiments.push(e);
    }
    app.publish_ruleset(&json!({"experiments": experiments}))
        .await;
    let query = |v: &str| {
        let mut u = reqwest::Url::parse("http://x/").unwrap();
        u.query_pairs_mut().append_pair("session_id", v);
        u.query().unwrap().to_owned()
    };
    for h in &hashes {
        let (seed, value) = (h["seed"].as_str().unwrap(), h["value"].as_str().unwrap());
        let id = format!("seed-{}", seeds.iter().position(|s| *s == seed).unwrap());
        let answer = app
            .recommend(&format!("{}&placement=home", query(value)))
            .await;
        let expected = if h["hash"].as_f64().unwrap() < 0.5 {
            "control"
        } else {
            "treatment"
        };
        assert_eq!(
            variant_of(&answer, &id).as_deref(),
            Some(expected),
            "{seed} / {value}: {h}"
        );
    }
    for n in vectors["namespaces"].as_array().unwrap() {
        let value = n["value"].as_str().unwrap();
        if n["namespace"] != "pdp" || value.is_empty() {
            continue;
        }
        let id = if n["start"] == 0.0 {
            "ns-low"
        } else {
            "ns-high"
        };
        let answer = app
            .recommend(&format!(
                "{}&placement=product&product_id=p000001",
                query(value)
            ))
            .await;
        assert_eq!(
            variant_of(&answer, id).is_some(),
            n["in"].as_bool().unwrap(),
            "{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_visitors_queued_exposure_is_never_written() {
    let app = TestApp::spawn(settings()).await;
    app.publish_ruleset(&json!({"experiments": [two_arms("gone", "home", [0.5, 0.5], 1)]}))
        .await;
    for i in 0..20 {
        let customer = format!("gone-{i}");
        let answer = app
            .recommend(&format!(
                "customer_id={customer}&session_id=gs-{i}&placement=home"
            ))
            .await;
        assert!(variant_of(&answer, "gone").is_some());
        // Erased before the exposure queued by the answer is written (it is written
        // within 100 ms): the profile must not come back.
        assert_eq!(app.erase_profile(&customer).await, 204);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for i in 0..20 {
        assert!(
            app.export_profile(&format!("gone-{i}")).await.is_none(),
            "gone-{i} came back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_order_is_credited_like_a_webhook_one() {
    let redis = RedisServer::start();
    let app = TestApp::on_redis(&redis).await;
    app.publish_ruleset(&json!({"experiments": [two_arms("imported", "product", [0.5, 0.5], 1)]}))
        .await;
    let answer = app
        .recommend("customer_id=imp-x&session_id=imp-s&placement=product&product_id=p000001")
        .await;
    let variant = variant_of(&answer, "imported").unwrap();
    let item = &answer["recommendations"][0];
    let decision = answer["decision_id"].as_str().unwrap();
    common::eventually("the decision in the log", || async {
        app.get(&format!("/admin/v1/decisions/{decision}"))
            .await
            .status()
            == 200
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.ndjson");
    let order = json!({"order_id": "o-exp-1", "customer_id": "imp-x",
        "created_at": vitrine::domain::time::unix_now(),
        "total": {"amount": 2000, "currency": item["price"]["currency"]},
        "lines": [{"product_id": item["product_id"], "quantity": 1}]});
    std::fs::write(&file, format!("{order}\n")).unwrap();
    let (code, _, stderr) = common::vitrine(&[
        "import",
        "orders",
        file.to_str().unwrap(),
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let r = results(&app, "imported").await;
    let credited = arm(&r, &variant);
    assert_eq!(credited["orders"], 1, "{r}");
    assert_eq!(credited["revenue"][0]["amount"], 2000);
}
