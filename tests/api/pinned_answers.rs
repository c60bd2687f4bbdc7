//! Answers pinned byte for byte: a demo shop large enough to have products no one has
//! bought or viewed yet, and requests down every path (a product page, warm and cold; a
//! known customer's home page and a new visitor's; a cart; a search with candidates; a
//! category page). Work on the serving path's speed must leave every byte as it was
//! (the decision id aside, which is new on every answer).
//!
//! `VITRINE_PIN=write cargo test --test api pinned` writes the fixture anew: only when
//! a change is meant to change answers, said in its commit.

use crate::common;

use common::TestApp;
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/answers/pinned.json"
);

const REQUESTS: &[&str] = &[
    "session_id=pin-1&placement=product&product_id=p000001",
    "session_id=pin-1&placement=product&product_id=p000777",
    "session_id=pin-1&placement=product&product_id=p004999",
    "session_id=pin-1&placement=product&product_id=p003210&limit=20",
    "customer_id=c0000001&placement=home",
    "customer_id=c0000042&placement=home&limit=24",
    "customer_id=c0000042&placement=product&product_id=p000100",
    "session_id=pin-new&placement=home",
    "session_id=pin-new&placement=home&country=DE&device=mobile",
    "customer_id=c0000007&placement=cart&cart=p000010:1,p000200:2,p001000:1,p002000:1,p004000:3",
    "session_id=pin-2&placement=search&query=pan&candidates=p000001,p000002,p000003,p000010,p000020,p000300,p004321",
    "customer_id=c0000003&placement=category&category=kitchen",
    "customer_id=c0000003&placement=post_purchase",
];

#[tokio::test]
async fn answers_stay_byte_for_byte_what_they_were() {
    let mut settings = common::settings();
    settings.demo.products = 5_000;
    settings.demo.customers = 200;
    settings.demo.events = 20_000;
    let app = TestApp::spawn(settings).await;
    let mut answers = serde_json::Map::new();
    for q in REQUESTS {
        let mut answer = app.recommend(q).await;
        let object = answer.as_object_mut().expect("an object");
        assert!(object.remove("decision_id").is_some());
        answers.insert((*q).to_owned(), answer);
    }
    let got = serde_json::to_string_pretty(&Value::Object(answers)).unwrap();
    if std::env::var("VITRINE_PIN").as_deref() == Ok("write") {
        std::fs::write(FIXTURE, format!("{got}\n")).unwrap();
        return;
    }
    let want = std::fs::read_to_string(FIXTURE).expect("the pinned answers");
    let want: Value = serde_json::from_str(&want).unwrap();
    let got: Value = serde_json::from_str(&got).unwrap();
    for q in REQUESTS {
        assert_eq!(
            serde_json::to_string(&got[q]).unwrap(),
            serde_json::to_string(&want[q]).unwrap(),
            "{q}"
        );
    }
}
