//! Catalog changes from the admin API, platform webhooks and imports: validated product
//! input, written to the catalog store and applied as a new catalog snapshot (or, for
//! stock alone, in place).
//!
//! A rebuild copies the catalog, changes it and swaps it in atomically; the models are
//! shared, because existing products keep their indexes. Stock changes skip the rebuild:
//! one atomic store, visible to the very next request.
//!
//! Replicas share the catalog through the store: a change is written there first (a
//! store that cannot take it fails the change, with nothing applied), then applied
//! here, so this replica's next answer sees it at once. Every replica follows the
//! store's catalog version ([`CatalogService::sync`], every `catalog.sync_ms`) and
//! applies what others changed.
//!
//! A store that lost its data (Redis restarted empty, or from an older save) is a
//! *reset*, never a deletion: the store's epoch is gone or another, or its catalog
//! version moved backwards. Then a replica keeps serving what it holds and never reads
//! the store's catalog as a change; one replica (the one whose compare-and-set on the
//! epoch wins) writes back its catalog, the live ruleset, the promotion budgets it knew
//! and the stored models, then sets a new epoch; the others take the restored store
//! whole ([`CatalogService::recover`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::domain::catalog::{CatalogEdit, CatalogError, ProductRecord};
use crate::domain::ids::check_id;
use crate::domain::{Currency, Money};
use crate::recommend::Snapshot;
use crate::store::{CatalogChange, CatalogStore, StoreError};

/// Products per store write when a whole catalog is written (seeding, imports), so no
/// single write outlasts the store's timeout.
const WRITE_CHUNK: usize = 5_000;

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
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store lost its data (a reset); keeping this replica's catalog")]
    StoreReset,
}

/// What a replica writes back to a store that was reset, besides its catalog and models.
#[derive(Clone, Debug, Default)]
pub struct Restorable {
    /// The live ruleset: its version and document.
    pub ruleset: Option<(String, Vec<u8>)>,
    /// Budgeted promotions' usage as last seen: (id, uses, discount given).
    pub usage: Vec<(String, u64, i64)>,
}

/// What [`CatalogService::recover`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The store is the one this replica follows: nothing to do.
    InStep,
    /// Another replica is restoring it, or this one has nothing from the store to
    /// restore with: keep serving and look again.
    Waiting,
    /// Another replica restored it: its catalog is read whole at the next sync.
    Adopted,
    /// This replica restored it.
    Restored,
}

/// An epoch held by a replica restoring the store, for at most [`RESTORE_LEASE`].
const CLAIM: &str = "restoring/";
const RESTORE_LEASE: Duration = Duration::from_secs(60);

/// Where this replica's catalog is in step with the store.
struct InStep {
    /// The store's catalog version this replica's catalog reflects.
    seen: u64,
    /// The store's epoch it was read under.
    epoch: Option<String>,
    /// A reset is being handled (logged and counted once).
    resetting: bool,
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
    if !Money::in_range(m.amount) {
        return Err(CatalogChangeError::Invalid(format!(
            "{field}.amount must be 0 to {} minor units",
            Money::MAX_AMOUNT
        )));
    }
    Ok(Money::new(m.amount, m.currency))
}

impl ProductInput {
    /// The stored form, with the handle and url defaulted from the title.
    pub fn record(&self) -> ProductRecord {
        let handle = self
            .handle
            .clone()
            .unwrap_or_else(|| crate::domain::catalog::slug(&self.title));
        ProductRecord {
            id: self.id.clone(),
            title: self.title.clone(),
            url: self
                .url
                .clone()
                .unwrap_or_else(|| format!("/products/{handle}")),
            handle,
            image_url: self.image_url.clone().unwrap_or_default(),
            category: self.category.clone(),
            tags: self.tags.clone(),
            price: Money::new(self.price.amount, self.price.currency),
            cost: self.cost.map(|c| Money::new(c.amount, c.currency)),
        }
    }

