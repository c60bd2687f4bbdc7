//! `POST /v1/events`: one event (a JSON object) or a batch (a JSON array, up to
//! `events.max_batch`). Answers 202 with a result per event, in order.
//!
//! Every event is validated on its own; a rejected one is reported with its code and
//! nothing of it is applied. When the store cannot take the batch the answer is 503
//! with `Retry-After`: resending the same batch is safe, because events are idempotent
//! on `event_id`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use super::extract::JsonBody;
use super::state::AppState;
use crate::ingest::events::{Event, Prepared, RawEvent, Rejection};
use crate::recommend::model::unix_now;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// What became of a batch: counts, then each event in the order sent.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventsReport)]
pub(crate) struct Report {
    accepted: usize,
    /// Accepted while the store is unavailable; written when it returns.
    buffered: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<EventResult>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// `accepted` (applied), `buffered` (the store is down: journaled, applied when it
    /// returns), `duplicate` (applied before) or `rejected`.
    #[schema(schema_with = event_statuses)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<EventError>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventError {
    #[schema(schema_with = rejection_codes)]
    code: &'static str,
    message: String,
}

/// One event or an array of them (up to `events.max_batch`), each checked on its own.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The document's shape of the body, which is parsed event by event.
enum EventsBody {
    One(Box<RawEvent>),
    Many(Vec<RawEvent>),
}

fn event_statuses() -> utoipa::openapi::Object {
    super::schema::string_enum(["accepted", "buffered", "duplicate", "rejected"])
}

fn rejection_codes() -> utoipa::openapi::Object {
    super::schema::string_enum(Rejection::ALL.map(Rejection::as_str))
}

/// Storefront events (views, searches, carts, purchases, impressions, clicks): each is
/// applied to its visitor's profile once (by `event_id`) and learned from at once.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "storefront",
    request_body = EventsBody,
    responses(
        (status = 202, description = "What became of each event", body = Report),
        (status = 400, description = "Malformed JSON", body = super::error::ErrorBody),
        (status = 401, description = "No key, an unknown key, or a bad customer token", body = super::error::ErrorBody),
        (status = 413, description = "A body over server.body_limit_bytes", body = super::error::ErrorBody),
        (status = 415, description = "Not JSON", body = super::error::ErrorBody),
        (status = 422, description = "Not an event or an array, or over events.max_batch", body = super::error::ErrorBody),
        (status = 503, description = "Overloaded, or the store is down and the journal full: retry the batch", body = super::error::ErrorBody),
    ),
    security((), ("storefront_key" = []))
)]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    // Only a trusted caller's purchases are orders (orders, spend, lifecycle); a
    // publishable key's still teach the models.
    let trusted = caller.is_trusted();
    let items = match body {
        Value::Array(items) => items,
        single @ Value::Object(_) => vec![single],
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "expected an event object or an array of events",
            ));
        }
    };
    if items.len() > state.settings.events.max_batch {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "at most {} events per request",
                state.settings.events.max_batch
            ),
        ));
    }
    let now = unix_now();
    // Every event naming a customer must prove it (a storefront key with the token
    // secret set); one that does not refuses the whole request, so nothing of it lands.
    for item in &items {
        let field = |name: &str| item.get(name).and_then(Value::as_str);
        state.tokens.check(
            caller,
            field("customer_id"),
            field("customer_token"),
            &headers,
            now,
        )?;
    }
    let mut results: Vec<EventResult> = Vec::with_capacity(items.len());
    let mut valid: Vec<Event> = Vec::with_capacity(items.len());
    let mut slots: Vec<usize> = Vec::with_capacity(items.len());
    for item in items {
        let event_id = item
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let parsed = RawEvent::deserialize(item)
            .map_err(|e| (Rejection::InvalidEvent, e.to_string()))
            .and_then(|raw| {
                raw.validate(now, state.settings.events.max_age_s)
                    .map_err(|r| (r, rejection_message(r).to_owned()))
            });
        match parsed {
            Ok(mut event) => {
                event.trusted = trusted;
                slots.push(results.len());
                metrics::counter!("vitrine_events_total", "type" => event.behaviour.as_str(), "result" => "valid")
                    .increment(1);
                valid.push(event);
                results.push(EventResult {
                    event_id,
                    status: "accepted",
                    error: None,
                });
            }
            Err((code, message)) => {
                metrics::counter!("vitrine_events_rejected_total", "code" => code.as_str())
                    .increment(1);
                results.push(EventResult {
                    event_id,
                    status: "rejected",
                    error: Some(EventError {
                        code: code.as_str(),
                        message,
                    }),
                });
            }
        }
    }
    if !valid.is_empty() {
        let snapshot = state.snapshot.load();
        let batch = Prepared::new(
            &state.hasher,
            &snapshot.catalog,
            &valid,
            state.learning.origin(),
        );
        drop(snapshot);
        // Behind events already waiting for the store, a batch waits too (order).
        let stored = if state.buffer.is_empty() {
            batch.apply(state.store.as_ref()).await
        } else {
            Err(crate::store::StoreError::Unavailable(
                "events are buffered".into(),
            ))
        };
        match stored {
            Ok(fresh) => {
                state.learning.learn(batch.lessons(&fresh));
                for ((slot, new), event) in slots.iter().zip(fresh).zip(&valid) {
                    if !new {
                        results[*slot].status = "duplicate";
                    } else if let Some(touch) = event.touch(&state.hasher) {
                        state.attribution.touched(touch);
                    }
                }
            }
            Err(e) => {
                if let Err(refused) = state.buffer.push(batch).await {
                    tracing::warn!(error = %e, refused = %refused, "events not buffered; refusing the batch");
                    return Err(ApiError::new(
                        ErrorCode::StoreUnavailable,
                        "the profile store is unavailable and the events cannot be buffered; retry the batch",
                    ));
                }
                for slot in &slots {
                    results[*slot].status = "buffered";
                }
            }
        }
    }
    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    state
        .pulse
        .events(now, (count("accepted") + count("buffered")) as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(Report {
            accepted: count("accepted"),
            buffered: count("buffered"),
            duplicates: count("duplicate"),
            rejected: count("rejected"),
            results,
        }),
    ))
}

fn rejection_message(r: Rejection) -> &'static str {
    match r {
        Rejection::InvalidEvent => "the event does not have the documented shape",
        Rejection::MissingEventId => "event_id is required",
        Rejection::InvalidEventId => {
            "event_id is 1 to 128 characters, without whitespace or control characters"
        }
        Rejection::InvalidEventType => {
            "type must be one of view, search, add_to_cart, remove_from_cart, checkout, purchase, impression, click"
        }
        Rejection::MissingVisitorId => "customer_id or session_id is required",
        Rejection::InvalidId => {
            "ids are 1 to 128 characters, without whitespace or control characters"
        }
        Rejection::MissingProductId => "this event type needs product_id",
        Rejection::MissingQuery => "search events need a query",
        Rejection::InvalidQuery => "a query is 1 to 256 characters, without control characters",
        Rejection::InvalidQuantity => "quantity must be between 1 and 100000",
        Rejection::InvalidPosition => "position is the product's place in the answer, 0 to 99",
        Rejection::InvalidPrice => {
            "price is {amount: integer minor units >= 0, currency: ISO 4217}"
        }
        Rejection::InvalidTimestamp => {
            "timestamp (Unix seconds or milliseconds) is too old or in the future"
        }
        Rejection::InvalidContext => {
            "context is {country: ISO 3166-1 alpha-2, device: 1 to 32 visible ASCII characters}"
        }
    }
}
