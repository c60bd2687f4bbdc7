//! Overrides: a merchandiser's corrections to what the recommender learned, in the
//! ruleset's `overrides` section, so they are versioned, validated, published to every
//! replica and rolled back with it.
//!
//! - `blocked_pairs`: never show one of the two with the other (both ways), and never
//!   learn them as a pair again (training and live learning skip it);
//! - `pinned_pairs`: always show `b` where `a` is in view or in the cart;
//! - `excluded_products`: never recommend the product anywhere, and learn it as nobody's
//!   neighbour;
//! - `boosts` / `buries`: a category or a tag, up or down, in one placement.
//!
//! They compile into merchandising rules (ids starting `override:`), so they are applied
//! like the document's own and every effect is reported with its rule: excluded products
//! and boosts are rules for every request; blocks and pins are rules anchored on a
//! product, in force when that product is the one in view or in the cart.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::{Value, json};

use super::compile::{Window, check_id, parse};
use super::expr::{self, Errors, Expr, Scope};
use super::merch::{Action, MerchRule};
use crate::domain::{Catalog, Placement};
use crate::recommend::Curation;

/// Entries per kind at most.
pub const MAX_OVERRIDES: usize = 10_000;
/// A note is for people: short.
const MAX_NOTE: usize = 200;
/// Pins from overrides go last, so they hold the place they name.
const PIN_PRIORITY: i64 = i64::MIN;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOverrides {
    #[serde(default)]
    blocked_pairs: Vec<Value>,
    #[serde(default)]
    pinned_pairs: Vec<Value>,
    #[serde(default)]
    excluded_products: Vec<Value>,
    #[serde(default)]
    boosts: Vec<Value>,
    #[serde(default)]
    buries: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    a: String,
    b: String,
    #[serde(default)]
    position: Option<usize>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExcluded {
    product_id: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoost {
    placement: Placement,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    by_bps: i64,
    #[serde(default)]
    note: Option<String>,
}

/// One pair as written: blocked, or pinned (`b` shown at `position` with `a`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub position: usize,
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excluded {
    pub product_id: String,
    pub note: Option<String>,
}

/// What a boost or bury moves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A category handle (and everything below it).
    Category(String),
    Tag(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boost {
    pub placement: Placement,
    pub target: Target,
    /// Positive: a boost; negative: a bury.
    pub bps: i64,
    pub note: Option<String>,
}

/// The compiled overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub blocked: Vec<Pair>,
    pub pinned: Vec<Pair>,
    pub excluded: Vec<Excluded>,
    pub boosts: Vec<Boost>,
    /// Each product's blocked partners.
    partners: FxHashMap<Box<str>, FxHashSet<Box<str>>>,
    /// Rules in force where their product is in view or in the cart.
    anchored: FxHashMap<Box<str>, Vec<MerchRule>>,
}

fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
            && self.pinned.is_empty()
            && self.excluded.is_empty()
            && self.boosts.is_empty()
    }

    /// Whether a and b are a blocked pair (either way round).
    pub fn blocks(&self, a: &str, b: &str) -> bool {
        self.partners.get(a).is_some_and(|p| p.contains(b))
    }

    /// The rules anchored on `product` (blocks and pins where it is in view or in the
    /// cart).
    pub fn anchored(&self, product: &str) -> &[MerchRule] {
        self.anchored.get(product).map_or(&[], Vec::as_slice)
    }

    /// What training and live learning leave out, in `catalog`'s indices (products it
    /// does not hold are skipped).
    pub fn curation(&self, catalog: &Catalog) -> Curation {
        Curation::new(
            self.blocked
                .iter()
                .filter_map(|p| Some((catalog.lookup(&p.a)?, catalog.lookup(&p.b)?))),
            self.excluded
                .iter()
                .filter_map(|e| catalog.lookup(&e.product_id)),
        )
    }
}

