//! Per-request bookkeeping in one middleware: the request id, the request's span (so
//! every line logged inside it carries the id), the request metrics (count and latency
//! by route template, method and status) and one debug log line.
//! Also load shedding: past `server.max_concurrency` requests in flight, new API
//! requests get 503 at once instead of queueing until they time out.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::error::{ApiError, ErrorCode};

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: the caller's `X-Request-Id` when it is sane, else a new one.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

fn incoming_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| Arc::from(v))
}

pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = incoming_id(&req).unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method());
    req.extensions_mut().insert(RequestId(id.clone()));

    // Every line logged while the request runs carries its id and route.
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut response = next.run(req).instrument(span).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    metrics::histogram!("vitrine_http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(elapsed.as_secs_f64());
    metrics::counter!("vitrine_http_requests_total", "route" => route.clone(), "method" => method, "status" => status_label(status))
        .increment(1);
    tracing::debug!(request_id = %id, %method, %route, status, latency_us = elapsed.as_micros() as u64, "request");
    response
}

/// The method as a metric label: one of the standard methods, else `other`, so a client
/// inventing methods cannot grow the metrics.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The status as a metric label: the code itself for the statuses Vitrine answers
/// with, else its class, so the label has a closed set of values.
fn status_label(status: u16) -> &'static str {
    const CODES: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (500, "500"),
        (503, "503"),
    ];
    CODES.iter().find(|(c, _)| *c == status).map_or(
        match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        |(_, label)| label,
    )
}

pub async fn shed(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match permits.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => overloaded(),
    }
}

/// The answer to a request shed for want of a permit (counted).
pub fn overloaded() -> Response {
    metrics::counter!("vitrine_http_shed_total").increment(1);
    ApiError::new(
        ErrorCode::Overloaded,
        "too many requests in flight; retry shortly",
    )
    .into_response()
}
