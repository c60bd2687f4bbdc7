//! Properties of cart decisions over random rulesets and carts: no line ends under its
//! margin floor (and a product with neither cost nor minimum price is never discounted),
//! order discounts are allocated over lines exactly, and the same inputs give the same
//! decision.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use vitrine::decide::expr::Context;
use vitrine::decide::promo::{Usage, allocate};
use vitrine::decide::ruleset::compile;
use vitrine::domain::catalog::ProductRecord;
use vitrine::domain::{Catalog, Currency, Money};

const PRODUCTS: usize = 12;

fn gbp() -> Currency {
    Currency::parse("GBP").unwrap()
}

/// Twelve products in three categories; every fourth has no cost.
fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut edit = Catalog::empty().edit();
        for i in 0..PRODUCTS {
            let price = 500 + (i as i64 * 737) % 9_000;
            edit.upsert_record(
                &ProductRecord {
                    id: format!("p{i}"),
                    title: format!("Product {i}"),
                    handle: format!("p{i}"),
                    url: String::new(),
                    image_url: String::new(),
                    category: ["Kitchen > Pans", "Kitchen > Mugs", "Pantry"][i % 3].into(),
                    tags: vec![],
                    price: Money::new(price, gbp()),
                    cost: (i % 4 != 3)
                        .then(|| Money::new(price * (30 + (i as i64 * 7) % 50) / 100, gbp())),
                },
                100,
            )
            .unwrap();
        }
        edit.build().unwrap()
    })
}

fn money(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

fn value() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        (0i64..=10_000).prop_map(|b| ("any".to_owned(), json!({"percent_bps": b}))),
        (1i64..5_000).prop_map(|a| ("any".to_owned(), json!({"amount_off": money(a)}))),
        (0i64..5_000).prop_map(|a| ("item".to_owned(), json!({"fixed_price": money(a)}))),
        (1u32..4, 1u32..3, 0i64..=10_000).prop_map(|(b, g, p)| (
            "item".to_owned(),
            json!({"buy_x_get_y": {"buy": b, "get": g, "percent_bps": p}})
        )),
        Just(("shipping".to_owned(), json!({"free_shipping": true}))),
    ]
}

fn promotion() -> impl Strategy<Value = Value> {
    (
        value(),
        0usize..3,
        -5i64..5,
        prop::option::of(0usize..3),
        0usize..3,
        prop::option::of(1i64..3_000),
        0usize..3,
        prop::option::of(0i64..20_000),
    )
        .prop_map(
            |((kind, value), class, priority, group, exclusive, max, target, threshold)| {
                let class = match kind.as_str() {
                    "item" => "item",
                    "shipping" => "shipping",
                    _ => ["item", "order", "shipping"][class],
                };
                let exclusive = ["none", "class", "all"][exclusive];
                let mut p = json!({
                    "id": "", "title": "t", "class": class, "value": value, "priority": priority,
                    "exclusive": exclusive,
                });
                if let Some(g) = group {
                    p["group"] = json!(format!("{class}-{g}"));
                }
                if let Some(m) = max {
                    p["max_discount"] = money(m);
                }
                if target > 0 {
                    let under = ["kitchen", "pantry"][target - 1];
                    p["target"] = json!({"in": ["line.category", [under]]});
                }
                if let Some(t) = threshold {
                    p["condition"] = json!({"gte": ["cart.subtotal", money(t)]});
                }
                p
            },
        )
}

fn ruleset() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(promotion(), 0..12),
        prop::collection::vec((0..PRODUCTS, 0i64..12_000, prop::option::of((2u32..10, 0i64..12_000))), 0..8),
        0i64..5_000,
        0i64..1_000,
    )
        .prop_map(|(mut promotions, entries, margin, shipping)| {
            for (i, p) in promotions.iter_mut().enumerate() {
                p["id"] = json!(format!("promo-{i}"));
            }
            let mut seen = std::collections::BTreeMap::new();
            for (p, amount, tier) in entries {
                let mut e = json!({"product_id": format!("p{p}"), "amount": amount});
                if let Some((q, a)) = tier {
                    e["tiers"] = json!([{"min_qty": q, "amount": a}]);
                }
                seen.insert(p, e);
            }
            json!({
                "promotions": promotions,
                "price_lists": [{"id": "sale", "kind": "sale", "currency": "GBP",
                                 "entries": seen.into_values().collect::<Vec<_>>()}],
                "guardrails": {"min_margin_bps": margin, "products": {"p7": {"min_price": money(900)}}},
                "shipping": [{"id": "std", "amount": money(shipping)}]
            })
        })
}

