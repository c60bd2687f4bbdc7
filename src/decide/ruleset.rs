//! The ruleset document: price lists, promotions, guardrails and shipping rates in one
//! JSON snapshot, compiled (and so validated) as a whole. Compiling reports every
//! problem with its JSON path, not just the first; a ruleset with any problem is never
//! published. The version is a digest of the canonical document, so publishing the
//! same rules twice gives the same version on every replica.

use serde::Deserialize;
use serde_json::Value;

use super::expr::{self, Errors, Expr, RuleError, Scope};
use super::limits::{self, MAX_MERCH_RULES, MAX_PRICE_LISTS, MAX_PROMOTIONS};
use crate::domain::{Currency, Money};

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

/// From and until (either open), Unix seconds; `until` is exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn contains(&self, now: i64) -> bool {
        self.from.is_none_or(|f| now >= f) && self.until.is_none_or(|u| now < u)
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

/// The category handle and its ancestors, nearest first (`a/b/c`, `a/b`, `a`).
pub fn ancestors(handle: &str) -> impl Iterator<Item = &str> {
    std::iter::once(handle).chain(handle.rmatch_indices('/').map(move |(i, _)| &handle[..i]))
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

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
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
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Guardrails {
    pub min_margin_bps: i64,
    /// Product id -> (minimum price, margin override).
    pub products: rustc_hash::FxHashMap<String, (Option<Money>, Option<i64>)>,
    /// Category handle -> margin override (the nearest enclosing category wins).
    pub categories: rustc_hash::FxHashMap<String, i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShippingRate {
    pub id: String,
    pub when: Expr,
    pub amount: Money,
}

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
    pub merchandising: Vec<super::merch::MerchRule>,
    pub content: super::content::Content,
    /// Every promotion's codes, sorted (is a code sent known at all).
    pub codes: Vec<String>,
    /// Every price list's entries, by product: a price looks up its product once and
    /// sees the lists that name it, not every list.
    pub prices: Prices,
}

impl Ruleset {
    /// The ruleset in force before any is published: no rules at all.
    pub fn empty() -> Self {
        Self {
            version: "none".into(),
            source: serde_json::json!({}),
            price_lists: Vec::new(),
            promotions: Vec::new(),
            guardrails: Guardrails::default(),
            shipping: Vec::new(),
            merchandising: Vec::new(),
            content: super::content::Content::default(),
            codes: Vec::new(),
            prices: Prices::default(),
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    amount: i64,
    currency: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    from: Option<String>,
    until: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    min_qty: u32,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    product_id: String,
    amount: i64,
    #[serde(default)]
    tiers: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdjust {
    parent: Option<String>,
    percent_off_bps: i64,
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceList {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuyGet {
    buy: u32,
    get: u32,
    #[serde(default = "full_bps")]
    percent_bps: i64,
}

const fn full_bps() -> i64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawValue {
    PercentBps(i64),
    AmountOff(RawMoney),
    FixedPrice(RawMoney),
    FreeShipping(bool),
    BuyXGetY(RawBuyGet),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    days: Vec<String>,
    from: String,
    until: String,
    #[serde(default)]
    utc_offset_minutes: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    max_uses: Option<u64>,
    max_spend: Option<RawMoney>,
    per_customer_uses: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromotion {
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
}

const fn auto() -> Trigger {
    Trigger::Auto
}

const fn no_exclusive() -> Exclusive {
    Exclusive::None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProductGuard {
    min_price: Option<RawMoney>,
    min_margin_bps: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    #[serde(default)]
    min_margin_bps: i64,
    #[serde(default)]
    products: std::collections::BTreeMap<String, RawProductGuard>,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShipping {
    id: String,
    when: Option<Value>,
    amount: RawMoney,
}

/// Deserializes `v` into `T`, reporting the failing field's path under `path`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    v: &Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            let message = e.into_inner().to_string();
            errors.push(&at, message);
            None
        }
    }
}

fn money(raw: &RawMoney, path: &str, errors: &mut Errors) -> Option<Money> {
    match Currency::parse(&raw.currency) {
        Ok(c) if Money::in_range(raw.amount) => Some(Money::new(raw.amount, c)),
        Ok(_) => {
            errors.push(
                &format!("{path}.amount"),
                format!("must be 0 to {} minor units", Money::MAX_AMOUNT),
            );
            None
        }
        Err(e) => {
            errors.push(&format!("{path}.currency"), e.to_string());
            None
        }
    }
}

pub(super) fn window(raw: &RawWindow, path: &str, errors: &mut Errors) -> Window {
    let mut time = |field: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| {
            let t = crate::domain::time::parse_rfc3339(s);
            if t.is_none() {
                errors.push(&format!("{path}.{field}"), "expects an RFC 3339 time");
            }
            t
        })
    };
    let w = Window {
        from: time("from", &raw.from),
        until: time("until", &raw.until),
    };
    if let (Some(f), Some(u)) = (w.from, w.until)
        && f >= u
    {
        errors.push(path, "from must be before until");
    }
    w
}

pub(super) fn expression(v: Option<&Value>, scope: Scope, path: &str, errors: &mut Errors) -> Expr {
    v.map_or(Expr::Const(true), |v| expr::compile(v, scope, path, errors))
}

fn check_id(id: &str, path: &str, errors: &mut Errors) {
    if crate::domain::ids::check_id(id).is_err() {
        errors.push(path, "an id is 1 to 128 characters, without whitespace");
    }
}

fn bps(v: i64, path: &str, errors: &mut Errors) -> i64 {
    if !(0..=10_000).contains(&v) {
        errors.push(path, "basis points from 0 to 10000");
    }
    v.clamp(0, 10_000)
}

/// Prices by product: for each product, (price list index, its entry there).
pub type Prices = rustc_hash::FxHashMap<Box<str>, smallvec::SmallVec<[(u32, PriceEntry); 2]>>;

fn compile_price_list(
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

fn clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn compile_schedule(raw: &RawSchedule, path: &str, errors: &mut Errors) -> Schedule {
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

fn compile_promotion(raw: RawPromotion, path: &str, errors: &mut Errors) -> Option<Promotion> {
    check_id(&raw.id, &format!("{path}.id"), errors);
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
    })
}

fn compile_guardrails(raw: &RawGuardrails, path: &str, errors: &mut Errors) -> Guardrails {
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
    let content = raw
        .content
        .as_ref()
        .and_then(|c| parse::<super::content::RawContent>(c, "$.content", &mut errors))
        .map(|c| super::content::compile(&c, &mut errors))
        .unwrap_or_default();
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
    };
    limits::check(&rules, &mut errors);
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

fn unique<'a>(ids: impl Iterator<Item = &'a str>, path: &str, errors: &mut Errors) {
    let mut seen = rustc_hash::FxHashSet::default();
    for id in ids {
        if !seen.insert(id) {
            errors.push(path, format!("id {id:?} is used twice"));
        }
    }
}
