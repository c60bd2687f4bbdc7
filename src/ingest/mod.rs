//! Where data enters Vitrine: storefront events, and the generated demo shop.

pub mod buffer;
pub mod catalog;
pub mod demo;
pub mod events;
pub mod shopify;
