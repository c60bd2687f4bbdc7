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
use super::recommend_api::{RawCartLine, parse_cart, parse_context, parse_visitors};
use super::state::AppState;
use crate::decide::checkout::{
    self, CartRequest as CartDecision, Checkout, CheckoutError, Commit, Order, Stores,
};
use crate::decide::experiment::{Arms, Visitor};
use crate::decide::promo::Evaluation;
use crate::decide::record::{Endpoint, Output, Pending, PendingRequest};
use crate::domain::Placement;
use crate::domain::ids::check_id;
use crate::domain::time::{unix_now, unix_now_ms};
use crate::domain::{Currency, RawPageContext};
use crate::recommend::reads::Reads;
use crate::store::read_within;

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
    context: Option<RawPageContext>,
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
    caller: super::auth::Caller,
    headers: axum::http::HeaderMap,
    JsonBody(raw): JsonBody<CartRequest>,
) -> Result<Json<Answer>, ApiError> {
    let started = Instant::now();
    let now = unix_now();
    state.tokens.check(
        caller,
        raw.customer_id.as_deref(),
        raw.customer_token.as_deref(),
        &headers,
        now,
    )?;
    let (visitor, _) = parse_visitors(raw.customer_id.as_deref(), raw.session_id.as_deref())?;
    let cart = parse_cart(raw.cart)?;
    let page = parse_context(raw.context.unwrap_or_default())?;
    let codes = parse_codes(raw.codes)?;
    if let Some(order) = raw.order_id.as_deref() {
        check_id(order)
            .map_err(|e| ApiError::new(ErrorCode::InvalidId, format!("order_id {e}")))?;
    }

    let key = state.hasher.key(&visitor);
    let (profile, degraded) =
        read_within(state.store.as_ref(), &key, state.settings.deadline()).await;
    if let Some(d) = degraded {
        metrics::counter!("vitrine_cart_degraded_total", "reason" => d.as_str()).increment(1);
    }
    let rules = state.rules.load();
    let snapshot = state.snapshot.load_full();
    let request = CartDecision {
        cart: &cart,
        codes: &codes,
        context: &page,
        arms: Arms::Visitor(Visitor {
            customer_id: raw.customer_id.as_deref(),
            session_id: raw.session_id.as_deref(),
            arms: profile.as_deref().map_or(&[][..], |p| p.arms.as_slice()),
        }),
    };
    let decision_id = uuid::Uuid::now_v7();
    let recording = state
        .audit
        .wants(Endpoint::CartEvaluate, degraded.is_some(), &decision_id)
        .then(|| Reads::recording(&snapshot.models.live));
    let checkout = Checkout::new(
        &rules,
        &snapshot.catalog,
        match &recording {
            Some(r) => r,
            None => &snapshot.models.live,
        },
        profile.as_deref(),
        &request,
        now,
    )?;
    let stores = Stores {
        catalog: state.catalog.store(),
        profiles: state.store.as_ref(),
        rules: &state.rules,
    };
    let order = raw.order_id.as_deref().map(|id| Order {
        id,
        op_id: state.hasher.id64(b'r', id),
    });
    let ran = checkout::run(&checkout, stores, &key, order, now)
        .await
        .map_err(|e| match e {
            CheckoutError::Refused(r) => ApiError::from(r),
            CheckoutError::Store(e) => {
                tracing::warn!(error = %e, "promotion budgets unavailable");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the store is unavailable; retry",
                )
            }
        })?;
    let elapsed = started.elapsed();
    metrics::histogram!("vitrine_cart_evaluate_seconds").record(elapsed.as_secs_f64());
    let currency = checkout.currency();
    let experiments = checkout.experiments().to_vec();
    if let Some(reads) = recording {
        let usage = checkout
            .budgeted()
            .iter()
            .zip(&ran.used)
            .map(|(id, (uses, spent))| (id.clone(), *uses, *spent))
            .collect();
        state.audit.submit(Pending {
            decision_id,
            at_ms: unix_now_ms(),
            endpoint: Endpoint::CartEvaluate,
            placement: Placement::Checkout,
            visitor: key,
            profile,
            snapshot: snapshot.clone(),
            ruleset_version: rules.version.clone(),
            settings_version: state.audit.settings_version().clone(),
            usage,
            exhausted: ran.exhausted,
            now,
            tape: reads.tape(),
            experiments,
            shadow: None,
            considered: Vec::new(),
            output: Output::Cart {
                currency: currency.as_str().to_owned(),
                evaluation: serde_json::to_value(&ran.evaluation)
                    .unwrap_or(serde_json::Value::Null),
            },
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            degraded: degraded.map(crate::store::Degraded::as_str),
            request: PendingRequest {
                product_id: None,
                category: None,
                query: None,
                cart,
                candidates: Vec::new(),
                limit: 0,
                context: page,
                codes,
            },
        });
    }
    Ok(Json(Answer {
        decision_id: decision_id.to_string(),
        ruleset_version: rules.version.clone(),
        currency,
        evaluation: ran.evaluation,
        degraded: degraded.is_some(),
        commit: ran.commit.map(Commit::as_str),
    }))
}
