//! Promotions over a cart: which apply, for how much on which line, and why the others
//! did not.
//!
//! Phases run item, then order, then shipping; within a phase by priority (high first),
//! then id. Order thresholds read the subtotal after item discounts. A group keeps its
//! best member. An exclusive promotion is weighed alone (or against its class) versus the
//! stack without it, and the better total wins. After every step the margin floor holds:
//! a line's discounts never take it under `floor x quantity`, and a discount that would is
//! clamped, with the clamp reported. Order discounts are split over lines in proportion
//! to their amounts by largest remainder, so the parts sum exactly to the whole.

use serde::Serialize;

use super::expr::{Context, Env};
use super::price::Priced;
use super::ruleset::{Benefit, Class, Consent, Exclusive, Promotion, Ruleset, Trigger};
use crate::domain::Money;

/// What a promotion's budget has used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub uses: u64,
    /// Discount given so far, in the promotion's currency.
    pub spent: i64,
    pub customer_uses: u64,
}

/// Why a promotion did not apply; the stable code clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NotEligible,
    ConditionNotMet,
    OutOfWindow,
    BudgetExhausted,
    NotCombinable,
    LostGroup,
    ExcludedBy,
    NoConsent,
    /// Every unit it would discount is at its margin floor.
    Clamped,
    CurrencyMismatch,
    NothingToDiscount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineDiscount {
    pub product_id: String,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedPromotion {
    pub id: String,
    pub title: String,
    pub class: Class,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub amount: Money,
    pub lines: Vec<LineDiscount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Money>,
    /// What the margin floor held back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamped: Option<Money>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedPromotion {
    pub id: String,
    pub reason: Reason,
    /// The promotion that excluded it, won its group, or does not combine with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineResult {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_list: Option<String>,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shipping {
    pub amount: Money,
    pub discount: Money,
    pub total: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub lines: Vec<LineResult>,
    pub applied: Vec<AppliedPromotion>,
    pub rejected: Vec<RejectedPromotion>,
    /// Codes sent that no promotion has.
    pub unknown_codes: Vec<String>,
    pub shipping: Shipping,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

/// Splits `total` over `weights` in proportion, by largest remainder: the parts sum to
/// `total` exactly, and none exceeds its weight when `total` does not exceed their sum.
pub fn allocate(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|&w| i128::from(w.max(0))).sum();
    if sum == 0 || total <= 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut rest: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    let mut given: i128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = i128::from(total) * i128::from(w.max(0));
        let part = exact / sum;
        given += part;
        parts.push(part as i64);
        rest.push((exact % sum, i));
    }
    // Largest remainders first; ties to the earlier line, so the split is deterministic.
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rest.iter().take((i128::from(total) - given) as usize) {
        parts[i] += 1;
    }
    parts
}

fn round_bps(amount: i64, bps: i64) -> i64 {
    (i128::from(amount) * i128::from(bps) + 5_000).div_euclid(10_000) as i64
}

/// The cart as it stands between promotions.
#[derive(Clone)]
struct State<'r> {
    /// Each line's amount after the discounts so far.
    net: Vec<i64>,
    /// How much more each line may be discounted before its floor.
    headroom: Vec<i64>,
    shipping: i64,
    applied: Vec<(&'r Promotion, AppliedPromotion)>,
    rejected: Vec<RejectedPromotion>,
    item_discount: i64,
}

impl State<'_> {
    fn discount(&self) -> i64 {
        self.applied.iter().map(|(_, a)| a.amount.amount).sum()
    }
}

struct Outcome {
    per_line: Vec<i64>,
    shipping: i64,
    clamped: i64,
}

impl Outcome {
    fn total(&self) -> i64 {
        self.per_line.iter().sum::<i64>() + self.shipping
    }
}

/// One evaluation's fixed inputs.
struct Run<'x, 'a> {
    ctx: &'x Context<'a>,
    codes: &'x [String],
    usage: &'x dyn Fn(&str) -> Usage,
}

type Refusal = (Reason, Option<String>);

impl Run<'_, '_> {
    /// The code this request sent for `p` (`Some(None)`: an automatic promotion, which
    /// needs none; `None`: a code promotion whose code was not sent).
    fn entered(&self, p: &Promotion) -> Option<Option<String>> {
        match p.trigger {
            Trigger::Auto => Some(None),
            Trigger::Code | Trigger::Offer => p
                .codes
                .iter()
                .find(|c| self.codes.contains(c))
                .map(|c| Some(c.clone())),
        }
    }

