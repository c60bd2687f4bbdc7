//! How large a ruleset may be, so that no ruleset can make a request expensive.
//!
//! Besides plain caps (counts, list sizes, expression depth and size), every ruleset has
//! a worst-case *evaluation cost*, in units of about one simple comparison, on the
//! largest request the API takes: a 200-line cart, and a page re-ranking 500 candidates
//! (search and category; the other placements merchandise at most 210). A comparison
//! naming categories costs [`CATEGORY_WEIGHT`] (it looks up the category and each one
//! above it), one with a list of values [`LIST_WEIGHT`], any other node 1. A line
//! quantifier (`any`, `all`, `count`, `sum`) and a promotion target cost their expression
//! once per line; a merchandising action once per candidate of its placements; a
//! promotion's condition, and its discount ([`OUTCOME_WEIGHT`]), once per run (one run,
//! plus one per exclusive promotion); pricing a product (each line, each candidate and
//! each product answered) 1 plus [`CATEGORY_WEIGHT`] per adjustment list. A ruleset whose cart cost, or whose page cost on
//! any placement, is over [`MAX_COST`] is refused at validation with the path and the
//! limit, so the worst request stays within a few milliseconds of CPU (measured by
//! `cargo bench --bench decide` on the largest rulesets these limits allow).
//! `docs/rules.md` documents every number here.

use super::expr::{Attr, Errors, Expr, Lit};
use super::merch::Action;
use super::ruleset::{Exclusive, Ruleset};
use crate::domain::Placement;

/// Nesting of an expression (`and`, `or`, `not`, quantifiers), counting its root.
pub const MAX_DEPTH: usize = 8;
/// Nodes in one expression.
pub const MAX_NODES: usize = 64;
/// Values in one `in`/`nin` list (matched by binary search, not one by one).
pub const MAX_LIST: usize = 10_000;
pub const MAX_PROMOTIONS: usize = 500;
pub const MAX_EXCLUSIVE: usize = 16;
/// Codes of one promotion, and in all.
pub const MAX_CODES_PER_PROMOTION: usize = 10_000;
pub const MAX_CODES: usize = 100_000;
pub const MAX_PRICE_LISTS: usize = 200;
/// Price entries in all, and quantity tiers of one entry.
pub const MAX_ENTRIES: usize = 1_000_000;
pub const MAX_TIERS: usize = 16;
/// Categories an adjustment names.
pub const MAX_ADJUST_CATEGORIES: usize = 1_000;
pub const MAX_MERCH_RULES: usize = 500;
/// Banners, collections and module orders, in all; products of one collection.
pub const MAX_CONTENT: usize = 500;
pub const MAX_COLLECTION_PRODUCTS: usize = 100;
pub const MAX_SHIPPING_RATES: usize = 100;
/// Guardrail entries by product, and by category.
pub const MAX_GUARDRAIL_PRODUCTS: usize = 100_000;
pub const MAX_GUARDRAIL_CATEGORIES: usize = 10_000;

/// The largest request: cart lines, and candidates a page merchandises (search and
/// category re-rank up to 500 sent; the others fetch twice their limit of 100, plus 10).
pub const LINES: u64 = 200;
pub const CANDIDATES: u64 = 500;
pub const FETCHED: u64 = 210;
/// What a comparison naming categories, and one with a list of values, cost.
pub const CATEGORY_WEIGHT: u64 = 8;
pub const LIST_WEIGHT: u64 = 2;
/// What computing one promotion's discount on the largest cart costs, per run.
pub const OUTCOME_WEIGHT: u64 = 13;
/// The evaluation cost one request may have, worst case.
pub const MAX_COST: u64 = 200_000;

/// Depth, nodes and cost (with line quantifiers at [`LINES`] lines) of an expression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub depth: usize,
    pub nodes: usize,
    pub cost: u64,
}

