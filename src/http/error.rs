//! The API's error table. Clients switch on `code`, so codes are API: stable, snake_case,
//! each with one HTTP status. 5xx answers never carry internal detail; the cause is
//! logged once, here.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    MalformedQuery,
    MalformedPayload,
    MalformedRequest,
    RequestTimeout,
    InvalidSignature,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidBody,
    MissingVisitorId,
    InvalidId,
    InvalidPlacement,
    MissingProductId,
    MissingCategory,
    MissingQuery,
    InvalidCategory,
    UnknownCategory,
    InvalidQuery,
    UnsupportedCurrency,
    MixedCurrency,
    InvalidLimit,
    InvalidCart,
    InvalidCandidates,
    InvalidContext,
    InvalidRuleset,
    InvalidCodes,
    RulesetNotFound,
    BatchTooLarge,
    InvalidProduct,
    MissingApiKey,
    InvalidApiKey,
    InvalidCustomerToken,
    WrongScope,
    NotFound,
    ProfileNotFound,
    ProductNotFound,
    MethodNotAllowed,
    Overloaded,
    NotReady,
    StoreUnavailable,
    UpstreamUnavailable,
    Internal,
}

impl ErrorCode {
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedJson
            | ErrorCode::MalformedQuery
            | ErrorCode::MalformedPayload
            | ErrorCode::MalformedRequest => StatusCode::BAD_REQUEST,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::MissingApiKey
            | ErrorCode::InvalidApiKey
            | ErrorCode::InvalidSignature
            | ErrorCode::InvalidCustomerToken => StatusCode::UNAUTHORIZED,
            ErrorCode::WrongScope => StatusCode::FORBIDDEN,
            ErrorCode::NotFound
            | ErrorCode::ProfileNotFound
            | ErrorCode::ProductNotFound
            | ErrorCode::RulesetNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidBody
            | ErrorCode::MissingVisitorId
            | ErrorCode::InvalidId
            | ErrorCode::InvalidPlacement
            | ErrorCode::MissingProductId
            | ErrorCode::MissingCategory
            | ErrorCode::MissingQuery
            | ErrorCode::InvalidCategory
            | ErrorCode::UnknownCategory
            | ErrorCode::InvalidQuery
            | ErrorCode::UnsupportedCurrency
            | ErrorCode::MixedCurrency
            | ErrorCode::InvalidLimit
            | ErrorCode::InvalidCart
            | ErrorCode::InvalidCandidates
            | ErrorCode::InvalidContext
            | ErrorCode::InvalidRuleset
            | ErrorCode::InvalidCodes
            | ErrorCode::BatchTooLarge
            | ErrorCode::InvalidProduct => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Overloaded
            | ErrorCode::NotReady
            | ErrorCode::StoreUnavailable
            | ErrorCode::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MalformedQuery => "malformed_query",
            ErrorCode::MalformedPayload => "malformed_payload",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::MissingVisitorId => "missing_visitor_id",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidPlacement => "invalid_placement",
            ErrorCode::MissingProductId => "missing_product_id",
            ErrorCode::MissingCategory => "missing_category",
            ErrorCode::MissingQuery => "missing_query",
            ErrorCode::InvalidCategory => "invalid_category",
            ErrorCode::UnknownCategory => "unknown_category",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::UnsupportedCurrency => "unsupported_currency",
            ErrorCode::MixedCurrency => "mixed_currency",
            ErrorCode::InvalidLimit => "invalid_limit",
            ErrorCode::InvalidCart => "invalid_cart",
            ErrorCode::InvalidCandidates => "invalid_candidates",
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::InvalidRuleset => "invalid_ruleset",
            ErrorCode::InvalidCodes => "invalid_codes",
            ErrorCode::RulesetNotFound => "ruleset_not_found",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::InvalidProduct => "invalid_product",
            ErrorCode::MissingApiKey => "missing_api_key",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::InvalidCustomerToken => "invalid_customer_token",
            ErrorCode::WrongScope => "wrong_scope",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ProfileNotFound => "profile_not_found",
            ErrorCode::ProductNotFound => "product_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// Every problem found, each with where it is (an invalid ruleset).
    pub errors: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: None,
        }
    }

    /// With the list of every problem found.
    #[must_use]
    pub fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(errors);
        self
    }

    /// A 500 whose cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a serde_json::Value>,
}