    /// Everything but the amounts.
    fn admit(&self, p: &Promotion, ctx: &Context<'_>, state: &State<'_>) -> Result<(), Refusal> {
        if !p.window.contains(ctx.now) || p.schedule.as_ref().is_some_and(|s| !s.contains(ctx.now))
        {
            return Err((Reason::OutOfWindow, None));
        }
        if p.currency.is_some_and(|c| c != ctx.session.currency) {
            return Err((Reason::CurrencyMismatch, None));
        }
        let consented = match p.requires_consent {
            None => true,
            Some(Consent::Marketing) => ctx.marketing,
            Some(Consent::Personalization) => ctx.personalization,
        };
        if !consented {
            return Err((Reason::NoConsent, None));
        }
        let env = Env::of(ctx);
        if !p.eligibility.holds(env) {
            return Err((Reason::NotEligible, None));
        }
        if !p.condition.holds(env) {
            return Err((Reason::ConditionNotMet, None));
        }
        let used = (self.usage)(&p.id);
        let b = &p.budget;
        if b.max_uses.is_some_and(|m| used.uses >= m)
            || b.per_customer_uses.is_some_and(|m| used.customer_uses >= m)
            || b.max_spend.is_some_and(|m| used.spent >= m.amount)
        {
            return Err((Reason::BudgetExhausted, None));
        }
        for (a, _) in &state.applied {
            if !p.combines_with.contains(&a.class) || !a.combines_with.contains(&p.class) {
                return Err((Reason::NotCombinable, Some(a.id.clone())));
            }
        }
        Ok(())
    }

    /// What `p` would do to the cart now, or why it does nothing.
    fn attempt(
        &self,
        p: &Promotion,
        ctx: &Context<'_>,
        state: &State<'_>,
    ) -> Result<Outcome, Refusal> {
        self.admit(p, ctx, state)?;
        let o = outcome(p, ctx, state, (self.usage)(&p.id));
        if o.total() > 0 {
            Ok(o)
        } else if o.clamped > 0 {
            Err((Reason::Clamped, None))
        } else {
            Err((Reason::NothingToDiscount, None))
        }
    }

    /// Runs `promos` (in evaluation order) over the cart.
    fn run<'r>(&self, promos: &[&'r Promotion], start: &State<'r>) -> State<'r> {
        let mut state = start.clone();
        let mut ctx = self.ctx.clone();
        let mut decided_groups: Vec<&str> = Vec::new();
        let mut phase = Class::Item;
        for (k, &p) in promos.iter().enumerate() {
            if p.class != phase {
                phase = p.class;
                // Order thresholds read the subtotal after item discounts.
                ctx.discount = state.item_discount;
            }
            let Some(code) = self.entered(p) else {
                continue;
            };
            if let Some(g) = p.group.as_deref() {
                if decided_groups.contains(&g) {
                    continue;
                }
                decided_groups.push(g);
                // The group's best member at this point, on the cart as it stands.
                let members: Vec<&Promotion> = promos[k..]
                    .iter()
                    .copied()
                    .filter(|m| m.group.as_deref() == Some(g) && self.entered(m).is_some())
                    .collect();
                let mut best: Option<(usize, Outcome)> = None;
                let mut refusals = Vec::new();
                for (j, m) in members.iter().enumerate() {
                    match self.attempt(m, &ctx, &state) {
                        Ok(o) if best.as_ref().is_none_or(|(_, b)| o.total() > b.total()) => {
                            best = Some((j, o));
                        }
                        Ok(_) => refusals.push((j, (Reason::LostGroup, None))),
                        Err(r) => refusals.push((j, r)),
                    }
                }
                if let Some((winner, o)) = best {
                    for (j, m) in members.iter().enumerate() {
                        if j != winner && !refusals.iter().any(|(r, _)| *r == j) {
                            refusals.push((j, (Reason::LostGroup, None)));
                        }
                        let _ = m;
                    }
                    for (_, r) in &mut refusals {
                        if r.0 == Reason::LostGroup {
                            r.1 = Some(members[winner].id.clone());
                        }
                    }
                    let code = self.entered(members[winner]).flatten();
                    commit(&mut state, members[winner], code, &o, &ctx);
                }
                refusals.sort_by_key(|(j, _)| *j);
                for (j, (reason, by)) in refusals {
                    state.rejected.push(RejectedPromotion {
                        id: members[j].id.clone(),
                        reason,
                        by,
                    });
                }
                continue;
            }
            match self.attempt(p, &ctx, &state) {
                Ok(o) => commit(&mut state, p, code, &o, &ctx),
                Err((reason, by)) => state.rejected.push(RejectedPromotion {
                    id: p.id.clone(),
                    reason,
                    by,
                }),
            }
        }
        state
    }
}

