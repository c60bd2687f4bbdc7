//! The L1 tier: a moka cache in front of any store.
//!
//! Reads hit moka first; writes go through to the store and then replace the L1 entry,
//! so an instance always reads its own writes. Other replicas' writes become visible
//! when the entry expires: `cache.l1_ttl_ms` (500 ms by default) bounds how stale an
//! L1 entry can be. Misses are cached too (as `None`), so an anonymous visitor's
//! repeated page views do not each go to the shared store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{Applied, ProfileKey, ProfileStore, StoreError, record_read};
use crate::domain::Profile;
use crate::domain::profile::ProfileOp;

pub struct Tiered {
    l1: Cache<ProfileKey, Option<Arc<Profile>>>,
    inner: Arc<dyn ProfileStore>,
}

impl Tiered {
    pub fn new(inner: Arc<dyn ProfileStore>, capacity: u64, ttl: Duration) -> Self {
        Self {
            l1: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            inner,
        }
    }

    pub fn inner(&self) -> &Arc<dyn ProfileStore> {
        &self.inner
    }
}

/// Every call runs in a `store` span naming the operation, so what the backend logs
/// carries it (and the request's span around it).
#[async_trait]
impl ProfileStore for Tiered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "get"))]
    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        if let Some(cached) = self.l1.get(key).await {
            record_read("l1", "hit");
            return Ok(cached);
        }
        record_read("l1", "miss");
        let found = self.inner.get(key).await?;
        self.l1.insert(*key, found.clone()).await;
        Ok(found)
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "apply"))]
    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        let applied = self.inner.apply(key, ops).await?;
        self.l1.insert(*key, Some(applied.profile.clone())).await;
        Ok(applied)
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "apply_batch"))]
    async fn apply_batch(
        &self,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Vec<Result<Applied, StoreError>> {
        let results = self.inner.apply_batch(batch).await;
        for ((key, _), r) in batch.iter().zip(&results) {
            match r {
                Ok(applied) => self.l1.insert(*key, Some(applied.profile.clone())).await,
                Err(_) => self.l1.invalidate(key).await,
            }
        }
        results
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "delete"))]
    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        let existed = self.inner.delete(key).await;
        self.l1.invalidate(key).await;
        existed
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "erase_all"))]
    async fn erase_all(&self) -> Result<u64, StoreError> {
        let n = self.inner.erase_all().await;
        self.l1.invalidate_all();
        n
    }

    #[tracing::instrument(name = "store", skip_all, fields(op = "seed"))]
    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        self.inner.seed(profiles).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        self.inner.sweep().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_second_read_is_served_from_l1() {
        let inner = Arc::new(MemoryStore::new());
        let key = ProfileKey([7; 16]);
        inner.seed(vec![(key, Profile::default())]).await.unwrap();
        let tiered = Tiered::new(inner.clone(), 100, Duration::from_secs(60));
        assert!(tiered.get(&key).await.unwrap().is_some());
        // Gone from the inner store, still in L1.
        inner.delete(&key).await.unwrap();
        assert!(tiered.get(&key).await.unwrap().is_some());
    }
}