    pub fn validate(&self) -> Result<(), CatalogChangeError> {
        check_id(&self.id).map_err(|e| CatalogChangeError::Invalid(format!("id {e}")))?;
        text("title", &self.title, 512)?;
        text("category", &self.category, 256)?;
        if crate::domain::catalog::category_handle(&self.category).is_empty() {
            return Err(CatalogChangeError::Invalid(
                "category has no letter or digit to name it by".into(),
            ));
        }
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

/// What a rebuild touched, by product id.
#[derive(Default)]
struct Touched {
    upserted: Vec<String>,
    deleted: Vec<String>,
}

/// The catalog of this replica, kept in step with the catalog store.
pub struct CatalogService {
    snapshot: Arc<ArcSwap<Snapshot>>,
    store: Arc<dyn CatalogStore>,
    /// Held across every change and sync, so each starts from the last one's result.
    writer: tokio::sync::Mutex<InStep>,
    /// Whether the models serving were found in the store (written back after a reset).
    models_stored: AtomicBool,
}

impl CatalogService {
    /// The shared store behind the catalog (also the models', the log's and the
    /// promotion budgets').
    pub fn store(&self) -> &dyn CatalogStore {
        self.store.as_ref()
    }

    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, store: Arc<dyn CatalogStore>) -> Self {
        Self {
            snapshot,
            store,
            writer: tokio::sync::Mutex::new(InStep {
                seen: 0,
                epoch: None,
                resetting: false,
            }),
            models_stored: AtomicBool::new(false),
        }
    }

    /// At start-up: seeds an empty store (version 0) with this replica's catalog (the
    /// demo shop), or else takes the stored catalog. Gives a store with a catalog an
    /// epoch when it has none. Waits while another replica restores the store.
    pub async fn start(&self) -> Result<(), CatalogChangeError> {
        let mut epoch = self.store.epoch().await?;
        let lease_end = tokio::time::Instant::now() + RESTORE_LEASE;
        while epoch.as_deref().is_some_and(|e| e.starts_with(CLAIM))
            && tokio::time::Instant::now() < lease_end
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            epoch = self.store.epoch().await?;
        }
        if self.store.catalog_version().await? == 0 {
            self.write_whole_catalog().await?;
        }
        if epoch.is_none() && self.store.catalog_version().await? > 0 {
            self.store.swap_epoch(None, &new_epoch(), None).await?;
        }
        self.writer.lock().await.epoch = self.store.epoch().await?;
        self.sync().await?;
        self.sync_models().await.map(|_| ())
    }

    /// Writes every product of this replica's catalog, with its stock, to the store.
    async fn write_whole_catalog(&self) -> Result<u64, CatalogChangeError> {
        let current = self.snapshot.load_full();
        let catalog = &current.catalog;
        let ids: Vec<_> = catalog.live().collect();
        let mut version = 0;
        for chunk in ids.chunks(WRITE_CHUNK) {
            let change = CatalogChange {
                upserts: chunk.iter().map(|&i| catalog.record(i)).collect(),
                deletes: Vec::new(),
                stock: chunk
                    .iter()
                    .map(|&i| (catalog.product(i).id.to_string(), catalog.inventory(i)))
                    .collect(),
            };
            version = self.store.write_catalog(&change).await?;
        }
        Ok(version)
    }