/// The merchandising rules in force for this request: the document's (with the
/// overrides for every request) and the overrides anchored on the products in view or in
/// the cart, by priority (high first), then id.
pub fn in_force<'r, 'a>(
    merchandising: &'r [MerchRule],
    overrides: &'r Overrides,
    anchors: impl Iterator<Item = &'a str>,
    placement: Placement,
    ctx: &super::expr::Context<'_>,
) -> Vec<&'r MerchRule> {
    let mut active = super::merch::active(merchandising, placement, ctx);
    if overrides.anchored.is_empty() {
        return active;
    }
    let mut seen: Vec<&str> = Vec::new();
    for a in anchors {
        if seen.contains(&a) {
            continue;
        }
        seen.push(a);
        active.extend(super::merch::active(overrides.anchored(a), placement, ctx));
    }
    active.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    active
}

fn note(v: Option<String>, path: &str, errors: &mut Errors) -> Option<String> {
    let v = v.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if v.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
        errors.push(&format!("{path}.note"), "a note is at most 200 characters");
    }
    v
}

fn rule(id: String, placements: Vec<Placement>, priority: i64, action: Action) -> MerchRule {
    MerchRule {
        id,
        placements,
        when: Expr::Const(true),
        window: Window::default(),
        priority,
        action,
    }
}

/// Hides the products named, by id.
fn hide(ids: &[&str], path: &str, errors: &mut Errors) -> Action {
    Action::Hide(expr::compile(
        &json!({"in": ["product.id", ids]}),
        Scope::Product,
        path,
        errors,
    ))
}

fn pairs(raw: &[Value], section: &str, pinned: bool, errors: &mut Errors) -> Vec<Pair> {
    let mut out = Vec::new();
    let mut seen = FxHashSet::default();
    for (i, v) in raw.iter().enumerate() {
        let path = format!("$.overrides.{section}[{i}]");
        let Some(r) = parse::<RawPair>(v, &path, errors) else {
            continue;
        };
        check_id(&r.a, &format!("{path}.a"), errors);
        check_id(&r.b, &format!("{path}.b"), errors);
        if r.a == r.b {
            errors.push(&format!("{path}.b"), "a pair is two different products");
        }
        let position = match (pinned, r.position) {
            (true, Some(n)) if !(1..=100).contains(&n) => {
                errors.push(&format!("{path}.position"), "a position is 1 to 100");
                1
            }
            (true, n) => n.unwrap_or(1),
            (false, Some(_)) => {
                errors.push(
                    &format!("{path}.position"),
                    "a blocked pair has no position",
                );
                0
            }
            (false, None) => 0,
        };
        // A pin is one way (b with a), a block both ways.
        let key = if pinned {
            (r.a.clone(), r.b.clone())
        } else {
            let (x, y) = ordered(&r.a, &r.b);
            (x.to_owned(), y.to_owned())
        };
        if !seen.insert(key) {
            errors.push(&path, "this pair is listed twice");
        }
        out.push(Pair {
            note: note(r.note, &path, errors),
            a: r.a,
            b: r.b,
            position,
        });
    }
    out
}

fn boosts(raw: &[Value], section: &str, sign: i64, errors: &mut Errors) -> Vec<Boost> {
    let mut out = Vec::new();
    let mut seen = FxHashSet::default();
    for (i, v) in raw.iter().enumerate() {
        let path = format!("$.overrides.{section}[{i}]");
        let Some(r) = parse::<RawBoost>(v, &path, errors) else {
            continue;
        };
        let most = if sign > 0 { 100_000 } else { 10_000 };
        if !(1..=most).contains(&r.by_bps) {
            errors.push(
                &format!("{path}.by_bps"),
                format!("1 to {most} basis points"),
            );
        }
        let target = match (r.category, r.tag) {
            (Some(c), None) => {
                let handle = crate::domain::catalog::category_handle(&c);
                if handle.is_empty() {
                    errors.push(
                        &format!("{path}.category"),
                        "a category name needs a letter or a digit",
                    );
                }
                Target::Category(handle)
            }
            (None, Some(t)) if !t.trim().is_empty() && t.len() <= 128 => Target::Tag(t),
            (None, Some(_)) => {
                errors.push(&format!("{path}.tag"), "a tag is 1 to 128 characters");
                Target::Tag(String::new())
            }
            _ => {
                errors.push(&path, "names either a category or a tag");
                continue;
            }
        };
        if !seen.insert((r.placement, target.clone())) {
            errors.push(&path, "this placement and target are listed twice");
        }
        out.push(Boost {
            placement: r.placement,
            target,
            bps: sign * r.by_bps.clamp(1, most),
            note: note(r.note, &path, errors),
        });
    }
    out
}

