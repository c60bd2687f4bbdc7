//! The ruleset document: price lists, promotions, guardrails, shipping rates,
//! merchandising and content in one JSON snapshot, compiled (and so validated) as a
//! whole. Each part compiles its own rules (`price`, `promo`, `merch`, `content`); this
//! module compiles the document from them and checks its limits and worst-case costs.
//! Compiling reports every problem with its JSON path, not just the first; a ruleset
//! with any problem is never published. The version is a digest of the canonical
//! document, so publishing the same rules twice gives the same version on every replica.

use serde::Deserialize;
use serde_json::Value;

use super::compile::{expression, money, parse, unique};
use super::content::Content;
use super::expr::{Errors, RuleError, Scope};
use super::limits;
use super::limits::{
    CANDIDATES, CATEGORY_WEIGHT, FETCHED, LINES, MAX_ADJUST_CATEGORIES, MAX_CODES,
    MAX_CODES_PER_PROMOTION, MAX_COLLECTION_PRODUCTS, MAX_CONTENT, MAX_COST, MAX_ENTRIES,
    MAX_EXCLUSIVE, MAX_GUARDRAIL_CATEGORIES, MAX_GUARDRAIL_PRODUCTS, MAX_MERCH_RULES,
    MAX_PRICE_LISTS, MAX_PROMOTIONS, MAX_SHIPPING_RATES, MAX_TIERS, OUTCOME_WEIGHT, cap,
    check_expr,
};
use super::merch::{Action, MerchRule};
use super::price::{
    Guardrails, PriceList, Prices, Pricing, RawGuardrails, RawPriceList, compile_guardrails,
    compile_price_list,
};
use super::promo::{
    Exclusive, Promotion, Promotions, RawPromotion, RawShipping, ShippingRate, compile_promotion,
};
use crate::domain::Placement;

/// A compiled, validated ruleset.
#[derive(Clone, Debug)]
pub struct Ruleset {
    pub version: String,
    /// The document as published.
    pub source: Value,
    pub price_lists: Vec<PriceList>,
    /// In evaluation order: class (item, order, shipping), then priority (high first),
    /// then id.
    pub promotions: Vec<Promotion>,
    pub guardrails: Guardrails,
    pub shipping: Vec<ShippingRate>,
    /// By priority (high first), then id.
    pub merchandising: Vec<MerchRule>,
    pub content: Content,
    /// Every promotion's codes, sorted (is a code sent known at all).
    pub codes: Vec<String>,
    /// Every price list's entries, by product: a price looks up its product once and
    /// sees the lists that name it, not every list.
    pub prices: Prices,
    /// In the document's order.
    pub experiments: Vec<super::experiment::Experiment>,
    pub holdout: Option<super::experiment::Holdout>,
    /// The merchandisers' overrides (their rules for every request are in
    /// `merchandising` too).
    pub overrides: super::overrides::Overrides,
}

impl Ruleset {
    /// Whether an experiment (or the holdout) is running: answers may serve arms.
    pub fn running_experiments(&self) -> bool {
        self.holdout.is_some()
            || self
                .experiments
                .iter()
                .any(|e| e.status == super::experiment::Status::Running)
    }

    /// The ruleset in force before any is published: no rules at all.
    /// What pricing reads: the price lists, their index by product, the guardrails.
    pub fn pricing(&self) -> Pricing<'_> {
        Pricing {
            price_lists: &self.price_lists,
            prices: &self.prices,
            guardrails: &self.guardrails,
        }
    }

    /// What promotions read: the promotions, their codes, shipping and the guardrails.
    pub fn promotions(&self) -> Promotions<'_> {
        Promotions {
            promotions: &self.promotions,
            codes: &self.codes,
            shipping: &self.shipping,
            pricing: self.pricing(),
        }
    }

    pub fn empty() -> Self {
        Self {
            version: "none".into(),
            source: serde_json::json!({}),
            price_lists: Vec::new(),
            promotions: Vec::new(),
            guardrails: Guardrails::default(),
            shipping: Vec::new(),
            merchandising: Vec::new(),
            content: Content::default(),
            codes: Vec::new(),
            prices: Prices::default(),
            experiments: Vec::new(),
            holdout: None,
            overrides: Default::default(),
        }
    }
}

// ---- the document as written --------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    price_lists: Vec<Value>,
    #[serde(default)]
    promotions: Vec<Value>,
    #[serde(default)]
    guardrails: Option<Value>,
    #[serde(default)]
    shipping: Vec<Value>,
    #[serde(default)]
    merchandising: Vec<Value>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    experiments: Vec<Value>,
    #[serde(default)]
    holdout: Option<Value>,
    #[serde(default)]
    overrides: Option<Value>,
}

