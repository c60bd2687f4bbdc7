//! Platform webhooks. `POST /webhooks/shopify`: verified with `X-Shopify-Hmac-Sha256`
//! (base64 HMAC-SHA256 of the raw body with the app secret, compared in constant time),
//! deduplicated on `X-Shopify-Webhook-Id`, dispatched on `X-Shopify-Topic`.
//! `POST /webhooks/bigcommerce`: verified with the shared secret header set when the
//! hook was registered (constant-time compare), deduplicated on the body (a redelivery
//! is byte-identical), and resolved through the REST API: a webhook that cannot be
//! resolved because the API is unreachable is 503, so BigCommerce redelivers it.
//!
//! A bad signature is 401 and a malformed payload 400, with nothing applied; an unknown
//! topic is 202, ignored and counted; a store that cannot take the change is 503, so
//! the platform redelivers (and deduplication makes redelivery safe).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::domain::Currency;
use crate::domain::time::unix_now;
use crate::ingest::bigcommerce::{self, FetchError};
use crate::ingest::shopify::{self, Action};
use crate::ingest::webhooks::{self, ApplyError, Targets};

/// Topics with their own metric label; anything else is counted as `other`.
const TOPICS: [&str; 27] = [
    "orders/create",
    "orders/paid",
    "orders/cancelled",
    "carts/create",
    "carts/update",
    "customers/create",
    "customers/update",
    "products/create",
    "products/update",
    "inventory_levels/update",
    "customers/data_request",
    "customers/redact",
    "shop/redact",
    "app/uninstalled",
    "store/order/created",
    "store/order/updated",
    "store/order/statusUpdated",
    "store/order/archived",
    "store/cart/created",
    "store/cart/updated",
    "store/cart/deleted",
    "store/cart/converted",
    "store/customer/created",
    "store/customer/updated",
    "store/customer/deleted",
    "store/product/updated",
    "store/product/deleted",
];

/// BigCommerce's webhook bodies are a scope and an id: small.
const BIGCOMMERCE_BODY_LIMIT: usize = 64 * 1024;

/// Webhooks are signed over their body, so the body is read before anything else: under
/// the platform's limit and the body timeout, and only then is a permit taken, from the
/// webhooks' own pool (never the storefront API's).
pub fn router(state: &AppState) -> Router<AppState> {
    let shed = || {
        axum::middleware::from_fn_with_state(state.webhook_permits.clone(), super::observe::shed)
    };
    let shopify_limit = state.settings.shopify.body_limit_bytes;
    let shopify = Router::new()
        .route("/webhooks/shopify", post(shopify_webhook))
        .route_layer(shed())
        .route_layer(DefaultBodyLimit::max(shopify_limit));
    let bigcommerce = Router::new()
        .route("/webhooks/bigcommerce", post(bigcommerce_webhook))
        .route_layer(shed())
        .route_layer(DefaultBodyLimit::max(BIGCOMMERCE_BODY_LIMIT));
    super::read_body(state, shopify_limit, shopify).merge(super::read_body(
        state,
        BIGCOMMERCE_BODY_LIMIT,
        bigcommerce,
    ))
}

/// Each topic with a label of its own, with its platform (BigCommerce's are `store/...`).
pub fn platform_topics() -> impl Iterator<Item = (&'static str, &'static str)> {
    TOPICS.iter().map(|t| {
        let platform = if t.starts_with("store/") {
            "bigcommerce"
        } else {
            "shopify"
        };
        (platform, *t)
    })
}

fn topic_label(topic: &str) -> &'static str {
    TOPICS
        .iter()
        .copied()
        .find(|t| *t == topic)
        .unwrap_or("other")
}

fn count(platform: &'static str, topic: &str, result: &'static str) {
    metrics::counter!("vitrine_webhooks_total", "platform" => platform, "topic" => topic_label(topic), "result" => result)
        .increment(1);
}

fn verify(secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    let Some(Ok(expected)) =
        signature.map(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()))
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn store_unavailable(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "webhook not applied: store unavailable");
    ApiError::new(
        ErrorCode::StoreUnavailable,
        "the profile store is unavailable; redeliver",
    )
}

