//! Where visitor profiles live, behind one seam.
//!
//! The serving path only sees `Arc<dyn ProfileStore>`; the backend is chosen at start-up:
//! the embedded durable store (the default), Redis (shared by replicas), or the
//! in-process map (tests, benches), each behind the moka L1 tier ([`Tiered`]).
//! Profiles change only through [`ProfileStore::apply`], which hands the backend data
//! ([`ProfileOp`]s), never closures: a backend that must retry a read-modify-write
//! re-applies the same ops, and ops already applied are skipped. Each backend remembers
//! every op id it applied for [`Retention::op_window`] beside the profile (a sorted set
//! on Redis, a table on the embedded store), written in the same atomic step as the
//! profile, so a repeat within the window is skipped however much happened between;
//! the profile's own ring of recent ids is only the cheap first check.

pub mod breaker;
pub mod codec;
pub mod decisions;
pub mod embedded;
pub mod key;
pub mod memory;
pub mod redis;
pub mod segments;
pub mod tally;
pub mod tiered;
pub mod windows;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::Profile;
use crate::domain::catalog::ProductRecord;
use crate::domain::profile::ProfileOp;

pub use breaker::Breaker;
pub use decisions::{DecisionBatch, DecisionLog, DecisionRef, DecisionRetention, StoredDecision};
pub use embedded::EmbeddedStore;
pub use key::{KeyHasher, ProfileKey};
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use tally::{ArmTally, Count, Counts, ExperimentTally};
pub use tiered::Tiered;

/// Why an answer was given without the visitor's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degraded {
    /// The store did not answer within the request's deadline.
    Deadline,
    /// The store answered with an error.
    StoreError,
}

impl Degraded {
    pub const fn as_str(self) -> &'static str {
        match self {
            Degraded::Deadline => "deadline",
            Degraded::StoreError => "store_error",
        }
    }
}

/// Reads a profile within `deadline`: a slow or failing store gives no profile and the
/// reason, never an error, so the request is answered without personalization rather
/// than not at all.
pub async fn read_within(
    store: &dyn ProfileStore,
    key: &ProfileKey,
    deadline: std::time::Duration,
) -> (Option<Arc<Profile>>, Option<Degraded>) {
    match tokio::time::timeout(deadline, store.get(key)).await {
        Ok(Ok(profile)) => (profile, None),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "profile read failed; answering without it");
            (None, Some(Degraded::StoreError))
        }
        Err(_) => (None, Some(Degraded::Deadline)),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored value cannot be read: {0}")]
    Codec(String),
    #[error("too much contention on one profile; gave up after {0} attempts")]
    Contention(u32),
}

/// The result of [`ProfileStore::apply`].
#[derive(Clone, Debug)]
pub struct Applied {
    pub profile: Arc<Profile>,
    /// For each op, whether it was new (false: already applied before).
    pub fresh: Vec<bool>,
}

impl Applied {
    pub fn new_ops(&self) -> usize {
        self.fresh.iter().filter(|f| **f).count()
    }
}

/// How long the stores keep what they keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A profile not written for this long is erased (`storage.profile_ttl_s`).
    pub profile_ttl: std::time::Duration,
    /// Op ids are remembered this long (`events.max_age_s`): a repeated event or webhook
    /// within it is applied once.
    pub op_window: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            profile_ttl: std::time::Duration::from_secs(90 * 86_400),
            op_window: std::time::Duration::from_secs(7 * 86_400),
        }
    }
}

impl Retention {
    pub fn profile_ttl_s(&self) -> i64 {
        i64::try_from(self.profile_ttl.as_secs()).unwrap_or(i64::MAX)
    }

    pub fn op_window_s(&self) -> i64 {
        i64::try_from(self.op_window.as_secs()).unwrap_or(i64::MAX)
    }
}

/// Applies ops to a profile in memory, skipping those the store remembers as applied
/// (`remembered[i]` for `ops[i]`); shared by every backend.
pub fn apply_ops(profile: &mut Profile, ops: &[ProfileOp], remembered: &[bool]) -> Vec<bool> {
    ops.iter()
        .enumerate()
        .map(|(i, op)| !remembered.get(i).copied().unwrap_or(false) && profile.apply(op))
        .collect()
}

