//! Profile keys: a keyed hash of the visitor id, so no raw customer or session id is
//! ever written to a store (a Redis key, a value, a file).
//!
//! `HMAC-SHA256(secret, kind || id)`, truncated to 128 bits: unguessable without the
//! secret, stable across replicas that share it, and short (16 bytes per key).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::VisitorKey;

#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProfileKey(pub [u8; 16]);

impl ProfileKey {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The key in hex, where a store names a profile in a value (never the raw id).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key from its [`ProfileKey::to_hex`] form.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(k))
    }

    /// A 64-bit id derived from the key, used to mark a merged session in a profile.
    pub fn short_id(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().unwrap_or([0; 8]))
    }
}

impl fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..")
    }
}

pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    pub fn key(&self, visitor: &VisitorKey) -> ProfileKey {
        let (kind, id) = match visitor {
            VisitorKey::Customer(id) => (b'c', id.as_str()),
            VisitorKey::Session(id) => (b's', id.as_str()),
        };
        self.hash(kind, id.as_bytes())
    }

    /// Hashes any external id (event ids, webhook ids, order ids) to 64 bits, keyed so
    /// that they cannot be reversed either.
    /// The key an email names (trimmed, lower case): an alias of a customer's key, in a
    /// namespace of its own so no customer id can collide with it. The address itself
    /// is never stored.
    pub fn email_key(&self, email: &str) -> ProfileKey {
        self.hash(b'e', email.trim().to_lowercase().as_bytes())
    }

    pub fn id64(&self, namespace: u8, id: &str) -> u64 {
        let k = self.hash(namespace, id.as_bytes());
        u64::from_le_bytes(k.0[..8].try_into().unwrap_or([0; 8]))
    }

    fn hash(&self, kind: u8, id: &[u8]) -> ProfileKey {
        let mut mac = self.mac.clone();
        mac.update(&[kind, 0]);
        mac.update(id);
        let out = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&out[..16]);
        ProfileKey(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VisitorId;

    #[test]
    fn keys_depend_on_the_secret_the_kind_and_the_id() {
        let a = KeyHasher::new(b"secret-a");
        let b = KeyHasher::new(b"secret-b");
        let c1 = VisitorKey::Customer(VisitorId::parse("1").unwrap());
        let s1 = VisitorKey::Session(VisitorId::parse("1").unwrap());
        assert_eq!(a.key(&c1), a.key(&c1));
        assert_ne!(a.key(&c1), a.key(&s1));
        assert_ne!(a.key(&c1), b.key(&c1));
        assert!(
            !format!("{:?}", a.key(&c1)).contains('1') || format!("{:?}", a.key(&c1)).len() == 14
        );
    }
}
