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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smallvec::SmallVec;

use super::compile::{RawWindow, Window, bps, check_id, expression, full_bps, money, window};
use super::expr::{Context, Env, Errors, Expr, Scope};
use super::price::{Priced, Pricing, round_bps};
use crate::domain::{Currency, Money, RawMoney};

/// What promotions read of a ruleset (see [`super::Ruleset::promotions`]).
#[derive(Clone, Copy, Debug)]
pub struct Promotions<'r> {
    /// In evaluation order: class (item, order, shipping), then priority (high first),
    /// then id.
    pub promotions: &'r [Promotion],
    /// Every promotion's codes, sorted.
    pub codes: &'r [String],
    pub shipping: &'r [ShippingRate],
    pub pricing: Pricing<'r>,
}

// ---- promotions and shipping rates, and how they are compiled ------------------------

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Item,
    Order,
    Shipping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Applies whenever it is eligible and its condition holds; shown as an offer.
    Auto,
    /// Applies when one of its codes is sent; never shown.
    Code,
    /// Shown as an offer (with its code) to eligible visitors; applies when the code is sent.
    Offer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusive {
    None,
    /// Against the other promotions of its class.
    Class,
    /// Against every other promotion.
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Benefit {
    PercentOff(i64),
    AmountOff(Money),
    FixedPrice(Money),
    FreeShipping,
    /// Of every `buy + get` target units, the `get` cheapest are `percent_bps` off.
    BuyXGetY {
        buy: u32,
        get: u32,
        percent_bps: i64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    Personalization,
    Marketing,
}

/// Weekly hours when a promotion runs, in a fixed UTC offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Monday = 0.
    pub days: Vec<u8>,
    /// Minutes after midnight; `until` exclusive.
    pub from: u32,
    pub until: u32,
    pub utc_offset_minutes: i64,
}

impl Schedule {
    pub fn contains(&self, now: i64) -> bool {
        let local = now + self.utc_offset_minutes * 60;
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (Monday = 0 makes it 3).
        let weekday = ((days + 3).rem_euclid(7)) as u8;
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        self.days.contains(&weekday) && minute >= self.from && minute < self.until
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    pub max_uses: Option<u64>,
    pub max_spend: Option<Money>,
    pub per_customer_uses: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Promotion {
    pub id: String,
    pub title: String,
    pub description: String,
    pub class: Class,
    pub trigger: Trigger,
    pub codes: Vec<String>,
    pub eligibility: Expr,
    pub condition: Expr,
    /// Which lines an item promotion discounts (and an order promotion counts).
    pub target: Expr,
    pub value: Benefit,
    pub max_discount: Option<Money>,
    pub window: Window,
    pub schedule: Option<Schedule>,
    pub priority: i64,
    pub group: Option<String>,
    pub exclusive: Exclusive,
    pub combines_with: Vec<Class>,
    pub budget: Budget,
    pub requires_consent: Option<Consent>,
    /// The currency of its amounts (none for percentages only: any currency).
    pub currency: Option<Currency>,
    /// In force only for visitors whose experiment arm names this promotion set.
    pub set: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuyGet {
    buy: u32,
    get: u32,
    #[serde(default = "full_bps")]
    percent_bps: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) enum RawValue {
    PercentBps(i64),
    AmountOff(RawMoney),
    FixedPrice(RawMoney),
    FreeShipping(bool),
    BuyXGetY(RawBuyGet),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    days: Vec<String>,
    from: String,
    until: String,
    #[serde(default)]
    utc_offset_minutes: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    max_uses: Option<u64>,
    max_spend: Option<RawMoney>,
    per_customer_uses: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPromotion {
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    class: Class,
    #[serde(default = "auto")]
    trigger: Trigger,
    #[serde(default)]
    codes: Vec<String>,
    eligibility: Option<Value>,
    condition: Option<Value>,
    target: Option<Value>,
    value: RawValue,
    max_discount: Option<RawMoney>,
    #[serde(default)]
    window: RawWindow,
    schedule: Option<RawSchedule>,
    #[serde(default)]
    priority: i64,
    group: Option<String>,
    #[serde(default = "no_exclusive")]
    exclusive: Exclusive,
    combines_with: Option<Vec<Class>>,
    #[serde(default)]
    budget: RawBudget,
    requires_consent: Option<Consent>,
    set: Option<String>,
}

pub(super) const fn auto() -> Trigger {
    Trigger::Auto
}

pub(super) const fn no_exclusive() -> Exclusive {
    Exclusive::None
}

pub(super) fn clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

pub(super) fn compile_schedule(raw: &RawSchedule, path: &str, errors: &mut Errors) -> Schedule {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days = raw
        .days
        .iter()
        .filter_map(|d| {
            let i = DAYS.iter().position(|x| d.eq_ignore_ascii_case(x));
            if i.is_none() {
                errors.push(
                    &format!("{path}.days"),
                    format!("{d:?} is not one of mon..sun"),
                );
            }
            i.map(|i| i as u8)
        })
        .collect();
    let mut at = |field: &str, s: &str| {
        clock(s).unwrap_or_else(|| {
            errors.push(&format!("{path}.{field}"), "expects HH:MM");
            0
        })
    };
    let s = Schedule {
        days,
        from: at("from", &raw.from),
        until: at("until", &raw.until),
        utc_offset_minutes: raw.utc_offset_minutes,
    };
    if s.from >= s.until {
        errors.push(path, "from must be before until");
    }
    s
}

pub(super) fn compile_promotion(
    raw: RawPromotion,
    path: &str,
    errors: &mut Errors,
) -> Option<Promotion> {
    check_id(&raw.id, &format!("{path}.id"), errors);
    if let Some(set) = &raw.set {
        check_id(set, &format!("{path}.set"), errors);
    }
    let mut currencies: Vec<Currency> = Vec::new();
    let mut amount = |m: &RawMoney, at: String, errors: &mut Errors| {
        let m = money(m, &at, errors)?;
        currencies.push(m.currency);
        Some(m)
    };
    let vpath = format!("{path}.value");
    let value = match &raw.value {
        RawValue::PercentBps(b) => {
            Benefit::PercentOff(bps(*b, &format!("{vpath}.percent_bps"), errors))
        }
        RawValue::AmountOff(m) => {
            Benefit::AmountOff(amount(m, format!("{vpath}.amount_off"), errors)?)
        }
        RawValue::FixedPrice(m) => {
            Benefit::FixedPrice(amount(m, format!("{vpath}.fixed_price"), errors)?)
        }
        RawValue::FreeShipping(true) => Benefit::FreeShipping,
        RawValue::FreeShipping(false) => {
            errors.push(&format!("{vpath}.free_shipping"), "must be true");
            return None;
        }
        RawValue::BuyXGetY(b) => {
            if b.buy == 0 || b.get == 0 {
                errors.push(
                    &format!("{vpath}.buy_x_get_y"),
                    "buy and get must be at least 1",
                );
            }
            Benefit::BuyXGetY {
                buy: b.buy.max(1),
                get: b.get.max(1),
                percent_bps: bps(
                    b.percent_bps,
                    &format!("{vpath}.buy_x_get_y.percent_bps"),
                    errors,
                ),
            }
        }
    };
    let fits = match (&value, raw.class) {
        (Benefit::FreeShipping, Class::Shipping)
        | (Benefit::PercentOff(_) | Benefit::AmountOff(_), _)
        | (Benefit::FixedPrice(_) | Benefit::BuyXGetY { .. }, Class::Item) => true,
        (Benefit::FreeShipping, Class::Item | Class::Order)
        | (Benefit::FixedPrice(_) | Benefit::BuyXGetY { .. }, Class::Order | Class::Shipping) => {
            false
        }
    };
    if !fits {
        errors.push(
            &vpath,
            format!("this value does not apply to a {:?} promotion", raw.class).to_lowercase(),
        );
    }
    let max_discount = raw
        .max_discount
        .as_ref()
        .and_then(|m| amount(m, format!("{path}.max_discount"), errors));
    let budget = Budget {
        max_uses: raw.budget.max_uses,
        max_spend: raw
            .budget
            .max_spend
            .as_ref()
            .and_then(|m| amount(m, format!("{path}.budget.max_spend"), errors)),
        per_customer_uses: raw.budget.per_customer_uses,
    };
    currencies.dedup();
    if currencies.len() > 1 {
        errors.push(path, "all amounts of a promotion are in one currency");
    }
    match raw.trigger {
        Trigger::Code | Trigger::Offer if raw.codes.is_empty() => {
            errors.push(
                &format!("{path}.codes"),
                "code and offer promotions need at least one code",
            );
        }
        Trigger::Auto if !raw.codes.is_empty() => {
            errors.push(
                &format!("{path}.codes"),
                "automatic promotions have no codes",
            );
        }
        Trigger::Auto | Trigger::Code | Trigger::Offer => {}
    }
    for (i, c) in raw.codes.iter().enumerate() {
        if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(
                &format!("{path}.codes[{i}]"),
                "a code is 1 to 64 visible ASCII characters",
            );
        }
    }
    Some(Promotion {
        eligibility: expression(
            raw.eligibility.as_ref(),
            Scope::Context,
            &format!("{path}.eligibility"),
            errors,
        ),
        condition: expression(
            raw.condition.as_ref(),
            Scope::Context,
            &format!("{path}.condition"),
            errors,
        ),
        target: expression(
            raw.target.as_ref(),
            Scope::Line,
            &format!("{path}.target"),
            errors,
        ),
        window: window(&raw.window, &format!("{path}.window"), errors),
        schedule: raw
            .schedule
            .as_ref()
            .map(|s| compile_schedule(s, &format!("{path}.schedule"), errors)),
        id: raw.id,
        title: raw.title,
        description: raw.description,
        class: raw.class,
        trigger: raw.trigger,
        // Sorted, so a code sent is found by binary search however many there are.
        codes: {
            let mut codes: Vec<String> = raw.codes.iter().map(|c| c.to_ascii_uppercase()).collect();
            codes.sort_unstable();
            codes
        },
        value,
        max_discount,
        priority: raw.priority,
        group: raw.group,
        exclusive: raw.exclusive,
        combines_with: raw
            .combines_with
            .unwrap_or_else(|| vec![Class::Item, Class::Order, Class::Shipping]),
        budget,
        requires_consent: raw.requires_consent,
        currency: currencies.first().copied(),
        set: raw.set,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShippingRate {
    pub id: String,
    pub when: Expr,
    pub amount: Money,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShipping {
    pub(super) id: String,
    pub(super) when: Option<Value>,
    pub(super) amount: RawMoney,
}

// ---- evaluation ------------------------------------------------------------------

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
pub enum NotApplied {
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
    pub reason: NotApplied,
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
    let mut parts = vec![0; weights.len()];
    allocate_into(total, weights, &mut parts);
    parts
}

/// [`allocate`] into `parts` (one per weight), without allocating for carts of up to 32
/// lines.
fn allocate_into(total: i64, weights: &[i64], parts: &mut [i64]) {
    parts.fill(0);
    let sum: i128 = weights.iter().map(|&w| i128::from(w.max(0))).sum();
    if sum == 0 || total <= 0 {
        return;
    }
    let mut rest: SmallVec<[(i128, usize); 32]> = SmallVec::new();
    let mut given: i128 = 0;
    // 64-bit arithmetic whenever the products fit (any real cart); 128-bit otherwise.
    let narrow = i64::try_from(sum).ok().filter(|_| {
        weights
            .iter()
            .all(|&w| total.checked_mul(w.max(0)).is_some())
    });
    for (i, &w) in weights.iter().enumerate() {
        let (part, remainder) = match narrow {
            Some(sum64) => {
                let exact = total * w.max(0);
                (i128::from(exact / sum64), i128::from(exact % sum64))
            }
            None => {
                let exact = i128::from(total) * i128::from(w.max(0));
                (exact / sum, exact % sum)
            }
        };
        given += part;
        parts[i] = part as i64;
        if remainder > 0 {
            rest.push((remainder, i));
        }
    }
    // The units left go to the largest remainders; ties to the earlier line, so the
    // split is deterministic. Fewer units are left than lines with a remainder.
    let left = (i128::from(total) - given) as usize;
    if left > 0 {
        let by_remainder = |a: &(i128, usize), b: &(i128, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if left < rest.len() {
            rest.sort_unstable_by(by_remainder);
        }
        for &(_, i) in &rest[..left.min(rest.len())] {
            parts[i] += 1;
        }
    }
}

const CLASSES: [Class; 3] = [Class::Item, Class::Order, Class::Shipping];

const fn class_index(c: Class) -> usize {
    match c {
        Class::Item => 0,
        Class::Order => 1,
        Class::Shipping => 2,
    }
}

/// What is known of a promotion before any run: whether its code was sent, and what
/// rules it out whatever the cart (window, currency, consent, eligibility, budget).
struct Prepared<'r> {
    promo: &'r Promotion,
    /// `None`: a code or offer promotion whose code was not sent (skipped silently).
    code: Option<Option<&'r str>>,
    fixed: Option<NotApplied>,
    usage: Usage,
    /// Which lines it targets, worked out on first use.
    targets: std::cell::OnceCell<Vec<bool>>,
}

fn prepare<'r>(
    p: &'r Promotion,
    ctx: &Context<'_>,
    codes: &[String],
    usage: &dyn Fn(&str) -> Usage,
) -> Prepared<'r> {
    let code = match p.trigger {
        Trigger::Auto => Some(None),
        Trigger::Code | Trigger::Offer => codes
            .iter()
            .find_map(|c| p.codes.binary_search(c).ok())
            .map(|i| Some(p.codes[i].as_str())),
    };
    let used = usage(&p.id);
    let consented = match p.requires_consent {
        None => true,
        Some(Consent::Marketing) => ctx.marketing,
        Some(Consent::Personalization) => ctx.personalization,
    };
    let b = &p.budget;
    let fixed = if !p.window.contains(ctx.now)
        || p.schedule.as_ref().is_some_and(|s| !s.contains(ctx.now))
    {
        Some(NotApplied::OutOfWindow)
    } else if p.currency.is_some_and(|c| c != ctx.session.currency) {
        Some(NotApplied::CurrencyMismatch)
    } else if !consented {
        Some(NotApplied::NoConsent)
    } else if !p.eligibility.holds(Env::of(ctx))
        || p.set
            .as_ref()
            .is_some_and(|s| !ctx.promotion_sets.contains(s))
    {
        Some(NotApplied::NotEligible)
    } else if b.max_uses.is_some_and(|m| used.uses >= m)
        || b.per_customer_uses.is_some_and(|m| used.customer_uses >= m)
        || b.max_spend.is_some_and(|m| used.spent >= m.amount)
    {
        Some(NotApplied::BudgetExhausted)
    } else {
        None
    };
    Prepared {
        promo: p,
        code,
        fixed,
        usage: used,
        targets: std::cell::OnceCell::new(),
    }
}

impl Prepared<'_> {
    fn targets(&self, ctx: &Context<'_>) -> &[bool] {
        self.targets.get_or_init(|| {
            ctx.lines
                .iter()
                .map(|l| self.promo.target.holds(Env::with_line(ctx, l)))
                .collect()
        })
    }
}

/// A promotion applied during a run, reported once the run is chosen.
#[derive(Clone)]
struct Done<'r> {
    promo: &'r Promotion,
    code: Option<&'r str>,
    /// (line, amount), non-zero amounts only.
    lines: SmallVec<[(usize, i64); 8]>,
    shipping: i64,
    clamped: i64,
}

impl Done<'_> {
    fn amount(&self) -> i64 {
        self.lines.iter().map(|(_, d)| d).sum::<i64>() + self.shipping
    }
}

#[derive(Clone)]
struct Refused<'r> {
    promo: &'r Promotion,
    reason: NotApplied,
    by: Option<&'r str>,
}

/// The cart as it stands between promotions.
#[derive(Clone)]
struct State<'r> {
    /// Each line's amount after the discounts so far.
    net: Vec<i64>,
    /// How much more each line may be discounted before its floor.
    headroom: Vec<i64>,
    /// The shipping charge left, and the rate before promotions (`None` until the
    /// shipping phase starts: the rate's condition reads the subtotal after the goods'
    /// discounts).
    shipping: i64,
    shipping_rate: Option<i64>,
    item_discount: i64,
    /// Item and order discounts.
    goods_discount: i64,
    discount: i64,
    applied: Vec<Done<'r>>,
    rejected: Vec<Refused<'r>>,
    /// Classes of the promotions applied, and whether every one of them combines with
    /// each class: combinability is two lookups, however many have applied.
    present: [bool; 3],
    accepts: [bool; 3],
}

impl<'r> State<'r> {
    fn new(ctx: &Context<'_>, priced: &[Priced], shipping: Option<i64>, promotions: usize) -> Self {
        Self {
            net: ctx.lines.iter().map(|l| l.total().amount).collect(),
            headroom: ctx
                .lines
                .iter()
                .zip(priced)
                .map(|(l, p)| match p.floor {
                    // A line may go down to floor x quantity; none: not at all.
                    Some(f) => (l.total().amount - f * i64::from(l.quantity)).max(0),
                    None => 0,
                })
                .collect(),
            shipping: shipping.unwrap_or(0),
            shipping_rate: shipping,
            item_discount: 0,
            goods_discount: 0,
            discount: 0,
            applied: Vec::with_capacity(promotions.min(64)),
            rejected: Vec::with_capacity(promotions),
            present: [false; 3],
            accepts: [true; 3],
        }
    }

    /// Whether `p` combines with everything applied; else the first it does not.
    fn combinable(&self, p: &Promotion) -> Result<(), Option<&'r str>> {
        let ok = self.accepts[class_index(p.class)]
            && (0..3).all(|k| !self.present[k] || p.combines_with.contains(&CLASSES[k]));
        if ok {
            return Ok(());
        }
        Err(self
            .applied
            .iter()
            .find(|a| {
                !p.combines_with.contains(&a.promo.class)
                    || !a.promo.combines_with.contains(&p.class)
            })
            .map(|a| a.promo.id.as_str()))
    }

    fn commit(&mut self, promo: &'r Promotion, code: Option<&'r str>, o: &Outcome) {
        let mut lines = SmallVec::new();
        for (i, &d) in o.per_line.iter().enumerate() {
            if d > 0 {
                self.net[i] -= d;
                self.headroom[i] -= d;
                lines.push((i, d));
            }
        }
        self.shipping -= o.shipping;
        let amount = o.total();
        self.discount += amount;
        match promo.class {
            Class::Item => {
                self.item_discount += amount;
                self.goods_discount += amount;
            }
            Class::Order => self.goods_discount += amount,
            Class::Shipping => {}
        }
        self.present[class_index(promo.class)] = true;
        for (k, c) in CLASSES.iter().enumerate() {
            self.accepts[k] &= promo.combines_with.contains(c);
        }
        self.applied.push(Done {
            promo,
            code,
            lines,
            shipping: o.shipping,
            clamped: o.clamped,
        });
    }
}

