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
