//! Where data enters Vitrine: storefront events, platform webhooks, bulk imports, and
//! the generated demo shop.

pub mod bigcommerce;
pub mod buffer;
pub mod catalog;
pub mod demo;
pub mod events;
pub mod identity;
pub mod import;
pub mod journal;
pub mod log;
pub mod shopify;
