//! The decision log's admin API: one decision as a person reads it, a visitor's
//! decisions (found through the keyed hash of the id given), a replay; drift; and the
//! experiments measured from the decisions, with their results.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiError, ErrorCode};
use super::extract::{PathId, QueryParams};
use super::recommend_api::parse_visitors;
use super::state::AppState;
use crate::audit::{AuditError, ReplayAnswer};
use crate::decide::record::DecisionRecord;
use crate::domain::Placement;

/// A visitor's decisions listed at once, at most.
pub const MAX_LIST: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/decisions", get(list))
        .route("/admin/v1/decisions/{decision_id}", get(one))
        .route("/admin/v1/decisions/{decision_id}/replay", post(replay))
        .route("/admin/v1/drift", get(drift))
        .route("/admin/v1/experiments", get(experiments))
        .route(
            "/admin/v1/experiments/{experiment_id}/results",
            get(results),
        )
}

/// The live ruleset's experiments, and the holdout.
async fn experiments(State(state): State<AppState>) -> Json<serde_json::Value> {
    let rules = state.rules.load();
    Json(serde_json::json!({
        "ruleset_version": rules.version,
        "experiments": crate::audit::experiments::list(&rules),
    }))
}

/// One experiment's results, from the counts every replica shares.
async fn results(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<crate::audit::experiments::Results>, ApiError> {
    let rules = state.rules.load();
    match crate::audit::experiments::results(state.catalog.store(), &rules, &id).await {
        Ok(Some(r)) => Ok(Json(r)),
        Ok(None) => Err(ApiError::new(
            ErrorCode::ExperimentNotFound,
            format!("the live ruleset defines no experiment {id:?}"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "experiment counts unavailable");
            Err(ApiError::new(
                ErrorCode::StoreUnavailable,
                "the experiment counts are unavailable",
            ))
        }
    }
}

/// Each feature's PSI over the window, against the serving model version's reference.
async fn drift(State(state): State<AppState>) -> Json<crate::audit::drift::Report> {
    Json(state.drift.check(crate::domain::time::unix_now()))
}

fn decision_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "a decision id is a UUID (as answered in decision_id)",
        )
    })
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::NotFound(id) => ApiError::new(
                ErrorCode::DecisionNotFound,
                format!("no decision {id} is kept"),
            ),
            AuditError::VersionsNotKept(what) => ApiError::new(
                ErrorCode::VersionsNotKept,
                format!("the decision names versions no longer kept: {what}"),
            ),
            AuditError::Replay(e) => ApiError::new(ErrorCode::VersionsNotKept, e.to_string()),
            AuditError::Store(e) => {
                tracing::warn!(error = %e, "decision log unavailable");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the decision log is unavailable",
                )
            }
            AuditError::Unreadable(e) => ApiError::internal(&e),
        }
    }
}

async fn one(
    State(state): State<AppState>,
    PathId(raw): PathId,
) -> Result<Json<DecisionRecord>, ApiError> {
    let id = decision_id(&raw)?;
    Ok(Json(state.audit.get(&id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    customer_id: Option<String>,
    session_id: Option<String>,
    placement: Option<String>,
    /// Unix milliseconds, or RFC 3339.
    since: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if p.customer_id.is_some() == p.session_id.is_some() {
        return Err(ApiError::new(
            ErrorCode::MissingVisitorId,
            "name one visitor: customer_id or session_id",
        ));
    }
    let (visitor, _) = parse_visitors(p.customer_id.as_deref(), p.session_id.as_deref())?;
    let placement = p
        .placement
        .as_deref()
        .map(|s| {
            s.parse::<Placement>()
                .map_err(|()| ApiError::new(ErrorCode::InvalidPlacement, "unknown placement"))
        })
        .transpose()?;
    let since = match p.since.as_deref() {
        None => 0,
        Some(s) => crate::domain::time::parse_time_ms(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "since is Unix milliseconds or an RFC 3339 time",
            )
        })?,
    };
    let limit = match p.limit {
        None => 50,
        Some(l) if (1..=MAX_LIST as i64).contains(&l) => l as usize,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("limit must be between 1 and {MAX_LIST}"),
            ));
        }
    };
    let key = state.hasher.key(&visitor);
    let records = state
        .audit
        .of_visitor(&key, placement, since, limit)
        .await?;
    Ok(Json(serde_json::json!({ "decisions": records })))
}

async fn replay(
    State(state): State<AppState>,
    PathId(raw): PathId,
) -> Result<Json<ReplayAnswer>, ApiError> {
    let id = decision_id(&raw)?;
    let serving = state.snapshot.load_full();
    let answer = state
        .audit
        .replay(&id, &serving, &state.rules, &state.policy, &state.banners)
        .await?;
    if !answer.identical {
        tracing::warn!(decision_id = %id, differences = answer.differences.len(), "replay differs from the record");
    }
    Ok(Json(answer))
}