pub fn shape(e: &Expr) -> Shape {
    let all = |children: &[Expr]| {
        children.iter().map(shape).fold(
            Shape {
                depth: 0,
                nodes: 1,
                cost: 1,
            },
            |acc, s| Shape {
                depth: acc.depth.max(s.depth),
                nodes: acc.nodes + s.nodes,
                cost: acc.cost + s.cost,
            },
        )
    };
    let per_line = |inner: &Expr| {
        let s = shape(inner);
        Shape {
            depth: s.depth,
            nodes: s.nodes + 1,
            cost: 1 + LINES * s.cost,
        }
    };
    let s = match e {
        Expr::Const(_) | Expr::Exists(_) => Shape {
            depth: 0,
            nodes: 1,
            cost: 1,
        },
        Expr::Cmp { attr, lit, .. } => Shape {
            depth: 0,
            nodes: 1,
            cost: match (attr, lit) {
                (Attr::ProductCategory | Attr::LineCategory, _) => CATEGORY_WEIGHT,
                (_, Lit::Strs(_) | Lit::Ints(_)) => LIST_WEIGHT,
                _ => 1,
            },
        },
        Expr::And(c) | Expr::Or(c) => all(c),
        Expr::Not(c) => all(std::slice::from_ref(c)),
        Expr::AnyLine(c) | Expr::AllLines(c) => per_line(c),
        Expr::CountLines { cond, .. } | Expr::SumLines { cond, .. } => per_line(cond),
    };
    Shape {
        depth: s.depth + 1,
        ..s
    }
}

fn list_len(lit: &Lit) -> usize {
    match lit {
        Lit::Strs(s) => s.len(),
        Lit::Ints(s) => s.len(),
        Lit::Bool(_) | Lit::Int(_) | Lit::Money(_) | Lit::Str(_) | Lit::Time(_) => 0,
    }
}

/// The longest literal list in an expression.
fn longest_list(e: &Expr) -> usize {
    match e {
        Expr::Cmp { lit, .. } => list_len(lit),
        Expr::SumLines { lit, cond, .. } => list_len(lit).max(longest_list(cond)),
        Expr::Const(_) | Expr::Exists(_) => 0,
        Expr::And(c) | Expr::Or(c) => c.iter().map(longest_list).max().unwrap_or(0),
        Expr::Not(c) | Expr::AnyLine(c) | Expr::AllLines(c) => longest_list(c),
        Expr::CountLines { cond, .. } => longest_list(cond),
    }
}

/// Checks one expression's depth, size and lists; returns its cost.
pub fn check_expr(e: &Expr, path: &str, errors: &mut Errors) -> u64 {
    let s = shape(e);
    if s.depth > MAX_DEPTH {
        errors.push(
            path,
            format!("nested {} deep; the limit is {MAX_DEPTH}", s.depth),
        );
    }
    if s.nodes > MAX_NODES {
        errors.push(
            path,
            format!("{} nodes; the limit is {MAX_NODES} per expression", s.nodes),
        );
    }
    let list = longest_list(e);
    if list > MAX_LIST {
        errors.push(
            path,
            format!("a list of {list} values; the limit is {MAX_LIST}"),
        );
    }
    s.cost
}

/// Refuses a count over its cap, naming the path and the limit.
pub fn cap(n: usize, max: usize, path: &str, what: &str, errors: &mut Errors) {
    if n > max {
        errors.push(path, format!("{n} {what}; the limit is {max}"));
    }
}

