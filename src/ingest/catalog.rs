//! Catalog changes from the admin API and platform webhooks: validated product input,
//! applied as a new catalog snapshot (or, for stock alone, in place).
//!
//! A rebuild copies the catalog, changes it and swaps it in atomically; the models are
//! shared, because existing products keep their indexes. Stock changes skip the rebuild:
//! one atomic store, visible to the very next request.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::app::Snapshot;
use crate::domain::catalog::{CatalogError, NewProduct};
use crate::domain::ids::check_id;
use crate::domain::{Currency, Money, Product};

/// A product as the admin API and importers send it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    /// A category handle (`kitchen/cookware`) or path (`Kitchen > Cookware`).
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub price: MoneyInput,
    #[serde(default)]
    pub cost: Option<MoneyInput>,
    #[serde(default)]
    pub inventory: i64,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    pub amount: i64,
    pub currency: Currency,
}

/// A partial change to one product (PATCH).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub title: Option<String>,
    pub handle: Option<String>,
    pub url: Option<String>,
    pub image_url: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub price: Option<MoneyInput>,
    pub cost: Option<MoneyInput>,
    pub inventory: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("no product with this id")]
    NotFound,
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
}

fn text(field: &str, value: &str, max: usize) -> Result<(), CatalogChangeError> {
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(CatalogChangeError::Invalid(format!(
            "{field} must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

fn money(field: &str, m: MoneyInput) -> Result<Money, CatalogChangeError> {
    if m.amount < 0 {
        return Err(CatalogChangeError::Invalid(format!(
            "{field}.amount must not be negative"
        )));
    }
    Ok(Money::new(m.amount, m.currency))
}

impl ProductInput {
    pub fn validate(&self) -> Result<(), CatalogChangeError> {
        check_id(&self.id).map_err(|e| CatalogChangeError::Invalid(format!("id {e}")))?;
        text("title", &self.title, 512)?;
        text("category", &self.category, 256)?;
        for (field, v) in [
            ("handle", &self.handle),
            ("url", &self.url),
            ("image_url", &self.image_url),
        ] {
            if let Some(v) = v {
                text(field, v, 2048)?;
            }
        }
        if self.tags.len() > 64 {
            return Err(CatalogChangeError::Invalid("at most 64 tags".into()));
        }
        for t in &self.tags {
            text("tags[]", t, 128)?;
        }
        money("price", self.price)?;
        if let Some(c) = self.cost {
            money("cost", c)?;
            if c.currency != self.price.currency {
                return Err(CatalogChangeError::Invalid(
                    "cost and price must share a currency".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Upserts products (all validated by the caller) as one new snapshot.
pub async fn upsert(
    snapshot: &ArcSwap<Snapshot>,
    writer: &tokio::sync::Mutex<()>,
    inputs: Vec<ProductInput>,
) -> Result<(), CatalogChangeError> {
    edit(snapshot, writer, move |edit| {
        for input in inputs {
            let category = edit.category(&input.category)?;
            let handle = input
                .handle
                .unwrap_or_else(|| crate::domain::catalog::slug(&input.title));
            let product = Product {
                url: input
                    .url
                    .unwrap_or_else(|| format!("/products/{handle}"))
                    .into(),
                image_url: input.image_url.unwrap_or_default().into(),
                id: input.id.into(),
                title: input.title.into(),
                handle: handle.into(),
                category,
                tags: input.tags.into_iter().map(String::into_boxed_str).collect(),
                price: Money::new(input.price.amount, input.price.currency),
                cost: input.cost.map(|c| Money::new(c.amount, c.currency)),
            };
            edit.upsert(NewProduct {
                product,
                inventory: input.inventory,
            })?;
        }
        Ok(())
    })
    .await
}

/// Applies a partial change to one product.
pub async fn patch(
    snapshot: &ArcSwap<Snapshot>,
    writer: &tokio::sync::Mutex<()>,
    id: &str,
    patch: ProductPatch,
) -> Result<(), CatalogChangeError> {
    if let Some(t) = &patch.title {
        text("title", t, 512)?;
    }
    if let Some(c) = &patch.category {
        text("category", c, 256)?;
    }
    let price = patch.price.map(|p| money("price", p)).transpose()?;
    let cost = patch.cost.map(|c| money("cost", c)).transpose()?;
    let only_stock = patch.title.is_none()
        && patch.handle.is_none()
        && patch.url.is_none()
        && patch.image_url.is_none()
        && patch.category.is_none()
        && patch.tags.is_none()
        && price.is_none()
        && cost.is_none();
    if only_stock {
        // Under the writer lock, so a rebuild in progress cannot copy the old level.
        let _turn = writer.lock().await;
        let current = snapshot.load();
        let idx = current
            .catalog
            .lookup(id)
            .ok_or(CatalogChangeError::NotFound)?;
        if let Some(level) = patch.inventory {
            current.catalog.set_inventory(idx, level);
        }
        return Ok(());
    }
    let id = id.to_owned();
    edit(snapshot, writer, move |edit| {
        let category = patch
            .category
            .as_deref()
            .map(|c| edit.category(c))
            .transpose()?;
        let p = edit.get_mut(&id).ok_or(CatalogChangeError::NotFound)?;
        if let Some(t) = patch.title {
            p.product.title = t.into();
        }
        if let Some(h) = patch.handle {
            p.product.handle = h.into();
        }
        if let Some(u) = patch.url {
            p.product.url = u.into();
        }
        if let Some(u) = patch.image_url {
            p.product.image_url = u.into();
        }
        if let Some(c) = category {
            p.product.category = c;
        }
        if let Some(tags) = patch.tags {
            p.product.tags = tags.into_iter().map(String::into_boxed_str).collect();
        }
        if let Some(m) = price {
            p.product.price = m;
        }
        if let Some(m) = cost {
            p.product.cost = Some(m);
        }
        if let Some(level) = patch.inventory {
            p.inventory = level;
        }
        Ok(())
    })
    .await
}

/// Deletes a product.
pub async fn delete(
    snapshot: &ArcSwap<Snapshot>,
    writer: &tokio::sync::Mutex<()>,
    id: &str,
) -> Result<(), CatalogChangeError> {
    let id = id.to_owned();
    edit(snapshot, writer, move |edit| {
        if edit.delete(&id) {
            Ok(())
        } else {
            Err(CatalogChangeError::NotFound)
        }
    })
    .await
}

/// Sets stock levels in place (webhooks, imports). Unknown ids are skipped; returns
/// how many were set.
pub async fn set_stock(
    snapshot: &ArcSwap<Snapshot>,
    writer: &tokio::sync::Mutex<()>,
    levels: &[(String, i64)],
) -> usize {
    let _turn = writer.lock().await;
    let current = snapshot.load();
    levels
        .iter()
        .filter_map(|(id, level)| {
            current
                .catalog
                .lookup(id)
                .map(|idx| current.catalog.set_inventory(idx, *level))
        })
        .count()
}

async fn edit<F>(
    snapshot: &ArcSwap<Snapshot>,
    writer: &tokio::sync::Mutex<()>,
    change: F,
) -> Result<(), CatalogChangeError>
where
    F: FnOnce(&mut crate::domain::catalog::CatalogEdit) -> Result<(), CatalogChangeError>
        + Send
        + 'static,
{
    // Held across the rebuild: the next writer must start from this one's result.
    let _turn = writer.lock().await;
    let current = snapshot.load_full();
    let next = tokio::task::spawn_blocking(move || -> Result<Snapshot, CatalogChangeError> {
        let mut edit = current.catalog.edit();
        change(&mut edit)?;
        Ok(Snapshot {
            catalog: edit.build()?,
            models: Arc::clone(&current.models),
        })
    })
    .await
    .map_err(|e| CatalogChangeError::Invalid(format!("catalog task failed: {e}")))??;
    snapshot.store(Arc::new(next));
    Ok(())
}