fn commit<'r>(
    state: &mut State<'r>,
    p: &'r Promotion,
    code: Option<String>,
    o: &Outcome,
    ctx: &Context<'_>,
) {
    let currency = ctx.session.currency;
    let mut lines = Vec::new();
    for (i, &d) in o.per_line.iter().enumerate() {
        if d > 0 {
            state.net[i] -= d;
            state.headroom[i] -= d;
            lines.push(LineDiscount {
                product_id: ctx.lines[i].item.product.id.to_string(),
                amount: Money::new(d, currency),
            });
        }
    }
    state.shipping -= o.shipping;
    let amount = o.total();
    if p.class == Class::Item {
        state.item_discount += amount;
    }
    state.applied.push((
        p,
        AppliedPromotion {
            id: p.id.clone(),
            title: p.title.clone(),
            class: p.class,
            code,
            amount: Money::new(amount, currency),
            lines,
            shipping: (o.shipping > 0).then(|| Money::new(o.shipping, currency)),
            clamped: (o.clamped > 0).then(|| Money::new(o.clamped, currency)),
        },
    ));
}

/// Computes what `p` would take off, line by line and from shipping, capped by its
/// maximum and its remaining budget, then clamped at the floors.
fn outcome(p: &Promotion, ctx: &Context<'_>, state: &State<'_>, usage: Usage) -> Outcome {
    let n = state.net.len();
    let targets: Vec<bool> = ctx
        .lines
        .iter()
        .map(|l| p.target.holds(Env::with_line(ctx, l)))
        .collect();
    let mut per_line = vec![0i64; n];
    let mut shipping = 0i64;
    let qty = |i: usize| i64::from(ctx.lines[i].quantity);
    let weights: Vec<i64> = (0..n)
        .map(|i| if targets[i] { state.net[i] } else { 0 })
        .collect();
    match (p.class, &p.value) {
        (Class::Item, Benefit::PercentOff(bps)) => {
            for i in (0..n).filter(|&i| targets[i]) {
                per_line[i] = round_bps(state.net[i], *bps);
            }
        }
        (Class::Item, Benefit::AmountOff(m)) => {
            for i in (0..n).filter(|&i| targets[i]) {
                per_line[i] = (m.amount * qty(i)).min(state.net[i]);
            }
        }
        (Class::Item, Benefit::FixedPrice(m)) => {
            for i in (0..n).filter(|&i| targets[i]) {
                per_line[i] = (state.net[i] - m.amount * qty(i)).max(0);
            }
        }
        (
            Class::Item,
            Benefit::BuyXGetY {
                buy,
                get,
                percent_bps,
            },
        ) => {
            let units: i64 = (0..n).filter(|&i| targets[i]).map(qty).sum();
            let mut free = units / i64::from(buy + get) * i64::from(*get);
            // The cheapest units go (ties to the later line).
            let mut cheapest: Vec<usize> = (0..n).filter(|&i| targets[i]).collect();
            cheapest.sort_by(|&a, &b| {
                (i128::from(state.net[a]) * i128::from(qty(b)))
                    .cmp(&(i128::from(state.net[b]) * i128::from(qty(a))))
                    .then(b.cmp(&a))
            });
            for i in cheapest {
                if free == 0 {
                    break;
                }
                let k = free.min(qty(i));
                free -= k;
                let part = (i128::from(state.net[i]) * i128::from(k) / i128::from(qty(i))) as i64;
                per_line[i] = round_bps(part, *percent_bps);
            }
        }
        (Class::Order, Benefit::PercentOff(bps)) => {
            per_line = allocate(round_bps(weights.iter().sum(), *bps), &weights);
        }
        (Class::Order, Benefit::AmountOff(m)) => {
            per_line = allocate(m.amount.min(weights.iter().sum()), &weights);
        }
        (Class::Shipping, Benefit::FreeShipping) => shipping = state.shipping,
        (Class::Shipping, Benefit::PercentOff(bps)) => shipping = round_bps(state.shipping, *bps),
        (Class::Shipping, Benefit::AmountOff(m)) => shipping = m.amount.min(state.shipping),
        // Refused when the ruleset is compiled.
        (Class::Item | Class::Order, Benefit::FreeShipping)
        | (Class::Order | Class::Shipping, Benefit::FixedPrice(_) | Benefit::BuyXGetY { .. }) => {}
    }
    // Caps: the promotion's maximum and what is left of its spend budget.
    let cap = [
        p.max_discount.map(|m| m.amount),
        p.budget.max_spend.map(|m| m.amount - usage.spent),
    ]
    .into_iter()
    .flatten()
    .min();
    let total: i64 = per_line.iter().sum::<i64>() + shipping;
    if let Some(cap) = cap.filter(|&c| total > c) {
        let cap = cap.max(0);
        if p.class == Class::Shipping {
            shipping = shipping.min(cap);
        } else {
            per_line = allocate(cap, &per_line);
        }
    }
    let mut clamped = 0;
    for (d, room) in per_line.iter_mut().zip(&state.headroom) {
        let allowed = (*d).min((*room).max(0));
        clamped += *d - allowed;
        *d = allowed;
    }
    Outcome {
        per_line,
        shipping,
        clamped,
    }
}

