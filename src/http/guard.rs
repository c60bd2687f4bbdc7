//! What a request must get through before it may hold anything scarce: its body is read
//! whole, under the route's size limit and `server.body_read_timeout_ms`, and only then
//! does it take a permit ([`super::observe::shed`]).
//!
//! Layered after the key check, this means a caller without a valid key is answered
//! before a byte of its body is read, and a caller with one cannot hold an API permit
//! by sending its body slowly: the permit is taken once the body is in memory, for the
//! time the handler runs. On the storefront API, the hot path, the three steps are one
//! middleware ([`storefront`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use super::auth::{Keys, Scope};
use super::error::{ApiError, ErrorCode};

#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BodyLimits {
    pub fn new(max_bytes: usize, settings: &crate::config::ServerSettings) -> Self {
        Self {
            max_bytes,
            timeout: Duration::from_millis(settings.body_read_timeout_ms),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "request body is over the size limit",
    )
}

/// Reads the body into memory (413 over the limit, 408 when it does not arrive in time)
/// and hands the request on with the buffered body.
pub async fn read_body(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    Ok(next.run(buffered(req, limits).await?).await)
}

/// What the storefront API checks before its handlers.
pub struct Storefront {
    pub keys: Arc<Keys>,
    pub limits: BodyLimits,
    pub permits: Arc<Semaphore>,
}

/// The storefront API's guard: the key (before anything is read), then the body (read
/// whole, under its limits), then a permit (held while the handler runs).
pub async fn storefront(
    State(guard): State<Arc<Storefront>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match guard.keys.check(header, Scope::Storefront) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
        }
        Err(e) => return e.into_response(),
    }
    let req = match buffered(req, guard.limits).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    match guard.permits.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => super::observe::overloaded(),
    }
}

/// The request with its body read into memory.
async fn buffered(req: Request, limits: BodyLimits) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return Ok(Request::from_parts(parts, body));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(
        limits.timeout,
        Limited::new(body, limits.max_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                "the request body could not be read",
            ));
        }
        Err(_) => {
            metrics::counter!("vitrine_http_connections_closed_total", "reason" => "body_read")
                .increment(1);
            return Err(ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            ));
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
