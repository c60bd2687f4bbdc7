//! Merchandising: what merchandisers change in the recommender's answer, per placement.
//!
//! Order of application: hard filters (`filter` keeps only matches, `hide` removes
//! matches) that nothing overrides; then every matching `boost` and `bury` multiplies a
//! product's score; then the `diversity` cap; then `pin`s and `slot`s by priority. When
//! the filters leave nothing, the non-personalized baseline (filtered the same way) is
//! answered. Every effect is reported with the rule that caused it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::{RawWindow, Window, expression, window};
use super::expr::{self, Context, Env, Errors, Expr, ProductFacts, Scope};
use super::price::PriceBook;
use crate::domain::{Catalog, Placement, ProductIdx};
use crate::recommend::reads::Volatile;
use crate::recommend::{Reason, Scored};

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Filter(Expr),
    Hide(Expr),
    /// Score x (1 + bps / 10000) for matching products; a bury is a negative boost.
    Boost {
        matches: Expr,
        bps: i64,
    },
    Pin {
        product_id: String,
        position: usize,
    },
    /// The best-scored matching candidate goes to `position`.
    Slot {
        matches: Expr,
        position: usize,
    },
    Diversity {
        max_per_category: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MerchRule {
    pub id: String,
    /// Empty: every placement.
    pub placements: Vec<Placement>,
    pub when: Expr,
    pub window: Window,
    pub priority: i64,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    Filtered,
    Hidden,
    Boosted,
    Buried,
    Pinned,
    Slotted,
    Capped,
    /// The filters left nothing: the non-personalized baseline was answered.
    Fallback,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Effect {
    pub rule: String,
    pub effect: EffectKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Products affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
}

// ---- the document as written ----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoost {
    #[serde(rename = "where")]
    matches: Value,
    by_bps: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    product_id: String,
    position: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    #[serde(rename = "where")]
    matches: Value,
    position: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiversity {
    max_per_category: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawAction {
    Filter(Value),
    Hide(Value),
    Boost(RawBoost),
    Bury(RawBoost),
    Pin(RawPin),
    Slot(RawSlot),
    Diversity(RawDiversity),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMerchRule {
    id: String,
    #[serde(default)]
    placements: Vec<Placement>,
    when: Option<Value>,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    priority: i64,
    action: RawAction,
}

pub(super) fn compile(raw: RawMerchRule, path: &str, errors: &mut Errors) -> MerchRule {
    let at = |part: &str| format!("{path}.action.{part}");
    let product =
        |v: &Value, p: String, errors: &mut Errors| expr::compile(v, Scope::Product, &p, errors);
    let position = |n: usize, p: String, errors: &mut Errors| {
        if !(1..=100).contains(&n) {
            errors.push(&p, "a position is 1 to 100");
        }
        n.clamp(1, 100)
    };
    let boost = |b: &RawBoost, sign: i64, part: &str, errors: &mut Errors| {
        if !(0..=100_000).contains(&b.by_bps) || (sign < 0 && b.by_bps > 10_000) {
            errors.push(
                &format!("{path}.action.{part}.by_bps"),
                "boosts are 0 to 100000 basis points, buries 0 to 10000",
            );
        }
        Action::Boost {
            matches: product(&b.matches, format!("{path}.action.{part}.where"), errors),
            bps: sign * b.by_bps.clamp(0, 100_000),
        }
    };
    let action = match &raw.action {
        RawAction::Filter(v) => Action::Filter(product(v, at("filter"), errors)),
        RawAction::Hide(v) => Action::Hide(product(v, at("hide"), errors)),
        RawAction::Boost(b) => boost(b, 1, "boost", errors),
        RawAction::Bury(b) => boost(b, -1, "bury", errors),
        RawAction::Pin(p) => {
            if crate::domain::ids::check_id(&p.product_id).is_err() {
                errors.push(
                    &at("pin.product_id"),
                    "an id is 1 to 128 characters, without whitespace",
                );
            }
            Action::Pin {
                product_id: p.product_id.clone(),
                position: position(p.position, at("pin.position"), errors),
            }
        }
        RawAction::Slot(s) => Action::Slot {
            matches: product(&s.matches, at("slot.where"), errors),
            position: position(s.position, at("slot.position"), errors),
        },
        RawAction::Diversity(d) => {
            if d.max_per_category == 0 {
                errors.push(&at("diversity.max_per_category"), "at least 1");
            }
            Action::Diversity {
                max_per_category: d.max_per_category.max(1),
            }
        }
    };
    MerchRule {
        when: expression(
            raw.when.as_ref(),
            Scope::Context,
            &format!("{path}.when"),
            errors,
        ),
        window: window(&raw.window, &format!("{path}.window"), errors),
        id: raw.id,
        placements: raw.placements,
        priority: raw.priority,
        action,
    }
}

// ---- applying the rules ------------------------------------------------------------------

/// The rules in force for this placement and request, by priority (high first), then id.
pub fn active<'r>(
    rules: &'r [MerchRule],
    placement: Placement,
    ctx: &Context<'_>,
) -> Vec<&'r MerchRule> {
    let env = Env::of(ctx);
    rules
        .iter()
        .filter(|r| {
            (r.placements.is_empty() || r.placements.contains(&placement))
                && r.window.contains(ctx.now)
                && r.when.holds(env)
        })
        .collect()
}

/// What the merchandiser's rules need beside the candidates.
pub struct Page<'p, 'a> {
    pub catalog: &'a Catalog,
    /// Stock as this answer reads it.
    pub volatile: &'p dyn Volatile,
    pub ctx: &'p Context<'a>,
    pub book: &'p PriceBook<'p>,
    /// Products never answered here whatever a rule says: the one in view, the cart's.
    pub excluded: &'p [ProductIdx],
    pub limit: usize,
}

impl Page<'_, '_> {
    fn facts(&self, p: ProductIdx) -> ProductFacts<'_> {
        let mut f = super::product_facts(self.catalog, self.volatile, p);
        f.price = self.book.price(f.product, f.category, 1).unit;
        f
    }

    fn passes(&self, filters: &[(&MerchRule, &Expr, bool)], p: ProductIdx) -> bool {
        let facts = self.facts(p);
        let env = Env::with_product(self.ctx, &facts);
        filters.iter().all(|(_, e, keep)| e.holds(env) == *keep)
    }
}

/// Applies the active rules to `candidates` (best first, more than `limit` of them, so
/// that filters and boosts have room), answering at most `limit`. `baseline` gives the
/// non-personalized answer when the filters leave nothing.
pub fn apply(
    active: &[&MerchRule],
    page: &Page<'_, '_>,
    mut candidates: Vec<Scored>,
    baseline: impl FnOnce() -> Vec<Scored>,
) -> (Vec<Scored>, Vec<Effect>) {
    let mut effects = Vec::new();
    // Each candidate's facts (its personalized price takes a price-list lookup) once.
    let known: rustc_hash::FxHashMap<ProductIdx, ProductFacts<'_>> = candidates
        .iter()
        .map(|s| (s.product, page.facts(s.product)))
        .collect();
    let facts_of = |p: ProductIdx| known.get(&p).copied().unwrap_or_else(|| page.facts(p));
    let effect = |rule: &MerchRule,
                  effect: EffectKind,
                  product_id: Option<String>,
                  count: Option<usize>| Effect {
        rule: rule.id.clone(),
        effect,
        product_id,
        count,
    };
    // Hard filters, kept for pins and the fallback too.
    let filters: Vec<(&MerchRule, &Expr, bool)> = active
        .iter()
        .filter_map(|r| match &r.action {
            Action::Filter(e) => Some((*r, e, true)),
            Action::Hide(e) => Some((*r, e, false)),
            Action::Boost { .. }
            | Action::Pin { .. }
            | Action::Slot { .. }
            | Action::Diversity { .. } => None,
        })
        .collect();
    for &(rule, e, keep) in &filters {
        let before = candidates.len();
        candidates.retain(|s| {
            let facts = facts_of(s.product);
            e.holds(Env::with_product(page.ctx, &facts)) == keep
        });
        let removed = before - candidates.len();
        if removed > 0 {
            let kind = if keep {
                EffectKind::Filtered
            } else {
                EffectKind::Hidden
            };
            effects.push(effect(rule, kind, None, Some(removed)));
        }
    }
    if candidates.is_empty() && !filters.is_empty() {
        candidates = baseline();
        candidates
            .retain(|s| !page.excluded.contains(&s.product) && page.passes(&filters, s.product));
        if let Some((rule, ..)) = filters.first() {
            effects.push(effect(
                rule,
                EffectKind::Fallback,
                None,
                Some(candidates.len()),
            ));
        }
    }
    // Boosts and buries multiply.
    let boosts: Vec<(&MerchRule, &Expr, i64)> = active
        .iter()
        .filter_map(|r| match &r.action {
            Action::Boost { matches, bps } => Some((*r, matches, *bps)),
            Action::Filter(_)
            | Action::Hide(_)
            | Action::Pin { .. }
            | Action::Slot { .. }
            | Action::Diversity { .. } => None,
        })
        .collect();
    if !boosts.is_empty() {
        let mut counts = vec![0usize; boosts.len()];
        let facts: Vec<ProductFacts<'_>> = candidates.iter().map(|s| facts_of(s.product)).collect();
        // Rule by rule over every candidate: one rule's lists stay in cache while it runs
        // (each candidate still takes the rules in order, so its score is the same).
        for (k, (_, e, bps)) in boosts.iter().enumerate() {
            let factor = 1.0 + *bps as f32 / 10_000.0;
            for (s, f) in candidates.iter_mut().zip(&facts) {
                if e.holds(Env::with_product(page.ctx, f)) {
                    s.score *= factor;
                    counts[k] += 1;
                }
            }
        }
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.product.cmp(&b.product)));
        for ((rule, _, bps), n) in boosts.iter().zip(counts) {
            if n > 0 {
                let kind = if *bps >= 0 {
                    EffectKind::Boosted
                } else {
                    EffectKind::Buried
                };
                effects.push(effect(rule, kind, None, Some(n)));
            }
        }
    }
    // Diversity: the strictest cap wins.
    if let Some((rule, cap)) = active
        .iter()
        .filter_map(|r| match r.action {
            Action::Diversity { max_per_category } => Some((*r, max_per_category)),
            Action::Filter(_)
            | Action::Hide(_)
            | Action::Boost { .. }
            | Action::Pin { .. }
            | Action::Slot { .. } => None,
        })
        .min_by_key(|(_, c)| *c)
    {
        let mut seen: Vec<(u16, usize)> = Vec::new();
        let before = candidates.len();
        candidates.retain(|s| {
            let c = page.catalog.product(s.product).category;
            match seen.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) if *n >= cap => false,
                Some((_, n)) => {
                    *n += 1;
                    true
                }
                None => {
                    seen.push((c, 1));
                    true
                }
            }
        });
        if candidates.len() < before {
            effects.push(effect(
                rule,
                EffectKind::Capped,
                None,
                Some(before - candidates.len()),
            ));
        }
    }
    let pool = candidates.clone();
    candidates.truncate(page.limit);
    // Pins and slots, by priority.
    for rule in active {
        match &rule.action {
            Action::Pin {
                product_id,
                position,
            } => {
                let Some(p) = page.catalog.lookup(product_id) else {
                    continue;
                };
                if !page.volatile.in_stock(page.catalog, p)
                    || page.excluded.contains(&p)
                    || !page.passes(&filters, p)
                {
                    continue;
                }
                let existing = candidates.iter().position(|s| s.product == p);
                let item = match existing {
                    Some(i) => candidates.remove(i),
                    None => Scored {
                        product: p,
                        score: candidates.first().map_or(1.0, |s| s.score),
                        reason: Reason::Pinned,
                    },
                };
                let at = (position - 1).min(candidates.len());
                candidates.insert(at, item);
                candidates.truncate(page.limit);
                effects.push(effect(
                    rule,
                    EffectKind::Pinned,
                    Some(product_id.clone()),
                    None,
                ));
            }
            Action::Slot { matches, position } => {
                let at = position - 1;
                let best = pool.iter().find(|s| {
                    let facts = facts_of(s.product);
                    matches.holds(Env::with_product(page.ctx, &facts))
                        && candidates
                            .iter()
                            .position(|c| c.product == s.product)
                            .is_none_or(|i| i >= at)
                });
                let Some(best) = best.copied() else {
                    continue;
                };
                if let Some(i) = candidates.iter().position(|c| c.product == best.product) {
                    candidates.remove(i);
                }
                candidates.insert(at.min(candidates.len()), best);
                candidates.truncate(page.limit);
                effects.push(effect(
                    rule,
                    EffectKind::Slotted,
                    Some(page.catalog.product(best.product).id.to_string()),
                    None,
                ));
            }
            Action::Filter(_)
            | Action::Hide(_)
            | Action::Boost { .. }
            | Action::Diversity { .. } => {}
        }
    }
    (candidates, effects)
}
