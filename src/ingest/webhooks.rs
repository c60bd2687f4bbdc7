//! What the webhook endpoints remember between deliveries: the ids already applied and
//! the platform API clients.

use std::time::Duration;

use crate::config::Settings;

use super::bigcommerce;

/// What the webhook endpoints remember between deliveries.
pub struct WebhookState {
    /// Deliveries already applied, by platform-prefixed id (a redelivery is answered
    /// at once).
    pub seen: moka::sync::Cache<String, ()>,
    /// The BigCommerce API client, when BigCommerce webhooks are configured.
    pub bigcommerce: Option<bigcommerce::Client>,
}

impl WebhookState {
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let bigcommerce = if settings.bigcommerce.webhook_secret.is_empty() {
            None
        } else {
            Some(bigcommerce::Client::new(&settings.bigcommerce)?)
        };
        Ok(Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            bigcommerce,
        })
    }
}
