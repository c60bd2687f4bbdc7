//! The large ruleset the decisioning benches use: 200 promotions, 50 price lists and 100
//! merchandising rules over a demo catalog, with the expression shapes merchants write
//! (segments, tiers, thresholds, categories, windows, groups, exclusivity, codes).

use serde_json::{Value, json};
use vitrine::domain::Catalog;

fn gbp(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

/// `worst`: every promotion is live, automatic and open to this visitor, so that dozens
/// stack on one cart; otherwise a shop's usual mix: a campaign calendar (a third of the
/// promotions out of their window), codes not entered, segment and tier targeting.
pub fn large_ruleset(catalog: &Catalog, worst: bool) -> Value {
    let handles: Vec<String> = catalog
        .categories()
        .iter()
        .map(|c| c.handle.to_string())
        .collect();
    let handle = |i: usize| handles[i % handles.len()].clone();
    let placements = [
        "home",
        "product",
        "cart",
        "category",
        "search",
        "checkout",
        "post_purchase",
    ];
    let promotions: Vec<Value> = (0..200)
        .map(|i| {
            let class = ["item", "order", "shipping"][i % 3];
            let value = match (class, i % 4) {
                ("shipping", _) => json!({"free_shipping": true}),
                (_, 0) => json!({"percent_bps": 500 + (i % 20) * 100}),
                ("item", 1) => json!({"buy_x_get_y": {"buy": 2, "get": 1}}),
                (_, _) => json!({"amount_off": gbp(200 + (i as i64 % 10) * 50)}),
            };
            let eligibility = match i % 5 {
                0 => json!({"in_segment": format!("segment-{}", i % 7)}),
                1 => {
                    let tier = ["gold", "silver"][i % 2];
                    json!({"eq": ["customer.loyalty_tier", tier]})
                }
                2 => json!({"lte": ["customer.orders_count", 3]}),
                3 => json!({"and": [{"eq": ["session.country", "GB"]}, {"not": {"eq": ["session.device", "app"]}}]}),
                _ => json!(true),
            };
            let mut p = json!({
                "id": format!("promo-{i}"),
                "title": format!("Promotion {i}"),
                "class": class,
                "priority": (i % 9) as i64,
                "eligibility": eligibility,
                "condition": {"gte": ["cart.subtotal", gbp(1_000 + (i as i64 % 8) * 2_500)]},
                "value": value,
                "max_discount": gbp(5_000),
            });
            if class == "item" {
                p["target"] = json!({"in": ["line.category", [handle(i)]]});
            }
            if i % 10 == 0 {
                p["group"] = json!(format!("{class}-group-{}", i % 3));
            }
            if i % 50 == 7 {
                p["exclusive"] = json!("class");
            }
            if i % 20 == 3 {
                p["trigger"] = json!("code");
                p["codes"] = json!([format!("CODE{i}")]);
            }
            if !worst {
                match i % 6 {
                    0 => p["window"] = json!({"until": "2026-01-01T00:00:00Z"}),
                    1 => p["window"] = json!({"from": "2031-01-01T00:00:00Z"}),
                    _ => {}
                }
                if i % 4 == 3 {
                    p["trigger"] = json!("code");
                    p["codes"] = json!([format!("SAVE{i}")]);
                }
                let tier = ["gold", "silver", "platinum"][i % 3];
                p["eligibility"] = match i % 10 {
                    0..=3 => json!({"in_segment": format!("segment-{}", i % 7)}),
                    4 | 5 => json!({"eq": ["customer.loyalty_tier", tier]}),
                    6 => json!({"lte": ["customer.orders_count", 0]}),
                    7 => json!({"eq": ["session.country", "FR"]}),
                    _ => json!(true),
                };
                if i % 5 == 0 {
                    p["group"] = json!(format!("{class}-best-of"));
                }
            }
            p
        })
        .collect();
    let price_lists: Vec<Value> = (0..50)
        .map(|i| {
            let kind = ["segment", "contract", "sale", "adjustment", "base"][i % 5];
            let scope = match kind {
                "segment" => json!({"in_segment": format!("segment-{}", i % 7)}),
                "contract" => json!({"eq": ["customer.account_id", format!("account-{}", i % 4)]}),
                "adjustment" => json!({"eq": ["customer.loyalty_tier", "gold"]}),
                _ => json!(true),
            };
            let mut l = json!({"id": format!("list-{i}"), "kind": kind, "currency": "GBP",
                               "priority": (i % 3) as i64, "scope": scope});
            if kind == "adjustment" {
                l["adjust"] = json!({"percent_off_bps": 500, "categories": [handle(i)]});
            } else {
                l["entries"] = Value::Array(
                    (0..200)
                        .map(|k| {
                            let p = catalog.product(((i * 200 + k) * 7 % catalog.len()) as u32);
                            json!({"product_id": &*p.id, "amount": p.price.amount * 9 / 10,
                                   "tiers": [{"min_qty": 10, "amount": p.price.amount * 8 / 10}]})
                        })
                        .collect(),
                );
            }
            l
        })
        .collect();
    let merchandising: Vec<Value> = (0..100)
        .map(|i| {
            let action = match i % 5 {
                0 => json!({"boost": {"where": {"in": ["product.category", [handle(i)]]}, "by_bps": 5_000}}),
                1 => json!({"bury": {"where": {"lt": ["product.price", gbp(1_000)]}, "by_bps": 3_000}}),
                2 => json!({"hide": {"contains": ["product.tags", format!("hidden-{i}")]}}),
                3 => json!({"pin": {"product_id": &*catalog.product((i * 31 % catalog.len()) as u32).id, "position": 1 + i % 5}}),
                _ => json!({"slot": {"where": {"in": ["product.category", [handle(i + 1)]]}, "position": 3}}),
            };
            json!({"id": format!("merch-{i}"), "placements": [placements[i % placements.len()]],
                   "priority": (i % 4) as i64, "when": {"ne": ["session.channel", "pos"]}, "action": action})
        })
        .collect();
    json!({
        "promotions": promotions,
        "price_lists": price_lists,
        "merchandising": merchandising,
        "guardrails": {"min_margin_bps": 1_500},
        "shipping": [{"id": "standard", "amount": gbp(499)}],
    })
}
