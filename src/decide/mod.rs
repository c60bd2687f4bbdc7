//! Decisioning: personalized prices, promotions and the margin guardrail, from one
//! versioned ruleset.
//!
//! A [`Ruleset`](ruleset::Ruleset) is compiled from its JSON document when it is
//! published (every expression type-checked, every problem reported with its path) and
//! then only read: a request loads the live one once and decides everything against it,
//! so an answer never mixes two versions and names the one it used.

pub mod checkout;
pub mod compile;
pub mod content;
pub mod experiment;
pub mod expr;
pub mod limits;
pub mod live;
pub mod merch;
pub mod overrides;
pub mod page;
pub mod price;
pub mod promo;
pub mod record;
pub mod ruleset;

pub use ruleset::Ruleset;

use expr::{Context, Customer, Line, ProductFacts, Session};
use price::{PriceBook, Priced};
use promo::{Evaluation, Usage};

use crate::domain::{Catalog, Currency, PageContext, Placement, ProductIdx, Profile};
use crate::recommend::CartItem;
use crate::recommend::reads::Volatile;

/// Why a decision cannot be made for a request: each is the client's to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A category page names a category the catalog does not have.
    UnknownCategory(String),
    /// A cart line names a product the catalog does not have.
    UnknownProduct(String),
    /// The request names a currency the shop does not sell in.
    UnsupportedCurrency(Currency),
    /// A cart line has no price in the request's currency: `named` when the request
    /// named that currency, else the cart's lines are in several.
    Unpriced {
        line: Unpriced,
        currency: Currency,
        named: bool,
    },
}

impl Refusal {
    fn unpriced(page: &PageContext, line: Unpriced, currency: Currency) -> Self {
        Self::Unpriced {
            line,
            currency,
            named: page.currency.is_some(),
        }
    }
}

/// The currency a request is decided in: the one it names, else the first cart line's,
/// else the catalog's.
pub fn request_currency(page: &PageContext, catalog: &Catalog, cart: &[Line<'_>]) -> Currency {
    page.currency
        .or_else(|| cart.first().map(|l| l.item.product.price.currency))
        .or_else(|| catalog.products().first().map(|p| p.price.currency))
        .unwrap_or_else(|| Currency::parse("USD").unwrap_or(Currency::XXX))
}

/// The facts rules read for one request (at `now`, Unix seconds).
pub fn context<'a>(
    catalog: &'a Catalog,
    page: &'a PageContext,
    profile: Option<&'a Profile>,
    placement: Option<Placement>,
    lines: Vec<Line<'a>>,
    now: i64,
) -> Context<'a> {
    let (personalization, marketing) = profile.map_or((true, false), |p| {
        (p.consent.personalization, p.consent.marketing)
    });
    Context {
        customer: profile
            .filter(|p| p.consent.personalization)
            .map(|p| customer(p, now)),
        session: Session {
            channel: page.channel.as_deref(),
            device: page.device.as_deref(),
            country: page.country.as_ref().map(crate::domain::Country::as_str),
            currency: request_currency(page, catalog, &lines),
            placement,
            exit_intent: page.exit_intent,
            first_visit: profile.is_none_or(|p| p.in_first_visit(now)),
        },
        lines,
        personalization,
        marketing,
        now,
        discount: 0,
        promotion_sets: Vec::new(),
        content_variant: None,
    }
}

/// The cart's lines on the catalog; a product the catalog does not have is refused.
pub fn cart_lines<'a>(
    catalog: &'a Catalog,
    volatile: &dyn Volatile,
    cart: &[CartItem],
) -> Result<Vec<Line<'a>>, Refusal> {
    cart.iter()
        .map(|c| {
            let idx = catalog
                .lookup(&c.product_id)
                .ok_or_else(|| Refusal::UnknownProduct(c.product_id.clone()))?;
            Ok(line(catalog, volatile, idx, c.quantity))
        })
        .collect()
}

