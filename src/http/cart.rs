//! `POST /v1/cart/evaluate`: the checkout-path call. Given a visitor and a cart (and
//! codes), answers line prices, every promotion applied with its amount per line, the
//! promotions that did not apply with a reason, shipping and totals, all from one ruleset
//! version, which the answer names.

use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use super::extract::JsonBody;
use super::recommend::{
    Context as PageContext, RawCartLine, RawContext, parse_cart, parse_context, parse_visitors,
};
use crate::app::AppState;
use crate::decide::expr::{Context, Line, Session};
use crate::decide::promo::{Evaluation, Usage};
use crate::domain::{Catalog, Currency, Placement, Profile};
use crate::recommend::CartItem;
use crate::recommend::model::unix_now;

pub const MAX_CODES: usize = 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/cart/evaluate", post(evaluate))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CartRequest {
    customer_id: Option<String>,
    /// Proves `customer_id` on a storefront key.
    customer_token: Option<String>,
    session_id: Option<String>,
    cart: Vec<RawCartLine>,
    #[serde(default)]
    codes: Vec<String>,
    context: Option<RawContext>,
    /// Commits the decision for this order: budgeted promotions' uses and spend are
    /// recorded (once per order id; repeating the call changes nothing).
    order_id: Option<String>,
}

#[derive(Serialize)]
struct Answer {
    decision_id: String,
    ruleset_version: String,
    currency: Currency,
    #[serde(flatten)]
    evaluation: Evaluation,
    degraded: bool,
    /// With `order_id`: `recorded`, or `already_recorded` for an order seen before.
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<&'static str>,
}

/// The currency a request is decided in: the one it names, else the first cart line's,
/// else the catalog's.
pub fn request_currency(page: &PageContext, catalog: &Catalog, cart: &[Line<'_>]) -> Currency {
    page.currency
        .or_else(|| cart.first().map(|l| l.item.product.price.currency))
        .or_else(|| catalog.products().first().map(|p| p.price.currency))
        .unwrap_or_else(|| Currency::parse("USD").unwrap_or(Currency::XXX))
}

/// The facts rules read for one request.
pub fn decision_context<'a>(
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
            .map(|p| crate::decide::customer(p, now)),
        session: Session {
            channel: page.channel.as_deref(),
            device: page.device.as_deref(),
            country: page.country.as_deref(),
            currency: request_currency(page, catalog, &lines),
            placement,
            exit_intent: page.exit_intent,
            first_visit: profile.is_none(),
        },
        lines,
        personalization,
        marketing,
        now,
        discount: 0,
    }
}

/// The cart's lines on the catalog; a product the catalog does not have is refused.
pub fn cart_lines<'a>(catalog: &'a Catalog, cart: &[CartItem]) -> Result<Vec<Line<'a>>, ApiError> {
    cart.iter()
        .map(|c| {
            let idx = catalog.lookup(&c.product_id).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidCart,
                    format!("product {:?} is not in the catalog", c.product_id),
                )
            })?;
            Ok(crate::decide::line(catalog, idx, c.quantity))
        })
        .collect()
}

/// The request's currency is one the shop sells in, when the request names one.
pub fn check_currency(
    page: &PageContext,
    catalog: &Catalog,
    rules: &crate::decide::Ruleset,
) -> Result<(), ApiError> {
    match page.currency {
        Some(c) if !crate::decide::sells_in(catalog, rules, c) => Err(ApiError::new(
            ErrorCode::UnsupportedCurrency,
            format!("the shop does not sell in {c}: no product or price list is priced in it"),
        )),
        _ => Ok(()),
    }
}

/// A cart line with no price in the request's currency: `unsupported_currency` when the
/// request named the currency, else `mixed_currency` (the lines are in several).
pub fn unpriced_error(
    page: &PageContext,
    u: &crate::decide::Unpriced,
    currency: Currency,
) -> ApiError {
    if page.currency.is_some() {
        ApiError::new(
            ErrorCode::UnsupportedCurrency,
            format!(
                "product {:?} has no price in {currency} for this visitor (its price is in {})",
                u.product_id, u.currency
            ),
        )
    } else {
        ApiError::new(
            ErrorCode::MixedCurrency,
            format!(
                "the cart is priced in {currency} and product {:?} in {}: name context.currency to price every line in one",
                u.product_id, u.currency
            ),
        )
    }
}

fn parse_codes(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_CODES {
        return Err(ApiError::new(ErrorCode::InvalidCodes, "at most 20 codes"));
    }
    let mut codes = Vec::with_capacity(raw.len());
    for c in raw {
        let c = c.trim().to_ascii_uppercase();
        if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::new(
                ErrorCode::InvalidCodes,
                "a code is 1 to 64 visible ASCII characters",
            ));
        }
        if !codes.contains(&c) {
            codes.push(c);
        }
    }
    Ok(codes)
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