/// Compiles the `overrides` section: the overrides, and the rules they bring for every
/// request (excluded products, boosts and buries), to go with the document's.
pub(super) fn compile(raw: Option<&Value>, errors: &mut Errors) -> (Overrides, Vec<MerchRule>) {
    let Some(raw) = raw.and_then(|v| parse::<RawOverrides>(v, "$.overrides", errors)) else {
        return Default::default();
    };
    let sections = [
        (raw.blocked_pairs.len(), "blocked_pairs"),
        (raw.pinned_pairs.len(), "pinned_pairs"),
        (raw.excluded_products.len(), "excluded_products"),
        (raw.boosts.len(), "boosts"),
        (raw.buries.len(), "buries"),
    ];
    let mut over = false;
    for (n, section) in sections {
        if n > MAX_OVERRIDES {
            errors.push(
                &format!("$.overrides.{section}"),
                format!("at most {MAX_OVERRIDES} entries"),
            );
            over = true;
        }
    }
    if over {
        return Default::default();
    }
    let blocked = pairs(&raw.blocked_pairs, "blocked_pairs", false, errors);
    let pinned = pairs(&raw.pinned_pairs, "pinned_pairs", true, errors);
    let mut excluded = Vec::new();
    let mut seen = FxHashSet::default();
    for (i, v) in raw.excluded_products.iter().enumerate() {
        let path = format!("$.overrides.excluded_products[{i}]");
        if let Some(r) = parse::<RawExcluded>(v, &path, errors) {
            check_id(&r.product_id, &format!("{path}.product_id"), errors);
            if !seen.insert(r.product_id.clone()) {
                errors.push(&path, "this product is listed twice");
            }
            excluded.push(Excluded {
                note: note(r.note, &path, errors),
                product_id: r.product_id,
            });
        }
    }
    let mut moves = boosts(&raw.boosts, "boosts", 1, errors);
    let buries = boosts(&raw.buries, "buries", -1, errors);
    for b in &buries {
        if moves
            .iter()
            .any(|m| m.placement == b.placement && m.target == b.target)
        {
            errors.push(
                "$.overrides.buries",
                "a placement and target both boosted and buried",
            );
        }
    }
    moves.extend(buries);
    for p in &pinned {
        let (x, y) = ordered(&p.a, &p.b);
        if blocked.iter().any(|b| ordered(&b.a, &b.b) == (x, y)) {
            errors.push(
                "$.overrides.pinned_pairs",
                format!("{} with {} is both pinned and blocked", p.b, p.a),
            );
        }
    }

    let mut general = Vec::new();
    if !excluded.is_empty() {
        let ids: Vec<&str> = excluded.iter().map(|e| e.product_id.as_str()).collect();
        general.push(rule(
            "override:exclude".into(),
            Vec::new(),
            0,
            hide(&ids, "$.overrides.excluded_products", errors),
        ));
    }
    for (k, b) in moves.iter().enumerate() {
        let (what, matches) = match &b.target {
            Target::Category(c) => (
                format!("category:{c}"),
                json!({"in": ["product.category", [c]]}),
            ),
            Target::Tag(t) => (format!("tag:{t}"), json!({"contains": ["product.tags", t]})),
        };
        let kind = if b.bps >= 0 { "boost" } else { "bury" };
        general.push(rule(
            format!("override:{kind}:{}:{what}", b.placement),
            vec![b.placement],
            0,
            Action::Boost {
                matches: expr::compile(
                    &matches,
                    Scope::Product,
                    &format!("$.overrides.boosts[{k}]"),
                    errors,
                ),
                bps: b.bps,
            },
        ));
    }

    // Blocks: where a is in view, hide every b blocked with it (and the other way).
    let mut partners: FxHashMap<&str, Vec<&str>> = FxHashMap::default();
    for p in &blocked {
        partners.entry(&p.a).or_default().push(&p.b);
        partners.entry(&p.b).or_default().push(&p.a);
    }
    let mut anchored: FxHashMap<Box<str>, Vec<MerchRule>> = FxHashMap::default();
    for (anchor, others) in &partners {
        anchored.entry((*anchor).into()).or_default().push(rule(
            format!("override:block:{anchor}"),
            Vec::new(),
            0,
            hide(others, "$.overrides.blocked_pairs", errors),
        ));
    }
    let partners = partners
        .into_iter()
        .map(|(a, others)| (a.into(), others.into_iter().map(Box::from).collect()))
        .collect();
    for p in &pinned {
        anchored.entry(p.a.as_str().into()).or_default().push(rule(
            format!("override:pin:{}:{}", p.a, p.b),
            Vec::new(),
            PIN_PRIORITY,
            Action::Pin {
                product_id: p.b.clone(),
                position: p.position,
            },
        ));
    }
    (
        Overrides {
            blocked,
            pinned,
            excluded,
            boosts: moves,
            partners,
            anchored,
        },
        general,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overrides and their rules for every request, or every problem.
    fn compiled(doc: &Value) -> Result<(Overrides, Vec<MerchRule>), Vec<String>> {
        let mut errors = Errors::default();
        let out = compile(Some(doc), &mut errors);
        if errors.0.is_empty() {
            Ok(out)
        } else {
            Err(errors
                .0
                .into_iter()
                .map(|e| format!("{} {}", e.path, e.message))
                .collect())
        }
    }

    #[test]
    fn overrides_compile_into_rules_anchored_where_they_apply() {
        let rules = compiled(&json!({
            "blocked_pairs": [{"a": "mug", "b": "teapot", "note": "odd pair"}],
            "pinned_pairs": [{"a": "mug", "b": "coaster", "position": 2}],
            "excluded_products": [{"product_id": "recalled"}],
            "boosts": [{"placement": "home", "category": "Kitchen > Cookware", "by_bps": 2000}],
            "buries": [{"placement": "home", "tag": "clearance", "by_bps": 5000}]
        }))
        .unwrap();
        let (o, general) = &rules;
        assert!(o.blocks("mug", "teapot") && o.blocks("teapot", "mug"));
        assert!(!o.blocks("mug", "coaster"));
        let ids = |p: &str| -> Vec<String> { o.anchored(p).iter().map(|r| r.id.clone()).collect() };
        assert_eq!(
            ids("mug"),
            ["override:block:mug", "override:pin:mug:coaster"]
        );
        assert_eq!(ids("teapot"), ["override:block:teapot"]);
        assert!(ids("coaster").is_empty(), "a pin is one way");
        let general: Vec<&str> = general.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            general,
            [
                "override:exclude",
                "override:boost:home:category:kitchen/cookware",
                "override:bury:home:tag:clearance",
            ]
        );
        assert_eq!(o.blocked[0].note.as_deref(), Some("odd pair"));
        assert_eq!(o.pinned[0].position, 2);
        assert_eq!(o.boosts[1].bps, -5000);
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let errors = compiled(&json!({
            "blocked_pairs": [{"a": "mug", "b": "mug"}, {"a": "x", "b": "y", "position": 3},
                              {"a": "y", "b": "x"}],
            "pinned_pairs": [{"a": "mug", "b": "cup", "position": 0}, {"a": "x", "b": "y"}],
            "excluded_products": [{"product_id": "a b"}, {"product_id": "z"}, {"product_id": "z"}],
            "boosts": [{"placement": "home", "by_bps": 10}, {"placement": "nowhere", "tag": "t", "by_bps": 1},
                       {"placement": "home", "category": "!!", "by_bps": 0}],
            "buries": [{"placement": "home", "tag": "t", "by_bps": 20000}],
            "surprise": []
        }))
        .unwrap_err();
        assert_eq!(
            errors.len(),
            1,
            "an unknown key stops the section: {errors:?}"
        );
        assert!(errors[0].starts_with("$.overrides"), "{errors:?}");
        let errors = compiled(&json!({
            "blocked_pairs": [{"a": "mug", "b": "mug"}, {"a": "x", "b": "y", "position": 3},
                              {"a": "y", "b": "x"}],
            "pinned_pairs": [{"a": "mug", "b": "cup", "position": 0}, {"a": "x", "b": "y"}],
            "excluded_products": [{"product_id": "a b"}, {"product_id": "z"}, {"product_id": "z"}],
            "boosts": [{"placement": "home", "by_bps": 10},
                       {"placement": "home", "category": "!!", "by_bps": 0}],
            "buries": [{"placement": "home", "tag": "t", "by_bps": 20000}]
        }))
        .unwrap_err();
        for want in [
            "$.overrides.blocked_pairs[0].b a pair is two different products",
            "$.overrides.blocked_pairs[1].position a blocked pair has no position",
            "$.overrides.blocked_pairs[2] this pair is listed twice",
            "$.overrides.pinned_pairs[0].position a position is 1 to 100",
            "$.overrides.pinned_pairs y with x is both pinned and blocked",
            "$.overrides.excluded_products[0].product_id an id is 1 to 128 characters, without whitespace",
            "$.overrides.excluded_products[2] this product is listed twice",
            "$.overrides.boosts[0] names either a category or a tag",
            "$.overrides.boosts[1].by_bps 1 to 100000 basis points",
            "$.overrides.boosts[1].category a category name needs a letter or a digit",
            "$.overrides.buries[0].by_bps 1 to 10000 basis points",
        ] {
            assert!(
                errors.iter().any(|e| e == want),
                "missing {want:?} in {errors:?}"
            );
        }
        let errors =
            compiled(&json!({"boosts": [{"placement": "nowhere", "tag": "t", "by_bps": 1}]}))
                .unwrap_err();
        assert!(
            errors[0].starts_with("$.overrides.boosts[0].placement"),
            "{errors:?}"
        );
    }

    fn catalog(ids: &[&str]) -> Catalog {
        use crate::domain::catalog::{Category, NewProduct};
        use crate::domain::{Currency, Money, Product};
        let products = ids
            .iter()
            .map(|&id| NewProduct {
                product: Product {
                    title: id.into(),
                    handle: id.into(),
                    id: id.into(),
                    url: "".into(),
                    image_url: "".into(),
                    category: 0,
                    tags: Box::new([]),
                    price: Money::new(100, Currency::XXX),
                    cost: None,
                },
                inventory: 1,
            })
            .collect();
        Catalog::new(vec![Category::named("all")], products).unwrap()
    }

    #[test]
    fn curation_names_the_catalogs_products() {
        let rules = compiled(&json!({
            "blocked_pairs": [{"a": "p000001", "b": "p000002"}, {"a": "p000001", "b": "gone"}],
            "excluded_products": [{"product_id": "p000003"}]
        }))
        .unwrap();
        let catalog = catalog(&["p000001", "p000002", "p000003", "p000004"]);
        let c = rules.0.curation(&catalog);
        let idx = |id: &str| catalog.lookup(id).unwrap();
        assert!(c.blocks(idx("p000002"), idx("p000001")));
        assert!(!c.keeps(idx("p000001"), idx("p000003")));
        assert!(c.keeps(idx("p000002"), idx("p000004")));
    }
}
