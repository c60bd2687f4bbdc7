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
                "contract" => json!({"eq": ["customer.company_id", format!("account-{}", i % 4)]}),
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

/// A comparison that holds for every bench request (a visitor from Great Britain on the
/// web, paying in pounds, with something in the cart), known or not.
fn true_leaf(i: usize) -> Value {
    match i % 4 {
        0 => json!({"eq": ["session.country", "GB"]}),
        1 => json!({"gte": ["cart.quantity", 1]}),
        2 => json!({"ne": ["session.channel", "pos"]}),
        _ => json!({"eq": ["session.currency", "GBP"]}),
    }
}

/// An expression of exactly `n` nodes, at most `depth` deep, whose every comparison
/// holds for the bench visitor, so that nothing short-circuits: `and`s chained down to
/// a flat `and` of the rest.
fn true_tree(n: usize, depth: usize) -> Value {
    if n <= 1 {
        return true_leaf(0);
    }
    if depth <= 2 || n == 2 {
        return json!({"and": (0..n - 1).map(true_leaf).collect::<Vec<_>>()});
    }
    json!({"and": [true_leaf(n), true_tree(n - 2, depth - 1)]})
}

/// Which of the limits a ruleset at the limits pushes.
#[derive(Clone, Copy, Debug)]
pub enum AtLimits {
    /// Many promotions with one category list each, applying to a 200-line cart; many
    /// merchandising rules with a category boost.
    Many,
    /// Few promotions with the largest expressions (64-node trees 8 deep, line
    /// quantifiers over every line, 10,000-value lists), all exclusive (a run each);
    /// merchandising rules with the largest actions.
    Heavy,
}

/// The largest rulesets `vitrine::decide::limits` allows, in two shapes: 1,000,000
/// price entries over 200 lists (adjustments naming 1,000 categories), guardrails for
/// 100,000 products and 10,000 categories, 100,000 codes, and promotions and
/// merchandising rules up to the worst-case cost (checked: it compiles).
pub fn at_limits(catalog: &Catalog, shape: AtLimits) -> Value {
    let n = catalog.len();
    let product = |i: usize| catalog.product((i % n) as u32).id.to_string();
    let handles: Vec<String> = catalog
        .categories()
        .iter()
        .map(|c| c.handle.to_string())
        .collect();
    // 10,000 values: the catalog's categories first (so the list matches), then others.
    let long_categories: Vec<String> = handles
        .iter()
        .cloned()
        .chain((0..).map(|i| format!("other/category-{i}")))
        .take(10_000)
        .collect();
    let long_ids: Vec<String> = (0..10_000).map(product).collect();
    let (promotions, exclusive, target, condition, merch_rules, merch_action): (
        usize,
        usize,
        Value,
        Value,
        usize,
        Value,
    ) = match shape {
        // Counts sized so the cart and the search page cost just under
        // `limits::MAX_COST` (the bench prints both).
        AtLimits::Many => (
            252,
            0,
            json!({"in": ["line.category", long_categories]}),
            json!({"gte": ["cart.quantity", 1]}),
            32,
            json!({"boost": {"where": {"in": ["product.category", long_categories]}, "by_bps": 100}}),
        ),
        AtLimits::Heavy => (
            9,
            9,
            json!({"and": [{"in": ["line.category", long_categories]},
                           {"in": ["line.product_id", long_ids]},
                           {"gte": ["line.quantity", 1]}, {"ne": ["line.product_id", "none"]}]}),
            json!({"and": [{"all": {"in": ["line.category", long_categories]}},
                           {"count": {"where": {"gte": ["line.quantity", 1]}, "gte": 1}},
                           {"gte": ["cart.subtotal", gbp(100)]}]}),
            16,
            json!({"boost": {"where": {"and": [{"in": ["product.category", long_categories]},
                                               {"in": ["product.id", long_ids]},
                                               {"gte": ["product.price", gbp(0)]},
                                               {"ne": ["product.id", "none"]},
                                               {"eq": ["product.in_stock", true]},
                                               {"ne": ["product.id", "none-2"]},
                                               {"gte": ["product.price", gbp(1)]}]},
                             "by_bps": 100}}),
        ),
    };
    let promotions: Vec<Value> = (0..promotions)
        .map(|i| {
            let class = ["item", "order", "shipping"][i % 3];
            let mut p = json!({
                "id": format!("max-{i}"),
                "title": format!("Promotion {i}"),
                "class": class,
                "priority": (i % 9) as i64,
                "eligibility": true_tree(64, 8),
                "condition": condition,
                "value": if class == "shipping" { json!({"free_shipping": true}) } else { json!({"percent_bps": 100}) },
                "combines_with": ["item", "order", "shipping"],
            });
            if class == "item" {
                p["target"] = target.clone();
            }
            if i < exclusive {
                p["exclusive"] = json!("class");
            }
            if i % 26 == 1 {
                // 10 promotions of 10,000 codes each, 100,000 in all.
                p["trigger"] = json!("code");
                p["codes"] = json!((0..10_000).map(|k| format!("C{i}X{k}")).collect::<Vec<_>>());
            }
            p
        })
        .collect();
    let price_lists: Vec<Value> = (0..200)
        .map(|i| {
            if i % 40 == 39 {
                return json!({"id": format!("adj-{i}"), "kind": "adjustment", "currency": "GBP",
                              "scope": true_tree(16, 4),
                              "adjust": {"percent_off_bps": 300, "parent": format!("list-{}", i - 1),
                                         "categories": long_categories[..1_000]}});
            }
            let kind = ["base", "sale", "segment"][i % 3];
            json!({"id": format!("list-{i}"), "kind": kind,
                   "currency": "GBP", "priority": (i % 3) as i64, "scope": true_tree(16, 4),
                   "entries": (0..5_128).map(|k| {
                       let p = catalog.product(((i * 5_128 + k) % n) as u32);
                       json!({"product_id": &*p.id, "amount": p.price.amount * 9 / 10,
                              "tiers": [{"min_qty": 10, "amount": p.price.amount * 8 / 10}]})
                   }).collect::<Vec<_>>()})
        })
        .collect();
    let merchandising: Vec<Value> = (0..merch_rules)
        .map(|i| {
            json!({"id": format!("merch-{i}"), "priority": (i % 4) as i64,
                   "when": true_tree(64, 8), "action": merch_action})
        })
        .collect();
    let guard_products: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (product(i), json!({"min_margin_bps": 1_000})))
        .collect();
    let guard_categories: serde_json::Map<String, Value> = long_categories
        .iter()
        .map(|c| (c.clone(), json!(2_000)))
        .collect();
    json!({
        "promotions": promotions,
        "price_lists": price_lists,
        "merchandising": merchandising,
        "guardrails": {"min_margin_bps": 1_500, "products": guard_products, "categories": guard_categories},
        "shipping": [{"id": "standard", "amount": gbp(499), "when": true_tree(64, 8)}],
    })
}

/// The 20 codes a request at the limits sends: half of them codes of [`at_limits`]'
/// promotions, half unknown.
pub fn request_codes() -> Vec<String> {
    (0..20)
        .map(|k| {
            if k % 2 == 0 {
                format!("C{}X{k}", 1 + 26 * (k % 10))
            } else {
                format!("UNKNOWN{k}")
            }
        })
        .collect()
}
