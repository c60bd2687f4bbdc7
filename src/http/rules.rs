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
        .route("/admin/v1/ruleset/changes", get(changes))
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
        e @ PublishError::Moved(_) => ApiError::new(
            ErrorCode::RulesetMoved,
            format!("{e}; nothing was published: read the live ruleset and apply the change to it"),
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

/// Who made an admin call (its key's label), for the change log.
fn who(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    state.keys.admin_who(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Publishes; with `If-Match: <version>` (`none`: no ruleset yet), only over that live
/// version (412 `ruleset_moved` otherwise), so two editors never overwrite each other.
async fn publish(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let now = unix_now();
    let (document, compiled) = compiled(&headers, body).await?;
    let compiled = compiled.map_err(|e| publish_error(PublishError::Invalid(e)))?;
    let who = who(&state, &headers);
    let expected = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned());
    let rules = match expected {
        Some(expected) => {
            let change = crate::decide::live::Change::new(now, &who, "published a ruleset");
            state
                .rules
                .publish_change(compiled, &document, &expected, change)
                .await
        }
        None => state.rules.publish_by(compiled, &document, &who, now).await,
    }
    .map_err(publish_error)?;
    Ok(Json(
        json!({"version": rules.version, "published_at": format_rfc3339(now)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    limit: Option<i64>,
}

/// Change log entries one call lists at most.
const MAX_CHANGES: i64 = 1_000;

/// The change log, newest first: who changed the live ruleset, when, what, before and
/// after.
async fn changes(
    State(state): State<AppState>,
    super::extract::QueryParams(query): super::extract::QueryParams<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query.limit {
        None => 100,
        Some(n) if (1..=MAX_CHANGES).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("limit must be between 1 and {MAX_CHANGES}"),
            ));
        }
    };
    let list = state.rules.changes(limit).await.map_err(publish_error)?;
    Ok(Json(json!({
        "changes": list
            .into_iter()
            .map(|c| json!({
                "at": format_rfc3339(c.at),
                "who": c.who,
                "what": c.what,
                "from_version": c.from_version,
                "to_version": c.to_version,
                "before": c.before,
                "after": c.after,
            }))
            .collect::<Vec<_>>(),
    })))
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
    headers: axum::http::HeaderMap,
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
        .rollback_by(target.as_deref(), &who(&state, &headers), unix_now())
        .await
        .map_err(publish_error)?;
    Ok(Json(json!({"version": rules.version})))
}
