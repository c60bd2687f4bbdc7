//! Who is looking, coarsely: the visitor's country and device class, as a request or an
//! event states them. A visitor with no history of their own gets what is trending
//! among visitors like them (same country, same kind of device).

use serde::{Deserialize, Serialize};

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country([u8; 2]);

impl Country {
    /// Two ASCII letters, either case.
    pub fn parse(s: &str) -> Result<Self, InvalidCountry> {
        match s.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(InvalidCountry),
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters, checked by `parse`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a country is an ISO 3166-1 alpha-2 code")]
pub struct InvalidCountry;

impl TryFrom<String> for Country {
    type Error = InvalidCountry;
    fn try_from(s: String) -> Result<Self, InvalidCountry> {
        Self::parse(&s)
    }
}

impl From<Country> for String {
    fn from(c: Country) -> Self {
        c.as_str().to_owned()
    }
}

/// The kind of device, from the free-form `device` a storefront sends. Values it does
/// not recognise have no class (and no trend of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
    App,
}

impl Device {
    pub fn classify(s: &str) -> Option<Self> {
        const NAMES: [(&str, Device); 9] = [
            ("desktop", Device::Desktop),
            ("web", Device::Desktop),
            ("mobile", Device::Mobile),
            ("phone", Device::Mobile),
            ("smartphone", Device::Mobile),
            ("tablet", Device::Tablet),
            ("app", Device::App),
            ("ios", Device::App),
            ("android", Device::App),
        ];
        NAMES
            .iter()
            .find(|(name, _)| s.eq_ignore_ascii_case(name))
            .map(|(_, d)| *d)
    }
}

/// The audience a request or an event belongs to; either part may be unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Audience {
    pub country: Option<Country>,
    pub device: Option<Device>,
}

/// One audience segment that has a trend of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Segment {
    Country(Country),
    Device(Device),
}

impl Audience {
    pub fn is_known(&self) -> bool {
        self.country.is_some() || self.device.is_some()
    }

    /// The segments this audience is part of: its country, then its device class.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + use<> {
        self.country
            .map(Segment::Country)
            .into_iter()
            .chain(self.device.map(Segment::Device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_two_letters_upper_cased() {
        assert_eq!(Country::parse("de").unwrap().as_str(), "DE");
        for bad in ["", "D", "DEU", "D1", "é"] {
            assert!(Country::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_are_classified_case_insensitively() {
        assert_eq!(Device::classify("Mobile"), Some(Device::Mobile));
        assert_eq!(Device::classify("iOS"), Some(Device::App));
        assert_eq!(Device::classify("fridge"), None);
        let a = Audience {
            country: Country::parse("fr").ok(),
            device: Some(Device::Tablet),
        };
        assert_eq!(a.segments().count(), 2);
        assert!(!Audience::default().is_known());
    }
}