/// Per-line amounts on the stack for carts of up to 32 lines.
type Lines = SmallVec<[i64; 32]>;

struct Outcome {
    per_line: Lines,
    shipping: i64,
    clamped: i64,
}

impl Outcome {
    fn total(&self) -> i64 {
        self.per_line.iter().sum::<i64>() + self.shipping
    }
}

type Refusal<'r> = (NotApplied, Option<&'r str>);

/// One evaluation: the promotions prepared against the request.
struct Run<'x, 'a, 'r> {
    ctx: &'x Context<'a>,
    rules: Promotions<'r>,
    prepared: Vec<Prepared<'r>>,
}

impl<'r> Run<'_, '_, 'r> {
    /// What promotion `i` would do to the cart now, or why it does nothing.
    fn attempt(
        &self,
        i: usize,
        ctx: &Context<'_>,
        state: &State<'r>,
    ) -> Result<Outcome, Refusal<'r>> {
        let pr = &self.prepared[i];
        if let Some(reason) = pr.fixed {
            return Err((reason, None));
        }
        if !pr.promo.condition.holds(Env::of(ctx)) {
            return Err((NotApplied::ConditionNotMet, None));
        }
        state
            .combinable(pr.promo)
            .map_err(|by| (NotApplied::NotCombinable, by))?;
        let o = outcome(pr, ctx, state);
        if o.total() > 0 {
            Ok(o)
        } else if o.clamped > 0 {
            Err((NotApplied::Clamped, None))
        } else {
            Err((NotApplied::NothingToDiscount, None))
        }
    }

    /// Runs the promotions `order` (indices, in evaluation order, all of class `class`)
    /// from `state`, the cart as it stands when the class's phase starts.
    fn phase(&self, class: Class, order: &[usize], mut state: State<'r>) -> State<'r> {
        let mut ctx = self.ctx.clone();
        // Order conditions read the subtotal after item discounts; shipping rates and
        // shipping conditions after item and order discounts.
        ctx.discount = match class {
            Class::Item => 0,
            Class::Order => state.item_discount,
            Class::Shipping => state.goods_discount,
        };
        if class == Class::Shipping && state.shipping_rate.is_none() {
            let rate = shipping_rate(self.rules, &ctx);
            state.shipping_rate = Some(rate);
            state.shipping = rate;
        }
        let mut decided_groups: Vec<&str> = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let p = self.prepared[i].promo;
            let Some(code) = self.prepared[i].code else {
                continue;
            };
            let Some(g) = p.group.as_deref() else {
                match self.attempt(i, &ctx, &state) {
                    Ok(o) => state.commit(p, code, &o),
                    Err((reason, by)) => state.rejected.push(Refused {
                        promo: p,
                        reason,
                        by,
                    }),
                }
                continue;
            };
            if decided_groups.contains(&g) {
                continue;
            }
            decided_groups.push(g);
            // The group's best member here, on the cart as it stands.
            let members: Vec<usize> = order[k..]
                .iter()
                .copied()
                .filter(|&m| {
                    self.prepared[m].promo.group.as_deref() == Some(g)
                        && self.prepared[m].code.is_some()
                })
                .collect();
            let mut best: Option<(usize, Outcome)> = None;
            let mut refused: Vec<(usize, Refusal<'r>)> = Vec::new();
            for &m in &members {
                match self.attempt(m, &ctx, &state) {
                    Ok(o) => {
                        if best.as_ref().is_none_or(|(_, b)| o.total() > b.total()) {
                            if let Some((loser, _)) = best.take() {
                                refused.push((loser, (NotApplied::LostGroup, None)));
                            }
                            best = Some((m, o));
                        } else {
                            refused.push((m, (NotApplied::LostGroup, None)));
                        }
                    }
                    Err(r) => refused.push((m, r)),
                }
            }
            let winner = best
                .as_ref()
                .map(|(w, _)| self.prepared[*w].promo.id.as_str());
            if let Some((w, o)) = &best {
                let pw = &self.prepared[*w];
                state.commit(pw.promo, pw.code.flatten(), o);
            }
            refused.sort_by_key(|(m, _)| *m);
            for (m, (reason, by)) in refused {
                let by = if reason == NotApplied::LostGroup {
                    winner
                } else {
                    by
                };
                state.rejected.push(Refused {
                    promo: self.prepared[m].promo,
                    reason,
                    by,
                });
            }
        }
        state
    }
}

