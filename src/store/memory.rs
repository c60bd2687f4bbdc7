//! The in-process store: the embedded default when no shared store is configured.
//!
//! A fixed number of shards, each a `std::sync::RwLock<HashMap>`. A std lock (not an
//! async one) is right here because no critical section awaits anything: each is a
//! single hash lookup or insert, so contention is short and a shard is never held
//! across an `.await`.

use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{ProfileStore, StoreError, record_read};
use crate::domain::{Profile, VisitorKey};

const SHARDS: usize = 64;

pub struct MemoryStore {
    shards: Vec<RwLock<FxHashMap<VisitorKey, Arc<Profile>>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(FxHashMap::default()))
                .collect(),
        }
    }

    fn shard(&self, key: &VisitorKey) -> &RwLock<FxHashMap<VisitorKey, Arc<Profile>>> {
        &self.shards[(FxBuildHasher.hash_one(key) as usize) % SHARDS]
    }

    /// Loads many profiles at once (start-up, demo data) without going through async.
    pub fn insert_many(&self, profiles: impl IntoIterator<Item = (VisitorKey, Profile)>) {
        for (key, profile) in profiles {
            let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
            shard.insert(key, Arc::new(profile));
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ProfileStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &VisitorKey) -> Result<Option<Arc<Profile>>, StoreError> {
        // A poisoned shard still holds consistent data: every write is a single insert.
        let found = self
            .shard(key)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        record_read("memory", if found.is_some() { "hit" } else { "miss" });
        Ok(found)
    }

    async fn put(&self, key: &VisitorKey, profile: Profile) -> Result<(), StoreError> {
        self.shard(key)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::new(profile));
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VisitorId;

    #[tokio::test]
    async fn a_stored_profile_is_read_back_and_others_are_missing() {
        let store = MemoryStore::new();
        let key = VisitorKey::Customer(VisitorId::parse("c1").unwrap());
        let mut p = Profile::default();
        p.record_view("p1");
        store.put(&key, p.clone()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&p));
        let other = VisitorKey::Session(VisitorId::parse("c1").unwrap());
        assert!(store.get(&other).await.unwrap().is_none());
    }
}
