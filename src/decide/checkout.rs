//! Cart evaluation and the commit of a checkout.
//!
//! [`Checkout::evaluate`] is the decision: a synchronous function of the ruleset, the
//! cart, the visitor and the budgets' usage. [`run`] adds what a checkout needs from
//! the store: the budgets' usage before deciding and, for an order, the atomic record
//! of its redemptions, deciding again without a promotion another checkout has just
//! used up.

use super::expr::Context;
use super::live::LiveRules;
use super::promo::Budget;
use super::promo::{Evaluation, Usage};
use super::{Refusal, Ruleset};
use crate::domain::profile::ProfileOp;
use crate::domain::{Catalog, Currency, PageContext, Placement, Profile};
use crate::recommend::CartItem;
use crate::recommend::reads::Volatile;
use crate::store::{CatalogStore, ProfileKey, ProfileStore, Redeemed, Redemption, StoreError};

/// A cart to evaluate, checked.
#[derive(Clone, Copy, Debug)]
pub struct CartRequest<'r> {
    pub cart: &'r [CartItem],
    /// Promotion codes, upper case, distinct.
    pub codes: &'r [String],
    pub context: &'r PageContext,
    /// How the visitor's experiment arms are found (promotion sets).
    pub arms: super::experiment::Arms<'r>,
}

/// A cart ready to be decided: its lines on the catalog, the visitor's facts, and the
/// budgeted promotions whose usage the decision reads.
pub struct Checkout<'a> {
    rules: &'a Ruleset,
    ctx: Context<'a>,
    codes: &'a [String],
    profile: Option<&'a Profile>,
    budgeted: Vec<String>,
    page: &'a PageContext,
    /// The arms that put promotion sets in force: (experiment, variant).
    experiments: Vec<(String, String)>,
}

/// What became of an order's redemptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Recorded,
    /// The order was recorded before; nothing changed.
    AlreadyRecorded,
}

impl Commit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Commit::Recorded => "recorded",
            Commit::AlreadyRecorded => "already_recorded",
        }
    }
}

/// An order to commit the decision for.
#[derive(Clone, Copy, Debug)]
pub struct Order<'o> {
    pub id: &'o str,
    /// The id of the profile write that counts the customer's uses (a keyed hash of
    /// the order id, so a repeated call writes nothing twice).
    pub op_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart cannot be decided: {0:?}")]
    Refused(Refusal),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<Refusal> for CheckoutError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl<'a> Checkout<'a> {
    /// The cart on the catalog, in the request's currency; refused when a line names a
    /// product the catalog does not have or the currency is one the shop does not sell in.
    pub fn new(
        rules: &'a Ruleset,
        catalog: &'a Catalog,
        volatile: &dyn Volatile,
        profile: Option<&'a Profile>,
        request: &CartRequest<'a>,
        now: i64,
    ) -> Result<Self, Refusal> {
        super::check_currency(request.context, catalog, rules)?;
        let lines = super::cart_lines(catalog, volatile, request.cart)?;
        let mut ctx = super::context(
            catalog,
            request.context,
            profile,
            Some(Placement::Checkout),
            lines,
            now,
        );
        let served = super::experiment::serve_checkout(
            &rules.experiments,
            rules.holdout.as_ref(),
            &request.arms,
            super::expr::Env::of(&ctx),
        );
        ctx.promotion_sets = served.promotion_sets(&rules.experiments);
        let experiments = served.named(&rules.experiments);
        let budgeted = rules
            .promotions
            .iter()
            .filter(|p| p.budget != Budget::default())
            .map(|p| p.id.clone())
            .collect();
        Ok(Self {
            rules,
            ctx,
            codes: request.codes,
            profile,
            budgeted,
            page: request.context,
            experiments,
        })
    }

    /// The experiment arms whose promotion sets the decision honours.
    pub fn experiments(&self) -> &[(String, String)] {
        &self.experiments
    }

    /// The promotions with a budget, whose usage [`Checkout::evaluate`] reads.
    pub fn budgeted(&self) -> &[String] {
        &self.budgeted
    }

    pub fn currency(&self) -> Currency {
        self.ctx.session.currency
    }

    /// The decision, with `used` the (uses, discount given) of each budgeted promotion
    /// and `exhausted` those to count as used up.
    pub fn evaluate(
        &self,
        used: &[(u64, i64)],
        exhausted: &[String],
    ) -> Result<Evaluation, Refusal> {
        let usage = |id: &str| -> Usage {
            if exhausted.iter().any(|e| e == id) {
                return Usage {
                    uses: u64::MAX,
                    spent: i64::MAX,
                    customer_uses: u64::MAX,
                };
            }
            let (uses, spent) = self
                .budgeted
                .iter()
                .position(|b| b == id)
                .and_then(|i| used.get(i).copied())
                .unwrap_or((0, 0));
            Usage {
                uses,
                spent,
                customer_uses: self.profile.map_or(0, |p| u64::from(p.promotion_uses(id))),
            }
        };
        super::evaluate_cart(self.rules, self.ctx.clone(), self.codes, &usage)
            .map_err(|line| Refusal::unpriced(self.page, line, self.currency()))
    }

    /// The budgeted promotions an evaluation applies, as the store records them.
    pub fn redemptions(&self, evaluation: &Evaluation, customer: &ProfileKey) -> Vec<Redemption> {
        evaluation
            .applied
            .iter()
            .filter_map(|a| {
                let p = self.rules.promotions.iter().find(|p| p.id == a.id)?;
                (p.budget != Budget::default()).then(|| Redemption {
                    promotion: p.id.clone(),
                    amount: a.amount.amount,
                    max_uses: p.budget.max_uses,
                    max_spend: p.budget.max_spend.map(|m| m.amount),
                    // Counted in the store with the rest, so two checkouts of one
                    // customer at once cannot both pass the limit.
                    per_customer: p.budget.per_customer_uses.map(|m| (customer.to_hex(), m)),
                })
            })
            .collect()
    }
}

