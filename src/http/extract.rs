//! Our own JSON and query extractors, so that every malformed input is answered in the
//! API's error shape (never axum's plain-text rejections).
//!
//! JSON that does not parse is 400 `malformed_json`; JSON that parses but does not fit
//! the schema (a wrong type, an unknown field) is 422 `invalid_body`, with serde's
//! message, which names the field.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body is over the size limit",
                )
            } else {
                ApiError::new(ErrorCode::MalformedJson, "could not read the request body")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            Category::Io | Category::Syntax | Category::Eof => {
                ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {e}"))
            }
        }
    })
}

pub(crate) fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(Ok(v)) = value.map(|v| v.to_str()) else {
        return false;
    };
    let mime = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Query-string parameters. Unknown parameters are ignored: GET URLs pick up cache
/// busters and tracking parameters on their way through CDNs.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedQuery,
                    format!("malformed query string: {e}"),
                )
            })
    }
}

/// One id from the path (`/admin/v1/products/{id}`), as a string. A path segment that
/// does not decode (`%FF`) is 422 `invalid_id`, in the error shape.
pub struct PathId(pub String);

impl<S> FromRequestParts<S> for PathId
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| PathId(id))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidId,
                    "the id in the path is not valid percent-encoded UTF-8",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "json"] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn syntax_errors_and_schema_errors_are_told_apart() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            limit: u32,
        }
        assert_eq!(
            parse_json::<T>(b"{").unwrap_err().code,
            ErrorCode::MalformedJson
        );
        assert_eq!(
            parse_json::<T>(b"{\"limit\":\"x\"}").unwrap_err().code,
            ErrorCode::InvalidBody
        );
    }
}
