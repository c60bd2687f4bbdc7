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
    pub fn check(&self, header: Option<&str>, scope: Scope) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let Some(header) = header else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "send Authorization: Bearer <key>",
            ));
        };
        let Some(key) = header.strip_prefix("Bearer ").map(str::trim) else {
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
            Scope::Admin if admin => Ok(()),
            Scope::Storefront if admin || storefront => Ok(()),
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
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    keys.check(header, scope)?;
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
