//! Console sessions: an admin key is exchanged for a signed cookie naming the key's
//! label, when the session ends and a random id; every form carries a token bound to
//! the session (CSRF). Any replica with the same admin keys accepts the cookie, and
//! changing the keys ends every session; signing out revokes the session's id in the
//! store, so a copy of the cookie is refused on every replica too.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "vitrine_console";
/// The sign-in form's token before there is a session (double-submit).
pub const SIGN_IN_COOKIE: &str = "vitrine_console_sign_in";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Who is signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The admin key's label (`open` when no keys are configured).
    pub label: String,
    pub expires: i64,
    nonce: String,
}

impl Session {
    /// The session's random id (what signing out revokes).
    pub fn id(&self) -> &str {
        &self.nonce
    }
}

pub struct Sessions {
    mac: Hmac<Sha256>,
    ttl_s: i64,
}

impl Sessions {
    /// Sessions signed with a key derived from the admin keys (with none, the open
    /// console's: a key of this process's own, so no other site can know its forms'
    /// token).
    pub fn new<'k>(admin_keys: impl Iterator<Item = &'k [u8]>, ttl_s: i64) -> Self {
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(b"vitrine console sessions")
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let mut any = false;
        for k in admin_keys {
            derive.update(&(k.len() as u64).to_le_bytes());
            derive.update(k);
            any = true;
        }
        if !any {
            derive.update(uuid::Uuid::new_v4().as_bytes());
            derive.update(uuid::Uuid::new_v4().as_bytes());
        }
        let key = derive.finalize().into_bytes();
        Self {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
            ttl_s,
        }
    }

    fn sign(&self, what: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(what.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// A new session for `label`, from `now` (Unix seconds): the cookie's value.
    pub fn issue(&self, label: &str, now: i64) -> (String, Session) {
        let nonce = B64.encode(uuid::Uuid::new_v4().as_bytes());
        let session = Session {
            label: label.to_owned(),
            expires: now.saturating_add(self.ttl_s),
            nonce,
        };
        let payload = format!(
            "{}.{}.{}",
            B64.encode(session.label.as_bytes()),
            session.expires,
            session.nonce
        );
        let value = format!("{payload}.{}", self.sign(&payload));
        (value, session)
    }

    /// The session a cookie value names, unless it is forged or over.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let (payload, signature) = value.rsplit_once('.')?;
        let expected = self.sign(payload);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return None;
        }
        let mut parts = payload.splitn(3, '.');
        let label = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        (now < expires).then_some(Session {
            label,
            expires,
            nonce,
        })
    }

    /// The session of an open console (no keys configured): one for everyone, so its
    /// forms' token holds from one page to the next.
    pub fn open(&self) -> Session {
        Session {
            label: "open".to_owned(),
            expires: i64::MAX,
            nonce: "open".to_owned(),
        }
    }

    /// The token the session's forms carry.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign(&format!("csrf.{}", session.nonce))
    }

    /// Whether a form's token is the session's.
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.as_bytes()))
    }

    pub fn ttl_s(&self) -> i64 {
        self.ttl_s
    }
}

/// A fresh random token (the sign-in form's).
pub fn random_token() -> String {
    B64.encode(uuid::Uuid::new_v4().as_bytes())
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_verifies_until_it_ends_and_only_with_the_same_keys() {
        let keys: [&[u8]; 1] = [b"admin-key"];
        let sessions = Sessions::new(keys.into_iter(), 3600);
        let (cookie, session) = sessions.issue("ops:team", 1_000);
        assert_eq!(sessions.verify(&cookie, 1_001), Some(session.clone()));
        assert_eq!(sessions.verify(&cookie, 4_600), None, "over");
        let other = Sessions::new([&b"another-key"[..]].into_iter(), 3600);
        assert_eq!(other.verify(&cookie, 1_001), None, "other keys");
        let mut forged = cookie.clone();
        forged.replace_range(0..1, if cookie.starts_with('A') { "B" } else { "A" });
        assert_eq!(sessions.verify(&forged, 1_001), None);
        let token = sessions.csrf(&session);
        assert!(sessions.csrf_ok(&session, &token));
        let (_, second) = sessions.issue("ops:team", 1_000);
        assert!(!sessions.csrf_ok(&second, &token), "bound to its session");
    }
}