/// A decision the core refused: the client's to fix, each with its own code.
impl From<crate::decide::Refusal> for ApiError {
    fn from(r: crate::decide::Refusal) -> Self {
        use crate::decide::Refusal;
        match r {
            Refusal::UnknownCategory(name) => ApiError::new(
                ErrorCode::UnknownCategory,
                format!("no category {name:?} in the catalog (by handle or path)"),
            ),
            Refusal::UnknownProduct(id) => ApiError::new(
                ErrorCode::InvalidCart,
                format!("product {id:?} is not in the catalog"),
            ),
            Refusal::UnsupportedCurrency(c) => ApiError::new(
                ErrorCode::UnsupportedCurrency,
                format!("the shop does not sell in {c}: no product or price list is priced in it"),
            ),
            Refusal::Unpriced {
                line,
                currency,
                named: true,
            } => ApiError::new(
                ErrorCode::UnsupportedCurrency,
                format!(
                    "product {:?} has no price in {currency} for this visitor (its price is in {})",
                    line.product_id, line.currency
                ),
            ),
            Refusal::Unpriced {
                line,
                currency,
                named: false,
            } => ApiError::new(
                ErrorCode::MixedCurrency,
                format!(
                    "the cart is priced in {currency} and product {:?} in {}: name context.currency to price every line in one",
                    line.product_id, line.currency
                ),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        metrics::counter!("vitrine_http_errors_total", "code" => self.code.as_str()).increment(1);
        let mut response = (
            status,
            Json(Body {
                error: Inner {
                    code: self.code.as_str(),
                    message: &self.message,
                    errors: self.errors.as_ref(),
                },
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The last word on every answer: an error that does not come from [`ApiError`] (a
/// rejection inside a library, say) is rewritten into the error shape, so clients
/// never see a plain-text error body.
pub fn error_shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::InvalidBody,
        503 => ErrorCode::Overloaded,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::MalformedRequest,
    };
    tracing::debug!(
        status = status.as_u16(),
        "a plain error answer was rewritten"
    );
    let mut shaped = ApiError::new(code, default_message(code)).into_response();
    // Keep the status the library chose (e.g. 400 for an undecodable path).
    *shaped.status_mut() = status;
    shaped
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "no such route",
        ErrorCode::MethodNotAllowed => "method not allowed on this route",
        ErrorCode::RequestTimeout => "the request did not arrive in time",
        ErrorCode::PayloadTooLarge => "request body is over the size limit",
        ErrorCode::UnsupportedMediaType => "unsupported content type",
        ErrorCode::InvalidBody => "the request does not have the documented shape",
        ErrorCode::Overloaded => "the service is busy; retry shortly",
        ErrorCode::Internal => "internal error",
        _ => "the request could not be understood",
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 37] = [
        ErrorCode::InvalidCustomerToken,
        ErrorCode::MalformedRequest,
        ErrorCode::RequestTimeout,
        ErrorCode::InvalidRuleset,
        ErrorCode::InvalidCodes,
        ErrorCode::RulesetNotFound,
        ErrorCode::MalformedPayload,
        ErrorCode::InvalidSignature,
        ErrorCode::InvalidProduct,
        ErrorCode::ProductNotFound,
        ErrorCode::ProfileNotFound,
        ErrorCode::BatchTooLarge,
        ErrorCode::StoreUnavailable,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::MalformedJson,
        ErrorCode::MalformedQuery,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidBody,
        ErrorCode::MissingVisitorId,
        ErrorCode::InvalidId,
        ErrorCode::InvalidPlacement,
        ErrorCode::MissingProductId,
        ErrorCode::MissingCategory,
        ErrorCode::MissingQuery,
        ErrorCode::InvalidLimit,
        ErrorCode::InvalidCart,
        ErrorCode::InvalidCandidates,
        ErrorCode::InvalidContext,
        ErrorCode::MissingApiKey,
        ErrorCode::InvalidApiKey,
        ErrorCode::WrongScope,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Overloaded,
        ErrorCode::NotReady,
        ErrorCode::Internal,
    ];

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ALL {
            assert!(seen.insert(c.as_str()), "{} twice", c.as_str());
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_')
            );
        }
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let r = ApiError::new(ErrorCode::Overloaded, "busy").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