/// The lines a promotion targets.
fn targeted(targets: &[bool]) -> impl Iterator<Item = usize> + '_ {
    targets
        .iter()
        .enumerate()
        .filter(|(_, t)| **t)
        .map(|(i, _)| i)
}

/// Computes what a promotion would take off, line by line and from shipping, capped by
/// its maximum and its remaining budget, then clamped at the floors.
fn outcome(pr: &Prepared<'_>, ctx: &Context<'_>, state: &State<'_>) -> Outcome {
    let p = pr.promo;
    let n = state.net.len();
    let mut per_line: Lines = smallvec::smallvec![0i64; n];
    let mut shipping = 0i64;
    let qty = |i: usize| i64::from(ctx.lines[i].quantity);
    // Caps: the promotion's maximum and what is left of its spend budget.
    let cap = [
        p.max_discount.map(|m| m.amount),
        p.budget.max_spend.map(|m| m.amount - pr.usage.spent),
    ]
    .into_iter()
    .flatten()
    .min()
    .map(|c| c.max(0));
    match (p.class, &p.value) {
        (Class::Item, Benefit::PercentOff(bps)) => {
            for i in targeted(pr.targets(ctx)) {
                per_line[i] = round_bps(state.net[i], *bps);
            }
        }
        (Class::Item, Benefit::AmountOff(m)) => {
            for i in targeted(pr.targets(ctx)) {
                per_line[i] = (m.amount * qty(i)).min(state.net[i]);
            }
        }
        (Class::Item, Benefit::FixedPrice(m)) => {
            for i in targeted(pr.targets(ctx)) {
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
            let targets = pr.targets(ctx);
            let units: i64 = targeted(targets).map(qty).sum();
            let mut free = units / i64::from(buy + get) * i64::from(*get);
            // The cheapest units go (ties to the later line).
            let mut cheapest: Vec<usize> = targeted(targets).collect();
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
        (Class::Order, Benefit::PercentOff(_) | Benefit::AmountOff(_)) => {
            let targets = pr.targets(ctx);
            let weights: Lines = (0..n)
                .map(|i| if targets[i] { state.net[i] } else { 0 })
                .collect();
            let base: i64 = weights.iter().sum();
            let total = match &p.value {
                Benefit::PercentOff(bps) => round_bps(base, *bps),
                Benefit::AmountOff(m) => m.amount.min(base),
                Benefit::FixedPrice(_) | Benefit::FreeShipping | Benefit::BuyXGetY { .. } => 0,
            };
            // Capped as a whole, then split once: one rounding, whatever the cap.
            let total = cap.map_or(total, |c| total.min(c));
            allocate_into(total, &weights, &mut per_line);
        }
        (Class::Shipping, Benefit::FreeShipping) => shipping = state.shipping,
        (Class::Shipping, Benefit::PercentOff(bps)) => shipping = round_bps(state.shipping, *bps),
        (Class::Shipping, Benefit::AmountOff(m)) => shipping = m.amount.min(state.shipping),
        // Refused when the ruleset is compiled.
        (Class::Item | Class::Order, Benefit::FreeShipping)
        | (Class::Order | Class::Shipping, Benefit::FixedPrice(_) | Benefit::BuyXGetY { .. }) => {}
    }
    // An item promotion's cap is split over its lines in proportion to their discounts.
    let total: i64 = per_line.iter().sum::<i64>() + shipping;
    if let Some(cap) = cap.filter(|&c| total > c) {
        if p.class == Class::Shipping {
            shipping = shipping.min(cap);
        } else {
            let weights = per_line.clone();
            allocate_into(cap, &weights, &mut per_line);
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
fn shipping_rate(rules: Promotions<'_>, ctx: &Context<'_>) -> i64 {
    let env = Env::of(ctx);
    rules
        .shipping
        .iter()
        .find(|r| r.amount.currency == ctx.session.currency && r.when.holds(env))
        .map_or(0, |r| r.amount.amount)
}

/// Evaluates the cart in `ctx` (its lines at the prices in `priced`) with the codes sent
/// (upper case) and the budgets' usage.
///
/// Phase by phase (item, order, shipping), the stack's promotions of the class and each
/// promotion exclusive of that class are weighed: each option is run, followed by the
/// stack's later phases, and the one giving the larger total discount is kept (ties to
/// the stack, then the earlier promotion). Exclusivity of a class leaves the other
/// classes alone. Then each promotion exclusive of all is run alone, and replaces the
/// result when it gives more.
pub fn evaluate<'r>(
    rules: Promotions<'r>,
    ctx: &Context<'_>,
    priced: &[Priced],
    codes: &[String],
    usage: &dyn Fn(&str) -> Usage,
) -> Evaluation {
    let currency = ctx.session.currency;
    let n = rules.promotions.len();
    let start = State::new(ctx, priced, None, n);
    let run = Run {
        ctx,
        rules,
        prepared: rules
            .promotions
            .iter()
            .map(|p| prepare(p, ctx, codes, usage))
            .collect(),
    };
    let of = |class: Class, exclusive: Exclusive| -> Vec<usize> {
        (0..n)
            .filter(|&i| {
                let p = &rules.promotions[i];
                p.class == class && p.exclusive == exclusive
            })
            .collect()
    };
    let stack: [Vec<usize>; 3] = CLASSES.map(|c| of(c, Exclusive::None));
    // The stack's phases from `class` on.
    let rest = |from: usize, mut s: State<'r>| -> State<'r> {
        for k in from..3 {
            s = run.phase(CLASSES[k], &stack[k], s);
        }
        s
    };
    // Why each promotion left out was, where a run it took part in says so.
    let mut reasons: Vec<Option<(NotApplied, Option<&str>)>> = vec![None; n];
    // Exclusive promotions ruled out before any run.
    let mut fixed: Vec<Refused<'_>> = Vec::new();
    let mut ready = |e: usize| -> bool {
        let pe = &run.prepared[e];
        match (pe.code, pe.fixed) {
            (None, _) => false,
            (Some(_), Some(reason)) => {
                fixed.push(Refused {
                    promo: pe.promo,
                    reason,
                    by: None,
                });
                false
            }
            (Some(_), None) => true,
        }
    };
    let class_exclusive: [Vec<usize>; 3] = CLASSES.map(|c| {
        of(c, Exclusive::Class)
            .into_iter()
            .filter(|&e| ready(e))
            .collect()
    });
    let all_exclusive: Vec<usize> = (0..n)
        .filter(|&i| rules.promotions[i].exclusive == Exclusive::All)
        .filter(|&e| ready(e))
        .collect();
    let mut state = start.clone();
    let mut phase_winner: [Option<usize>; 3] = [None; 3];
    for k in 0..3 {
        let class = CLASSES[k];
        let from_stack = run.phase(class, &stack[k], state.clone());
        if class_exclusive[k].is_empty() {
            state = from_stack;
            continue;
        }
        let mut options: Vec<(Option<usize>, State<'_>)> = vec![(None, from_stack)];
        for &e in &class_exclusive[k] {
            options.push((Some(e), run.phase(class, &[e], state.clone())));
        }
        let mut best = 0;
        let mut best_discount = rest(k + 1, options[0].1.clone()).discount;
        for (j, (e, o)) in options.iter().enumerate().skip(1) {
            let applied = o
                .applied
                .iter()
                .any(|d| e.is_some_and(|e| std::ptr::eq(d.promo, &rules.promotions[e])));
            if !applied {
                continue;
            }
            let total = rest(k + 1, o.clone()).discount;
            if total > best_discount {
                best = j;
                best_discount = total;
            }
        }
        for (j, (_, o)) in options.iter().enumerate() {
            if j != best {
                for r in o.rejected.iter().skip(state.rejected.len()) {
                    let i = index_of(rules, r.promo);
                    reasons[i].get_or_insert((r.reason, r.by));
                }
            }
        }
        let (w, chosen) = options.swap_remove(best);
        phase_winner[k] = w;
        state = chosen;
    }
    // Promotions exclusive of all: each alone, in place of everything else.
    let composed_discount = state.discount;
    let mut all_winner: Option<usize> = None;
    let mut chosen = state;
    let mut bar = composed_discount;
    for &e in &all_exclusive {
        let k = class_index(rules.promotions[e].class);
        let mut alone = start.clone();
        let only = [e];
        for (c, class) in CLASSES.iter().enumerate() {
            let order: &[usize] = if c == k { &only } else { &[] };
            alone = run.phase(*class, order, alone);
        }
        let applied = alone
            .applied
            .iter()
            .any(|d| std::ptr::eq(d.promo, &rules.promotions[e]));
        if applied && alone.discount > bar {
            bar = alone.discount;
            if let Some(previous) = all_winner.replace(e) {
                reasons[previous] = None;
            }
            // The composed result's own refusals stay reasons for what it left out.
            for r in &chosen.rejected {
                let i = index_of(rules, r.promo);
                reasons[i].get_or_insert((r.reason, r.by));
            }
            chosen = alone;
        } else if let Some(r) = alone
            .rejected
            .iter()
            .find(|r| std::ptr::eq(r.promo, &rules.promotions[e]))
        {
            reasons[e] = Some((r.reason, r.by));
        }
    }
    // Everything sent or automatic is reported once: applied, or why not.
    let mut rejected = std::mem::take(&mut chosen.rejected);
    rejected.extend(fixed);
    let mut reported = vec![false; n];
    for promo in chosen
        .applied
        .iter()
        .map(|d| d.promo)
        .chain(rejected.iter().map(|r| r.promo))
    {
        reported[index_of(rules, promo)] = true;
    }
    for i in 0..n {
        let p = &rules.promotions[i];
        if run.prepared[i].code.is_none() || reported[i] {
            continue;
        }
        let (reason, by) = reasons[i].unwrap_or_else(|| {
            let k = class_index(p.class);
            let beaten_by = if p.exclusive == Exclusive::All {
                all_winner
            } else {
                all_winner.or(phase_winner[k])
            };
            let by = beaten_by.filter(|&w| w != i).map_or_else(
                || {
                    // Left out for the stack's promotions of its class (or, with none
                    // there, the stack's result as a whole).
                    chosen
                        .applied
                        .iter()
                        .find(|d| p.exclusive != Exclusive::All && d.promo.class == p.class)
                        .or(chosen.applied.first())
                        .map(|d| d.promo.id.as_str())
                },
                |w| Some(rules.promotions[w].id.as_str()),
            );
            (NotApplied::ExcludedBy, by)
        });
        rejected.push(Refused {
            promo: p,
            reason,
            by,
        });
    }
    rejected.sort_by_key(|r| index_of(rules, r.promo));
    chosen.rejected = rejected;
    report(ctx, priced, &start, &chosen, codes, rules, currency)
}

/// Where a promotion is in the ruleset (every promotion here is borrowed from there):
/// its address's offset, without a search.
fn index_of(rules: Promotions<'_>, p: &Promotion) -> usize {
    let base = rules.promotions.as_ptr() as usize;
    (p as *const Promotion as usize - base) / std::mem::size_of::<Promotion>().max(1)
}

fn report(
    ctx: &Context<'_>,
    priced: &[Priced],
    start: &State<'_>,
    chosen: &State<'_>,
    codes: &[String],
    rules: Promotions<'_>,
    currency: crate::domain::Currency,
) -> Evaluation {
    let product_id = |i: usize| ctx.lines[i].item.product.id.to_string();
    let unknown_codes = codes
        .iter()
        .filter(|c| rules.codes.binary_search(c).is_err())
        .cloned()
        .collect();
    let lines: Vec<LineResult> = ctx
        .lines
        .iter()
        .zip(priced)
        .enumerate()
        .map(|(i, (l, p))| LineResult {
            product_id: product_id(i),
            quantity: l.quantity,
            unit_price: l.item.price,
            compare_at_price: p.compare_at,
            price_list: p.list.clone(),
            subtotal: Money::new(start.net[i], currency),
            discount: Money::new(start.net[i] - chosen.net[i], currency),
            total: Money::new(chosen.net[i], currency),
        })
        .collect();
    // total = subtotal - discount + shipping.total; shipping.total = shipping.amount -
    // shipping.discount; each line's total = its subtotal - its discount.
    let subtotal: i64 = start.net.iter().sum();
    let goods: i64 = chosen.net.iter().sum();
    let rate = chosen.shipping_rate.unwrap_or(0);
    Evaluation {
        lines,
        shipping: Shipping {
            amount: Money::new(rate, currency),
            discount: Money::new(rate - chosen.shipping, currency),
            total: Money::new(chosen.shipping, currency),
        },
        subtotal: Money::new(subtotal, currency),
        discount: Money::new(subtotal - goods, currency),
        total: Money::new(goods + chosen.shipping, currency),
        applied: chosen
            .applied
            .iter()
            .map(|d| AppliedPromotion {
                id: d.promo.id.clone(),
                title: d.promo.title.clone(),
                class: d.promo.class,
                code: d.code.map(str::to_owned),
                amount: Money::new(d.amount(), currency),
                lines: d
                    .lines
                    .iter()
                    .map(|&(i, a)| LineDiscount {
                        product_id: product_id(i),
                        amount: Money::new(a, currency),
                    })
                    .collect(),
                shipping: (d.shipping > 0).then(|| Money::new(d.shipping, currency)),
                clamped: (d.clamped > 0).then(|| Money::new(d.clamped, currency)),
            })
            .collect(),
        rejected: chosen
            .rejected
            .iter()
            .map(|r| RejectedPromotion {
                id: r.promo.id.clone(),
                reason: r.reason,
                by: r.by.map(str::to_owned),
            })
            .collect(),
        unknown_codes,
    }
}

/// Whether an offer can be used on the cart as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// It applies to the cart now (with its code, if it has one).
    Eligible,
    /// The visitor qualifies, the cart does not yet (a threshold, a product).
    ConditionNotMet,
}

/// A promotion this visitor may use now, for the storefront to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
}

/// An offer before it is written out: the promotion, its status, its value, its rank.
type Ranked<'r> = (&'r Promotion, OfferStatus, i64, (i64, i64, i64));

/// Offers answered at most.
pub const MAX_OFFERS: usize = 10;

/// The automatic and offer promotions this visitor is eligible for now, best value first
/// (on the current cart, then by percentage, then priority), at most [`MAX_OFFERS`].
pub fn offers(
    rules: Promotions<'_>,
    ctx: &Context<'_>,
    priced: &[Priced],
    usage: &dyn Fn(&str) -> Usage,
) -> Vec<Offer> {
    if rules.promotions.is_empty() {
        return Vec::new();
    }
    let start = State::new(
        ctx,
        priced,
        Some(shipping_rate(rules, ctx)),
        rules.promotions.len(),
    );
    let env = Env::of(ctx);
    // Offers are weighed one by one, not as a stack: what each is worth on its own.
    let mut ranked: Vec<Ranked<'_>> = rules
        .promotions
        .iter()
        .filter(|p| p.trigger != Trigger::Code)
        .filter_map(|p| {
            // An offer's code counts as sent: the visitor would use it.
            let mut pr = prepare(p, ctx, &[], usage);
            if pr.fixed.is_some() {
                return None;
            }
            pr.code = Some(None);
            let reason = if p.condition.holds(env) {
                OfferStatus::Eligible
            } else {
                OfferStatus::ConditionNotMet
            };
            let o = outcome(&pr, ctx, &start);
            let percent = match p.value {
                Benefit::PercentOff(b) | Benefit::BuyXGetY { percent_bps: b, .. } => b,
                Benefit::FreeShipping => 10_000,
                Benefit::AmountOff(_) | Benefit::FixedPrice(_) => 0,
            };
            Some((p, reason, o.total(), (o.total(), percent, p.priority)))
        })
        .collect();
    ranked.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.id.cmp(&b.0.id)));
    ranked
        .into_iter()
        .take(MAX_OFFERS)
        .map(|(p, reason, value, _)| Offer {
            id: p.id.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            class: p.class,
            code: p.codes.first().cloned(),
            expires_at: p.window.until.map(crate::domain::time::format_rfc3339),
            reason,
            value: Money::new(value, ctx.session.currency),
        })
        .collect()
}