/// The request's currency is one the shop sells in, when the request names one.
pub fn check_currency(
    page: &PageContext,
    catalog: &Catalog,
    rules: &Ruleset,
) -> Result<(), Refusal> {
    match page.currency {
        Some(c) if !sells_in(catalog, rules, c) => Err(Refusal::UnsupportedCurrency(c)),
        _ => Ok(()),
    }
}

/// The customer facts rules read from a profile (at `now`, Unix seconds).
pub fn customer(profile: &Profile, now: i64) -> Customer<'_> {
    Customer {
        segments: &profile.segments,
        loyalty_tier: profile.loyalty_tier.as_deref(),
        company_id: profile.company_id.as_deref(),
        orders_count: i64::from(profile.orders_count),
        days_since_last_order: profile.last_order_at.map(|t| (now - t).max(0) / 86_400),
        lifetime_spend: profile.total_spent,
    }
}

/// A product as rules see it, at its catalog price (pricing replaces that).
pub fn product_facts<'c>(
    catalog: &'c Catalog,
    volatile: &dyn Volatile,
    idx: ProductIdx,
) -> ProductFacts<'c> {
    let product = catalog.product(idx);
    ProductFacts {
        product,
        category: &catalog.categories()[usize::from(product.category)],
        price: product.price,
        in_stock: volatile.in_stock(catalog, idx),
    }
}

/// Prices the context's cart lines for this visitor (in place) and returns each line's
/// pricing, and the price book for pricing more products. Price list scopes see the cart
/// at catalog prices.
pub fn price_lines<'r>(rules: &'r Ruleset, ctx: &mut Context<'_>) -> (PriceBook<'r>, Vec<Priced>) {
    let book = PriceBook::new(rules.pricing(), ctx);
    let priced: Vec<Priced> = ctx
        .lines
        .iter()
        .map(|l| book.price(l.item.product, l.item.category, l.quantity))
        .collect();
    for (line, p) in ctx.lines.iter_mut().zip(&priced) {
        line.item.price = p.unit;
    }
    (book, priced)
}

/// A cart line this request cannot price in its currency: money of two currencies is
/// never added, nor relabelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpriced {
    pub product_id: String,
    /// The currency its price is in.
    pub currency: Currency,
}

/// The first priced line whose price is not in the request's currency.
pub fn unpriced(ctx: &Context<'_>, priced: &[Priced]) -> Option<Unpriced> {
    ctx.lines
        .iter()
        .zip(priced)
        .find(|(_, p)| p.unit.currency != ctx.session.currency)
        .map(|(l, p)| Unpriced {
            product_id: l.item.product.id.to_string(),
            currency: p.unit.currency,
        })
}

/// The whole checkout decision for a cart: prices, then promotions, then totals; refused
/// when a line has no price in the request's currency.
pub fn evaluate_cart(
    rules: &Ruleset,
    mut ctx: Context<'_>,
    codes: &[String],
    usage: &dyn Fn(&str) -> Usage,
) -> Result<Evaluation, Unpriced> {
    let (_, priced) = price_lines(rules, &mut ctx);
    if let Some(u) = unpriced(&ctx, &priced) {
        return Err(u);
    }
    Ok(promo::evaluate(
        rules.promotions(),
        &ctx,
        &priced,
        codes,
        usage,
    ))
}

/// Whether the shop sells in `currency`: a product or a price list is priced in it.
pub fn sells_in(catalog: &Catalog, rules: &Ruleset, currency: Currency) -> bool {
    catalog.currencies().contains(&currency)
        || rules.price_lists.iter().any(|l| l.currency == currency)
}

/// A cart line of `quantity` units of a catalog product.
pub fn line<'c>(
    catalog: &'c Catalog,
    volatile: &dyn Volatile,
    idx: ProductIdx,
    quantity: u32,
) -> Line<'c> {
    Line {
        item: product_facts(catalog, volatile, idx),
        quantity,
    }
}
