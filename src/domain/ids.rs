//! Visitor identifiers. Raw ids are checked once here (1-128 characters, no control
//! characters) and then only travel as [`VisitorKey`]s.

use std::fmt;

/// An id as the storefront sent it: 1 to 128 characters, none of them control
/// characters or whitespace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VisitorId(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("must be 1 to 128 characters long")]
    Length,
    #[error("must not contain control characters or whitespace")]
    Characters,
}

pub const MAX_ID_CHARS: usize = 128;

impl VisitorId {
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        check_id(raw)?;
        Ok(Self(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rule every externally supplied id follows (visitors, products, categories).
pub fn check_id(raw: &str) -> Result<(), InvalidId> {
    let chars = raw.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(InvalidId::Length);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidId::Characters);
    }
    Ok(())
}

/// Debug output never shows the raw id: ids can be customer numbers or emails.
impl fmt::Debug for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VisitorId(..)")
    }
}

/// Which profile a request reads: a known customer's, else the anonymous session's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VisitorKey {
    Customer(VisitorId),
    Session(VisitorId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(VisitorId::parse("cust-1").is_ok());
        assert!(VisitorId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(VisitorId::parse(""), Err(InvalidId::Length));
        assert_eq!(VisitorId::parse(&"x".repeat(129)), Err(InvalidId::Length));
        assert_eq!(VisitorId::parse("a b"), Err(InvalidId::Characters));
        assert_eq!(VisitorId::parse("a\u{0}b"), Err(InvalidId::Characters));
    }

    #[test]
    fn debug_output_hides_the_raw_id() {
        let id = VisitorId::parse("alice@example.com").unwrap();
        assert!(!format!("{id:?}").contains("alice"));
    }
}
