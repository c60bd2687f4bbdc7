//! Per-arm experiment counts, shared by every replica: what attribution adds and the
//! results read. Counts are sums only (increments commute), so replicas add to them
//! without reading first; each experiment's counts are one small record per arm,
//! whatever the traffic.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::Currency;

/// What an arm counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Visitors served the arm (once each).
    Exposed,
    Impressions,
    Clicks,
    /// Visitors with a click.
    Clickers,
    AddToCarts,
    /// Visitors with an add-to-cart.
    Adders,
    Orders,
    /// Visitors with an order.
    Converters,
    /// Clicks and orders of products on a decision that had a shadow answer...
    ShadowChecked,
    /// ... of which the product was in the served list...
    InServed,
    /// ... and in the shadow's.
    InShadow,
}

impl Count {
    pub const ALL: [Count; 11] = [
        Count::Exposed,
        Count::Impressions,
        Count::Clicks,
        Count::Clickers,
        Count::AddToCarts,
        Count::Adders,
        Count::Orders,
        Count::Converters,
        Count::ShadowChecked,
        Count::InServed,
        Count::InShadow,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Count::Exposed => "exposed",
            Count::Impressions => "impressions",
            Count::Clicks => "clicks",
            Count::Clickers => "clickers",
            Count::AddToCarts => "add_to_carts",
            Count::Adders => "adders",
            Count::Orders => "orders",
            Count::Converters => "converters",
            Count::ShadowChecked => "shadow_checked",
            Count::InServed => "in_served",
            Count::InShadow => "in_shadow",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Count::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An arm's revenue in one currency: the sum of each visitor's revenue (minor units)
/// and of its squares (for the revenue-per-visitor variance; a statistic, not money).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revenue {
    pub currency: Currency,
    pub total: i64,
    pub squares: f64,
}

/// One arm's counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// By [`Count::ALL`]'s order.
    pub n: [i64; 11],
    pub revenue: Vec<Revenue>,
}

impl Counts {
    pub fn get(&self, c: Count) -> i64 {
        self.n[c as usize]
    }

    pub fn add(&mut self, c: Count, by: i64) {
        self.n[c as usize] = self.n[c as usize].saturating_add(by);
    }

    pub fn add_revenue(&mut self, currency: Currency, total: i64, squares: f64) {
        match self.revenue.iter_mut().find(|r| r.currency == currency) {
            Some(r) => {
                r.total = r.total.saturating_add(total);
                r.squares += squares;
            }
            None => self.revenue.push(Revenue {
                currency,
                total,
                squares,
            }),
        }
    }

    /// Adds another arm's counts to these.
    pub fn merge(&mut self, other: &Counts) {
        for c in Count::ALL {
            self.add(c, other.get(c));
        }
        for r in &other.revenue {
            self.add_revenue(r.currency, r.total, r.squares);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n.iter().all(|n| *n == 0) && self.revenue.is_empty()
    }
}

/// Counts to add to one arm.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmTally {
    pub experiment: String,
    pub variant: String,
    pub counts: Counts,
}

/// Adds `counts` to the tally of (`experiment`, `variant`) in `tallies`, merging with
/// what is there.
pub fn add_to(tallies: &mut Vec<ArmTally>, experiment: &str, variant: &str, counts: &Counts) {
    match tallies
        .iter_mut()
        .find(|t| t.experiment == experiment && t.variant == variant)
    {
        Some(t) => t.counts.merge(counts),
        None => tallies.push(ArmTally {
            experiment: experiment.to_owned(),
            variant: variant.to_owned(),
            counts: counts.clone(),
        }),
    }
}

#[async_trait]
pub trait ExperimentTally: Send + Sync + 'static {
    /// Adds to arms' counts (each arm's addition atomic).
    async fn add_tallies(&self, tallies: &[ArmTally]) -> Result<(), StoreError>;

    /// An experiment's counts, by variant id (in no set order).
    async fn tallies(&self, experiment: &str) -> Result<Vec<(String, Counts)>, StoreError>;
}

/// The in-process table the memory store keeps.
#[derive(Default)]
pub struct TallyTable(std::collections::BTreeMap<(String, String), Counts>);

impl TallyTable {
    pub fn add(&mut self, tallies: &[ArmTally]) {
        for t in tallies {
            self.0
                .entry((t.experiment.clone(), t.variant.clone()))
                .or_default()
                .merge(&t.counts);
        }
    }

    pub fn of(&self, experiment: &str) -> Vec<(String, Counts)> {
        self.0
            .iter()
            .filter(|((e, _), _)| e == experiment)
            .map(|((_, v), c)| (v.clone(), c.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_field_and_currency() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        let mut a = Counts::default();
        a.add(Count::Clicks, 2);
        a.add_revenue(eur, 100, 10_000.0);
        let mut b = Counts::default();
        b.add(Count::Clicks, 3);
        b.add(Count::Exposed, 1);
        b.add_revenue(eur, 50, 2_500.0);
        b.add_revenue(usd, 7, 49.0);
        a.merge(&b);
        assert_eq!((a.get(Count::Clicks), a.get(Count::Exposed)), (5, 1));
        assert_eq!(a.revenue.len(), 2);
        assert_eq!((a.revenue[0].total, a.revenue[0].squares), (150, 12_500.0));
        for c in Count::ALL {
            assert_eq!(Count::parse(c.as_str()), Some(c));
        }
    }
}
