//! Ops endpoints: `/livez` (the process answers), `/readyz` (the store answers) and
//! `/metrics` (Prometheus text format).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::error::{ApiError, ErrorCode};
use super::state::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `{"status": "ok"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Live {
    #[schema(schema_with = ok)]
    status: &'static str,
}

fn ok() -> utoipa::openapi::Object {
    super::schema::string_enum(["ok"])
}

fn ready() -> utoipa::openapi::Object {
    super::schema::string_enum(["ready"])
}

/// Ready: the store answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    #[schema(schema_with = ready)]
    status: &'static str,
    /// The profile store: `embedded`, `redis` or `memory`.
    store: &'static str,
    /// Set while the stored live ruleset cannot be used (the last good one serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    ruleset: Option<RulesetProblem>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RulesetProblem {
    problem: String,
}

/// The process answers.
#[utoipa::path(get, path = "/livez", tag = "ops", responses((status = 200, body = Live)))]
pub(crate) async fn livez() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// The process can serve: its profile store answers within a second.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, body = Ready),
        (status = 503, description = "not_ready, with the reason", body = super::error::ErrorBody)
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let backend = state.store.backend();
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Ready {
            status: "ready",
            store: backend,
            // Serving, on an older ruleset: ready, with the problem for the operator.
            ruleset: state.rules.problem().map(|p| RulesetProblem {
                problem: (*p).clone(),
            }),
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

/// Every `vitrine_*` metric, in Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
