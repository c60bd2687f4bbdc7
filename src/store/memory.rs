//! The in-process store: for tests and benches, and nothing that must survive a restart.
//!
//! A fixed number of shards, each a `std::sync::RwLock<HashMap>`. A std lock (not an
//! async one) is right here because no critical section awaits anything: each is a
//! lookup or a read-modify-write of one profile in memory, so a shard is never held
//! across an `.await`.

use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{
    Applied, CatalogChange, CatalogStore, EventLog, LogEntry, ProfileKey, ProfileStore, StoreError,
    apply_ops, record_result,
};
use crate::domain::Profile;
use crate::domain::catalog::ProductRecord;
use crate::domain::profile::ProfileOp;
use crate::domain::time::unix_now;

const SHARDS: usize = 64;

/// A profile with when it expires and the op ids applied to it (each with when it may
/// be forgotten).
struct Stored {
    profile: Arc<Profile>,
    expires: i64,
    applied: FxHashMap<u64, i64>,
}

type Shard = RwLock<FxHashMap<ProfileKey, Stored>>;

/// The stored catalog: version, records and stock by product id.
#[derive(Default)]
struct StoredCatalog {
    version: u64,
    products: std::collections::BTreeMap<String, ProductRecord>,
    stock: FxHashMap<String, i64>,
    /// Inventory item -> product.
    items: FxHashMap<String, String>,
    /// (product, item, location) -> available.
    levels: std::collections::BTreeMap<(String, String, String), i64>,
    models: Option<(String, Vec<u8>)>,
    /// Ruleset documents by version, (version, published at) newest last, the live one.
    rulesets: FxHashMap<String, Vec<u8>>,
    ruleset_order: Vec<(String, i64)>,
    live_ruleset: Option<String>,
    /// Oldest first.
    changes: std::collections::VecDeque<Vec<u8>>,
    /// Revoked console sessions, until when.
    revoked: FxHashMap<String, i64>,
    /// Promotion -> (uses, spent); orders recorded.
    usage: FxHashMap<String, (u64, i64)>,
    /// Promotion and customer -> uses.
    customer_uses: FxHashMap<String, u64>,
    redeemed_orders: std::collections::HashSet<String>,
    /// The epoch, and until when it holds (`None`: for good).
    epoch: Option<(String, Option<std::time::Instant>)>,
}

/// The event log: the last sequence number given, and the entries kept.
#[derive(Default)]
struct StoredLog {
    last: u64,
    entries: std::collections::VecDeque<(u64, LogEntry)>,
}