    /// Handles a store reset ([`CatalogChangeError::StoreReset`]): restores the store
    /// from this replica when it wins the epoch's compare-and-set, takes the restored
    /// store when another replica did, else waits. Never changes what this replica
    /// serves.
    pub async fn recover(&self, restorable: Restorable) -> Result<Recovery, CatalogChangeError> {
        let mut st = self.writer.lock().await;
        let epoch = self.store.epoch().await?;
        let version = self.store.catalog_version().await?;
        if epoch == st.epoch && version >= st.seen {
            st.resetting = false;
            return Ok(Recovery::InStep);
        }
        if !st.resetting {
            st.resetting = true;
            metrics::counter!("vitrine_store_resets_total").increment(1);
            tracing::error!(
                catalog_version = version,
                in_step_with = st.seen,
                "the store lost its data (reset): keeping this replica's catalog, ruleset and models, and writing them back"
            );
        }
        match &epoch {
            Some(e) if e.starts_with(CLAIM) => return Ok(Recovery::Waiting),
            Some(_) if version > 0 => {
                // Restored (or re-seeded) by another replica: take it whole, and add what
                // this replica knew of the budgets' uses (kept as the larger of the two:
                // the restorer may have known less).
                self.store.restore_usage(&restorable.usage).await?;
                st.epoch = epoch;
                st.seen = 0;
                st.resetting = false;
                tracing::info!("the store was restored by another replica; following it");
                return Ok(Recovery::Adopted);
            }
            Some(_) | None if st.seen == 0 => return Ok(Recovery::Waiting),
            Some(_) | None => {}
        }
        let claim = format!("{CLAIM}{:016x}", rand::random::<u64>());
        if !self
            .store
            .swap_epoch(epoch.as_deref(), &claim, Some(RESTORE_LEASE))
            .await?
        {
            return Ok(Recovery::Waiting);
        }
        self.write_whole_catalog().await?;
        if let Some((version, document)) = &restorable.ruleset {
            self.store
                .publish_ruleset(version, document, crate::domain::time::unix_now())
                .await?;
        }
        self.store.restore_usage(&restorable.usage).await?;
        if self.models_stored.load(Ordering::Acquire) {
            let current = self.snapshot.load_full();
            let bytes = crate::recommend::portable::encode(&current.models, &current.catalog)
                .map_err(CatalogChangeError::Invalid)?;
            self.store
                .save_models(&current.models.version, &bytes)
                .await?;
        }
        let fresh = new_epoch();
        if !self.store.swap_epoch(Some(&claim), &fresh, None).await? {
            // The lease ran out and another replica took over: it restores.
            return Ok(Recovery::Waiting);
        }
        st.epoch = Some(fresh);
        st.seen = self.store.catalog_version().await?;
        st.resetting = false;
        tracing::warn!(
            catalog_version = st.seen,
            "store restored from this replica: catalog, live ruleset, promotion budgets and models written back"
        );
        Ok(Recovery::Restored)
    }

    /// Takes the trained models stored by `vitrine train` when their version differs
    /// from the ones serving; true when it swapped them in. Requests in flight finish
    /// on the models they started with.
    pub async fn sync_models(&self) -> Result<bool, CatalogChangeError> {
        let Some(version) = self.store.models_version().await? else {
            return Ok(false);
        };
        self.models_stored.store(true, Ordering::Release);
        if self.snapshot.load().models.version == version {
            return Ok(false);
        }
        let Some((_, bytes)) = self.store.load_models().await? else {
            return Ok(false);
        };
        // Under the writer lock: the catalog the models are mapped onto stays put.
        let _turn = self.writer.lock().await;
        let current = self.snapshot.load_full();
        let next = tokio::task::spawn_blocking(move || {
            let models = crate::recommend::portable::decode(&bytes, &current.catalog)
                .map_err(CatalogChangeError::Invalid)?;
            let catalog = current.catalog.edit().build()?;
            models.prepare_content(&catalog);
            Ok::<_, CatalogChangeError>(Snapshot {
                catalog,
                models: Arc::new(models),
            })
        })
        .await
        .map_err(|e| CatalogChangeError::Invalid(format!("model task failed: {e}")))??;
        tracing::info!(model_version = %next.models.version, "trained models swapped in");
        self.snapshot.store(Arc::new(next));
        Ok(true)
    }

    /// Keeps following the store's catalog in the background; `restorable` says what
    /// else to write back should the store be reset.
    pub fn spawn_follower<R>(self: &Arc<Self>, every: Duration, restorable: R)
    where
        R: Fn() -> Restorable + Send + Sync + 'static,
    {
        let restorable = Arc::new(restorable);
        crate::background::every(self, every, move |service: Arc<Self>| {
            let restorable = restorable.clone();
            async move {
                match service.sync().await {
                    Ok(_) => {}
                    Err(CatalogChangeError::StoreReset) => {
                        if let Err(e) = service.recover(restorable()).await {
                            tracing::warn!(error = %e, "store restore failed; retrying");
                        }
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "catalog sync failed; retrying"),
                }
                if let Err(e) = service.sync_models().await {
                    tracing::warn!(error = %e, "model sync failed; retrying");
                }
            }
        });
    }