/// The shipping charge before promotions: the first rate in the cart's currency whose
/// condition holds (none: free).
fn shipping_rate(rules: &Ruleset, ctx: &Context<'_>) -> i64 {
    let env = Env::of(ctx);
    rules
        .shipping
        .iter()
        .find(|r| r.amount.currency == ctx.session.currency && r.when.holds(env))
        .map_or(0, |r| r.amount.amount)
}

/// Evaluates the cart in `ctx` (its lines at the prices in `priced`) with the codes sent
/// (upper case) and the budgets' usage.
pub fn evaluate(
    rules: &Ruleset,
    ctx: &Context<'_>,
    priced: &[Priced],
    codes: &[String],
    usage: &dyn Fn(&str) -> Usage,
) -> Evaluation {
    let currency = ctx.session.currency;
    let net: Vec<i64> = ctx.lines.iter().map(|l| l.total().amount).collect();
    let headroom: Vec<i64> = ctx
        .lines
        .iter()
        .zip(priced)
        .map(|(l, p)| match p.floor {
            // Rounded up per unit already; a line may go down to floor x quantity.
            Some(f) => (l.total().amount - f * i64::from(l.quantity)).max(0),
            None => 0,
        })
        .collect();
    let start = State {
        net: net.clone(),
        headroom,
        shipping: shipping_rate(rules, ctx),
        applied: Vec::new(),
        rejected: Vec::new(),
        item_discount: 0,
    };
    let run = Run { ctx, codes, usage };
    let all: Vec<&Promotion> = rules.promotions.iter().collect();
    let stack: Vec<&Promotion> = all
        .iter()
        .copied()
        .filter(|p| p.exclusive == Exclusive::None)
        .collect();
    let mut best = run.run(&stack, &start);
    let mut best_excl: Option<&Promotion> = None;
    let mut variants = Vec::new();
    for &e in all.iter().filter(|p| p.exclusive != Exclusive::None) {
        let set: Vec<&Promotion> = match e.exclusive {
            Exclusive::All => vec![e],
            Exclusive::Class | Exclusive::None => all
                .iter()
                .copied()
                .filter(|p| (p.exclusive == Exclusive::None && p.class != e.class) || p.id == e.id)
                .collect(),
        };
        let v = run.run(&set, &start);
        variants.push((e, v));
    }
    // The best deal for the visitor: the stack, or an exclusive promotion's variant if it
    // gives more (ties to the stack, then to the earlier promotion).
    for (e, v) in &variants {
        let applied_e = v.applied.iter().any(|(p, _)| p.id == e.id);
        if applied_e && v.discount() > best.discount() {
            best = v.clone();
            best_excl = Some(e);
        }
    }
    // What the winner left out.
    let winner_id = best_excl.map_or_else(
        || best.applied.first().map(|(p, _)| p.id.clone()),
        |e| Some(e.id.clone()),
    );
    for (e, v) in &variants {
        if best_excl.is_some_and(|b| b.id == e.id) {
            continue;
        }
        let own = v.rejected.iter().find(|r| r.id == e.id).cloned();
        match own {
            Some(r) => best.rejected.push(r),
            None if run.entered(e).is_some() => best.rejected.push(RejectedPromotion {
                id: e.id.clone(),
                reason: Reason::ExcludedBy,
                by: winner_id.clone(),
            }),
            None => {}
        }
    }
    if let Some(e) = best_excl {
        let left_out: Vec<RejectedPromotion> = stack
            .iter()
            .filter(|p| {
                !best.applied.iter().any(|(a, _)| a.id == p.id)
                    && !best.rejected.iter().any(|r| r.id == p.id)
                    && run.entered(p).is_some()
            })
            .map(|p| RejectedPromotion {
                id: p.id.clone(),
                reason: Reason::ExcludedBy,
                by: Some(e.id.clone()),
            })
            .collect();
        best.rejected.extend(left_out);
    }
    let unknown_codes = codes
        .iter()
        .filter(|c| !rules.promotions.iter().any(|p| p.codes.contains(c)))
        .cloned()
        .collect();
    let lines: Vec<LineResult> = ctx
        .lines
        .iter()
        .zip(priced)
        .enumerate()
        .map(|(i, (l, p))| LineResult {
            product_id: l.item.product.id.to_string(),
            quantity: l.quantity,
            unit_price: l.item.price,
            compare_at_price: p.compare_at,
            price_list: p.list.clone(),
            subtotal: Money::new(net[i], currency),
            discount: Money::new(net[i] - best.net[i], currency),
            total: Money::new(best.net[i], currency),
        })
        .collect();
    let subtotal: i64 = net.iter().sum();
    let goods: i64 = best.net.iter().sum();
    let ship_total = best.shipping;
    Evaluation {
        lines,
        shipping: Shipping {
            amount: Money::new(start.shipping, currency),
            discount: Money::new(start.shipping - ship_total, currency),
            total: Money::new(ship_total, currency),
        },
        subtotal: Money::new(subtotal, currency),
        discount: Money::new(best.discount(), currency),
        total: Money::new(goods + ship_total, currency),
        applied: best.applied.into_iter().map(|(_, a)| a).collect(),
        rejected: best.rejected,
        unknown_codes,
    }
}