/// Checks every limit of a compiled ruleset, promotions and rules still in the
/// document's order (so paths name what was written), including the worst-case costs of
/// a cart evaluation and of a page (offers, merchandising, content, prices).
pub fn check(rules: &Ruleset, errors: &mut Errors) -> Costs {
    cap(
        rules.promotions.len(),
        MAX_PROMOTIONS,
        "$.promotions",
        "promotions",
        errors,
    );
    let exclusive = rules
        .promotions
        .iter()
        .filter(|p| p.exclusive != Exclusive::None)
        .count();
    cap(
        exclusive,
        MAX_EXCLUSIVE,
        "$.promotions",
        "exclusive promotions",
        errors,
    );
    let runs = 1 + exclusive as u64;
    let (mut cart, mut page) = (0u64, 0u64);
    let mut codes = 0;
    for (i, p) in rules.promotions.iter().enumerate() {
        let at = |field: &str| format!("$.promotions[{i}].{field}");
        let eligibility = check_expr(&p.eligibility, &at("eligibility"), errors);
        let condition = check_expr(&p.condition, &at("condition"), errors);
        let target = check_expr(&p.target, &at("target"), errors);
        cart += eligibility + LINES * target + runs * (condition + OUTCOME_WEIGHT);
        page += eligibility + condition;
        cap(
            p.codes.len(),
            MAX_CODES_PER_PROMOTION,
            &at("codes"),
            "codes",
            errors,
        );
        codes += p.codes.len();
    }
    cap(codes, MAX_CODES, "$.promotions", "codes in all", errors);
    cap(
        rules.price_lists.len(),
        MAX_PRICE_LISTS,
        "$.price_lists",
        "price lists",
        errors,
    );
    let mut entries = 0;
    for (i, l) in rules.price_lists.iter().enumerate() {
        let scope = check_expr(&l.scope, &format!("$.price_lists[{i}].scope"), errors);
        cart += scope;
        page += scope;
        entries += l.entry_count;
        cap(
            l.max_tiers,
            MAX_TIERS,
            &format!("$.price_lists[{i}].entries"),
            "tiers in one entry",
            errors,
        );
        if let Some(a) = &l.adjust {
            cap(
                a.categories.len(),
                MAX_ADJUST_CATEGORIES,
                &format!("$.price_lists[{i}].adjust.categories"),
                "categories",
                errors,
            );
        }
    }
    cap(
        entries,
        MAX_ENTRIES,
        "$.price_lists",
        "entries in all",
        errors,
    );
    // Pricing one product: its lists, and every adjustment's categories.
    let adjustments = rules
        .price_lists
        .iter()
        .filter(|l| l.adjust.is_some())
        .count() as u64;
    let price = 1 + adjustments * CATEGORY_WEIGHT;
    cart += LINES * price;
    cap(
        rules.shipping.len(),
        MAX_SHIPPING_RATES,
        "$.shipping",
        "shipping rates",
        errors,
    );
    for (i, s) in rules.shipping.iter().enumerate() {
        cart += check_expr(&s.when, &format!("$.shipping[{i}].when"), errors);
    }
    cap(
        rules.merchandising.len(),
        MAX_MERCH_RULES,
        "$.merchandising",
        "merchandising rules",
        errors,
    );
    // What each placement adds to the page: pricing what it merchandises and answers
    // (besides the cart's lines), its merchandising and its content.
    let candidates_on = |p: Placement| match p {
        Placement::Search | Placement::Category => CANDIDATES,
        Placement::Home
        | Placement::Product
        | Placement::Cart
        | Placement::Checkout
        | Placement::PostPurchase => FETCHED,
    };
    let mut placed = Placement::ALL.map(|p| (2 * candidates_on(p) + LINES) * price);
    let on =
        |placements: &[Placement], p: Placement| placements.is_empty() || placements.contains(&p);
    for (i, r) in rules.merchandising.iter().enumerate() {
        let when = check_expr(&r.when, &format!("$.merchandising[{i}].when"), errors);
        let action = format!("$.merchandising[{i}].action");
        let per_candidate = match &r.action {
            Action::Filter(e)
            | Action::Hide(e)
            | Action::Boost { matches: e, .. }
            | Action::Slot { matches: e, .. } => check_expr(e, &action, errors),
            Action::Pin { .. } | Action::Diversity { .. } => 0,
        };
        for (k, p) in Placement::ALL.into_iter().enumerate() {
            if on(&r.placements, p) {
                placed[k] += 1 + when + candidates_on(p) * per_candidate;
            }
        }
    }
    let c = &rules.content;
    cap(
        c.banners.len() + c.collections.len() + c.modules.len(),
        MAX_CONTENT,
        "$.content",
        "content items",
        errors,
    );
    for (kind, items) in [
        ("banners", &c.banners),
        ("collections", &c.collections),
        ("modules", &c.modules),
    ] {
        for (i, item) in items.iter().enumerate() {
            let when = check_expr(&item.when, &format!("$.content.{kind}[{i}].when"), errors);
            for (k, p) in Placement::ALL.into_iter().enumerate() {
                if on(&item.placements, p) {
                    placed[k] += when;
                }
            }
            if let super::content::Body::Collection(col) = &item.body {
                cap(
                    col.product_ids.len(),
                    MAX_COLLECTION_PRODUCTS,
                    &format!("$.content.{kind}[{i}].product_ids"),
                    "products",
                    errors,
                );
            }
        }
    }
    let g = &rules.guardrails;
    cap(
        g.products.len(),
        MAX_GUARDRAIL_PRODUCTS,
        "$.guardrails.products",
        "products",
        errors,
    );
    cap(
        g.categories.len(),
        MAX_GUARDRAIL_CATEGORIES,
        "$.guardrails.categories",
        "categories",
        errors,
    );
    let (worst, on_page) = Placement::ALL
        .into_iter()
        .zip(placed)
        .max_by_key(|(_, c)| *c)
        .unwrap_or((Placement::Home, 0));
    for (what, cost) in [
        ("a cart evaluation".to_owned(), cart),
        (format!("a {} page", worst.as_str()), page + on_page),
    ] {
        if cost > MAX_COST {
            errors.push(
                "$",
                format!(
                    "the worst case of {what} costs {cost}; the limit is {MAX_COST} (docs/rules.md, Limits)"
                ),
            );
        }
    }
    Costs {
        cart,
        page: page + on_page,
    }
}

