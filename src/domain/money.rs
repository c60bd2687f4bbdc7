//! Money as integer minor units plus an ISO 4217 currency code. Never floats.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 alphabetic code, stored inline as three upper-case ASCII letters so
/// that copying a price never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a currency is three letters (ISO 4217), got {0:?}")]
pub struct InvalidCurrency(pub String);

impl Currency {
    /// ISO 4217's "no currency", for amounts whose currency is not known.
    pub const XXX: Currency = Currency(*b"XXX");

    /// Parses a three-letter code; lower case is accepted and normalised.
    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(InvalidCurrency(code.chars().take(16).collect()));
        }
        Ok(Self([
            bytes[0].to_ascii_uppercase(),
            bytes[1].to_ascii_uppercase(),
            bytes[2].to_ascii_uppercase(),
        ]))
    }

    /// Digits after the decimal point in the currency's minor unit (ISO 4217).
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    pub fn as_str(&self) -> &str {
        // Invariant: three ASCII letters, so always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 code, as a string.
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{3}$"))
            .description(Some("ISO 4217 currency code"))
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in the currency's minor unit (pence, cents): `1999 GBP` is £19.99.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

/// Money as people read it: `12.50 GBP` (the currency's own decimals, then its code).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.currency.minor_digits();
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        if digits == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(digits);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency,
            width = digits as usize
        )
    }
}

/// Money as a client writes it: `{"amount": minor units, "currency": "GBP"}`, in events,
/// imports and rulesets alike.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMoney {
    pub amount: i64,
    pub currency: String,
}

/// Why written money is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMoney {
    #[error("must be 0 to {} minor units", Money::MAX_AMOUNT)]
    Amount,
    #[error(transparent)]
    Currency(#[from] InvalidCurrency),
}

impl RawMoney {
    /// A known currency, and an amount of `0..=Money::MAX_AMOUNT` minor units.
    pub fn parse(&self) -> Result<Money, InvalidMoney> {
        let currency = Currency::parse(&self.currency)?;
        if Money::in_range(self.amount) {
            Ok(Money::new(self.amount, currency))
        } else {
            Err(InvalidMoney::Amount)
        }
    }
}

impl Money {
    /// The largest amount a price, cost, discount, shipping rate or order total may
    /// have (10^11 minor units: a billion pounds). With cart quantities up to
    /// 100,000 and 200 lines, no sum of them can overflow an `i64`: every amount taken
    /// in is checked against it.
    pub const MAX_AMOUNT: i64 = 100_000_000_000;

    pub const fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Whether `amount` is one Vitrine takes: `0..=MAX_AMOUNT`.
    pub const fn in_range(amount: i64) -> bool {
        amount >= 0 && amount <= Self::MAX_AMOUNT
    }

    /// Parses a decimal string as platforms send prices (`"49.00"`, `"1299.5"`, `"7"`)
    /// exactly into minor units, without floating point. Extra fractional digits are
    /// accepted only when they are zeros (BigCommerce writes `"59.9900"`); anything
    /// that would need rounding is refused.
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Self, InvalidAmount> {
        let digits = currency.minor_digits();
        let t = text.trim();
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let frac = if frac.len() > digits as usize
            && frac.bytes().skip(digits as usize).all(|b| b == b'0')
        {
            &frac[..digits as usize]
        } else {
            frac
        };
        let ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !ok(whole) || !ok(frac) || frac.len() > digits as usize {
            return Err(InvalidAmount(text.chars().take(32).collect()));
        }
        let scale = 10i64.pow(digits);
        let whole: i64 = whole.parse().map_err(|_| InvalidAmount(text.into()))?;
        let mut frac_value: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| InvalidAmount(text.into()))?
        };
        for _ in frac.len()..digits as usize {
            frac_value *= 10;
        }
        let amount = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_value))
            .filter(|&a| a <= Self::MAX_AMOUNT)
            .ok_or_else(|| InvalidAmount(text.chars().take(32).collect()))?;
        Ok(Self::new(if negative { -amount } else { amount }, currency))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal amount: {0:?}")]
pub struct InvalidAmount(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_currency_is_normalised_to_upper_case() {
        assert_eq!(Currency::parse("gbp").unwrap().as_str(), "GBP");
    }

    #[test]
    fn a_currency_that_is_not_three_letters_is_refused() {
        for bad in ["", "GB", "GBPX", "G1P", "££"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_strings_parse_exactly_into_minor_units() {
        let gbp = Currency::parse("GBP").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::parse_decimal("49.00", gbp).unwrap().amount, 4900);
        assert_eq!(Money::parse_decimal("0.1", gbp).unwrap().amount, 10);
        assert_eq!(Money::parse_decimal("7", gbp).unwrap().amount, 700);
        assert_eq!(Money::parse_decimal("-2.5", gbp).unwrap().amount, -250);
        assert_eq!(Money::parse_decimal("1500", jpy).unwrap().amount, 1500);
        assert_eq!(Money::parse_decimal("1.234", kwd).unwrap().amount, 1234);
        assert_eq!(Money::parse_decimal("59.9900", gbp).unwrap().amount, 5999);
        assert_eq!(Money::parse_decimal("1500.00", jpy).unwrap().amount, 1500);
        assert_eq!(
            Money::parse_decimal("1000000000", gbp).unwrap().amount,
            Money::MAX_AMOUNT
        );
        for bad in [
            "1.9901",
            "",
            "1.999",
            "abc",
            "1e3",
            "1.2.3",
            ".5",
            "99999999999999999999",
            "1000000001",
        ] {
            assert!(Money::parse_decimal(bad, gbp).is_err(), "{bad}");
        }
        assert!(Money::parse_decimal("1.5", jpy).is_err());
    }

    #[test]
    fn money_serialises_as_integer_minor_units() {
        let m = Money::new(1999, Currency::parse("GBP").unwrap());
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":1999,"currency":"GBP"}"#
        );
    }
}