pub struct MemoryStore {
    shards: Vec<Shard>,
    retention: super::Retention,
    catalog: RwLock<StoredCatalog>,
    log: RwLock<StoredLog>,
    decisions: RwLock<super::decisions::DecisionTable>,
    tallies: RwLock<super::tally::TallyTable>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_retention(super::Retention::default())
    }

    pub fn with_retention(retention: super::Retention) -> Self {
        Self {
            retention,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(FxHashMap::default()))
                .collect(),
            catalog: RwLock::default(),
            log: RwLock::default(),
            decisions: RwLock::default(),
            tallies: RwLock::default(),
        }
    }

    fn shard(&self, key: &ProfileKey) -> &Shard {
        &self.shards[(FxBuildHasher.hash_one(key) as usize) % SHARDS]
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
impl super::ExperimentTally for MemoryStore {
    async fn add_tallies(&self, tallies: &[super::ArmTally]) -> Result<(), StoreError> {
        let mut t = self.tallies.write().unwrap_or_else(|e| e.into_inner());
        t.add(tallies);
        Ok(())
    }

    async fn tallies(&self, experiment: &str) -> Result<Vec<(String, super::Counts)>, StoreError> {
        let t = self.tallies.read().unwrap_or_else(|e| e.into_inner());
        Ok(t.of(experiment))
    }
}

#[async_trait]
impl super::DecisionLog for MemoryStore {
    async fn append_decisions(
        &self,
        records: std::sync::Arc<super::DecisionBatch>,
        retention: super::DecisionRetention,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut t = self.decisions.write().unwrap_or_else(|e| e.into_inner());
        t.append(&records, retention, now_ms);
        Ok(())
    }

    async fn decision(&self, id: &[u8; 16]) -> Result<Option<super::StoredDecision>, StoreError> {
        let t = self.decisions.read().unwrap_or_else(|e| e.into_inner());
        Ok(t.get(id))
    }

    async fn visitor_decisions(
        &self,
        visitor: &ProfileKey,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<super::StoredDecision>, StoreError> {
        let t = self.decisions.read().unwrap_or_else(|e| e.into_inner());
        Ok(t.of_visitor(visitor, since_ms, limit))
    }

    async fn erase_decisions(&self, visitor: &ProfileKey) -> Result<u64, StoreError> {
        let mut t = self.decisions.write().unwrap_or_else(|e| e.into_inner());
        Ok(t.erase(visitor))
    }

    async fn erase_all_decisions(&self) -> Result<u64, StoreError> {
        let mut t = self.decisions.write().unwrap_or_else(|e| e.into_inner());
        Ok(t.clear())
    }

    async fn decisions_between(
        &self,
        from_ms: i64,
        until_ms: i64,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<super::StoredDecision>, Option<String>), StoreError> {
        let after = super::decisions::parse_cursor(cursor)?;
        let t = self.decisions.read().unwrap_or_else(|e| e.into_inner());
        let out = t.between(from_ms, until_ms, after, limit);
        let next = (out.len() >= limit)
            .then(|| out.last().map(|d| super::decisions::cursor_of(&d.id)))
            .flatten();
        Ok((out, next))
    }
}

#[async_trait]
impl EventLog for MemoryStore {
    async fn append_log(&self, entries: &[LogEntry], keep: u64) -> Result<(), StoreError> {
        let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            log.last += 1;
            let seq = log.last;
            log.entries.push_back((seq, e.clone()));
        }
        if keep > 0 {
            while log.entries.len() as u64 > keep {
                log.entries.pop_front();
            }
        }
        Ok(())
    }

    async fn read_log(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<Vec<(String, LogEntry)>, StoreError> {
        let after = super::seq_cursor(cursor)?;
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        let start = log.entries.partition_point(|(seq, _)| *seq <= after);
        Ok(log
            .entries
            .range(start..)
            .take(max)
            .map(|(seq, e)| (seq.to_string(), e.clone()))
            .collect())
    }

    async fn log_end(&self) -> Result<String, StoreError> {
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        Ok(log
            .entries
            .back()
            .map_or_else(String::new, |(seq, _)| seq.to_string()))
    }
}

impl StoredCatalog {
    fn live_epoch(&mut self) -> Option<&str> {
        if self
            .epoch
            .as_ref()
            .and_then(|(_, until)| *until)
            .is_some_and(|until| until <= std::time::Instant::now())
        {
            self.epoch = None;
        }
        self.epoch.as_ref().map(|(v, _)| v.as_str())
    }

    fn publish(&mut self, version: &str, document: &[u8], published_at: i64) {
        self.rulesets.insert(version.to_owned(), document.to_vec());
        self.ruleset_order.retain(|(v, _)| v != version);
        self.ruleset_order.push((version.to_owned(), published_at));
        while self.ruleset_order.len() > super::RULESET_HISTORY {
            let (old, _) = self.ruleset_order.remove(0);
            self.rulesets.remove(&old);
        }
        self.live_ruleset = Some(version.to_owned());
    }

    fn log_change(&mut self, change: &[u8]) {
        self.changes.push_back(change.to_vec());
        while self.changes.len() > super::CHANGE_HISTORY {
            self.changes.pop_front();
        }
    }
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn epoch(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        Ok(c.live_epoch().map(str::to_owned))
    }

    async fn swap_epoch(
        &self,
        expected: Option<&str>,
        value: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<bool, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if c.live_epoch() != expected {
            return Ok(false);
        }
        c.epoch = Some((value.to_owned(), ttl.map(|t| std::time::Instant::now() + t)));
        Ok(true)
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        Ok(self
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .version)
    }

    async fn load_catalog(&self) -> Result<(u64, Vec<(ProductRecord, i64)>), StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        let products = c
            .products
            .values()
            .map(|r| (r.clone(), c.stock.get(&r.id).copied().unwrap_or(0)))
            .collect();
        Ok((c.version, products))
    }

    async fn write_catalog(&self, change: &CatalogChange) -> Result<u64, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        for r in &change.upserts {
            c.products.insert(r.id.clone(), r.clone());
        }
        for (id, level) in &change.stock {
            c.stock.insert(id.clone(), *level);
        }
        for id in &change.deletes {
            c.products.remove(id);
            c.stock.remove(id);
        }
        c.version += 1;
        Ok(c.version)
    }

    async fn publish_ruleset(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        c.publish(version, document, published_at);
        Ok(())
    }

    async fn publish_ruleset_if(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
        expected: Option<&str>,
        change: &[u8],
    ) -> Result<bool, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if c.live_ruleset.as_deref() != expected {
            return Ok(false);
        }
        c.publish(version, document, published_at);
        c.log_change(change);
        Ok(true)
    }

    async fn append_change(&self, change: &[u8]) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        c.log_change(change);
        Ok(())
    }

    async fn changes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.changes.iter().rev().take(limit).cloned().collect())
    }

    async fn revoke_session(&self, session: &str, until: i64) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        let now = crate::domain::time::unix_now();
        c.revoked.retain(|_, u| *u > now);
        c.revoked.insert(session.to_owned(), until);
        Ok(())
    }

    async fn session_revoked(&self, session: &str, now: i64) -> Result<bool, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.revoked.get(session).is_some_and(|u| *u > now))
    }

    async fn promotion_usage(&self, ids: &[String]) -> Result<Vec<(u64, i64)>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(ids
            .iter()
            .map(|id| c.usage.get(id).copied().unwrap_or_default())
            .collect())
    }

    async fn restore_usage(&self, usage: &[(String, u64, i64)]) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        for (id, uses, spent) in usage {
            let slot = c.usage.entry(id.clone()).or_default();
            slot.0 = slot.0.max(*uses);
            slot.1 = slot.1.max(*spent);
        }
        Ok(())
    }

    async fn redeem(
        &self,
        order: &str,
        redemptions: &[super::Redemption],
    ) -> Result<super::Redeemed, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if c.redeemed_orders.contains(order) {
            return Ok(super::Redeemed::AlreadyRecorded);
        }
        for (i, r) in redemptions.iter().enumerate() {
            let (uses, spent) = c.usage.get(&r.promotion).copied().unwrap_or_default();
            let customer = r
                .customer_field()
                .and_then(|f| c.customer_uses.get(&f).copied())
                .unwrap_or(0);
            if !super::fits(r, uses, spent, customer) {
                return Ok(super::Redeemed::OverLimit(i));
            }
        }
        for r in redemptions {
            let slot = c.usage.entry(r.promotion.clone()).or_default();
            slot.0 += 1;
            slot.1 += r.amount;
            if let Some(f) = r.customer_field() {
                *c.customer_uses.entry(f).or_default() += 1;
            }
        }
        c.redeemed_orders.insert(order.to_owned());
        Ok(super::Redeemed::Recorded)
    }

    async fn live_ruleset(&self) -> Result<Option<String>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.live_ruleset.clone())
    }

    async fn load_ruleset(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.rulesets.get(version).cloned())
    }

    async fn ruleset_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.ruleset_order.iter().rev().cloned().collect())
    }

    async fn activate_ruleset(&self, version: &str) -> Result<bool, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if !c.rulesets.contains_key(version) {
            return Ok(false);
        }
        c.live_ruleset = Some(version.to_owned());
        Ok(true)
    }

    async fn models_version(&self) -> Result<Option<String>, StoreError> {
        let c = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        Ok(c.models.as_ref().map(|(v, _)| v.clone()))
    }

    async fn load_models(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .models
            .clone())
    }

    async fn save_models(&self, version: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        c.models = Some((version.to_owned(), bytes.to_vec()));
        Ok(())
    }

    async fn link_inventory(
        &self,
        product: &str,
        items: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        for (item, total) in items {
            c.levels.retain(|(_, i, _), _| i != item);
            c.items.insert(item.clone(), product.to_owned());
            c.levels.insert(
                (
                    product.to_owned(),
                    item.clone(),
                    super::ALL_LOCATIONS.to_owned(),
                ),
                *total,
            );
        }
        Ok(())
    }

    async fn set_inventory_level(
        &self,
        item: &str,
        location: &str,
        available: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let mut c = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        let Some(product) = c.items.get(item).cloned() else {
            return Ok(None);
        };
        c.levels.remove(&(
            product.clone(),
            item.to_owned(),
            super::ALL_LOCATIONS.to_owned(),
        ));
        c.levels.insert(
            (product.clone(), item.to_owned(), location.to_owned()),
            available,
        );
        let total = c
            .levels
            .iter()
            .filter(|((p, _, _), _)| *p == product)
            .map(|(_, v)| (*v).max(0))
            .sum();
        Ok(Some((product, total)))
    }
}

