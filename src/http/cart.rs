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
    session_id: Option<String>,
    cart: Vec<RawCartLine>,
    #[serde(default)]
    codes: Vec<String>,
    context: Option<RawContext>,
}

#[derive(Serialize)]
struct Answer {
    decision_id: String,
    ruleset_version: String,
    currency: Currency,
    #[serde(flatten)]
    evaluation: Evaluation,
    degraded: bool,
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

async fn evaluate(
    State(state): State<AppState>,
    JsonBody(raw): JsonBody<CartRequest>,
) -> Result<Json<Answer>, ApiError> {
    let started = Instant::now();
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
    let evaluation = crate::decide::evaluate_cart(&rules, ctx, &codes, &|_| Usage::default());
    metrics::histogram!("vitrine_cart_evaluate_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(Answer {
        decision_id: uuid::Uuid::now_v7().to_string(),
        ruleset_version: rules.version.clone(),
        currency,
        evaluation,
        degraded,
    }))
}
