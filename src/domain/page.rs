//! The page a request or an event comes from: where the visitor is, on what, in which
//! currency and channel. One shape and one parser for `/v1/recommend`,
//! `/v1/cart/evaluate` and `/v1/events`: parsed once at the edge, typed after.

use serde::Deserialize;

use super::audience::{Audience, Country, Device};
use super::money::Currency;

/// The page context as sent: every field optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPageContext {
    pub country: Option<String>,
    pub currency: Option<String>,
    pub channel: Option<String>,
    pub device: Option<String>,
    pub locale: Option<String>,
    /// The visitor is about to leave (the storefront detected it): exit-intent offers.
    pub exit_intent: Option<bool>,
}

/// The page context, checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageContext {
    pub country: Option<Country>,
    /// The currency the visitor shops in, when the storefront names one.
    pub currency: Option<Currency>,
    pub channel: Option<String>,
    /// The device as the storefront names it (rules compare it as sent).
    pub device: Option<String>,
    /// Its class, when the name is one Vitrine knows (`mobile`, `ios`, `desktop`, ...).
    pub device_class: Option<Device>,
    pub locale: Option<String>,
    pub exit_intent: bool,
}

/// What is wrong with a page context, as a sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidContext(String);

fn text(name: &str, raw: Option<String>, max: usize) -> Result<Option<String>, InvalidContext> {
    match raw {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(v))
        }
        Some(_) => Err(InvalidContext(format!(
            "context.{name} must be 1 to {max} visible ASCII characters"
        ))),
    }
}

impl PageContext {
    /// Checks every field: the country an ISO 3166-1 alpha-2 code, the currency an ISO
    /// 4217 code, the other names short visible ASCII.
    pub fn parse(raw: RawPageContext) -> Result<Self, InvalidContext> {
        let country = raw
            .country
            .as_deref()
            .map(Country::parse)
            .transpose()
            .map_err(|_| {
                InvalidContext("context.country must be an ISO 3166-1 alpha-2 code".into())
            })?;
        let currency = raw
            .currency
            .map(|c| Currency::parse(&c))
            .transpose()
            .map_err(|e| InvalidContext(format!("context.currency: {e}")))?;
        let device = text("device", raw.device, 32)?;
        Ok(Self {
            country,
            currency,
            channel: text("channel", raw.channel, 32)?,
            device_class: device.as_deref().and_then(Device::classify),
            device,
            locale: text("locale", raw.locale, 35)?,
            exit_intent: raw.exit_intent.unwrap_or(false),
        })
    }

    /// The visitor's audience: the country, and the device's class when it has one.
    pub fn audience(&self) -> Audience {
        Audience {
            country: self.country,
            device: self.device_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_is_typed_once_and_its_audience_follows() {
        let page = PageContext::parse(RawPageContext {
            country: Some("gb".into()),
            currency: Some("GBP".into()),
            device: Some("iOS".into()),
            exit_intent: Some(true),
            ..RawPageContext::default()
        })
        .unwrap();
        assert_eq!(
            page.country.map(|c| c.as_str().to_string()),
            Some("GB".into())
        );
        assert_eq!(page.device.as_deref(), Some("iOS"));
        assert_eq!(page.audience().device, Some(Device::App));
        assert!(page.exit_intent);
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = |raw: RawPageContext| PageContext::parse(raw).unwrap_err().to_string();
        assert!(
            bad(RawPageContext {
                country: Some("GBR".into()),
                ..RawPageContext::default()
            })
            .starts_with("context.country")
        );
        assert!(
            bad(RawPageContext {
                currency: Some("pounds".into()),
                ..RawPageContext::default()
            })
            .starts_with("context.currency")
        );
        assert!(
            bad(RawPageContext {
                device: Some("a b".into()),
                ..RawPageContext::default()
            })
            .starts_with("context.device")
        );
        assert!(
            bad(RawPageContext {
                locale: Some("x".repeat(36)),
                ..RawPageContext::default()
            })
            .starts_with("context.locale")
        );
    }
}
