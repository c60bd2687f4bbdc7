//! The experiment arms a visitor was served, kept in their profile: the first arm of
//! each experiment stays theirs while its `bucket_version` does (weight and coverage
//! changes do not move them), and what they did in it since is kept beside it, once a
//! visitor, so per-arm results count visitors and not only events.
//!
//! Each "first" (the exposure, the first click, add-to-cart and order) keeps the
//! fingerprint of the op that made it (`op` below, as `profile::fingerprint` gives it): whoever applied a batch of ops can tell, from
//! the profile after the batch and which ops were new, exactly what to add to the
//! shared per-arm counts, with no read before the write.

use serde::{Deserialize, Serialize};

use super::money::Money;

/// Arms a profile keeps (the most recently served first); one per experiment.
pub const MAX_ARMS: usize = 32;
/// Orders an arm remembers (the newest), so an order reaching it twice, by two ways,
/// counts once.
pub const MAX_ARM_ORDERS: usize = 16;

/// One experiment's arm, as the visitor was first served it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    pub experiment: String,
    pub version: u32,
    pub variant: String,
    /// When first served (Unix seconds).
    pub at: i64,
    /// The op that put the visitor in the arm (its fingerprint).
    pub exposed_by: u32,
    /// The ops of the first click, add-to-cart and order in the arm (0: none yet).
    pub clicked_by: u32,
    pub added_by: u32,
    pub ordered_by: u32,
    /// Revenue attributed to the arm, in the currency of its first order.
    pub revenue: Option<Money>,
    /// Orders attributed: (order fingerprint, the op that attributed it first, whether
    /// it came whole, by webhook or import, rather than line by line), newest last.
    pub orders: Vec<(u32, u32, bool)>,
}

/// What a visitor did that an arm is credited with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArmOutcome {
    /// Shown (it changes nothing but the visitor's place in the arm).
    Impression,
    Click,
    AddToCart,
    /// An order's revenue for the arm: one line of a purchase event, or the lines of a
    /// whole order (webhook, import) the arm last showed. `order` is its fingerprint.
    Order {
        order: u32,
        amount: Option<Money>,
        whole: bool,
    },
}

/// Puts the visitor in an arm unless they are in one of that experiment and version
/// (true: new). A new `version` replaces the arm.
pub fn expose(
    arms: &mut Vec<Arm>,
    op: u32,
    at: i64,
    experiment: &str,
    version: u32,
    variant: &str,
) -> bool {
    if let Some(i) = arms.iter().position(|a| a.experiment == experiment) {
        if arms[i].version == version {
            return false;
        }
        arms.remove(i);
    }
    join(arms, op, at, experiment, version, variant);
    true
}

/// Puts the visitor in a new arm, the most recent first.
fn join(arms: &mut Vec<Arm>, op: u32, at: i64, experiment: &str, version: u32, variant: &str) {
    arms.insert(
        0,
        Arm {
            experiment: experiment.to_owned(),
            version,
            variant: variant.to_owned(),
            at,
            exposed_by: op,
            ..Arm::default()
        },
    );
    arms.truncate(MAX_ARMS);
}

/// Credits an arm with an outcome; the visitor joins the arm first if their profile
/// does not hold it (the exposure was not written, or was forgotten). False when the
/// outcome changes nothing: an order already credited whole, or one credited line by
/// line and now arriving whole.
pub fn credit(
    arms: &mut Vec<Arm>,
    op: u32,
    at: i64,
    experiment: &str,
    variant: &str,
    outcome: &ArmOutcome,
) -> bool {
    let fp = op;
    let i = match arms
        .iter()
        .position(|a| a.experiment == experiment && a.variant == variant)
    {
        Some(i) => i,
        None => {
            let version = arms
                .iter()
                .find(|a| a.experiment == experiment)
                .map_or(0, |a| a.version);
            arms.retain(|a| a.experiment != experiment);
            join(arms, fp, at, experiment, version, variant);
            0
        }
    };
    let arm = &mut arms[i];
    let first = |by: &mut u32| {
        if *by == 0 {
            *by = fp;
        }
    };
    match outcome {
        ArmOutcome::Impression => {}
        ArmOutcome::Click => first(&mut arm.clicked_by),
        ArmOutcome::AddToCart => first(&mut arm.added_by),
        ArmOutcome::Order {
            order,
            amount,
            whole,
        } => {
            match arm.orders.iter().find(|o| o.0 == *order) {
                // Another line of an order credited line by line.
                Some(&(_, _, false)) if !whole => {}
                Some(_) => return false,
                None => {
                    arm.orders.push((*order, fp, *whole));
                    if arm.orders.len() > MAX_ARM_ORDERS {
                        arm.orders.remove(0);
                    }
                    first(&mut arm.ordered_by);
                }
            }
            if let Some(amount) = amount {
                match &mut arm.revenue {
                    None => arm.revenue = Some(*amount),
                    Some(r) if r.currency == amount.currency => {
                        r.amount = r.amount.saturating_add(amount.amount);
                    }
                    // Another currency is never added: the order counts, its revenue
                    // does not.
                    Some(_) => {}
                }
            }
        }
    }
    true
}