    /// Applies what changed in the store since this replica last looked. True when
    /// there was something. A store that was reset is refused, never applied.
    pub async fn sync(&self) -> Result<bool, CatalogChangeError> {
        let mut st = self.writer.lock().await;
        if self.store.epoch().await? != st.epoch {
            return Err(CatalogChangeError::StoreReset);
        }
        let version = self.store.catalog_version().await?;
        if version == st.seen {
            return Ok(false);
        }
        if version < st.seen {
            return Err(CatalogChangeError::StoreReset);
        }
        let (version, stored) = self.store.load_catalog().await?;
        // A reset while reading leaves a smaller version or another epoch behind.
        if version < st.seen || self.store.epoch().await? != st.epoch {
            return Err(CatalogChangeError::StoreReset);
        }
        let current = self.snapshot.load_full();
        let next =
            tokio::task::spawn_blocking(move || -> Result<Option<Snapshot>, CatalogChangeError> {
                let catalog = &current.catalog;
                let mut keep = rustc_hash::FxHashSet::default();
                let mut changed = Vec::new();
                for (record, level) in &stored {
                    keep.insert(record.id.as_str());
                    match catalog.lookup(&record.id) {
                        Some(i) if catalog.record(i) == *record => catalog.set_inventory(i, *level),
                        _ => changed.push((record, *level)),
                    }
                }
                let gone: Vec<_> = catalog
                    .live()
                    .filter(|&i| !keep.contains(&*catalog.product(i).id))
                    .collect();
                if changed.is_empty() && gone.is_empty() {
                    return Ok(None); // stock only: already set in place
                }
                let mut edit = catalog.edit();
                for (record, level) in changed {
                    edit.upsert_record(record, level)?;
                }
                for i in gone {
                    edit.delete(&catalog.product(i).id);
                }
                let catalog = edit.build()?;
                current.models.prepare_content(&catalog);
                Ok(Some(Snapshot {
                    catalog,
                    models: Arc::clone(&current.models),
                }))
            })
            .await
            .map_err(|e| CatalogChangeError::Invalid(format!("catalog task failed: {e}")))??;
        if let Some(next) = next {
            self.snapshot.store(Arc::new(next));
        }
        st.seen = version;
        Ok(true)
    }

    /// Upserts products (all validated by the caller) as one change.
    pub async fn upsert(&self, inputs: Vec<ProductInput>) -> Result<(), CatalogChangeError> {
        self.rebuild(move |edit| {
            let mut touched = Touched::default();
            for input in inputs {
                // A product keyed by its handle (as a platform's export keys it, having
                // no other id) that this input names by its platform id: one product,
                // under the platform id from now on.
                if let Some(handle) = input.handle.as_deref().filter(|h| *h != input.id)
                    && edit.get_mut(&input.id).is_none()
                    && edit
                        .get_mut(handle)
                        .is_some_and(|p| &*p.product.handle == handle)
                {
                    edit.delete(handle);
                    touched.deleted.push(handle.to_owned());
                }
                edit.upsert_record(&input.record(), input.inventory)?;
                touched.upserted.push(input.id);
            }
            Ok(touched)
        })
        .await
    }

    /// Applies a partial change to one product.
    pub async fn patch(&self, id: &str, patch: ProductPatch) -> Result<(), CatalogChangeError> {
        if let Some(t) = &patch.title {
            text("title", t, 512)?;
        }
        if let Some(c) = &patch.category {
            text("category", c, 256)?;
        }
        let price = patch.price.map(|p| money("price", p)).transpose()?;
        let cost = patch.cost.map(|c| money("cost", c)).transpose()?;
        self.catch_up_on(std::iter::once(id)).await?;
        let only_stock = patch.title.is_none()
            && patch.handle.is_none()
            && patch.url.is_none()
            && patch.image_url.is_none()
            && patch.category.is_none()
            && patch.tags.is_none()
            && price.is_none()
            && cost.is_none();
        if only_stock {
            if self.snapshot.load().catalog.lookup(id).is_none() {
                return Err(CatalogChangeError::NotFound);
            }
            if let Some(level) = patch.inventory {
                self.set_stock(&[(id.to_owned(), level)]).await?;
            }
            return Ok(());
        }
        let id = id.to_owned();
        self.rebuild(move |edit| {
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
            Ok(Touched {
                upserted: vec![id],
                deleted: Vec::new(),
            })
        })
        .await
    }