/// Where a checkout reads budgets and records redemptions.
#[derive(Clone, Copy)]
pub struct Stores<'s> {
    pub catalog: &'s dyn CatalogStore,
    pub profiles: &'s dyn ProfileStore,
    /// This replica's view of the budgets, brought up to date with what it records.
    pub rules: &'s LiveRules,
}

/// A checkout's decision, and the usage it was decided with.
#[derive(Debug)]
pub struct Ran {
    pub evaluation: Evaluation,
    pub commit: Option<Commit>,
    /// Each budgeted promotion's (uses, discount given), as read.
    pub used: Vec<(u64, i64)>,
    /// Promotions decided as used up after the store refused them.
    pub exhausted: Vec<String>,
}

/// Evaluates the cart with the budgets' recorded usage and, for an order, records its
/// redemptions. Another checkout may take the last use meanwhile: the store checks the
/// limits again, atomically, and a promotion over its limit is decided again as used up.
pub async fn run(
    checkout: &Checkout<'_>,
    stores: Stores<'_>,
    customer: &ProfileKey,
    order: Option<Order<'_>>,
    now: i64,
) -> Result<Ran, CheckoutError> {
    let used = stores.catalog.promotion_usage(checkout.budgeted()).await?;
    let mut exhausted: Vec<String> = Vec::new();
    let mut evaluation = off_the_workers(|| checkout.evaluate(&used, &exhausted))?;
    let ran = |evaluation, commit, exhausted| Ran {
        evaluation,
        commit,
        used: used.clone(),
        exhausted,
    };
    let Some(order) = order else {
        return Ok(ran(evaluation, None, exhausted));
    };
    for _ in 0..=checkout.budgeted().len() {
        let redemptions = checkout.redemptions(&evaluation, customer);
        match stores.catalog.redeem(order.id, &redemptions).await? {
            Redeemed::Recorded => {
                stores.rules.note_redeemed(
                    &redemptions
                        .iter()
                        .map(|r| (r.promotion.clone(), r.amount))
                        .collect::<Vec<_>>(),
                );
                let promotions: Vec<String> =
                    redemptions.into_iter().map(|r| r.promotion).collect();
                if !promotions.is_empty() {
                    let op = ProfileOp::PromotionsUsed {
                        id: order.op_id,
                        at: now,
                        promotions,
                    };
                    stores.profiles.apply(customer, &[op]).await?;
                }
                return Ok(ran(evaluation, Some(Commit::Recorded), exhausted));
            }
            Redeemed::AlreadyRecorded => {
                return Ok(ran(evaluation, Some(Commit::AlreadyRecorded), exhausted));
            }
            Redeemed::OverLimit(i) => {
                exhausted.push(redemptions[i].promotion.clone());
                evaluation = off_the_workers(|| checkout.evaluate(&used, &exhausted))?;
            }
        }
    }
    Ok(ran(evaluation, None, exhausted))
}

/// Runs a cart evaluation (milliseconds on a large cart and ruleset) with the worker
/// handed over to the runtime meanwhile, so `/livez` and other requests are not queued
/// behind it. A single-threaded runtime (tests) runs it in place.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