fn context(catalog: &'static Catalog, lines: &[(usize, u32)]) -> Context<'static> {
    Context::anonymous(
        gbp(),
        lines
            .iter()
            .map(|&(p, q)| {
                vitrine::decide::line(
                    catalog,
                    &vitrine::recommend::reads::NO_LIVE,
                    catalog.lookup(&format!("p{p}")).unwrap(),
                    q,
                )
            })
            .collect(),
        1_800_000_000,
        true,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_line_ends_under_its_floor_and_discounts_add_up(
        doc in ruleset(),
        lines in prop::collection::vec((0..PRODUCTS, 1u32..20), 1..20),
    ) {
        let rules = compile(&doc).expect("generated rulesets are valid");
        let catalog = catalog();
        let mut ctx = context(catalog, &lines);
        let (_, priced) = vitrine::decide::price_lines(&rules, &mut ctx);
        let eval = vitrine::decide::promo::evaluate(rules.promotions(), &ctx, &priced, &[], &|_| Usage::default());
        for (i, line) in eval.lines.iter().enumerate() {
            let product = catalog.product(catalog.lookup(&line.product_id).unwrap());
            let category = &catalog.categories()[usize::from(product.category)];
            let floor = vitrine::decide::price::floor(rules.pricing(), product, category, gbp());
            let qty = i64::from(line.quantity);
            match floor {
                Some(f) => {
                    prop_assert!(line.unit_price.amount >= f, "unit {} under floor {f}", line.unit_price.amount);
                    prop_assert!(line.total.amount >= f * qty, "line {i}: {} under {} x {qty}", line.total.amount, f);
                }
                None => prop_assert_eq!(line.discount.amount, 0, "line {} has no floor and was discounted", i),
            }
            prop_assert_eq!(line.subtotal.amount - line.discount.amount, line.total.amount);
        }
        // Every applied promotion's parts sum to its amount; the lines' discounts to
        // the goods discounts.
        let mut goods = 0;
        for a in &eval.applied {
            let parts: i64 = a.lines.iter().map(|l| l.amount.amount).sum::<i64>()
                + a.shipping.map_or(0, |s| s.amount);
            prop_assert_eq!(parts, a.amount.amount, "{}", a.id);
            goods += a.lines.iter().map(|l| l.amount.amount).sum::<i64>();
        }
        let line_discounts: i64 = eval.lines.iter().map(|l| l.discount.amount).sum();
        prop_assert_eq!(line_discounts, goods);
        // The documented formulas: discount is the goods' discounts; total = subtotal -
        // discount + shipping.total; shipping.total = shipping.amount - shipping.discount.
        prop_assert_eq!(eval.discount.amount, goods);
        prop_assert_eq!(eval.total.amount, eval.subtotal.amount - eval.discount.amount + eval.shipping.total.amount);
        prop_assert_eq!(eval.shipping.total.amount, eval.shipping.amount.amount - eval.shipping.discount.amount);
        prop_assert!(eval.shipping.total.amount >= 0);

        // The same inputs, the same decision.
        let again = vitrine::decide::promo::evaluate(rules.promotions(), &ctx, &priced, &[], &|_| Usage::default());
        prop_assert_eq!(&eval, &again);
        let recompiled = compile(&doc).unwrap();
        prop_assert_eq!(&recompiled.version, &rules.version);
    }

    #[test]
    fn allocation_is_exact(total in 0i64..1_000_000, weights in prop::collection::vec(0i64..100_000, 1..30)) {
        let parts = allocate(total, &weights);
        let sum: i64 = weights.iter().sum();
        prop_assert_eq!(parts.len(), weights.len());
        if sum == 0 {
            prop_assert!(parts.iter().all(|&p| p == 0));
        } else {
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            prop_assert!(parts.iter().all(|&p| p >= 0));
            if total <= sum {
                for (p, w) in parts.iter().zip(&weights) {
                    prop_assert!(p <= w, "{} over its weight {}", p, w);
                }
            }
        }
    }
}