async fn shopify_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let secret = &state.settings.shopify.webhook_secret;
    if secret.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "Shopify webhooks are not configured",
        ));
    }
    let topic = header(&headers, "x-shopify-topic")
        .unwrap_or_default()
        .to_owned();
    if !verify(
        secret.expose(),
        &body,
        header(&headers, "x-shopify-hmac-sha256"),
    ) {
        count("shopify", &topic, "bad_signature");
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "X-Shopify-Hmac-Sha256 does not match the body",
        ));
    }
    if topic.is_empty() {
        count("shopify", &topic, "malformed");
        return Err(ApiError::new(
            ErrorCode::MalformedPayload,
            "X-Shopify-Topic is missing",
        ));
    }
    let webhook_id = header(&headers, "x-shopify-webhook-id")
        .map(|id| format!("shopify:{id}"))
        .unwrap_or_else(|| format!("shopify:body-{:016x}", xxhash_rust::xxh3::xxh3_64(&body)));
    if state.webhooks.seen.contains_key(&webhook_id) {
        count("shopify", &topic, "duplicate");
        return Ok((StatusCode::OK, Json(json!({"status": "duplicate"}))));
    }
    // Checked at start-up: set whenever webhooks are.
    let currency = state.settings.shopify.currency().unwrap_or(Currency::XXX);
    let action = shopify::interpret(
        &topic,
        &webhook_id,
        &body,
        &state.hasher,
        currency,
        unix_now(),
    )
    .map_err(|e| {
        count("shopify", &topic, "malformed");
        ApiError::new(ErrorCode::MalformedPayload, e.to_string())
    })?;
    let status = apply(&state, action).await?;
    state.webhooks.seen.insert(webhook_id, ());
    count("shopify", &topic, status);
    let code = if status == "ignored" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({"status": status}))))
}

async fn bigcommerce_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let settings = &state.settings.bigcommerce;
    let Some(client) = &state.webhooks.bigcommerce else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "BigCommerce webhooks are not configured",
        ));
    };
    let presented = header(&headers, &settings.secret_header).unwrap_or_default();
    let matches: bool = subtle::ConstantTimeEq::ct_eq(
        presented.as_bytes(),
        settings.webhook_secret.expose().as_bytes(),
    )
    .into();
    if !matches {
        count("bigcommerce", "", "bad_signature");
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "{} does not hold the webhook secret",
                settings.secret_header
            ),
        ));
    }
    let envelope: bigcommerce::Envelope = serde_json::from_slice(&body).map_err(|e| {
        count("bigcommerce", "", "malformed");
        ApiError::new(ErrorCode::MalformedPayload, format!("webhook body: {e}"))
    })?;
    let scope = envelope.scope.clone();
    let fetch = bigcommerce::plan(&envelope).map_err(|e| {
        count("bigcommerce", &scope, "malformed");
        ApiError::new(ErrorCode::MalformedPayload, e)
    })?;
    let delivery = format!("bigcommerce:{:016x}", xxhash_rust::xxh3::xxh3_64(&body));
    if state.webhooks.seen.contains_key(&delivery) {
        count("bigcommerce", &scope, "duplicate");
        return Ok((StatusCode::OK, Json(json!({"status": "duplicate"}))));
    }
    let now = envelope.created_at.unwrap_or_else(unix_now);
    let status = match client.resolve(fetch, &delivery, &state.hasher, now).await {
        Ok(action) => apply(&state, action).await?,
        Err(FetchError::Unavailable(e)) => {
            count("bigcommerce", &scope, "upstream_unavailable");
            tracing::warn!(error = %e, scope = %scope, "webhook not applied: BigCommerce API unavailable");
            return Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the BigCommerce API could not be reached; redeliver",
            ));
        }
        Err(FetchError::Unreadable(e)) => {
            // Redelivery would fetch the same answer: acknowledge, count, and log it.
            tracing::warn!(error = %e, scope = %scope, "webhook not applied: API answer unreadable");
            "unreadable"
        }
    };
    state.webhooks.seen.insert(delivery, ());
    count("bigcommerce", &scope, status);
    let code = if status == "applied" || status == "erased" {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(json!({"status": status}))))
}

/// What the handlers' platform actions need from the state.
fn targets(state: &AppState) -> Targets<'_> {
    Targets {
        store: state.store.as_ref(),
        hasher: &state.hasher,
        catalog: &state.catalog,
        learning: &state.learning,
        decisions: &state.audit,
        attribution: &state.attribution,
    }
}

/// Applies a platform's action: a malformed payload is 400, a store that cannot take it
/// 503 (the platform redelivers).
async fn apply(state: &AppState, action: Action) -> Result<&'static str, ApiError> {
    match webhooks::apply(targets(state), action).await {
        Ok(outcome) => Ok(outcome.as_str()),
        Err(ApplyError::Malformed(m)) => Err(ApiError::new(ErrorCode::MalformedPayload, m)),
        Err(ApplyError::Unavailable(e)) => Err(store_unavailable(&e)),
    }
}
