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
use crate::domain::profile::ProfileOp;
use crate::domain::{Currency, VisitorId, VisitorKey};
use crate::ingest::bigcommerce::{self, FetchError};
use crate::ingest::catalog::CatalogChangeError;
use crate::ingest::shopify::{self, Action};
use crate::recommend::model::unix_now;

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
    if !verify(secret, &body, header(&headers, "x-shopify-hmac-sha256")) {
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
    let matches: bool =
        subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), settings.webhook_secret.as_bytes())
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

fn catalog_error(e: &CatalogChangeError) -> ApiError {
    match e {
        CatalogChangeError::Store(e) => store_unavailable(e),
        CatalogChangeError::StoreReset => store_unavailable(e),
        other => ApiError::new(ErrorCode::MalformedPayload, other.to_string()),
    }
}

/// Takes a product out of the catalog; one that is not there already is fine.
async fn remove_product(state: &AppState, id: &str) -> Result<(), ApiError> {
    match state.catalog.delete(id).await {
        Ok(()) | Err(CatalogChangeError::NotFound) => Ok(()),
        Err(e) => Err(catalog_error(&e)),
    }
}

fn visitor(kind: fn(VisitorId) -> VisitorKey, raw: &str) -> Result<VisitorKey, ApiError> {
    VisitorId::parse(raw)
        .map(kind)
        .map_err(|e| ApiError::new(ErrorCode::MalformedPayload, format!("id {e}")))
}

async fn apply_profile(
    state: &AppState,
    visitor: VisitorKey,
    ops: &[ProfileOp],
) -> Result<&'static str, ApiError> {
    let key = state.hasher.key(&visitor);
    let applied = state
        .store
        .apply(&key, ops)
        .await
        .map_err(|e| store_unavailable(&e))?;
    // New orders teach the live models (pairs and trend), here and through the log.
    state.learning.learn(crate::ingest::log::order_entries(
        &key,
        ops,
        &applied.fresh,
        state.learning.origin(),
    ));
    Ok("applied")
}

async fn apply(state: &AppState, action: Action) -> Result<&'static str, ApiError> {
    match action {
        Action::Customer {
            customer_id,
            ops,
            email,
        } => {
            let customer = visitor(VisitorKey::Customer, &customer_id)?;
            // The email first: what was imported under it is the customer's before this
            // delivery's own ops (an order in both counts once).
            if let Some(email) = email {
                crate::ingest::identity::link_email(
                    state.store.as_ref(),
                    &state.hasher,
                    state.hasher.key(&customer),
                    &email,
                    crate::domain::time::unix_now(),
                )
                .await
                .map_err(|e| store_unavailable(&e))?;
            }
            apply_profile(state, customer, &ops).await
        }
        Action::Session { session_id, ops } => {
            apply_profile(state, visitor(VisitorKey::Session, &session_id)?, &ops).await
        }
        Action::Product {
            input,
            inventory_items,
            archived,
        } => {
            let id = input.id.clone();
            // The product payload gives each item's total over all locations, held
            // until a per-location level replaces it; in the store, so a level update
            // can land on any replica.
            let items: Vec<(String, i64)> = inventory_items
                .into_iter()
                .map(|(item, quantity)| (item.to_string(), quantity))
                .collect();
            if !items.is_empty() {
                state
                    .catalog
                    .link_inventory(&id, &items)
                    .await
                    .map_err(|e| catalog_error(&e))?;
            }
            state
                .catalog
                .upsert(vec![input])
                .await
                .map_err(|e| catalog_error(&e))?;
            if archived {
                // Archived and draft products are not for sale: keep them out of answers.
                remove_product(state, &id).await?;
            }
            Ok("applied")
        }
        Action::Inventory(level) => {
            let found = state
                .catalog
                .inventory_level(
                    &level.inventory_item_id.to_string(),
                    &level.location_id.to_string(),
                    level.available.unwrap_or(0),
                )
                .await
                .map_err(|e| catalog_error(&e))?;
            let Some(stock) = found else {
                return Ok("unknown_item");
            };
            state
                .catalog
                .set_stock(&[stock])
                .await
                .map_err(|e| catalog_error(&e))?;
            Ok("applied")
        }
        Action::RemoveProduct { product_id } => {
            remove_product(state, &product_id).await?;
            Ok("applied")
        }
        Action::Erase { customer_id, email } => {
            let key = state
                .hasher
                .key(&visitor(VisitorKey::Customer, &customer_id)?);
            crate::ingest::identity::erase(state.store.as_ref(), &key)
                .await
                .map_err(|e| store_unavailable(&e))?;
            if let Some(email) = email {
                state
                    .store
                    .delete(&state.hasher.email_key(&email))
                    .await
                    .map_err(|e| store_unavailable(&e))?;
            }
            Ok("erased")
        }
        Action::EraseAll => {
            let n = state
                .store
                .erase_all()
                .await
                .map_err(|e| store_unavailable(&e))?;
            tracing::info!(profiles = n, "shop redact: every profile erased");
            Ok("erased")
        }
        Action::DataRequest => {
            tracing::info!(
                "customer data request received; answer it with GET /admin/v1/profiles/{{id}}"
            );
            Ok("acknowledged")
        }
        Action::Ignore => Ok("ignored"),
    }
}