/// A ruleset's worst-case costs (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    pub cart: u64,
    /// The most expensive placement's.
    pub page: u64,
}

/// The worst-case costs of a compiled ruleset.
pub fn costs(rules: &Ruleset) -> Costs {
    check(rules, &mut Errors::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::expr::{Scope, compile};
    use serde_json::json;

    fn expr(v: &serde_json::Value, scope: Scope) -> Expr {
        let mut errors = Errors::default();
        let e = compile(v, scope, "$", &mut errors);
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        e
    }

    #[test]
    fn quantifiers_cost_their_expression_per_line() {
        let e = expr(
            &json!({"and": [{"eq": ["session.country", "GB"]},
                            {"any": {"eq": ["line.product_id", "p"]}}]}),
            Scope::Context,
        );
        let s = shape(&e);
        assert_eq!((s.depth, s.nodes), (3, 4));
        assert_eq!(s.cost, 1 + 1 + (1 + LINES));
    }

    #[test]
    fn deep_large_and_long_expressions_are_refused_with_their_path() {
        let mut deep = json!({"eq": ["session.country", "GB"]});
        for _ in 0..MAX_DEPTH {
            deep = json!({"not": deep});
        }
        let wide: Vec<_> = (0..MAX_NODES)
            .map(|_| json!({"eq": ["session.country", "GB"]}))
            .collect();
        let long: Vec<String> = (0..=MAX_LIST).map(|i| format!("c{i}")).collect();
        for (v, says) in [
            (deep, "deep"),
            (json!({"or": wide}), "nodes"),
            (json!({"in": ["session.country", long]}), "values"),
        ] {
            let mut errors = Errors::default();
            check_expr(&expr(&v, Scope::Context), "$.x", &mut errors);
            assert_eq!(errors.0.len(), 1, "{says}");
            assert_eq!(errors.0[0].path, "$.x");
            assert!(
                errors.0[0].message.contains(says),
                "{}",
                errors.0[0].message
            );
        }
    }
}
