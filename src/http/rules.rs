//! The ruleset admin API (admin keys): validate (a dry run), publish, read, list the
//! versions, roll back. A publish is validated whole first: an invalid ruleset is 422
//! `invalid_ruleset` with every problem and its JSON path, and the live one stays.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::decide::live::{LiveRules, PublishError};
use crate::domain::time::format_rfc3339;
use crate::recommend::model::unix_now;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/admin/v1/ruleset", get(live).put(publish))
        .route("/admin/v1/ruleset/validate", post(validate))
        .route("/admin/v1/ruleset/versions", get(versions))
        .route("/admin/v1/ruleset/rollback", post(rollback))
        // Price lists make long documents.
        .route_layer(axum::extract::DefaultBodyLimit::max(
            state.settings.rules.body_limit_bytes,
        ));
    super::read_body(state, state.settings.rules.body_limit_bytes, routes)
}

fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Invalid(errors) => ApiError::new(
            ErrorCode::InvalidRuleset,
            format!(
                "the ruleset has {} problems; nothing was published",
                errors.len()
            ),
        )
        .with_errors(json!(errors)),
        PublishError::UnknownVersion(v) => ApiError::new(
            ErrorCode::RulesetNotFound,
            format!("no stored ruleset version {v:?}"),
        ),
        PublishError::NoPrevious => ApiError::new(
            ErrorCode::RulesetNotFound,
            "no earlier ruleset version to roll back to",
        ),
        PublishError::Store(e) => {
            tracing::warn!(error = %e, "ruleset store call failed");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the store is unavailable; nothing changed",
            )
        }
    }
}

/// A ruleset document parsed and compiled off the async workers: a large document takes
/// a while, and the service's other requests (and `/livez`) must not wait for it.
async fn compiled(
    headers: &axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<
    (
        Value,
        Result<crate::decide::Ruleset, Vec<crate::decide::expr::RuleError>>,
    ),
    ApiError,
> {
    if !super::extract::is_json(headers.get(axum::http::header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ));
    }
    tokio::task::spawn_blocking(move || {
        let document: Value = super::extract::parse_json(&body)?;
        let compiled = LiveRules::validate(&document);
        Ok((document, compiled))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

/// A dry run: 200 either way, with `valid` and every problem.
async fn validate(
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (_, compiled) = compiled(&headers, body).await?;
    Ok(Json(match compiled {
        Ok(r) => json!({"valid": true, "version": r.version, "errors": []}),
        Err(errors) => json!({"valid": false, "errors": errors}),
    }))
}

async fn publish(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let now = unix_now();
    let (document, compiled) = compiled(&headers, body).await?;
    let compiled = compiled.map_err(|e| publish_error(PublishError::Invalid(e)))?;
    let rules = state
        .rules
        .publish_compiled(compiled, &document, now)
        .await
        .map_err(publish_error)?;
    Ok(Json(
        json!({"version": rules.version, "published_at": format_rfc3339(now)}),
    ))
}

async fn live(State(state): State<AppState>) -> Json<Value> {
    let rules = state.rules.load();
    Json(json!({"version": rules.version, "ruleset": rules.source}))
}

async fn versions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state.rules.versions().await.map_err(publish_error)?;
    Ok(Json(json!({
        "live": state.rules.load().version,
        "versions": list
            .into_iter()
            .map(|(v, at)| json!({"version": v, "published_at": format_rfc3339(at)}))
            .collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: Option<String>,
}

/// The body is optional: empty rolls back to the version published before the live one.
async fn rollback(
    State(state): State<AppState>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<RollbackBody>(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))?
            .version
    };
    let rules = state
        .rules
        .rollback(target.as_deref())
        .await
        .map_err(publish_error)?;
    Ok(Json(json!({"version": rules.version})))
}
