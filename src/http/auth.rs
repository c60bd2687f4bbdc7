//! API keys in two scopes. Storefront keys call the storefront API (recommend, events);
//! admin keys call the admin API and, being the stronger secret, the storefront API too.
//! With no key configured at all, access is open (the demo default; start-up warns).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::{ApiError, ErrorCode};
use crate::config::AuthSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Storefront,
    Admin,
}

/// Who is calling, as the key check found: handlers decide from it what a request may
/// change (a request extension on every keyed route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured (the demo): everyone is trusted, as the admin API is open.
    Open,
    /// A publishable storefront key: anyone may have it.
    Storefront,
    Admin,
}

impl Caller {
    /// Whether the caller may change what money depends on (orders, spend, segments,
    /// tier) and name customers without a token.
    pub const fn is_trusted(self) -> bool {
        match self {
            Caller::Open | Caller::Admin => true,
            Caller::Storefront => false,
        }
    }
}

/// The key from an `Authorization` header: the scheme is case-insensitive (RFC 9110).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

pub struct Keys {
    storefront: Vec<Vec<u8>>,
    admin: Vec<Vec<u8>>,
}

impl Keys {
    pub fn new(settings: &AuthSettings) -> Self {
        let bytes = |keys: &[String]| keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        Self {
            storefront: bytes(&settings.storefront_keys),
            admin: bytes(&settings.admin_keys),
        }
    }

    pub fn is_open(&self) -> bool {
        self.storefront.is_empty() && self.admin.is_empty()
    }

    /// Checks `Authorization: Bearer KEY` against the keys of `scope`.
    pub fn check(&self, header: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::Open);
        }
        let Some(header) = header else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "send Authorization: Bearer <key>",
            ));
        };
        let Some(key) = bearer(header) else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "send Authorization: Bearer <key>",
            ));
        };
        let matches = |keys: &[Vec<u8>]| {
            // Every key is compared, so timing does not tell which one matched.
            keys.iter()
                .fold(subtle::Choice::from(0), |acc, k| {
                    acc | k.as_slice().ct_eq(key.as_bytes())
                })
                .into()
        };
        let admin: bool = matches(&self.admin);
        let storefront: bool = matches(&self.storefront);
        match scope {
            Scope::Admin | Scope::Storefront if admin => Ok(Caller::Admin),
            Scope::Storefront if storefront => Ok(Caller::Storefront),
            Scope::Admin if storefront => Err(ApiError::new(
                ErrorCode::WrongScope,
                "this key may not call the admin API",
            )),
            Scope::Admin | Scope::Storefront => {
                Err(ApiError::new(ErrorCode::InvalidApiKey, "unknown API key"))
            }
        }
    }
}

async fn require(
    keys: &Keys,
    scope: Scope,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = keys.check(header, scope)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

pub async fn storefront(
    State(keys): State<Arc<Keys>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(&keys, Scope::Storefront, req, next).await
}

pub async fn admin(
    State(keys): State<Arc<Keys>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(&keys, Scope::Admin, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&AuthSettings {
            storefront_keys: vec!["sf-key-0123456789".into()],
            admin_keys: vec!["admin-key-0123456789".into()],
        })
    }

    #[test]
    fn each_scope_takes_its_keys_and_admin_keys_take_both() {
        let k = keys();
        assert!(
            k.check(Some("Bearer sf-key-0123456789"), Scope::Storefront)
                .is_ok()
        );
        assert!(
            k.check(Some("Bearer admin-key-0123456789"), Scope::Storefront)
                .is_ok()
        );
        assert!(
            k.check(Some("Bearer admin-key-0123456789"), Scope::Admin)
                .is_ok()
        );
        assert_eq!(
            k.check(Some("bearer sf-key-0123456789"), Scope::Storefront)
                .ok(),
            Some(Caller::Storefront),
            "the scheme is case-insensitive"
        );
        assert_eq!(
            k.check(Some("BEARER  admin-key-0123456789 "), Scope::Admin)
                .ok(),
            Some(Caller::Admin)
        );
        let wrong = k
            .check(Some("Bearer sf-key-0123456789"), Scope::Admin)
            .unwrap_err();
        assert_eq!(wrong.code, ErrorCode::WrongScope);
    }

    #[test]
    fn missing_and_unknown_keys_are_told_apart() {
        let k = keys();
        assert_eq!(
            k.check(None, Scope::Storefront).unwrap_err().code,
            ErrorCode::MissingApiKey
        );
        assert_eq!(
            k.check(Some("Basic abc"), Scope::Storefront)
                .unwrap_err()
                .code,
            ErrorCode::MissingApiKey
        );
        assert_eq!(
            k.check(Some("Bearer nope"), Scope::Storefront)
                .unwrap_err()
                .code,
            ErrorCode::InvalidApiKey
        );
    }

    #[test]
    fn no_keys_means_open_access() {
        let k = Keys::new(&AuthSettings::default());
        assert!(k.check(None, Scope::Admin).is_ok());
    }
}
