//! Personalized prices: which price list's amount a visitor pays for a product, and the
//! honest compare-at price.
//!
//! Candidates are the catalog price and every list in the request's currency whose window
//! holds `now` and whose scope holds for the visitor, that prices the product (an entry,
//! or an adjustment of a parent's price). The winner is the highest priority, then the most
//! specific kind (contract, segment, sale, base), then the lowest amount, then the list id:
//! a total order, so the choice never depends on the order lists were written in. The
//! quantity tier of the winning entry applies. The compare-at price is the best candidate
//! that is not a sale: never a price this visitor could not have paid, and only shown when
//! it is above the price. The margin floor is applied last.

use serde::Deserialize;
use serde_json::Value;

use super::compile::{RawWindow, Window, ancestors, bps, check_id, expression, money, window};
use super::expr::{Context, Env, Errors, Expr, Scope};
use crate::domain::catalog::{Category, Product};
use crate::domain::{Currency, Money, RawMoney};

/// What pricing reads of a ruleset (see [`super::Ruleset::pricing`]).
#[derive(Clone, Copy, Debug)]
pub struct Pricing<'r> {
    pub price_lists: &'r [PriceList],
    /// Every price list's entries, by product.
    pub prices: &'r Prices,
    pub guardrails: &'r Guardrails,
}

// ---- price lists and guardrails, and how they are compiled --------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceKind {
    Base,
    Sale,
    Segment,
    Adjustment,
    Contract,
}

