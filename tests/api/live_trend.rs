//! A long-running server does not drift: 20,000 cases replayed through one server's
//! public API (each a view through `POST /v1/events`, then the `home` answer) score
//! alike at the end and at the start, although every view teaches the live trend.
//!
//! The shop: products whose visitors go on to one of two follow-up products most of
//! the time, so the visitor's history predicts the next view and the trend does not.
//! The history the models are trained on is sparse (a session an hour) and the live
//! traffic thirty times denser: a trend that grew with every view, unbounded and never
//! decaying, would soon outweigh the history and the answers would turn into the
//! best-sellers.

use crate::common;

use common::TestApp;
use common::redis::RedisServer;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const PRODUCTS: u32 = 300;
const SESSION: usize = 6;
const TRAIN_SESSIONS: usize = 2_000;
/// Each replayed session gives `SESSION - 1` cases.
const CASES: usize = 20_000;
const WINDOW: usize = 2_000;

fn id(p: u32) -> String {
    format!("p{p:04}")
}

/// A session: a start, then mostly one of the current product's two follow-ups.
fn session(rng: &mut impl Rng) -> Vec<u32> {
    let mut p = rng.random_range(0..PRODUCTS);
    let mut out = vec![p];
    while out.len() < SESSION {
        p = match rng.random_range(0..10) {
            0..=4 => (p * 7 + 1) % PRODUCTS,
            5..=8 => (p * 13 + 5) % PRODUCTS,
            _ => rng.random_range(0..PRODUCTS),
        };
        out.push(p);
    }
    out
}

/// A view of `product` in `session` at `at`.
fn view(session: &str, event: &str, product: u32, at: i64) -> Value {
    json!([{"event_id": event, "type": "view", "session_id": session,
            "product_id": id(product), "timestamp": at}])
}

async fn home(app: &TestApp, session: &str) -> Value {
    let r = app
        .get(&format!(
            "/v1/recommend?placement=home&session_id={session}&limit=10"
        ))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_cases_score_alike_at_the_end_and_at_the_start() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(common::empty_shop_on_redis(&redis)).await;
    let products: Vec<Value> = (0..PRODUCTS)
        .map(|p| {
            json!({"id": id(p), "title": id(p), "category": "all",
                   "price": {"amount": 1000, "currency": "EUR"}, "inventory": 5})
        })
        .collect();
    app.put_products(&json!(products)).await;

    // The history: a session an hour, ending a week ago.
    let now = vitrine::domain::time::unix_now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let start = now - 7 * 86_400 + 3_600 - TRAIN_SESSIONS as i64 * 3_600;
    let mut lines = String::new();
    for s in 0..TRAIN_SESSIONS {
        for (i, p) in session(&mut rng).into_iter().enumerate() {
            let at = start + s as i64 * 3_600 + i as i64;
            lines.push_str(&format!(
                "{}\n",
                json!({"event_id": format!("t{s}-{i}"), "type": "view",
                       "session_id": format!("t{s}"), "product_id": id(p), "timestamp": at})
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    std::fs::write(&file, lines).unwrap();
    let (code, stdout, stderr) = common::vitrine(&[
        "train",
        "--events",
        file.to_str().unwrap(),
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let version = stdout.split(':').next().unwrap().to_owned();
    common::eventually("the trained models served", || async {
        home(&app, "warm-up").await["model_version"] == version.as_str()
    })
    .await;

    // The live week: a session every two minutes, each view then the answer.
    let sessions = CASES / (SESSION - 1);
    let step = (7 * 86_400 - 7_200) / sessions as i64;
    let mut hits = Vec::with_capacity(CASES);
    for s in 0..sessions {
        let seq = session(&mut rng);
        let name = format!("live{s}");
        for i in 0..SESSION - 1 {
            let at = now - 7 * 86_400 + 3_600 + s as i64 * step + i as i64;
            app.accept_events(&view(&name, &format!("{name}-{i}"), seq[i], at))
                .await;
            let answer = home(&app, &name).await;
            let target = id(seq[i + 1]);
            let hit = answer["recommendations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["product_id"] == target.as_str());
            hits.push(f64::from(u8::from(hit)));
        }
    }
    let rate = |w: &[f64]| w.iter().sum::<f64>() / w.len() as f64;
    let (first, last) = (rate(&hits[..WINDOW]), rate(&hits[CASES - WINDOW..]));
    // Within noise: three standard errors of the difference of two such rates.
    let p = (first + last) / 2.0;
    let noise = 3.0 * (2.0 * p * (1.0 - p) / WINDOW as f64).sqrt();
    eprintln!("HR@10: first {WINDOW} cases {first:.4}, last {WINDOW} {last:.4}, noise {noise:.4}");
    assert!(
        first > 0.5,
        "the history predicts the next view: HR@10 {first:.3}"
    );
    assert!(
        (first - last).abs() <= noise,
        "HR@10 {first:.3} over the first {WINDOW} cases, {last:.3} over the last (noise {noise:.3})"
    );
}
