//! The pieces every part of a ruleset is compiled with: JSON paths in errors, money,
//! time windows, expressions, ids and basis points. Each part (`price`, `promo`,
//! `merch`, `content`) compiles its own rules with these; `ruleset` compiles the
//! document from the parts.

use serde::Deserialize;
use serde_json::Value;

use super::expr::{self, Errors, Expr, Scope};
use crate::domain::money::InvalidMoney;
use crate::domain::{Money, RawMoney};

/// From and until (either open), Unix seconds; `until` is exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn contains(&self, now: i64) -> bool {
        self.from.is_none_or(|f| now >= f) && self.until.is_none_or(|u| now < u)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    from: Option<String>,
    until: Option<String>,
}

/// Deserializes `v` into `T`, reporting the failing field's path under `path`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    v: &Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            let message = e.into_inner().to_string();
            errors.push(&at, message);
            None
        }
    }
}

pub(super) fn money(raw: &RawMoney, path: &str, errors: &mut Errors) -> Option<Money> {
    match raw.parse() {
        Ok(m) => Some(m),
        Err(e @ InvalidMoney::Amount) => {
            errors.push(&format!("{path}.amount"), e.to_string());
            None
        }
        Err(e @ InvalidMoney::Currency(_)) => {
            errors.push(&format!("{path}.currency"), e.to_string());
            None
        }
    }
}

pub(super) fn window(raw: &RawWindow, path: &str, errors: &mut Errors) -> Window {
    let mut time = |field: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| {
            let t = crate::domain::time::parse_rfc3339(s);
            if t.is_none() {
                errors.push(&format!("{path}.{field}"), "expects an RFC 3339 time");
            }
            t
        })
    };
    let w = Window {
        from: time("from", &raw.from),
        until: time("until", &raw.until),
    };
    if let (Some(f), Some(u)) = (w.from, w.until)
        && f >= u
    {
        errors.push(path, "from must be before until");
    }
    w
}

pub(super) fn expression(v: Option<&Value>, scope: Scope, path: &str, errors: &mut Errors) -> Expr {
    v.map_or(Expr::Const(true), |v| expr::compile(v, scope, path, errors))
}

pub(super) fn check_id(id: &str, path: &str, errors: &mut Errors) {
    if crate::domain::ids::check_id(id).is_err() {
        errors.push(path, "an id is 1 to 128 characters, without whitespace");
    }
}

pub(super) fn bps(v: i64, path: &str, errors: &mut Errors) -> i64 {
    if !(0..=10_000).contains(&v) {
        errors.push(path, "basis points from 0 to 10000");
    }
    v.clamp(0, 10_000)
}

pub(super) const fn full_bps() -> i64 {
    10_000
}

/// The category handle and its ancestors, nearest first (`a/b/c`, `a/b`, `a`).
pub fn ancestors(handle: &str) -> impl Iterator<Item = &str> {
    std::iter::once(handle).chain(handle.rmatch_indices('/').map(move |(i, _)| &handle[..i]))
}

pub(super) fn unique<'a>(ids: impl Iterator<Item = &'a str>, path: &str, errors: &mut Errors) {
    let mut seen = rustc_hash::FxHashSet::default();
    for id in ids {
        if !seen.insert(id) {
            errors.push(path, format!("id {id:?} is used twice"));
        }
    }
}
