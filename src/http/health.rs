//! Ops endpoints: `/livez` (the process answers), `/readyz` (the store answers) and
//! `/metrics` (Prometheus text format).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::{ApiError, ErrorCode};
use super::state::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let backend = state.store.backend();
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(match state.rules.problem() {
            // Serving, on an older ruleset: ready, with the problem for the operator.
            Some(problem) => {
                json!({"status": "ready", "store": backend, "ruleset": {"problem": *problem}})
            }
            None => json!({"status": "ready", "store": backend}),
        })),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("store {backend}: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("store {backend}: no answer within 1s"),
        )),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