#[async_trait]
impl ProfileStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        // A poisoned shard still holds consistent data: every write is one insert.
        let now = unix_now();
        let found = Ok(self
            .shard(key)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .filter(|s| s.expires >= now)
            .map(|s| s.profile.clone()));
        record_result("memory", &found);
        found
    }

    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        let now = unix_now();
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        let stored = shard
            .remove(key)
            .filter(|s| s.expires >= now)
            .unwrap_or_else(|| Stored {
                profile: Arc::default(),
                expires: 0,
                applied: FxHashMap::default(),
            });
        let remembered: Vec<bool> = ops
            .iter()
            .map(|op| stored.applied.get(&op.id()).is_some_and(|t| *t >= now))
            .collect();
        let mut profile = Profile::clone(&stored.profile);
        let fresh = apply_ops(&mut profile, ops, &remembered);
        let profile = Arc::new(profile);
        if fresh.contains(&true) {
            let mut applied = stored.applied;
            applied.retain(|_, t| *t >= now);
            let until = now.saturating_add(self.retention.op_window_s());
            for (op, new) in ops.iter().zip(&fresh) {
                if *new {
                    applied.insert(op.id(), until);
                }
            }
            shard.insert(
                *key,
                Stored {
                    profile: profile.clone(),
                    expires: now.saturating_add(self.retention.profile_ttl_s()),
                    applied,
                },
            );
        } else if stored.expires >= now {
            shard.insert(*key, stored);
        }
        Ok(Applied { profile, fresh })
    }

    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        Ok(self
            .shard(key)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some())
    }

    async fn erase_all(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for shard in &self.shards {
            let mut s = shard.write().unwrap_or_else(|e| e.into_inner());
            n += s.len() as u64;
            s.clear();
        }
        Ok(n)
    }

    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        if !self.is_empty() {
            return Ok(false);
        }
        let expires = unix_now().saturating_add(self.retention.profile_ttl_s());
        for (key, profile) in profiles {
            self.shard(&key)
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    key,
                    Stored {
                        profile: Arc::new(profile),
                        expires,
                        applied: FxHashMap::default(),
                    },
                );
        }
        Ok(true)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        let now = unix_now();
        let mut erased = 0;
        for shard in &self.shards {
            let mut s = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = s.len();
            s.retain(|_, stored| stored.expires >= now);
            erased += (before - s.len()) as u64;
            for stored in s.values_mut() {
                stored.applied.retain(|_, t| *t >= now);
            }
        }
        Ok(erased)
    }
}
