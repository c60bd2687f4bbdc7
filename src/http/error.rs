//! The API's error table. Clients switch on `code`, so codes are API: stable, snake_case,
//! each with one HTTP status. 5xx answers never carry internal detail; the cause is
//! logged once, here.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The table: each row a code's variant, its string (what clients switch on) and its
/// HTTP status. Everything else about codes (the list of all of them, the status, the
/// string) is derived from it, so a new code is one new row and nothing can be missed.
macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", BAD_REQUEST;
    MalformedQuery => "malformed_query", BAD_REQUEST;
    MalformedPayload => "malformed_payload", BAD_REQUEST;
    MalformedRequest => "malformed_request", BAD_REQUEST;
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT;
    InvalidSignature => "invalid_signature", UNAUTHORIZED;
    StaleSignature => "stale_signature", UNAUTHORIZED;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    InvalidBody => "invalid_body", UNPROCESSABLE_ENTITY;
    MissingVisitorId => "missing_visitor_id", UNPROCESSABLE_ENTITY;
    InvalidId => "invalid_id", UNPROCESSABLE_ENTITY;
    InvalidPlacement => "invalid_placement", UNPROCESSABLE_ENTITY;
    MissingProductId => "missing_product_id", UNPROCESSABLE_ENTITY;
    MissingCategory => "missing_category", UNPROCESSABLE_ENTITY;
    MissingQuery => "missing_query", UNPROCESSABLE_ENTITY;
    InvalidCategory => "invalid_category", UNPROCESSABLE_ENTITY;
    UnknownCategory => "unknown_category", UNPROCESSABLE_ENTITY;
    InvalidQuery => "invalid_query", UNPROCESSABLE_ENTITY;
    UnsupportedCurrency => "unsupported_currency", UNPROCESSABLE_ENTITY;
    MixedCurrency => "mixed_currency", UNPROCESSABLE_ENTITY;
    InvalidLimit => "invalid_limit", UNPROCESSABLE_ENTITY;
    InvalidCart => "invalid_cart", UNPROCESSABLE_ENTITY;
    InvalidCandidates => "invalid_candidates", UNPROCESSABLE_ENTITY;
    InvalidContext => "invalid_context", UNPROCESSABLE_ENTITY;
    InvalidRuleset => "invalid_ruleset", UNPROCESSABLE_ENTITY;
    InvalidCodes => "invalid_codes", UNPROCESSABLE_ENTITY;
    RulesetNotFound => "ruleset_not_found", NOT_FOUND;
    RulesetMoved => "ruleset_moved", PRECONDITION_FAILED;
    DecisionNotFound => "decision_not_found", NOT_FOUND;
    ExperimentNotFound => "experiment_not_found", NOT_FOUND;
    VersionsNotKept => "versions_not_kept", CONFLICT;
    InvalidParameter => "invalid_parameter", UNPROCESSABLE_ENTITY;
    BatchTooLarge => "batch_too_large", UNPROCESSABLE_ENTITY;
    InvalidProduct => "invalid_product", UNPROCESSABLE_ENTITY;
    MissingApiKey => "missing_api_key", UNAUTHORIZED;
    InvalidApiKey => "invalid_api_key", UNAUTHORIZED;
    InvalidCustomerToken => "invalid_customer_token", UNAUTHORIZED;
    WrongScope => "wrong_scope", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    ProfileNotFound => "profile_not_found", NOT_FOUND;
    ProductNotFound => "product_not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    Overloaded => "overloaded", SERVICE_UNAVAILABLE;
    NotReady => "not_ready", SERVICE_UNAVAILABLE;
    StoreUnavailable => "store_unavailable", SERVICE_UNAVAILABLE;
    UpstreamUnavailable => "upstream_unavailable", SERVICE_UNAVAILABLE;
    Internal => "internal", INTERNAL_SERVER_ERROR;
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

/// Every error answer: `{"error": {"code", "message", "errors"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
struct ErrorDetail<'a> {
    /// The stable code: what a client branches on.
    #[schema(schema_with = error_codes)]
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a serde_json::Value>,
}

/// The error codes, as the schema's enumeration.
fn error_codes() -> utoipa::openapi::Object {
    super::schema::string_enum(ErrorCode::ALL.iter().map(|c| c.as_str()))
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
            Json(ErrorBody {
                error: ErrorDetail {
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
    // JSON is already in the shape; HTML is a console page written for people.
    let shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if shaped {
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

    #[test]
    fn every_code_is_in_the_readme_with_its_status() {
        let readme = include_str!("../../README.md");
        let documented: std::collections::HashMap<&str, u16> = readme
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| ")?.split(" | ");
                let status: u16 = cells.next()?.trim().parse().ok()?;
                Some(
                    cells
                        .next()?
                        .split('`')
                        .skip(1)
                        .step_by(2)
                        .map(move |code| (code, status)),
                )
            })
            .flatten()
            .collect();
        for &c in ErrorCode::ALL {
            assert_eq!(
                documented.get(c.as_str()),
                Some(&c.status().as_u16()),
                "{} in the README's error table with its status",
                c.as_str()
            );
        }
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
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