/// Whether an offer can be used on the cart as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// It applies to the cart now (with its code, if it has one).
    Eligible,
    /// The visitor qualifies, the cart does not yet (a threshold, a product).
    ConditionNotMet,
}

/// A promotion this visitor may use now, for the storefront to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub id: String,
    pub title: String,
    pub description: String,
    pub class: Class,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it ends (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub reason: OfferStatus,
    /// What it would take off the cart as it is.
    pub value: Money,
    #[serde(skip)]
    rank: (i64, i64, i64),
}

/// The automatic and offer promotions this visitor is eligible for now, best value first
/// (on the current cart, then by percentage, then priority).
pub fn offers(
    rules: &Ruleset,
    ctx: &Context<'_>,
    priced: &[Priced],
    usage: &dyn Fn(&str) -> Usage,
) -> Vec<Offer> {
    let start = State {
        net: ctx.lines.iter().map(|l| l.total().amount).collect(),
        headroom: ctx
            .lines
            .iter()
            .zip(priced)
            .map(|(l, p)| {
                p.floor
                    .map_or(0, |f| (l.total().amount - f * i64::from(l.quantity)).max(0))
            })
            .collect(),
        shipping: shipping_rate(rules, ctx),
        applied: Vec::new(),
        rejected: Vec::new(),
        item_discount: 0,
    };
    let run = Run {
        ctx,
        codes: &[],
        usage,
    };
    // Offers are weighed one by one, not as a stack: what each is worth on its own.
    let mut out: Vec<Offer> = rules
        .promotions
        .iter()
        .filter(|p| p.trigger != Trigger::Code)
        .filter_map(|p| {
            let reason = match run.admit(p, ctx, &start) {
                Ok(()) => OfferStatus::Eligible,
                Err((Reason::ConditionNotMet, _)) => OfferStatus::ConditionNotMet,
                Err(_) => return None,
            };
            let o = outcome(p, ctx, &start, usage(&p.id));
            let percent = match p.value {
                Benefit::PercentOff(b) | Benefit::BuyXGetY { percent_bps: b, .. } => b,
                Benefit::FreeShipping => 10_000,
                Benefit::AmountOff(_) | Benefit::FixedPrice(_) => 0,
            };
            Some(Offer {
                id: p.id.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                class: p.class,
                code: p.codes.first().cloned(),
                expires_at: p.window.until.map(crate::domain::time::format_rfc3339),
                reason,
                value: Money::new(o.total(), ctx.session.currency),
                rank: (o.total(), percent, p.priority),
            })
        })
        .collect();
    out.sort_by(|a, b| b.rank.cmp(&a.rank).then(a.id.cmp(&b.id)));
    out
}