#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// A short, fixed name for metrics and readiness messages.
    fn backend(&self) -> &'static str;

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError>;

    /// Applies `ops` to the key's profile (a new one when there is none) as one atomic
    /// step: concurrent applies, from this process or another, never lose an op.
    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError>;

    /// Applies ops to many profiles; each profile's ops are atomic, the batch is not.
    /// Backends override it to save round trips or commits.
    async fn apply_batch(
        &self,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Vec<Result<Applied, StoreError>> {
        let mut out = Vec::with_capacity(batch.len());
        for (key, ops) in batch {
            out.push(self.apply(key, ops).await);
        }
        out
    }

    /// Erases the profile everywhere this store keeps it. True when there was one.
    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError>;

    /// Erases every profile this store holds (a shop's data-erasure request).
    async fn erase_all(&self) -> Result<u64, StoreError>;

    /// Bulk-loads profiles (demo data) unless the store already holds profiles.
    /// Returns whether it loaded them.
    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError>;

    /// Answers when the store can serve; `/readyz` is built on it.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Erases some of what has expired (profiles past their TTL, op ids past their
    /// window) and returns how much. Backends that expire keys themselves (Redis) have
    /// nothing to do; a background task calls it on the others.
    async fn sweep(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// One change to the shared catalog: applied atomically, and it moves the catalog's
/// version on.
#[derive(Clone, Debug, Default)]
pub struct CatalogChange {
    pub upserts: Vec<ProductRecord>,
    pub deletes: Vec<String>,
    /// Stock levels, by product id (also for the products upserted).
    pub stock: Vec<(String, i64)>,
}

impl CatalogChange {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty() && self.stock.is_empty()
    }
}

/// One entry of the shared event log: a product event as the models learn it, with
/// nothing that names a person (the session is a keyed hash, the order a hash).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// The replica that wrote it; it learned the entry when it took the event.
    pub origin: u64,
    pub product: String,
    pub kind: LogKind,
    /// The visitor's session (or customer) key: events of one visit share it.
    pub session: u64,
    /// Purchases of one order share it.
    pub order: Option<u64>,
    /// Unix seconds.
    pub at: i64,
    #[serde(default)]
    pub country: Option<crate::domain::Country>,
    #[serde(default)]
    pub device: Option<crate::domain::Device>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    View,
    AddToCart,
    Purchase,
}

/// The shared, append-only log of product events that every replica learns from and
/// `vitrine train` trains on. Cursors are opaque strings, ordered by the backend: `""`
/// is before the first entry.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends entries in order, keeping about the newest `keep` entries (0: all).
    async fn append_log(&self, entries: &[LogEntry], keep: u64) -> Result<(), StoreError>;

    /// Up to `max` entries after `cursor`, oldest first, each with its own cursor.
    async fn read_log(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<Vec<(String, LogEntry)>, StoreError>;

    /// The cursor of the newest entry (`""` when the log is empty).
    async fn log_end(&self) -> Result<String, StoreError>;
}

/// The shared state every replica loads and follows: the catalog, the trained models
/// and the event log they learn from. Products and their stock are kept apart, so a
/// stock change never rewrites (or races) a product's record. Every catalog change
/// moves a version counter on; replicas poll it and reload on a change.
#[async_trait]
pub trait CatalogStore: EventLog + DecisionLog + ExperimentTally {
    /// The store's epoch: a value a replica writes once into an empty store. A store
    /// that lost its data (Redis restarted without persistence) has none, or another;
    /// replicas compare it with the one they started on to tell a reset from a change.
    async fn epoch(&self) -> Result<Option<String>, StoreError>;