impl PriceKind {
    /// The more specific price wins at equal priority: contract, then segment (and
    /// adjustments, which are segment prices by rule), then sale, then base.
    pub const fn specificity(self) -> u8 {
        match self {
            PriceKind::Contract => 4,
            PriceKind::Segment | PriceKind::Adjustment => 3,
            PriceKind::Sale => 1,
            PriceKind::Base => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub min_qty: u32,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PriceEntry {
    pub amount: i64,
    /// Ascending by `min_qty`.
    pub tiers: Vec<Tier>,
}

impl PriceEntry {
    /// The unit amount at `quantity`: the tier with the largest `min_qty` reached.
    pub fn at(&self, quantity: u32) -> i64 {
        self.tiers
            .iter()
            .rev()
            .find(|t| quantity >= t.min_qty)
            .map_or(self.amount, |t| t.amount)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Adjust {
    /// The list whose price is adjusted; `None`: the catalog price.
    pub parent: Option<String>,
    /// Where `parent` is in the ruleset's price lists (resolved when compiled).
    pub parent_index: Option<usize>,
    pub percent_off_bps: i64,
    /// Only products in these categories (and below, by handle or path); empty: all.
    pub categories: super::expr::StrSet,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PriceList {
    pub id: String,
    pub kind: PriceKind,
    pub currency: Currency,
    pub priority: i64,
    pub scope: Expr,
    pub window: Window,
    /// Its entries (they live in [`Ruleset::prices`], by product), and the most quantity
    /// tiers one of them has.
    pub entry_count: usize,
    pub max_tiers: usize,
    pub adjust: Option<Adjust>,
}

/// Prices by product: for each product, (price list index, its entry there).
pub type Prices = rustc_hash::FxHashMap<Box<str>, smallvec::SmallVec<[(u32, PriceEntry); 2]>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    min_qty: u32,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    product_id: String,
    amount: i64,
    #[serde(default)]
    tiers: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdjust {
    parent: Option<String>,
    percent_off_bps: i64,
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPriceList {
    id: String,
    kind: PriceKind,
    currency: String,
    #[serde(default)]
    priority: i64,
    scope: Option<Value>,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    entries: Vec<RawEntry>,
    adjust: Option<RawAdjust>,
}

pub(super) fn compile_price_list(
    raw: RawPriceList,
    path: &str,
    errors: &mut Errors,
) -> Option<(PriceList, rustc_hash::FxHashMap<String, PriceEntry>)> {
    check_id(&raw.id, &format!("{path}.id"), errors);
    let currency = match Currency::parse(&raw.currency) {
        Ok(c) => c,
        Err(e) => {
            errors.push(&format!("{path}.currency"), e.to_string());
            return None;
        }
    };
    let mut entries = rustc_hash::FxHashMap::default();
    for (i, e) in raw.entries.into_iter().enumerate() {
        let at = format!("{path}.entries[{i}]");
        if !Money::in_range(e.amount) || e.tiers.iter().any(|t| !Money::in_range(t.amount)) {
            errors.push(
                &at,
                format!("amounts must be 0 to {} minor units", Money::MAX_AMOUNT),
            );
        }
        let mut tiers: Vec<Tier> = e
            .tiers
            .iter()
            .map(|t| Tier {
                min_qty: t.min_qty,
                amount: t.amount,
            })
            .collect();
        tiers.sort_by_key(|t| t.min_qty);
        if tiers.windows(2).any(|w| w[0].min_qty == w[1].min_qty)
            || tiers.iter().any(|t| t.min_qty < 2)
        {
            errors.push(
                &format!("{at}.tiers"),
                "tiers need distinct min_qty of 2 or more",
            );
        }
        let entry = PriceEntry {
            amount: e.amount,
            tiers,
        };
        if entries.insert(e.product_id, entry).is_some() {
            errors.push(
                &format!("{at}.product_id"),
                "this product is already in the list",
            );
        }
    }
    let adjust = raw.adjust.map(|a| Adjust {
        parent: a.parent,
        parent_index: None,
        percent_off_bps: bps(
            a.percent_off_bps,
            &format!("{path}.adjust.percent_off_bps"),
            errors,
        ),
        categories: {
            let names: Vec<&str> = a.categories.iter().map(String::as_str).collect();
            super::expr::category_set(&names, &format!("{path}.adjust.categories"), errors)
        },
    });
    match (raw.kind, &adjust, entries.is_empty()) {
        (PriceKind::Adjustment, Some(_), true) => {}
        (PriceKind::Adjustment, _, _) => {
            errors.push(path, "an adjustment list has adjust and no entries");
        }
        (_, Some(_), _) => errors.push(&format!("{path}.adjust"), "only adjustment lists adjust"),
        (_, None, _) => {}
    }
    let list = PriceList {
        scope: expression(
            raw.scope.as_ref(),
            Scope::Context,
            &format!("{path}.scope"),
            errors,
        ),
        window: window(&raw.window, &format!("{path}.window"), errors),
        id: raw.id,
        kind: raw.kind,
        currency,
        priority: raw.priority,
        entry_count: entries.len(),
        max_tiers: entries.values().map(|e| e.tiers.len()).max().unwrap_or(0),
        adjust,
    };
    Some((list, entries))
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Guardrails {
    pub min_margin_bps: i64,
    /// Product id -> (minimum price, margin override).
    pub products: rustc_hash::FxHashMap<String, (Option<Money>, Option<i64>)>,
    /// Category handle -> margin override (the nearest enclosing category wins).
    pub categories: rustc_hash::FxHashMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProductGuard {
    min_price: Option<RawMoney>,
    min_margin_bps: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuardrails {
    #[serde(default)]
    min_margin_bps: i64,
    #[serde(default)]
    products: std::collections::BTreeMap<String, RawProductGuard>,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, i64>,
}

pub(super) fn compile_guardrails(
    raw: &RawGuardrails,
    path: &str,
    errors: &mut Errors,
) -> Guardrails {
    let margin = |v: i64, at: &str, errors: &mut Errors| {
        if !(0..=100_000).contains(&v) {
            errors.push(at, "a margin is 0 to 100000 basis points");
        }
        v.clamp(0, 100_000)
    };
    let products = raw
        .products
        .iter()
        .map(|(id, g)| {
            let at = format!("{path}.products.{id}");
            let min_price = g
                .min_price
                .as_ref()
                .and_then(|m| money(m, &format!("{at}.min_price"), errors));
            let m = g
                .min_margin_bps
                .map(|m| margin(m, &format!("{at}.min_margin_bps"), errors));
            (id.clone(), (min_price, m))
        })
        .collect();
    // By handle, whichever way each is written; two names of one category are refused
    // (which margin would hold is not for the order of keys to decide).
    let mut categories: rustc_hash::FxHashMap<String, i64> = rustc_hash::FxHashMap::default();
    let mut named: rustc_hash::FxHashMap<String, &str> = rustc_hash::FxHashMap::default();
    for (c, m) in &raw.categories {
        let at = format!("{path}.categories.{c}");
        let m = margin(*m, &at, errors);
        let Some(handle) = super::expr::category_name(c, &at, errors) else {
            continue;
        };
        if let Some(first) = named.insert(handle.clone(), c) {
            errors.push(
                &at,
                format!("names the same category as {first:?} ({handle})"),
            );
        }
        categories.insert(handle, m);
    }
    Guardrails {
        min_margin_bps: margin(
            raw.min_margin_bps,
            &format!("{path}.min_margin_bps"),
            errors,
        ),
        products,
        categories,
    }
}

// ---- pricing ---------------------------------------------------------------------

/// The price lists that apply to this request (currency, window, scope), decided once per
/// request.
pub struct PriceBook<'r> {
    /// By list index: whether the list applies to this request.
    active: Vec<bool>,
    /// The active adjustment lists (they price every product of their categories).
    adjustments: Vec<&'r PriceList>,
    rules: Pricing<'r>,
    currency: crate::domain::Currency,
}

/// A visitor's unit price for a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priced {
    pub unit: Money,
    pub compare_at: Option<Money>,
    /// The list the price came from (`None`: the catalog price).
    pub list: Option<String>,
    /// The margin floor raised the price from this amount.
    pub clamped_from: Option<i64>,
    /// The lowest unit amount discounts may reach (`None`: not discountable).
    pub floor: Option<i64>,
}

#[derive(Clone, Copy)]
struct Candidate<'r> {
    priority: i64,
    kind: PriceKind,
    amount: i64,
    id: &'r str,
    catalog: bool,
}

impl Candidate<'_> {
    fn better_than(&self, other: &Self) -> bool {
        (
            std::cmp::Reverse(self.priority),
            std::cmp::Reverse(self.kind.specificity()),
            self.amount,
            self.id,
        ) < (
            std::cmp::Reverse(other.priority),
            std::cmp::Reverse(other.kind.specificity()),
            other.amount,
            other.id,
        )
    }
}

/// `amount` x `bps` / 10,000, rounded half up, in integer minor units (prices and
/// promotions round alike).
pub(super) fn round_bps(amount: i64, bps: i64) -> i64 {
    (i128::from(amount) * i128::from(bps) + 5_000).div_euclid(10_000) as i64
}

/// The floor under a product's unit price: `max(cost * (1 + margin), min_price)`, or
/// `None` when the product has neither cost nor minimum price (it is never discounted).
pub fn floor(
    rules: Pricing<'_>,
    product: &Product,
    category: &Category,
    currency: crate::domain::Currency,
) -> Option<i64> {
    let g = &rules.guardrails;
    // (Empty maps are skipped: no hashing on the path of a shop without guardrails.)
    let (min_price, margin_override) = if g.products.is_empty() {
        (None, None)
    } else {
        g.products
            .get(&*product.id)
            .map_or((None, None), |(p, m)| (*p, *m))
    };
    let margin = margin_override
        .or_else(|| {
            // The nearest enclosing category with a margin.
            (!g.categories.is_empty())
                .then(|| ancestors(&category.handle).find_map(|a| g.categories.get(a).copied()))
                .flatten()
        })
        .unwrap_or(g.min_margin_bps);
    let from_cost = product
        .cost
        .filter(|c| c.currency == currency)
        // Rounded up: the floor must keep at least the margin.
        .map(|c| {
            (i128::from(c.amount) * i128::from(10_000 + margin) + 9_999).div_euclid(10_000) as i64
        });
    let from_min = min_price
        .filter(|m| m.currency == currency)
        .map(|m| m.amount);
    match (from_cost, from_min) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

impl<'r> PriceBook<'r> {
    pub fn new(rules: Pricing<'r>, ctx: &Context<'_>) -> Self {
        let env = Env::of(ctx);
        let active: Vec<bool> = rules
            .price_lists
            .iter()
            .map(|l| {
                l.currency == ctx.session.currency
                    && l.window.contains(ctx.now)
                    && l.scope.holds(env)
            })
            .collect();
        let adjustments = rules
            .price_lists
            .iter()
            .zip(&active)
            .filter(|(l, on)| **on && l.adjust.is_some())
            .map(|(l, _)| l)
            .collect();
        Self {
            active,
            adjustments,
            rules,
            currency: ctx.session.currency,
        }
    }

    /// The amount an adjustment list gives a product at `quantity`, if it prices it
    /// (`entries`: the product's entries in every list).
    fn adjusted(
        &self,
        list: &PriceList,
        entries: &[(u32, PriceEntry)],
        category: &Category,
        quantity: u32,
        catalog: Option<i64>,
    ) -> Option<i64> {
        let adjust = list.adjust.as_ref()?;
        if !adjust.categories.is_empty() && !adjust.categories.holds_category(category) {
            return None;
        }
        let parent = match adjust.parent_index {
            // Only a parent this visitor could pay (its window and scope hold): an
            // adjustment never reaches a price its parent does not offer.
            Some(i) if !self.active[i] => return None,
            Some(i) => entries
                .iter()
                .find(|(l, _)| *l as usize == i)?
                .1
                .at(quantity),
            None => catalog?,
        };
        Some(parent - round_bps(parent, adjust.percent_off_bps))
    }

    /// This visitor's unit price for `quantity` of `product`.
    pub fn price(&self, product: &Product, category: &Category, quantity: u32) -> Priced {
        let currency = self.currency;
        let catalog_amount = (product.price.currency == currency).then_some(product.price.amount);
        let mut best: Option<Candidate<'_>> = None;
        let mut best_regular: Option<Candidate<'_>> = None;
        let mut consider = |c: Candidate<'r>| {
            if c.kind != PriceKind::Sale && best_regular.as_ref().is_none_or(|b| c.better_than(b)) {
                best_regular = Some(c);
            }
            if best.as_ref().is_none_or(|b| c.better_than(b)) {
                best = Some(c);
            }
        };
        if let Some(amount) = catalog_amount {
            consider(Candidate {
                priority: i64::MIN,
                kind: PriceKind::Base,
                amount,
                id: "",
                catalog: true,
            });
        }
        let entries: &[(u32, PriceEntry)] = if self.rules.prices.is_empty() {
            &[]
        } else {
            self.rules
                .prices
                .get(&*product.id)
                .map_or(&[], |e| e.as_slice())
        };
        let lists = &self.rules.price_lists;
        let listed = entries
            .iter()
            .filter(|(i, _)| self.active[*i as usize])
            .map(|(i, e)| (&lists[*i as usize], e.at(quantity)));
        let adjusted = self.adjustments.iter().filter_map(|l| {
            self.adjusted(l, entries, category, quantity, catalog_amount)
                .map(|a| (*l, a))
        });
        for (list, amount) in listed.chain(adjusted) {
            consider(Candidate {
                priority: list.priority,
                kind: list.kind,
                amount,
                id: &list.id,
                catalog: false,
            });
        }
        let floor = floor(self.rules, product, category, currency);
        let Some(best) = best else {
            // No price in the request's currency: the catalog's, as it is.
            return Priced {
                unit: product.price,
                compare_at: None,
                list: None,
                clamped_from: None,
                floor: floor.filter(|_| product.price.currency == currency),
            };
        };
        let (amount, clamped_from) = match floor {
            Some(f) if best.amount < f => (f, Some(best.amount)),
            _ => (best.amount, None),
        };
        let compare_at = best_regular
            .filter(|r| r.amount > amount)
            .map(|r| Money::new(r.amount, currency));
        Priced {
            unit: Money::new(amount, currency),
            compare_at,
            list: (!best.catalog).then(|| best.id.to_owned()),
            clamped_from,
            floor,
        }
    }
}
