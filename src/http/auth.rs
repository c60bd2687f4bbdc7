//! API keys in two scopes. Storefront keys call the storefront API (recommend, events);
//! admin keys call the admin API and, being the stronger secret, the storefront API too.
//! With no key configured at all, access is open (the demo default; start-up warns).
//!
//! A storefront key is publishable (it ships in browser JavaScript), so it proves
//! nothing about who the visitor is. A customer is named on the storefront API only with
//! a customer token the shop's backend signed: `base64url(customer_id|expiry)` `.`
//! `base64url(HMAC-SHA256(auth.customer_token_secret, customer_id|expiry))`, unpadded
//! ([`CustomerTokens`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
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

/// A handler's caller, as the key check recorded it; a route the check did not run on
/// is treated as the least trusted caller.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::Storefront))
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
    /// Admin keys: the key, and the label the change log names its holder by (an entry
    /// `label:key`; `admin` without one).
    admin: Vec<Vec<u8>>,
    labels: Vec<String>,
}

impl Keys {
    pub fn new(settings: &AuthSettings) -> Self {
        let (labels, admin) = settings
            .admin_keys
            .iter()
            .map(|k| {
                let (label, key) = AuthSettings::labelled(k.expose());
                (label.to_owned(), key.as_bytes().to_vec())
            })
            .unzip();
        Self {
            storefront: settings
                .storefront_keys
                .iter()
                .map(|k| k.expose().as_bytes().to_vec())
                .collect(),
            admin,
            labels,
        }
    }

    /// The admin keys (what console sessions are signed with).
    pub fn admin_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.admin.iter().map(Vec::as_slice)
    }

    /// The label of the admin key `key`, if it is one (every key is compared, so timing
    /// does not tell which one matched).
    pub fn admin_label(&self, key: &str) -> Option<&str> {
        let mut found = None;
        for (k, label) in self.admin.iter().zip(&self.labels) {
            if bool::from(k.as_slice().ct_eq(key.as_bytes())) {
                found = Some(label.as_str());
            }
        }
        found
    }

    pub fn is_open(&self) -> bool {
        self.storefront.is_empty() && self.admin.is_empty()
    }

    /// Who an admin call is, for the change log: its key's label (`open` on an open
    /// service).
    pub fn admin_who(&self, authorization: Option<&str>) -> String {
        if self.is_open() {
            return "open".into();
        }
        authorization
            .and_then(bearer)
            .and_then(|k| self.admin_label(k))
            .unwrap_or("admin")
            .to_owned()
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

/// The header that may carry a customer token (instead of the `customer_token` field).
pub const CUSTOMER_TOKEN_HEADER: &str = "x-vitrine-customer-token";

/// Longest token accepted (a 128-character id and its signature fit well within).
const MAX_TOKEN_LEN: usize = 512;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signed customer identity for the storefront API.
pub struct CustomerTokens {
    /// `None`: no secret configured, tokens are neither required nor checked.
    mac: Option<Hmac<Sha256>>,
}

impl CustomerTokens {
    pub fn new(secret: &str) -> Self {
        Self {
            mac: (!secret.is_empty()).then(|| {
                <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.mac.is_some()
    }

    /// A token for `customer_id` valid until `expires` (Unix seconds); `None` without a
    /// secret. What a shop's backend does (tests and examples sign with it).
    pub fn sign(&self, customer_id: &str, expires: i64) -> Option<String> {
        let mut mac = self.mac.clone()?;
        let payload = format!("{customer_id}|{expires}");
        mac.update(payload.as_bytes());
        Some(format!(
            "{}.{}",
            B64.encode(payload.as_bytes()),
            B64.encode(mac.finalize().into_bytes())
        ))
    }

    /// Whether `token` names `customer_id` and is signed and unexpired at `now`.
    pub fn verify(&self, token: &str, customer_id: &str, now: i64) -> bool {
        let Some(mac) = &self.mac else {
            return false;
        };
        if token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let Some((payload, signature)) = token.split_once('.') else {
            return false;
        };
        let (Ok(payload), Ok(signature)) = (B64.decode(payload), B64.decode(signature)) else {
            return false;
        };
        let mut mac = mac.clone();
        mac.update(&payload);
        // verify_slice compares in constant time.
        if mac.verify_slice(&signature).is_err() {
            return false;
        }
        let Ok(payload) = std::str::from_utf8(&payload) else {
            return false;
        };
        let Some((id, expires)) = payload.rsplit_once('|') else {
            return false;
        };
        id == customer_id && expires.parse::<i64>().is_ok_and(|e| e > now)
    }

    /// The check on a storefront request: a storefront-key caller naming a customer
    /// must prove it with a token for that customer (from the request, else the
    /// header), once a secret is configured. Admin keys and open access are trusted.
    pub fn check(
        &self,
        caller: Caller,
        customer_id: Option<&str>,
        token: Option<&str>,
        headers: &axum::http::HeaderMap,
        now: i64,
    ) -> Result<(), ApiError> {
        let Some(customer_id) = customer_id else {
            return Ok(());
        };
        if !self.enabled() || caller.is_trusted() {
            return Ok(());
        }
        let token = token.or_else(|| {
            headers
                .get(CUSTOMER_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
        });
        match token {
            Some(t) if self.verify(t.trim(), customer_id, now) => Ok(()),
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidCustomerToken,
                "the customer token is not valid for this customer, or has expired",
            )),
            None => Err(ApiError::new(
                ErrorCode::InvalidCustomerToken,
                "naming a customer with a storefront key needs a customer token signed by the shop",
            )),
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
            ..AuthSettings::default()
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

    /// The README's test vector.
    #[test]
    fn customer_tokens_match_the_documented_vector_and_check_everything() {
        let t = CustomerTokens::new("vitrine-docs-secret-0123456789abcdef");
        let token = t.sign("c0000001", 1_893_456_000).unwrap();
        assert_eq!(
            token,
            "YzAwMDAwMDF8MTg5MzQ1NjAwMA.y14KA9x5SyaTlqrATq5WbU0NX7PL7fYV8zwdJceErJE"
        );
        let now = 1_800_000_000;
        assert!(t.verify(&token, "c0000001", now));
        assert!(!t.verify(&token, "c0000002", now), "another customer");
        assert!(!t.verify(&token, "c0000001", 1_893_456_000), "expired");
        let other = CustomerTokens::new("another-secret-0123456789");
        assert!(!other.verify(&token, "c0000001", now), "another secret");
        let forged = format!("{}.{}", B64.encode("c0000001|9999999999"), &token[27..]);
        assert!(!t.verify(&forged, "c0000001", now), "a changed expiry");
        for garbage in ["", ".", "abc", "abc.def", "%%.%%", &"a".repeat(600)] {
            assert!(!t.verify(garbage, "c0000001", now), "{garbage}");
        }
        assert!(!CustomerTokens::new("").verify(&token, "c0000001", now));
    }

    #[test]
    fn no_keys_means_open_access() {
        let k = Keys::new(&AuthSettings::default());
        assert!(k.check(None, Scope::Admin).is_ok());
    }
}