    /// Sets the epoch to `value` for `ttl` (`None`: for good) only when it is
    /// `expected` now (`None`: there is none); true when this call set it. Replicas race
    /// for it; one wins.
    async fn swap_epoch(
        &self,
        expected: Option<&str>,
        value: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<bool, StoreError>;

    async fn catalog_version(&self) -> Result<u64, StoreError>;

    /// Every stored product with its stock, and the version they were read at.
    async fn load_catalog(&self) -> Result<(u64, Vec<(ProductRecord, i64)>), StoreError>;

    /// Applies a change atomically; returns the new version.
    async fn write_catalog(&self, change: &CatalogChange) -> Result<u64, StoreError>;

    /// Platform inventory items (Shopify's, one per variant) of a product, each with
    /// its total over all locations, replacing what was known of those items. Shared
    /// by replicas, so a level update can land on any of them.
    async fn link_inventory(
        &self,
        product: &str,
        items: &[(String, i64)],
    ) -> Result<(), StoreError>;

    /// The version of the trained models in the store, if any.
    async fn models_version(&self) -> Result<Option<String>, StoreError>;

    /// The stored models: their version and encoded bytes.
    async fn load_models(&self) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    /// Stores newly trained models; replicas following the version load them.
    async fn save_models(&self, version: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// Stores a ruleset document under its version and makes it the live one, in one
    /// step (replicas following the live version never see one without the other).
    async fn publish_ruleset(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
    ) -> Result<(), StoreError>;

    /// Publishes as [`CatalogStore::publish_ruleset`] does, but only while the live
    /// version is still `expected` (`None`: none published yet), and appends `change` to
    /// the change log in the same step. False: the live version moved meanwhile (another
    /// editor, another replica) and nothing was written.
    async fn publish_ruleset_if(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
        expected: Option<&str>,
        change: &[u8],
    ) -> Result<bool, StoreError>;

    /// Appends one entry to the change log; the newest `CHANGE_HISTORY` are kept.
    async fn append_change(&self, change: &[u8]) -> Result<(), StoreError>;

    /// The change log, newest first, at most `limit` entries.
    async fn changes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Ends a console session on every replica: `session` is refused until `until`
    /// (Unix seconds, when it would have ended anyway).
    async fn revoke_session(&self, session: &str, until: i64) -> Result<(), StoreError>;

    /// Whether a console session was revoked (and has not ended since).
    async fn session_revoked(&self, session: &str, now: i64) -> Result<bool, StoreError>;

    /// The live ruleset's version, if any was published.
    async fn live_ruleset(&self) -> Result<Option<String>, StoreError>;

    /// A stored ruleset document.
    async fn load_ruleset(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stored versions with the time each was (last) published, newest first; the
    /// newest `RULESET_HISTORY` are kept.
    async fn ruleset_versions(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Makes a stored version live again; false when there is no such version.
    async fn activate_ruleset(&self, version: &str) -> Result<bool, StoreError>;

    /// Each promotion's redemptions so far: (uses, discount given in minor units).
    async fn promotion_usage(&self, ids: &[String]) -> Result<Vec<(u64, i64)>, StoreError>;

    /// Raises promotions' recorded usage to at least the given (uses, discount given):
    /// what a replica knew of the budgets, written back after a store reset.
    async fn restore_usage(&self, usage: &[(String, u64, i64)]) -> Result<(), StoreError>;

    /// Records one order's redemptions, atomically: all of them, or none when one would
    /// pass its limit (its index is returned). An order already recorded changes nothing.
    async fn redeem(&self, order: &str, redemptions: &[Redemption])
    -> Result<Redeemed, StoreError>;

    /// Sets one item's available level at one location; returns the product and its
    /// stock over all its items and locations, or `None` for an item no product named.
    async fn set_inventory_level(
        &self,
        item: &str,
        location: &str,
        available: i64,
    ) -> Result<Option<(String, i64)>, StoreError>;
}

/// Log cursors of the backends that number entries themselves (embedded, memory): the
/// entry's sequence number in decimal.
pub(crate) fn seq_cursor(cursor: &str) -> Result<u64, StoreError> {
    if cursor.is_empty() {
        return Ok(0);
    }
    cursor
        .parse()
        .map_err(|_| StoreError::Codec(format!("{cursor:?} is not an event log cursor")))
}

pub(crate) fn encode_entry(entry: &LogEntry) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(entry).map_err(|e| StoreError::Codec(e.to_string()))
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<LogEntry, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Codec(format!("event log entry: {e}")))
}

/// One promotion's part of an order, with the limits it must stay within.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    pub promotion: String,
    pub amount: i64,
    pub max_uses: Option<u64>,
    pub max_spend: Option<i64>,
    /// The customer's uses, counted and checked in the same step: (the profile key in
    /// hex, never a raw id; uses allowed).
    pub per_customer: Option<(String, u64)>,
}

impl Redemption {
    /// The key a customer's uses of this promotion are counted under.
    pub fn customer_field(&self) -> Option<String> {
        self.per_customer
            .as_ref()
            .map(|(customer, _)| format!("{}\x1f{customer}", self.promotion))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redeemed {
    Recorded,
    /// This order was recorded before; nothing changed.
    AlreadyRecorded,
    /// The redemption at this index would pass its limit; nothing changed.
    OverLimit(usize),
}

/// Whether `r` fits beside `(uses, spent)` and the customer's `customer_uses`.
pub(crate) fn fits(r: &Redemption, uses: u64, spent: i64, customer_uses: u64) -> bool {
    r.max_uses.is_none_or(|m| uses < m)
        && r.max_spend.is_none_or(|m| spent + r.amount <= m)
        && r.per_customer
            .as_ref()
            .is_none_or(|(_, m)| customer_uses < *m)
}

/// Ruleset versions kept for rollback.
pub const RULESET_HISTORY: usize = 50;

/// Change log entries kept.
pub const CHANGE_HISTORY: usize = 10_000;

/// The location of a level known only as an item's total over every location.
pub const ALL_LOCATIONS: &str = "0";

/// Counts a read against a tier: `result` is `hit`, `miss` or `error`.
pub fn record_read(tier: &'static str, result: &'static str) {
    metrics::counter!("vitrine_store_reads_total", "tier" => tier, "result" => result).increment(1);
}

/// Counts a read's outcome from its result.
pub fn record_result<T>(tier: &'static str, r: &Result<Option<T>, StoreError>) {
    record_read(
        tier,
        match r {
            Ok(Some(_)) => "hit",
            Ok(None) => "miss",
            Err(_) => "error",
        },
    );
}