async fn evaluate(
    State(state): State<AppState>,
    caller: super::auth::Caller,
    headers: axum::http::HeaderMap,
    JsonBody(raw): JsonBody<CartRequest>,
) -> Result<Json<Answer>, ApiError> {
    let started = Instant::now();
    state.tokens.check(
        caller,
        raw.customer_id.as_deref(),
        raw.customer_token.as_deref(),
        &headers,
        crate::domain::time::unix_now(),
    )?;
    let (visitor, _) = parse_visitors(raw.customer_id.as_deref(), raw.session_id.as_deref())?;
    let cart = parse_cart(raw.cart)?;
    let page = parse_context(raw.context.unwrap_or_default())?;
    let codes = parse_codes(raw.codes)?;

    let key = state.hasher.key(&visitor);
    let (profile, degraded) =
        match tokio::time::timeout(state.settings.deadline(), state.store.get(&key)).await {
            Ok(Ok(p)) => (p, false),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "profile read failed; evaluating the cart without it");
                (None, true)
            }
            Err(_) => (None, true),
        };
    let rules = state.rules.load();
    let snapshot = state.snapshot.load();
    check_currency(&page, &snapshot.catalog, &rules)?;
    let lines = cart_lines(&snapshot.catalog, &cart)?;
    let ctx = decision_context(
        &snapshot.catalog,
        &page,
        profile.as_deref(),
        Some(Placement::Checkout),
        lines,
        unix_now(),
    );
    let currency = ctx.session.currency;
    // Budgets: what each budgeted promotion has used, everywhere and by this customer.
    let budgeted: Vec<String> = rules
        .promotions
        .iter()
        .filter(|p| p.budget != crate::decide::ruleset::Budget::default())
        .map(|p| p.id.clone())
        .collect();
    let store_error = |e: &crate::store::StoreError| {
        tracing::warn!(error = %e, "promotion budgets unavailable");
        ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store is unavailable; retry",
        )
    };
    let used = state
        .catalog
        .store()
        .promotion_usage(&budgeted)
        .await
        .map_err(|e| store_error(&e))?;
    let mut exhausted: Vec<String> = Vec::new();
    let usage_of = |exhausted: &[String], id: &str| -> Usage {
        let (uses, spent) = budgeted
            .iter()
            .position(|b| b == id)
            .map_or((0, 0), |i| used[i]);
        if exhausted.iter().any(|e| e == id) {
            return Usage {
                uses: u64::MAX,
                spent: i64::MAX,
                customer_uses: u64::MAX,
            };
        }
        Usage {
            uses,
            spent,
            customer_uses: profile
                .as_deref()
                .map_or(0, |p| u64::from(p.promotion_uses(id))),
        }
    };
    // The decision with these promotions counted as exhausted (the store refused them).
    let decide = |exhausted: &[String]| {
        off_the_workers(|| {
            crate::decide::evaluate_cart(&rules, ctx.clone(), &codes, &|id| usage_of(exhausted, id))
        })
        .map_err(|u| unpriced_error(&page, &u, currency))
    };
    let mut evaluation = decide(&exhausted)?;
    let mut commit = None;
    if let Some(order) = raw.order_id.as_deref() {
        crate::domain::ids::check_id(order)
            .map_err(|e| ApiError::new(ErrorCode::InvalidId, format!("order_id {e}")))?;
        // Another checkout may take the last use meanwhile: the store checks the limits
        // again, atomically, and a promotion over its limit is evaluated as exhausted.
        for _ in 0..=budgeted.len() {
            let redemptions: Vec<crate::store::Redemption> = evaluation
                .applied
                .iter()
                .filter_map(|a| {
                    let p = rules.promotions.iter().find(|p| p.id == a.id)?;
                    (p.budget != crate::decide::ruleset::Budget::default()).then(|| {
                        crate::store::Redemption {
                            promotion: p.id.clone(),
                            amount: a.amount.amount,
                            max_uses: p.budget.max_uses,
                            max_spend: p.budget.max_spend.map(|m| m.amount),
                            // Counted in the store with the rest, so two checkouts of one
                            // customer at once cannot both pass the limit.
                            per_customer: p.budget.per_customer_uses.map(|m| (key.to_hex(), m)),
                        }
                    })
                })
                .collect();
            match state
                .catalog
                .store()
                .redeem(order, &redemptions)
                .await
                .map_err(|e| store_error(&e))?
            {
                crate::store::Redeemed::Recorded => {
                    state.rules.note_redeemed(
                        &redemptions
                            .iter()
                            .map(|r| (r.promotion.clone(), r.amount))
                            .collect::<Vec<_>>(),
                    );
                    let ids: Vec<String> = redemptions.into_iter().map(|r| r.promotion).collect();
                    if !ids.is_empty() {
                        let op = crate::domain::profile::ProfileOp::PromotionsUsed {
                            id: state.hasher.id64(b'r', order),
                            at: unix_now(),
                            promotions: ids,
                        };
                        state
                            .store
                            .apply(&key, &[op])
                            .await
                            .map_err(|e| store_error(&e))?;
                    }
                    commit = Some("recorded");
                    break;
                }
                crate::store::Redeemed::AlreadyRecorded => {
                    commit = Some("already_recorded");
                    break;
                }
                crate::store::Redeemed::OverLimit(i) => {
                    exhausted.push(redemptions[i].promotion.clone());
                    evaluation = decide(&exhausted)?;
                }
            }
        }
    }
    metrics::histogram!("vitrine_cart_evaluate_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(Answer {
        decision_id: uuid::Uuid::now_v7().to_string(),
        ruleset_version: rules.version.clone(),
        currency,
        evaluation,
        degraded,
        commit,
    }))
}
