//! Promotion semantics one by one, on the library: best-of groups, exclusivity,
//! combinability, weekly schedules, consent requirements, spend caps and buy X get Y.

use std::sync::OnceLock;

use serde_json::{Value, json};
use vitrine::decide::expr::Context;
use vitrine::decide::promo::{Evaluation, Usage};
use vitrine::decide::ruleset::compile;
use vitrine::domain::catalog::ProductRecord;
use vitrine::domain::{Catalog, Currency, Money};

fn gbp() -> Currency {
    Currency::parse("GBP").unwrap()
}

fn money(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

/// Two products: a 40.00 pan (cost 10.00) and a 10.00 mug (cost 2.00).
fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut edit = Catalog::empty().edit();
        for (id, price, cost, category) in [
            ("pan", 4000, 1000, "Kitchen > Pans"),
            ("mug", 1000, 200, "Kitchen > Mugs"),
        ] {
            edit.upsert_record(
                &ProductRecord {
                    id: id.into(),
                    title: id.into(),
                    handle: id.into(),
                    url: String::new(),
                    image_url: String::new(),
                    category: category.into(),
                    tags: vec![],
                    price: Money::new(price, gbp()),
                    cost: Some(Money::new(cost, gbp())),
                },
                100,
            )
            .unwrap();
        }
        edit.build().unwrap()
    })
}

/// 2023-11-14T22:13:20Z, a Tuesday.
const TUESDAY_EVENING: i64 = 1_700_000_000;

