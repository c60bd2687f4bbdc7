//! Platform webhooks once verified and interpreted: what the endpoints remember between
//! deliveries (the ids already applied, the platform API clients), and how a platform's
//! action is applied to the profiles, the catalog and the live models.

use std::time::Duration;

use super::bigcommerce;
use super::catalog::{CatalogChangeError, CatalogService};
use super::log::Learning;
use super::shopify::Action;
use crate::config::Settings;
use crate::domain::profile::ProfileOp;
use crate::domain::{VisitorId, VisitorKey};
use crate::store::{KeyHasher, ProfileStore};

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

/// What applying a platform's action writes to.
#[derive(Clone, Copy)]
pub struct Targets<'a> {
    pub store: &'a dyn ProfileStore,
    pub hasher: &'a KeyHasher,
    pub catalog: &'a CatalogService,
    pub learning: &'a Learning,
    /// The decision log: erased with the visitors.
    pub decisions: &'a crate::audit::Recorder,
    /// Credits new orders to the experiment arms that showed their products.
    pub attribution: &'a super::attribution::Attribution,
}

/// What became of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// An inventory level for an item no product links to.
    UnknownItem,
    Erased,
    /// A data request: nothing to apply (answered through the admin API).
    Acknowledged,
    /// A topic Vitrine does not act on.
    Ignored,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::UnknownItem => "unknown_item",
            Outcome::Erased => "erased",
            Outcome::Acknowledged => "acknowledged",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Why an action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The payload names something malformed (an id, a product): redelivery would not help.
    #[error("{0}")]
    Malformed(String),
    /// The store cannot take it now: the platform should redeliver.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

fn catalog_error(e: &CatalogChangeError) -> ApplyError {
    match e {
        CatalogChangeError::Store(_) | CatalogChangeError::StoreReset => {
            ApplyError::Unavailable(e.to_string())
        }
        other => ApplyError::Malformed(other.to_string()),
    }
}

fn store_unavailable(e: &dyn std::fmt::Display) -> ApplyError {
    ApplyError::Unavailable(e.to_string())
}

/// Takes a product out of the catalog; one that is not there already is fine.
async fn remove_product(t: Targets<'_>, id: &str) -> Result<(), ApplyError> {
    match t.catalog.delete(id).await {
        Ok(()) | Err(CatalogChangeError::NotFound) => Ok(()),
        Err(e) => Err(catalog_error(&e)),
    }
}

fn visitor(kind: fn(VisitorId) -> VisitorKey, raw: &str) -> Result<VisitorKey, ApplyError> {
    VisitorId::parse(raw)
        .map(kind)
        .map_err(|e| ApplyError::Malformed(format!("id {e}")))
}

async fn apply_profile(
    t: Targets<'_>,
    visitor: VisitorKey,
    ops: &[ProfileOp],
) -> Result<Outcome, ApplyError> {
    let key = t.hasher.key(&visitor);
    let applied = t
        .store
        .apply(&key, ops)
        .await
        .map_err(|e| store_unavailable(&e))?;
    // New orders teach the live models (pairs and trend), here and through the log.
    t.learning.learn(super::log::order_entries(
        &key,
        ops,
        &applied.fresh,
        t.learning.origin(),
    ));
    for (op, _) in ops.iter().zip(&applied.fresh).filter(|(_, new)| **new) {
        if let Some(order) = super::attribution::PlacedOrder::of(key, op) {
            t.attribution.ordered(order);
        }
    }
    Ok(Outcome::Applied)
}

/// Applies a platform's action to the profiles, the catalog and the live models.
pub async fn apply(t: Targets<'_>, action: Action) -> Result<Outcome, ApplyError> {
    match action {
        Action::Customer {
            customer_id,
            ops,
            email,
        } => {
            let customer = visitor(VisitorKey::Customer, &customer_id)?;
            // The email first: what was imported under it is the customer's before this
            // delivery's own ops (an order in both counts once).
            if let Some(email) = email {
                super::identity::link_email(
                    t.store,
                    t.hasher,
                    t.hasher.key(&customer),
                    &email,
                    crate::domain::time::unix_now(),
                )
                .await
                .map_err(|e| store_unavailable(&e))?;
            }
            apply_profile(t, customer, &ops).await
        }
        Action::Session { session_id, ops } => {
            apply_profile(t, visitor(VisitorKey::Session, &session_id)?, &ops).await
        }
        Action::Product {
            input,
            inventory_items,
            archived,
        } => {
            let id = input.id.clone();
            // The product payload gives each item's total over all locations, held
            // until a per-location level replaces it; in the store, so a level update
            // can land on any replica.
            let items: Vec<(String, i64)> = inventory_items
                .into_iter()
                .map(|(item, quantity)| (item.to_string(), quantity))
                .collect();
            if !items.is_empty() {
                t.catalog
                    .link_inventory(&id, &items)
                    .await
                    .map_err(|e| catalog_error(&e))?;
            }
            t.catalog
                .upsert(vec![input])
                .await
                .map_err(|e| catalog_error(&e))?;
            if archived {
                // Archived and draft products are not for sale: keep them out of answers.
                remove_product(t, &id).await?;
            }
            Ok(Outcome::Applied)
        }
        Action::Inventory(level) => {
            let found = t
                .catalog
                .inventory_level(
                    &level.inventory_item_id.to_string(),
                    &level.location_id.to_string(),
                    level.available.unwrap_or(0),
                )
                .await
                .map_err(|e| catalog_error(&e))?;
            let Some(stock) = found else {
                return Ok(Outcome::UnknownItem);
            };
            t.catalog
                .set_stock(&[stock])
                .await
                .map_err(|e| catalog_error(&e))?;
            Ok(Outcome::Applied)
        }
        Action::RemoveProduct { product_id } => {
            remove_product(t, &product_id).await?;
            Ok(Outcome::Applied)
        }
        Action::Erase { customer_id, email } => {
            let key = t.hasher.key(&visitor(VisitorKey::Customer, &customer_id)?);
            // What was decided for them goes first: that notes them as erased, so
            // nothing queued for them is written after their profile goes.
            t.decisions
                .erase(&key)
                .await
                .map_err(|e| store_unavailable(&e))?;
            super::identity::erase(t.store, &key)
                .await
                .map_err(|e| store_unavailable(&e))?;
            if let Some(email) = email {
                t.store
                    .delete(&t.hasher.email_key(&email))
                    .await
                    .map_err(|e| store_unavailable(&e))?;
            }
            Ok(Outcome::Erased)
        }
        Action::EraseAll => {
            let n = t
                .store
                .erase_all()
                .await
                .map_err(|e| store_unavailable(&e))?;
            let decisions = t
                .decisions
                .erase_all()
                .await
                .map_err(|e| store_unavailable(&e))?;
            tracing::info!(
                profiles = n,
                decisions,
                "shop redact: every profile and decision erased"
            );
            Ok(Outcome::Erased)
        }
        Action::DataRequest => {
            tracing::info!(
                "customer data request received; answer it with GET /admin/v1/profiles/{{id}}"
            );
            Ok(Outcome::Acknowledged)
        }
        Action::Ignore => Ok(Outcome::Ignored),
    }
}
