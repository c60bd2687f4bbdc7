//! Console changes to the live ruleset: an edit of the live document, validated whole,
//! published over the version it was made on and logged with who made it, in one step.
//! When another change lands first (another merchandiser, another replica), the edit is
//! made again on it, so no change overwrites another.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{now, refused};
use crate::decide::Ruleset;
use crate::decide::live::{Change, LiveRules, PublishError};
use crate::http::state::AppState;

/// Tries when another change lands between reading the live ruleset and publishing.
const TRIES: usize = 3;

/// What an edit did: as people read it, and the part changed before and after.
pub(super) struct Edited {
    pub what: String,
    pub before: Value,
    pub after: Value,
}

/// Why a change was not made, on the refused page (nothing was published).
pub(super) fn not_changed(status: StatusCode, why: impl std::fmt::Display) -> Response {
    refused(status, format!("Nothing was changed: {why}"))
}

/// Validates a document off the async workers (a large one takes a while): the
/// compiled ruleset, or every problem as `path: message`.
pub(super) async fn validated(doc: Value) -> Result<(Value, Ruleset), Vec<(String, String)>> {
    let checked = tokio::task::spawn_blocking(move || {
        let compiled = LiveRules::validate(&doc);
        (doc, compiled)
    })
    .await;
    match checked {
        Ok((doc, Ok(compiled))) => Ok((doc, compiled)),
        Ok((_, Err(errors))) => Err(errors.into_iter().map(|e| (e.path, e.message)).collect()),
        Err(e) => Err(vec![("$".into(), format!("not checked: {e}"))]),
    }
}

/// Publishes what `edit` makes of the live ruleset, as `who`'s change.
pub(super) async fn edit_live(
    state: &AppState,
    who: &str,
    edit: impl Fn(&mut Value) -> Result<Edited, String>,
) -> Result<Arc<Ruleset>, Response> {
    for _ in 0..TRIES {
        let live = state.rules.load();
        let mut doc = live.source.clone();
        let edited = edit(&mut doc).map_err(|why| not_changed(StatusCode::CONFLICT, why))?;
        let (doc, compiled) = validated(doc).await.map_err(|errors| {
            let all = errors
                .iter()
                .map(|(path, message)| format!("{path}: {message}"))
                .collect::<Vec<_>>()
                .join("; ");
            not_changed(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the ruleset would not be valid ({all})."),
            )
        })?;
        let change = Change {
            before: edited.before,
            after: edited.after,
            ..Change::new(now(), who, edited.what)
        };
        match state
            .rules
            .publish_change(compiled, &doc, &live.version, change)
            .await
        {
            Ok(published) => {
                tracing::info!(label = %who, ruleset_version = %published.version, "console change");
                return Ok(published);
            }
            // Another change landed first: take it, and make this one again on it.
            Err(PublishError::Moved(_)) => {
                state
                    .rules
                    .sync()
                    .await
                    .map_err(|e| not_changed(StatusCode::SERVICE_UNAVAILABLE, e))?;
            }
            Err(e) => return Err(publish_refused(e)),
        }
    }
    Err(not_changed(
        StatusCode::CONFLICT,
        "the ruleset kept changing while this change was made; reload and try again.",
    ))
}

/// A publish or rollback that did not happen, as the console says it.
pub(super) fn publish_refused(e: PublishError) -> Response {
    match e {
        PublishError::Store(e) => not_changed(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is unavailable ({e})."),
        ),
        PublishError::Moved(_) => not_changed(
            StatusCode::CONFLICT,
            format!("{e}. Reload to see it, and make the change on it."),
        ),
        PublishError::UnknownVersion(_) => not_changed(StatusCode::NOT_FOUND, e),
        other => not_changed(StatusCode::UNPROCESSABLE_ENTITY, other),
    }
}