/// Folds a session's arms into a customer's: the customer keeps theirs, and gains the
/// session's experiments they were not in.
pub fn absorb(arms: &mut Vec<Arm>, from: &[Arm]) {
    for a in from.iter().rev() {
        if !arms.iter().any(|b| b.experiment == a.experiment) {
            arms.insert(0, a.clone());
        }
    }
    arms.truncate(MAX_ARMS);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    #[test]
    fn the_first_arm_stays_until_the_version_moves() {
        let mut arms = Vec::new();
        assert!(expose(&mut arms, 1, 10, "x", 1, "a"));
        assert!(!expose(&mut arms, 2, 11, "x", 1, "b"));
        assert_eq!(arms[0].variant, "a");
        assert!(expose(&mut arms, 3, 12, "x", 2, "b"));
        assert_eq!((arms.len(), arms[0].variant.as_str()), (1, "b"));
        assert_eq!(arms[0].exposed_by, 3);
    }

    #[test]
    fn firsts_keep_the_op_that_made_them_and_orders_count_once() {
        let mut arms = Vec::new();
        expose(&mut arms, 1, 10, "x", 1, "a");
        assert!(credit(&mut arms, 2, 11, "x", "a", &ArmOutcome::Click));
        assert!(credit(&mut arms, 3, 12, "x", "a", &ArmOutcome::Click));
        assert_eq!(arms[0].clicked_by, 2);
        let line = |amount| ArmOutcome::Order {
            order: 77,
            amount: Some(eur(amount)),
            whole: false,
        };
        assert!(credit(&mut arms, 4, 13, "x", "a", &line(500)));
        assert!(credit(&mut arms, 5, 13, "x", "a", &line(250)));
        // The same order, whole, by webhook: already credited.
        let whole = ArmOutcome::Order {
            order: 77,
            amount: Some(eur(750)),
            whole: true,
        };
        assert!(!credit(&mut arms, 6, 14, "x", "a", &whole));
        assert_eq!(arms[0].revenue, Some(eur(750)));
        assert_eq!(arms[0].orders, vec![(77, 4, false)]);
        assert_eq!(arms[0].ordered_by, 4);
        // Another currency counts the order, never the amount.
        let usd = ArmOutcome::Order {
            order: 78,
            amount: Some(Money::new(100, Currency::parse("USD").unwrap())),
            whole: true,
        };
        assert!(credit(&mut arms, 7, 15, "x", "a", &usd));
        assert_eq!(arms[0].revenue, Some(eur(750)));
        assert_eq!(arms[0].orders.len(), 2);
    }

    #[test]
    fn an_outcome_without_an_exposure_joins_the_arm() {
        let mut arms = Vec::new();
        assert!(credit(&mut arms, 9, 10, "x", "b", &ArmOutcome::AddToCart));
        assert_eq!(arms[0].exposed_by, 9);
        assert_eq!(arms[0].added_by, 9);
    }

    #[test]
    fn a_session_brings_only_experiments_the_customer_was_not_in() {
        let mut customer = Vec::new();
        expose(&mut customer, 1, 10, "x", 1, "a");
        let mut session = Vec::new();
        expose(&mut session, 2, 11, "x", 1, "b");
        expose(&mut session, 3, 12, "y", 1, "c");
        absorb(&mut customer, &session);
        let got: Vec<_> = customer
            .iter()
            .map(|a| (a.experiment.as_str(), a.variant.as_str()))
            .collect();
        assert_eq!(got, vec![("y", "c"), ("x", "a")]);
    }
}