/// Compiles a ruleset document; `Err` holds every problem, each with its path.
pub fn compile(doc: &Value) -> Result<Ruleset, Vec<RuleError>> {
    let mut errors = Errors::default();
    let Some(raw) = parse::<RawDocument>(doc, "$", &mut errors) else {
        return Err(errors.0);
    };
    // Arrays past their caps are refused before anything in them is compiled.
    let counts = [
        (
            raw.price_lists.len(),
            MAX_PRICE_LISTS,
            "$.price_lists",
            "price lists",
        ),
        (
            raw.promotions.len(),
            MAX_PROMOTIONS,
            "$.promotions",
            "promotions",
        ),
        (
            raw.merchandising.len(),
            MAX_MERCH_RULES,
            "$.merchandising",
            "merchandising rules",
        ),
        (
            raw.shipping.len(),
            limits::MAX_SHIPPING_RATES,
            "$.shipping",
            "shipping rates",
        ),
    ];
    for (n, max, path, what) in counts {
        limits::cap(n, max, path, what, &mut errors);
    }
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    let mut price_lists = Vec::new();
    let mut list_entries = Vec::new();
    for (i, v) in raw.price_lists.iter().enumerate() {
        let path = format!("$.price_lists[{i}]");
        if let Some((l, entries)) = parse::<RawPriceList>(v, &path, &mut errors)
            .and_then(|r| compile_price_list(r, &path, &mut errors))
        {
            price_lists.push(l);
            list_entries.push(entries);
        }
    }
    let mut promotions = Vec::new();
    for (i, v) in raw.promotions.iter().enumerate() {
        let path = format!("$.promotions[{i}]");
        if let Some(p) = parse::<RawPromotion>(v, &path, &mut errors)
            .and_then(|r| compile_promotion(r, &path, &mut errors))
        {
            promotions.push(p);
        }
    }
    let guardrails = raw
        .guardrails
        .as_ref()
        .and_then(|g| parse::<RawGuardrails>(g, "$.guardrails", &mut errors))
        .map(|g| compile_guardrails(&g, "$.guardrails", &mut errors))
        .unwrap_or_default();
    let mut shipping = Vec::new();
    for (i, v) in raw.shipping.iter().enumerate() {
        let path = format!("$.shipping[{i}]");
        if let Some(s) = parse::<RawShipping>(v, &path, &mut errors) {
            let amount = money(&s.amount, &format!("{path}.amount"), &mut errors);
            let when = expression(
                s.when.as_ref(),
                Scope::Context,
                &format!("{path}.when"),
                &mut errors,
            );
            if let Some(amount) = amount {
                shipping.push(ShippingRate {
                    id: s.id,
                    when,
                    amount,
                });
            }
        }
    }
    let mut merchandising = Vec::new();
    for (i, v) in raw.merchandising.iter().enumerate() {
        let path = format!("$.merchandising[{i}]");
        if let Some(r) = parse::<super::merch::RawMerchRule>(v, &path, &mut errors) {
            merchandising.push(super::merch::compile(r, &path, &mut errors));
        }
    }
    unique(
        merchandising.iter().map(|r| r.id.as_str()),
        "$.merchandising",
        &mut errors,
    );
    for (i, r) in merchandising.iter().enumerate() {
        if r.id.starts_with("override:") {
            errors.push(
                &format!("$.merchandising[{i}].id"),
                "ids starting override: are the overrides' own",
            );
        }
    }
    let (overrides, override_rules) =
        super::overrides::compile(raw.overrides.as_ref(), &mut errors);
    merchandising.extend(override_rules);
    let content = raw
        .content
        .as_ref()
        .and_then(|c| parse::<super::content::RawContent>(c, "$.content", &mut errors))
        .map(|c| super::content::compile(&c, &mut errors))
        .unwrap_or_default();
    let named = super::experiment::Named {
        promotion_sets: promotions.iter().filter_map(|p| p.set.clone()).collect(),
        content_variants: content.variants(),
    };
    let (experiments, holdout) =
        super::experiment::compile(&raw.experiments, raw.holdout.as_ref(), &named, &mut errors);
    // Ids are unique per kind, and adjustments name lists that exist.
    unique(
        price_lists.iter().map(|l| l.id.as_str()),
        "$.price_lists",
        &mut errors,
    );
    unique(
        promotions.iter().map(|p| p.id.as_str()),
        "$.promotions",
        &mut errors,
    );
    let by_id: rustc_hash::FxHashMap<&str, usize> = price_lists
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.as_str(), i))
        .collect();
    let mut parents = Vec::new();
    for (i, l) in price_lists.iter().enumerate() {
        if let Some(parent) = l.adjust.as_ref().and_then(|a| a.parent.as_deref()) {
            match by_id.get(parent).copied().filter(|&p| {
                price_lists[p].adjust.is_none() && price_lists[p].currency == l.currency
            }) {
                Some(p) => parents.push((i, p)),
                None => errors.push(
                    &format!("$.price_lists[{i}].adjust.parent"),
                    format!("no price list {parent:?} with entries in {}", l.currency),
                ),
            }
        }
    }
    drop(by_id);
    for (i, p) in parents {
        if let Some(a) = price_lists[i].adjust.as_mut() {
            a.parent_index = Some(p);
        }
    }
    let mut seen_codes = rustc_hash::FxHashSet::default();
    for (i, p) in promotions.iter().enumerate() {
        for c in &p.codes {
            if !seen_codes.insert(c.as_str()) {
                errors.push(
                    &format!("$.promotions[{i}].codes"),
                    format!("code {c:?} is used twice"),
                );
            }
        }
    }
    let mut codes: Vec<String> = seen_codes.into_iter().map(str::to_owned).collect();
    codes.sort_unstable();
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    let mut prices = Prices::default();
    for (i, entries) in list_entries.into_iter().enumerate() {
        for (id, entry) in entries {
            prices
                .entry(id.into_boxed_str())
                .or_default()
                .push((i as u32, entry));
        }
    }
    let mut rules = Ruleset {
        version: String::new(),
        source: serde_json::Value::Null,
        price_lists,
        promotions,
        guardrails,
        shipping,
        merchandising,
        content,
        codes,
        prices,
        experiments,
        holdout,
        overrides,
    };
    check(&rules, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    rules.promotions.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(b.priority.cmp(&a.priority))
            .then(a.id.cmp(&b.id))
    });
    rules
        .merchandising
        .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    let canonical = serde_json::to_vec(doc).unwrap_or_default();
    rules.version = format!(
        "rs-{:012x}",
        xxhash_rust::xxh3::xxh3_64(&canonical) & 0xffff_ffff_ffff
    );
    rules.source = doc.clone();
    Ok(rules)
}
// ---- limits ----------------------------------------------------------------------

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
