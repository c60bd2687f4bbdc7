//! Where data enters Vitrine: storefront events, platform webhooks, bulk imports, and
//! the generated demo shop.

pub mod attribution;
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
pub mod webhooks;

/// Installs ring as the process's TLS crypto provider (outbound HTTPS to platform APIs).
/// Idempotent; the first install wins.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
