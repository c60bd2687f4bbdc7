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

use super::expr::{Context, Env};
use super::ruleset::{PriceEntry, PriceKind, PriceList, Ruleset};
use crate::domain::Money;
use crate::domain::catalog::{Category, Product};

/// The price lists that apply to this request (currency, window, scope), decided once per
/// request.
pub struct PriceBook<'r> {
    /// By list index: whether the list applies to this request.
    active: Vec<bool>,
    /// The active adjustment lists (they price every product of their categories).
    adjustments: Vec<&'r PriceList>,
    rules: &'r Ruleset,
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
    rules: &Ruleset,
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
                .then(|| {
                    super::ruleset::ancestors(&category.handle)
                        .find_map(|a| g.categories.get(a).copied())
                })
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
    pub fn new(rules: &'r Ruleset, ctx: &Context<'_>) -> Self {
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