/// A cart to decide, with defaults for the rest: on a Tuesday evening, without
/// marketing consent, no codes sent, budgets unused.
struct Cart {
    lines: Vec<(&'static str, u32)>,
    now: i64,
    marketing: bool,
    codes: Vec<String>,
    usage: Usage,
}

fn cart(lines: &[(&'static str, u32)]) -> Cart {
    Cart {
        lines: lines.to_vec(),
        now: TUESDAY_EVENING,
        marketing: false,
        codes: Vec::new(),
        usage: Usage::default(),
    }
}

impl Cart {
    fn at(mut self, now: i64) -> Self {
        self.now = now;
        self
    }

    fn with_marketing_consent(mut self) -> Self {
        self.marketing = true;
        self
    }

    fn codes(mut self, codes: &[&str]) -> Self {
        self.codes = codes.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    fn used(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// The evaluation under `promotions` (and a 5.00 standard shipping rate).
    fn decide(&self, promotions: &Value) -> Evaluation {
        let rules = compile(
            &json!({"promotions": promotions, "shipping": [{"id": "std", "amount": money(500)}]}),
        )
        .expect("valid ruleset");
        let catalog = catalog();
        let ctx = Context::anonymous(
            gbp(),
            self.lines
                .iter()
                .map(|(p, q)| {
                    vitrine::decide::line(
                        catalog,
                        &vitrine::recommend::reads::NO_LIVE,
                        catalog.lookup(p).unwrap(),
                        *q,
                    )
                })
                .collect(),
            self.now,
            self.marketing,
        );
        let usage = self.usage;
        vitrine::decide::evaluate_cart(&rules, ctx, &self.codes, &|_| usage)
            .expect("priced in the cart's currency")
    }
}

fn applied(e: &Evaluation) -> Vec<(&str, i64)> {
    e.applied
        .iter()
        .map(|a| (a.id.as_str(), a.amount.amount))
        .collect()
}

fn reason(e: &Evaluation, id: &str) -> Option<(String, Option<String>)> {
    e.rejected.iter().find(|r| r.id == id).map(|r| {
        (
            serde_json::to_value(r.reason)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned(),
            r.by.clone(),
        )
    })
}

fn percent(id: &str, class: &str, bps: i64) -> Value {
    json!({"id": id, "title": id, "class": class, "value": {"percent_bps": bps}})
}

#[test]
fn a_group_keeps_its_best_member() {
    let mut a = percent("ten", "order", 1000);
    let mut b = percent("fifteen", "order", 1500);
    a["group"] = json!("welcome");
    b["group"] = json!("welcome");
    let e = cart(&[("pan", 1)]).decide(&json!([a, b]));
    assert_eq!(applied(&e), vec![("fifteen", 600)]);
    assert_eq!(
        reason(&e, "ten"),
        Some(("lost_group".into(), Some("fifteen".into())))
    );
}

#[test]
fn an_exclusive_promotion_wins_only_when_it_gives_more_than_the_stack() {
    let stack = [percent("a", "order", 1000), percent("b", "order", 1000)];
    let mut big = percent("big", "order", 2500);
    big["exclusive"] = json!("all");
    let e = cart(&[("pan", 1)]).decide(&json!([stack[0], stack[1], big]));
    assert_eq!(applied(&e), vec![("big", 1000)]);
    assert_eq!(
        reason(&e, "a"),
        Some(("excluded_by".into(), Some("big".into())))
    );
    let mut small = percent("small", "order", 1500);
    small["exclusive"] = json!("all");
    let e = cart(&[("pan", 1)]).decide(&json!([stack[0], stack[1], small]));
    assert_eq!(applied(&e), vec![("a", 400), ("b", 360)]);
    assert_eq!(reason(&e, "small").map(|r| r.0), Some("excluded_by".into()));
}

#[test]
fn promotions_that_do_not_combine_say_with_which() {
    let item = percent("item-10", "item", 1000);
    let mut order = percent("order-10", "order", 1000);
    order["combines_with"] = json!(["shipping"]);
    let e = cart(&[("pan", 1)]).decide(&json!([item, order]));
    assert_eq!(applied(&e), vec![("item-10", 400)]);
    assert_eq!(
        reason(&e, "order-10"),
        Some(("not_combinable".into(), Some("item-10".into())))
    );
}

#[test]
fn a_weekly_schedule_holds_in_its_hours_only() {
    let mut happy = percent("happy-hour", "item", 2000);
    happy["schedule"] = json!({"days": ["tue"], "from": "22:00", "until": "23:00"});
    let e = cart(&[("pan", 1)]).decide(&json!([&happy]));
    assert_eq!(applied(&e), vec![("happy-hour", 800)]);
    let e = cart(&[("pan", 1)])
        .at(TUESDAY_EVENING + 3_600)
        .decide(&json!([happy]));
    assert_eq!(
        reason(&e, "happy-hour").map(|r| r.0),
        Some("out_of_window".into())
    );
}

#[test]
fn a_promotion_that_needs_marketing_consent_waits_for_it() {
    let mut p = percent("newsletter", "order", 1000);
    p["requires_consent"] = json!("marketing");
    let e = cart(&[("pan", 1)]).decide(&json!([&p]));
    assert_eq!(
        reason(&e, "newsletter").map(|r| r.0),
        Some("no_consent".into())
    );
    let e = cart(&[("pan", 1)])
        .with_marketing_consent()
        .decide(&json!([p]));
    assert_eq!(applied(&e), vec![("newsletter", 400)]);
}

#[test]
fn a_spend_budget_caps_the_last_discount_and_then_runs_out() {
    let mut p = percent("budgeted", "order", 5000);
    p["budget"] = json!({"max_spend": money(10_000)});
    let used = |spent| Usage {
        uses: 3,
        spent,
        customer_uses: 0,
    };
    let e = cart(&[("pan", 1)]).used(used(9_000)).decide(&json!([&p]));
    // 50% of 40.00 would be 20.00; 10.00 of the budget is left; the floor allows 30.00.
    assert_eq!(applied(&e), vec![("budgeted", 1_000)]);
    let e = cart(&[("pan", 1)]).used(used(10_000)).decide(&json!([p]));
    assert_eq!(
        reason(&e, "budgeted").map(|r| r.0),
        Some("budget_exhausted".into())
    );
}

#[test]
fn buy_two_get_one_makes_the_cheapest_units_free_and_codes_gate_code_promotions() {
    let p = json!({"id": "3for2", "title": "3 for 2", "class": "item", "trigger": "code", "codes": ["THREE"],
                   "value": {"buy_x_get_y": {"buy": 2, "get": 1}}});
    let e = cart(&[("pan", 2), ("mug", 1)]).decide(&json!([&p]));
    assert!(
        e.applied.is_empty() && e.rejected.is_empty(),
        "not sent, not listed"
    );
    let e = cart(&[("pan", 2), ("mug", 1)])
        .codes(&["THREE"])
        .decide(&json!([p]));
    // The mug is the free unit; its floor (the 2.00 cost, no margin set) keeps 2.00.
    assert_eq!(applied(&e), vec![("3for2", 800)]);
    assert_eq!(e.applied[0].lines[0].product_id, "mug");
    assert_eq!(e.applied[0].clamped.map(|m| m.amount), Some(200));
}