    /// Deletes a product.
    pub async fn delete(&self, id: &str) -> Result<(), CatalogChangeError> {
        self.catch_up_on(std::iter::once(id)).await?;
        let id = id.to_owned();
        self.rebuild(move |edit| {
            if edit.delete(&id) {
                Ok(Touched {
                    upserted: Vec::new(),
                    deleted: vec![id],
                })
            } else {
                Err(CatalogChangeError::NotFound)
            }
        })
        .await
    }

    /// Sets stock levels (webhooks, imports), in place. Unknown ids are skipped; returns
    /// how many were set.
    pub async fn set_stock(&self, levels: &[(String, i64)]) -> Result<usize, CatalogChangeError> {
        self.catch_up_on(levels.iter().map(|(id, _)| id.as_str()))
            .await?;
        let mut st = self.writer.lock().await;
        let current = self.snapshot.load();
        let known: Vec<_> = levels
            .iter()
            .filter_map(|(id, level)| Some((current.catalog.lookup(id)?, id, *level)))
            .collect();
        if known.is_empty() {
            return Ok(0);
        }
        let change = CatalogChange {
            stock: known.iter().map(|(_, id, l)| ((*id).clone(), *l)).collect(),
            ..CatalogChange::default()
        };
        let version = self.store.write_catalog(&change).await?;
        for (idx, _, level) in &known {
            current.catalog.set_inventory(*idx, *level);
        }
        advance(&mut st.seen, version);
        Ok(known.len())
    }

    /// Records a product's platform inventory items with their totals (see
    /// [`CatalogStore::link_inventory`]).
    pub async fn link_inventory(
        &self,
        product: &str,
        items: &[(String, i64)],
    ) -> Result<(), CatalogChangeError> {
        Ok(self.store.link_inventory(product, items).await?)
    }

    /// Records one item's level at one location; the product and its new stock, or
    /// `None` for an item no product named (see [`CatalogStore::set_inventory_level`]).
    pub async fn inventory_level(
        &self,
        item: &str,
        location: &str,
        available: i64,
    ) -> Result<Option<(String, i64)>, CatalogChangeError> {
        Ok(self
            .store
            .set_inventory_level(item, location, available)
            .await?)
    }

    /// When any of `ids` is unknown here, another replica may just have added it: catch
    /// up with the store before changing it.
    async fn catch_up_on<'a>(
        &self,
        mut ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), CatalogChangeError> {
        let unknown = {
            let current = self.snapshot.load();
            ids.any(|id| current.catalog.lookup(id).is_none())
        };
        if unknown {
            self.sync().await?;
        }
        Ok(())
    }

    /// Copies the catalog, changes it, writes what changed to the store, then swaps the
    /// new catalog in. Nothing is applied when the change or the store write fails.
    async fn rebuild<F>(&self, change: F) -> Result<(), CatalogChangeError>
    where
        F: FnOnce(&mut CatalogEdit) -> Result<Touched, CatalogChangeError> + Send + 'static,
    {
        let mut st = self.writer.lock().await;
        let current = self.snapshot.load_full();
        let (next, change) = tokio::task::spawn_blocking(move || {
            let mut edit = current.catalog.edit();
            let touched = change(&mut edit)?;
            let catalog = edit.build()?;
            let upserted: Vec<_> = touched
                .upserted
                .iter()
                .filter_map(|id| catalog.lookup(id))
                .collect();
            let change = CatalogChange {
                upserts: upserted.iter().map(|&i| catalog.record(i)).collect(),
                stock: upserted
                    .iter()
                    .map(|&i| (catalog.product(i).id.to_string(), catalog.inventory(i)))
                    .collect(),
                deletes: touched.deleted,
            };
            current.models.prepare_content(&catalog);
            let next = Snapshot {
                catalog,
                models: Arc::clone(&current.models),
            };
            Ok::<_, CatalogChangeError>((next, change))
        })
        .await
        .map_err(|e| CatalogChangeError::Invalid(format!("catalog task failed: {e}")))??;
        let version = self.store.write_catalog(&change).await?;
        self.snapshot.store(Arc::new(next));
        advance(&mut st.seen, version);
        Ok(())
    }
}

/// A new store epoch: random, so no two replicas or resets share one.
fn new_epoch() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// After this replica's own write took the store to `version`: when no other write came
/// in between, this replica is in step; otherwise the next sync catches up.
fn advance(seen: &mut u64, version: u64) {
    if version == *seen + 1 {
        *seen = version;
    }
}
