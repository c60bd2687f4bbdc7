//! The admin API (admin keys): service status, and profile export and erasure.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::{ApiError, ErrorCode};
use super::extract::PathId;
use super::state::AppState;
use crate::domain::{VisitorId, VisitorKey};
use crate::recommend::model::unix_now;

/// Lifetime spend (minor units) from which an active customer counts as VIP.
pub const VIP_SPEND: i64 = 50_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/status", get(status)).route(
        "/admin/v1/profiles/{customer_id}",
        get(export).delete(erase),
    )
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let out_of_stock = catalog.out_of_stock();
    Json(json!({
        "model_version": snapshot.models.version,
        "model_memory_bytes": snapshot.models.memory_bytes(),
        "products": catalog.len(),
        "products_out_of_stock": out_of_stock,
        "categories": catalog.categories().len(),
        "store": state.store.backend(),
    }))
}

fn customer_key(state: &AppState, raw: &str) -> Result<crate::store::ProfileKey, ApiError> {
    let id = VisitorId::parse(raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidId, format!("customer_id {e}")))?;
    Ok(state.hasher.key(&VisitorKey::Customer(id)))
}

fn store_error(e: &crate::store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "admin profile call failed");
    ApiError::new(
        ErrorCode::StoreUnavailable,
        "the profile store is unavailable",
    )
}

/// Everything held about one customer, with the derived values.
async fn export(
    State(state): State<AppState>,
    PathId(customer_id): PathId,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = customer_key(&state, &customer_id)?;
    let profile = state
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| ApiError::new(ErrorCode::ProfileNotFound, "no profile for this customer"))?;
    let now = unix_now();
    Ok(Json(json!({
        "customer_id": customer_id,
        "consent": profile.consent,
        "segments": profile.segments,
        "loyalty_tier": profile.loyalty_tier,
        "company_id": profile.company_id,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "orders_count": profile.orders_count,
        "total_spent": profile.total_spent,
        "average_order_value": profile.average_order_value(),
        "first_order_at": profile.first_order_at,
        "last_order_at": profile.last_order_at,
        "lifecycle": profile.lifecycle(now, VIP_SPEND),
        "churn_risk_bp": profile.churn_risk_bp(now),
        "clv_12m": profile.clv_12m(now),
        "category_affinities": profile.affinities,
        "recently_viewed": profile.recently_viewed,
        "view_counts": profile.views().map(|(_, n)| n).collect::<Vec<_>>(),
        "recent_searches": profile.recent_searches,
        "cart": profile.cart,
        "purchased": profile.purchased,
    })))
}

/// Erases the customer's profile from every tier. 204 whether or not there was one,
/// so erasure requests can be retried.
async fn erase(
    State(state): State<AppState>,
    PathId(customer_id): PathId,
) -> Result<StatusCode, ApiError> {
    let key = customer_key(&state, &customer_id)?;
    // Their decisions first: that notes them as erased, so nothing queued for them
    // (decision records, experiment credits) is written after their profile goes.
    let decisions = state.audit.erase(&key).await.map_err(|e| store_error(&e))?;
    // The profile and every alias of it (an email's keyed hash).
    let existed = crate::ingest::identity::erase(state.store.as_ref(), &key)
        .await
        .map_err(|e| store_error(&e))?;
    tracing::info!(existed, decisions, "profile and its decisions erased");
    Ok(StatusCode::NO_CONTENT)
}
