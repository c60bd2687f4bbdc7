//! The embedded durable store: the no-Redis default. Profiles live in a redb file
//! (pure-Rust, ACID, copy-on-write B-trees), so they survive restarts.
//!
//! redb has one writer at a time, so a read-modify-write inside a write transaction can
//! never lose an update. Writes run on the blocking pool (a commit waits for fsync); a
//! batch of events is one transaction, so one fsync covers all its profiles.
//!
//! Nothing lives forever: each profile has an expiry (`profile_expiry`, moved on every
//! write) and each applied op id one (`applied_ops`, keyed by profile then op, so a
//! profile's ids are one range). [`EmbeddedStore::sweep`] walks both tables a slice at
//! a time from where it last stopped and erases what has expired, so the file stops
//! growing once what it holds starts expiring (freed pages are reused).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Applied, CatalogChange, CatalogStore, DecisionBatch, DecisionLog, DecisionRetention, EventLog,
    LogEntry, ProfileKey, ProfileStore, StoreError, StoredDecision, apply_ops, codec, decisions,
    record_result, segments::Segments, windows,
};
use crate::domain::Profile;
use crate::domain::catalog::ProductRecord;
use crate::domain::profile::ProfileOp;
use crate::domain::time::unix_now;

const PROFILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("profiles");
/// Product id -> MessagePack [`ProductRecord`].
const PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_products");
const STOCK: TableDefinition<&str, i64> = TableDefinition::new("catalog_stock");
/// `catalog_version` -> the catalog's version.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `version` -> the models' version, `blob` -> the encoded models.
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
/// Inventory item -> product.
const INV_ITEMS: TableDefinition<&str, &str> = TableDefinition::new("inventory_items");
/// `product \x1f item \x1f location` -> available.
const INV_LEVELS: TableDefinition<&str, i64> = TableDefinition::new("inventory_levels");

/// Ruleset version -> its JSON document.
const RULESETS: TableDefinition<&str, &[u8]> = TableDefinition::new("rulesets");
/// Publish sequence -> `published_at version` (one row per stored version).
const RULESET_ORDER: TableDefinition<u64, &str> = TableDefinition::new("ruleset_order");
/// `live` -> the live version.
const RULESET_LIVE: TableDefinition<&str, &str> = TableDefinition::new("ruleset_live");
/// The change log: sequence number -> entry.
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// Revoked console sessions -> until when (Unix seconds).
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked_sessions");
/// Promotion -> (uses, discount given).
const PROMO_USAGE: TableDefinition<&str, (u64, i64)> = TableDefinition::new("promotion_usage");
/// Promotion and customer (profile key in hex) -> that customer's uses.
const PROMO_CUSTOMERS: TableDefinition<&str, u64> = TableDefinition::new("promotion_customers");
/// Orders whose redemptions are recorded -> when.
const REDEEMED: TableDefinition<&str, i64> = TableDefinition::new("redeemed_orders");
/// Sequence number -> MessagePack [`LogEntry`].
const EVENT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("event_log");
/// `epoch` -> the store's epoch and, after a unit separator, until when it holds (Unix
/// milliseconds; empty: for good).
const MARKERS: TableDefinition<&str, &str> = TableDefinition::new("markers");
/// Profile key -> when the profile expires (Unix seconds).
const PROFILE_EXPIRY: TableDefinition<&[u8], i64> = TableDefinition::new("profile_expiry");
/// Profile key (16 bytes) + op id (8 bytes, big-endian) -> when the id may be forgotten.
const APPLIED_OPS: TableDefinition<&[u8], i64> = TableDefinition::new("applied_ops");

/// Decision id -> its segment (8 bytes, big-endian), its entry's offset there (4,
/// little-endian) and the visitor (16): the previous version's index of the records in
/// [`Segments`], one row per decision; moved into [`windows`] at open.
/// Experiment counts: `<experiment>\n<variant>` -> MessagePack [`super::Counts`].
const TALLIES: TableDefinition<&str, &[u8]> = TableDefinition::new("experiment_tallies");
const DECISION_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("decision_index");
/// Where earlier versions kept decisions (records and indexes in the database): dropped
/// at open, so no record outlives an erasure in a table nothing reads any more.
const LEGACY_DECISION_TABLES: [&str; 4] = [
    "decisions",
    "decisions_by_visitor",
    "decision_batches",
    "decision_ids",
];

/// Entries of each expiring table one sweep looks at.
const SWEEP_SLICE: usize = 20_000;
/// How long one sweep may run (slice after slice) before it yields to the next tick.
const SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

fn op_key(key: &ProfileKey, id: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(key.as_bytes());
    k[16..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The range of a profile's op ids in `applied_ops`.
fn op_range(key: &ProfileKey) -> ([u8; 24], [u8; 24]) {
    (op_key(key, 0), op_key(key, u64::MAX))
}

fn level_key(product: &str, item: &str, location: &str) -> String {
    format!("{product}\x1f{item}\x1f{location}")
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    retention: super::Retention,
    /// Where the sweep stopped in `profile_expiry` and `applied_ops` (empty: start).
    sweep_from: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
    /// The decision records.
    segments: Arc<Segments>,
}

/// Where the decision records of the store at `path` are: `<path>.decisions/`.
fn segments_dir(path: &Path) -> std::path::PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".decisions");
    dir.into()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store with the default [`super::Retention`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, super::Retention::default())
    }

    pub fn open_with(path: &Path, retention: super::Retention) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => unavailable(format!(
                "{} is in use by another process (a running server holds it; stop it, or share \
                 profiles through Redis)",
                path.display()
            )),
            e => unavailable(format!("{}: {e}", path.display())),
        })?;
        // Create the table up front so reads never race its creation.
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let table = txn.open_table(PROFILES).map_err(unavailable)?;
            // Refuse a file of another format at start-up, not on every read.
            if let Some((_, value)) = table.first().map_err(unavailable)?
                && value.value().first() != Some(&codec::FORMAT)
            {
                return Err(StoreError::Codec(format!(
                    "{} holds profiles in another format; move it away to start afresh",
                    path.display()
                )));
            }
        }
        txn.open_table(PRODUCTS).map_err(unavailable)?;
        txn.open_table(STOCK).map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
        txn.open_table(INV_ITEMS).map_err(unavailable)?;
        txn.open_table(INV_LEVELS).map_err(unavailable)?;
        txn.open_table(MODELS).map_err(unavailable)?;
        txn.open_table(EVENT_LOG).map_err(unavailable)?;
        txn.open_table(RULESETS).map_err(unavailable)?;
        txn.open_table(RULESET_ORDER).map_err(unavailable)?;
        txn.open_table(RULESET_LIVE).map_err(unavailable)?;
        txn.open_table(PROMO_USAGE).map_err(unavailable)?;
        txn.open_table(TALLIES).map_err(unavailable)?;
        txn.open_table(REDEEMED).map_err(unavailable)?;
        txn.open_table(PROFILE_EXPIRY).map_err(unavailable)?;
        txn.open_table(APPLIED_OPS).map_err(unavailable)?;
        txn.open_table(MARKERS).map_err(unavailable)?;
        txn.open_table(PROMO_CUSTOMERS).map_err(unavailable)?;
        txn.open_table(windows::WINDOWS).map_err(unavailable)?;
        txn.open_table(windows::COUNTS).map_err(unavailable)?;
        txn.open_table(windows::TOTAL).map_err(unavailable)?;
        migrate_decision_index(&txn)?;
        for name in LEGACY_DECISION_TABLES {
            let legacy: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            txn.delete_table(legacy).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(db),
            retention,
            sweep_from: std::sync::Mutex::default(),
            segments: Arc::new(Segments::open(&segments_dir(path))?),
        })
    }

    fn read(db: &Database, key: &ProfileKey) -> Result<Option<Profile>, StoreError> {
        let txn = db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PROFILES).map_err(unavailable)?;
        let value = table.get(key.as_bytes().as_slice()).map_err(unavailable)?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    fn write_batch(
        db: &Database,
        retention: super::Retention,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Result<Vec<Applied>, StoreError> {
        let now = unix_now();
        let txn = db.begin_write().map_err(unavailable)?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut table = txn.open_table(PROFILES).map_err(unavailable)?;
            let mut expiry = txn.open_table(PROFILE_EXPIRY).map_err(unavailable)?;
            let mut applied = txn.open_table(APPLIED_OPS).map_err(unavailable)?;
            for (key, ops) in batch {
                let k = key.as_bytes().as_slice();
                let mut profile = match table.get(k).map_err(unavailable)? {
                    Some(v) => codec::decode(v.value())?,
                    None => Profile::default(),
                };
                let mut remembered = Vec::with_capacity(ops.len());
                for op in ops {
                    let until = applied
                        .get(op_key(key, op.id()).as_slice())
                        .map_err(unavailable)?
                        .map(|v| v.value());
                    remembered.push(until.is_some_and(|t| t >= now));
                }
                let fresh = apply_ops(&mut profile, ops, &remembered);
                if fresh.contains(&true) {
                    table
                        .insert(k, codec::encode(&profile)?.as_slice())
                        .map_err(unavailable)?;
                    expiry
                        .insert(k, now.saturating_add(retention.profile_ttl_s()))
                        .map_err(unavailable)?;
                    let until = now.saturating_add(retention.op_window_s());
                    for (op, new) in ops.iter().zip(&fresh) {
                        if *new {
                            applied
                                .insert(op_key(key, op.id()).as_slice(), until)
                                .map_err(unavailable)?;
                        }
                    }
                }
                out.push(Applied {
                    profile: Arc::new(profile),
                    fresh,
                });
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(out)
    }

    /// Erases expired profiles and op ids: up to [`SWEEP_SLICE`] entries of each table
    /// from where the last sweep stopped, so a sweep is short however large the file.
    /// Returns how many entries it erased.
    fn sweep_slice(
        db: &Database,
        from: &mut (Vec<u8>, Vec<u8>),
        now: i64,
    ) -> Result<u64, StoreError> {
        let txn = db.begin_write().map_err(unavailable)?;
        let mut erased = 0u64;
        {
            let mut profiles = txn.open_table(PROFILES).map_err(unavailable)?;
            let mut expiry = txn.open_table(PROFILE_EXPIRY).map_err(unavailable)?;
            let mut applied = txn.open_table(APPLIED_OPS).map_err(unavailable)?;
            let (expired, next) = Self::expired_slice(&expiry, &from.0, now)?;
            for k in &expired {
                profiles.remove(k.as_slice()).map_err(unavailable)?;
                expiry.remove(k.as_slice()).map_err(unavailable)?;
                if let Ok(key) = <[u8; 16]>::try_from(k.as_slice()) {
                    let (lo, hi) = op_range(&ProfileKey(key));
                    applied
                        .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
                        .map_err(unavailable)?;
                }
            }
            erased += expired.len() as u64;
            from.0 = next;
            let (expired, next) = Self::expired_slice(&applied, &from.1, now)?;
            for k in &expired {
                applied.remove(k.as_slice()).map_err(unavailable)?;
            }
            erased += expired.len() as u64;
            from.1 = next;
        }
        txn.commit().map_err(unavailable)?;
        Ok(erased)
    }

    /// The expired keys among the next [`SWEEP_SLICE`] entries from `from`, and where
    /// the next slice starts (empty: back to the first entry).
    fn expired_slice(
        table: &redb::Table<&[u8], i64>,
        from: &[u8],
        now: i64,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), StoreError> {
        let mut expired = Vec::new();
        let mut last = None;
        let mut seen = 0;
        for row in table.range(from..).map_err(unavailable)? {
            let (k, until) = row.map_err(unavailable)?;
            seen += 1;
            if until.value() < now {
                expired.push(k.value().to_vec());
            }
            last = Some(k.value().to_vec());
            if seen == SWEEP_SLICE {
                break;
            }
        }
        let next = match last {
            // Past the last key read: that key plus a zero byte.
            Some(mut k) if seen == SWEEP_SLICE => {
                k.push(0);
                k
            }
            _ => Vec::new(),
        };
        Ok((expired, next))
    }

    /// Sweeps with the clock at `now`: what [`ProfileStore::sweep`] does, with the time
    /// given (tests move it forward instead of waiting).
    pub async fn sweep_at(&self, now: i64) -> Result<u64, StoreError> {
        let from = std::mem::take(&mut *self.sweep_from.lock().unwrap_or_else(|e| e.into_inner()));
        let db = self.db.clone();
        let (erased, from) = tokio::task::spawn_blocking(move || {
            let mut from = from;
            Self::sweep_slice(&db, &mut from, now).map(|n| (n, from))
        })
        .await
        .map_err(|e| unavailable(format!("store task: {e}")))??;
        *self.sweep_from.lock().unwrap_or_else(|e| e.into_inner()) = from;
        Ok(erased)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| unavailable(format!("store task: {e}")))?
    }
}

/// Stores a ruleset under its version and makes it live, within `txn`.
fn publish_in(
    txn: &redb::WriteTransaction,
    version: &str,
    document: &[u8],
    published_at: i64,
) -> Result<(), StoreError> {
    let mut docs = txn.open_table(RULESETS).map_err(unavailable)?;
    let mut order = txn.open_table(RULESET_ORDER).map_err(unavailable)?;
    let mut live = txn.open_table(RULESET_LIVE).map_err(unavailable)?;
    docs.insert(version, document).map_err(unavailable)?;
    let mut rows: Vec<(u64, String)> = Vec::new();
    for row in order.iter().map_err(unavailable)? {
        let (k, v) = row.map_err(unavailable)?;
        rows.push((k.value(), v.value().to_owned()));
    }
    let next = rows.last().map_or(1, |(k, _)| k + 1);
    for (k, row) in &rows {
        if row.split_once(' ').is_some_and(|(_, v)| v == version) {
            order.remove(*k).map_err(unavailable)?;
        }
    }
    order
        .insert(next, format!("{published_at} {version}").as_str())
        .map_err(unavailable)?;
    let kept = order.len().map_err(unavailable)?;
    let excess = kept.saturating_sub(super::RULESET_HISTORY as u64);
    let mut old: Vec<(u64, String)> = Vec::new();
    for row in order.iter().map_err(unavailable)?.take(excess as usize) {
        let (k, v) = row.map_err(unavailable)?;
        old.push((k.value(), v.value().to_owned()));
    }
    for (k, row) in old {
        order.remove(k).map_err(unavailable)?;
        if let Some((_, v)) = row.split_once(' ') {
            docs.remove(v).map_err(unavailable)?;
        }
    }
    live.insert("live", version).map_err(unavailable)?;
    Ok(())
}

/// Appends one entry to the change log within `txn`, keeping the newest.
fn log_change_in(txn: &redb::WriteTransaction, change: &[u8]) -> Result<(), StoreError> {
    let mut changes = txn.open_table(CHANGES).map_err(unavailable)?;
    let next = changes
        .last()
        .map_err(unavailable)?
        .map_or(1, |(k, _)| k.value() + 1);
    changes.insert(next, change).map_err(unavailable)?;
    let excess = changes
        .len()
        .map_err(unavailable)?
        .saturating_sub(super::CHANGE_HISTORY as u64);
    if excess > 0 {
        let first = changes
            .first()
            .map_err(unavailable)?
            .map_or(0, |(k, _)| k.value());
        for k in first..first + excess {
            changes.remove(k).map_err(unavailable)?;
        }
    }
    Ok(())
}

fn codec_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Codec(e.to_string())
}

/// Moves the previous version's decision index (a row per decision) into windows.
fn migrate_decision_index(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    {
        let index = txn.open_table(DECISION_INDEX).map_err(unavailable)?;
        for row in index.iter().map_err(unavailable)? {
            let (k, v) = row.map_err(unavailable)?;
            let (k, v) = (k.value(), v.value());
            let (Ok(id), Ok(segment), Ok(offset), Ok(visitor)) = (
                <[u8; 16]>::try_from(k),
                <[u8; 8]>::try_from(v.get(..8).unwrap_or_default()),
                <[u8; 4]>::try_from(v.get(8..12).unwrap_or_default()),
                <[u8; 16]>::try_from(v.get(12..).unwrap_or_default()),
            ) else {
                return Err(codec_error("decision index entry of another size"));
            };
            entries.push(windows::Entry {
                id,
                visitor: ProfileKey(visitor),
                segment: u64::from_be_bytes(segment),
                offset: u32::from_le_bytes(offset),
            });
        }
    }
    if !entries.is_empty() {
        windows::add(txn, entries)?;
    }
    txn.delete_table(DECISION_INDEX).map_err(unavailable)?;
    Ok(())
}

/// Reads decisions by their index entries; one erased since it was found (zeroed, so
/// of another id) or in a segment gone is left out.
fn read_located(
    segments: &Segments,
    found: &[windows::Entry],
) -> Result<Vec<StoredDecision>, StoreError> {
    let mut out = Vec::with_capacity(found.len());
    for e in found {
        if let Some(d) = segments.read(e.segment, e.offset)?
            && d.id == e.id
        {
            out.push(d);
        }
    }
    Ok(out)
}

fn tally_key(experiment: &str, variant: &str) -> String {
    format!("{experiment}\n{variant}")
}

#[async_trait]
impl super::ExperimentTally for EmbeddedStore {
    async fn add_tallies(&self, tallies: &[super::ArmTally]) -> Result<(), StoreError> {
        if tallies.is_empty() {
            return Ok(());
        }
        let tallies = tallies.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(TALLIES).map_err(unavailable)?;
                for t in &tallies {
                    let key = tally_key(&t.experiment, &t.variant);
                    let mut counts: super::Counts =
                        match table.get(key.as_str()).map_err(unavailable)? {
                            Some(v) => rmp_serde::from_slice(v.value()).map_err(codec_error)?,
                            None => super::Counts::default(),
                        };
                    counts.merge(&t.counts);
                    let bytes = rmp_serde::to_vec(&counts).map_err(codec_error)?;
                    table
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn tallies(&self, experiment: &str) -> Result<Vec<(String, super::Counts)>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(TALLIES).map_err(unavailable)?;
        let from = format!("{experiment}\n");
        let until = format!("{experiment}\u{b}");
        let mut out = Vec::new();
        for row in table
            .range(from.as_str()..until.as_str())
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let variant = k.value()[from.len()..].to_owned();
            out.push((
                variant,
                rmp_serde::from_slice(v.value()).map_err(codec_error)?,
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl DecisionLog for EmbeddedStore {
    async fn append_decisions(
        &self,
        records: Arc<DecisionBatch>,
        retention: DecisionRetention,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let segments = self.segments.clone();
        self.blocking(move |db| {
            // The bytes first: the index never points at what was not written.
            let (segment, base) = segments.write(&records)?;
            let entries = records
                .iter()
                .zip(records.starts())
                .map(|(d, start)| {
                    Ok(windows::Entry {
                        id: d.id,
                        visitor: d.visitor,
                        segment,
                        offset: u32::try_from(base + *start as u64)
                            .map_err(|_| codec_error("decision segment too large"))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let txn = db.begin_write().map_err(unavailable)?;
            windows::add(&txn, entries)?;
            let first_kept = windows::trim(&txn, retention, now_ms)?;
            txn.commit().map_err(unavailable)?;
            // A segment none of whose decisions is left goes whole.
            segments.remove_before(first_kept.unwrap_or(segment))
        })
        .await
    }

    async fn decision(&self, id: &[u8; 16]) -> Result<Option<StoredDecision>, StoreError> {
        let id = *id;
        let segments = self.segments.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            match windows::find(&txn, &id)? {
                Some(e) => Ok(read_located(&segments, &[e])?.pop()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn visitor_decisions(
        &self,
        visitor: &ProfileKey,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let visitor = *visitor;
        let segments = self.segments.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let found = windows::of_visitor(&txn, &visitor, &decisions::id_floor(since_ms), limit)?;
            let mut out = read_located(&segments, &found)?;
            out.retain(|d| d.at_ms >= since_ms);
            Ok(out)
        })
        .await
    }

    async fn erase_decisions(&self, visitor: &ProfileKey) -> Result<u64, StoreError> {
        let visitor = *visitor;
        let segments = self.segments.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let theirs = windows::remove_visitor(&txn, &visitor)?;
            // Zeroed before the index lets go, so no byte of theirs outlives a crash
            // unpointed-to.
            for e in &theirs {
                segments.zero(e.segment, e.offset)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(theirs.len() as u64)
        })
        .await
    }

    async fn erase_all_decisions(&self) -> Result<u64, StoreError> {
        let segments = self.segments.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let n = windows::clear(&txn)?;
            segments.clear()?;
            txn.commit().map_err(unavailable)?;
            Ok(n)
        })
        .await
    }

    async fn decisions_between(
        &self,
        from_ms: i64,
        until_ms: i64,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<StoredDecision>, Option<String>), StoreError> {
        let after = decisions::parse_cursor(cursor)?;
        let segments = self.segments.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let found = windows::between(
                &txn,
                &decisions::id_floor(from_ms),
                &decisions::id_floor(until_ms),
                after,
                limit,
            )?;
            let full = found.len() >= limit;
            let last = found.last().map(|e| e.id);
            let mut out = read_located(&segments, &found)?;
            out.retain(|d| d.at_ms >= from_ms && d.at_ms < until_ms);
            let next = full
                .then_some(last)
                .flatten()
                .map(|id| decisions::cursor_of(&id));
            Ok((out, next))
        })
        .await
    }
}

#[async_trait]
impl EventLog for EmbeddedStore {
    async fn append_log(&self, entries: &[LogEntry], keep: u64) -> Result<(), StoreError> {
        let encoded = entries
            .iter()
            .map(super::encode_entry)
            .collect::<Result<Vec<_>, _>>()?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(EVENT_LOG).map_err(unavailable)?;
                let mut seq = table
                    .last()
                    .map_err(unavailable)?
                    .map_or(0, |(k, _)| k.value());
                for e in &encoded {
                    seq += 1;
                    table.insert(seq, e.as_slice()).map_err(unavailable)?;
                }
                let len = table.len().map_err(unavailable)?;
                if keep > 0 && len > keep {
                    let first = table
                        .first()
                        .map_err(unavailable)?
                        .map_or(0, |(k, _)| k.value());
                    let cut = first + (len - keep);
                    table.retain_in(..cut, |_, _| false).map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn read_log(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<Vec<(String, LogEntry)>, StoreError> {
        let after = super::seq_cursor(cursor)?;
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(EVENT_LOG).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in table.range(after + 1..).map_err(unavailable)?.take(max) {
                let (k, v) = row.map_err(unavailable)?;
                out.push((k.value().to_string(), super::decode_entry(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    async fn log_end(&self) -> Result<String, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(EVENT_LOG).map_err(unavailable)?;
        Ok(table
            .last()
            .map_err(unavailable)?
            .map_or_else(String::new, |(k, _)| k.value().to_string()))
    }
}

/// The epoch in a `markers` row, when it still holds at `now_ms`.
fn live_epoch(row: &str, now_ms: i64) -> Option<&str> {
    let (value, until) = row.split_once('\x1f').unwrap_or((row, ""));
    (until.is_empty() || until.parse::<i64>().is_ok_and(|u| u > now_ms)).then_some(value)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl CatalogStore for EmbeddedStore {
    async fn epoch(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(MARKERS).map_err(unavailable)?;
        Ok(table
            .get("epoch")
            .map_err(unavailable)?
            .and_then(|v| live_epoch(v.value(), now_ms()).map(str::to_owned)))
    }

    async fn swap_epoch(
        &self,
        expected: Option<&str>,
        value: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<bool, StoreError> {
        let expected = expected.map(str::to_owned);
        let row = match ttl {
            Some(t) => format!("{value}\x1f{}", now_ms() + t.as_millis() as i64),
            None => value.to_owned(),
        };
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let swapped = {
                let mut table = txn.open_table(MARKERS).map_err(unavailable)?;
                let current = table
                    .get("epoch")
                    .map_err(unavailable)?
                    .and_then(|v| live_epoch(v.value(), now_ms()).map(str::to_owned));
                let matches = current == expected;
                if matches {
                    table.insert("epoch", row.as_str()).map_err(unavailable)?;
                }
                matches
            };
            txn.commit().map_err(unavailable)?;
            Ok(swapped)
        })
        .await
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let meta = txn.open_table(META).map_err(unavailable)?;
        Ok(meta
            .get("catalog_version")
            .map_err(unavailable)?
            .map_or(0, |v| v.value()))
    }

    async fn load_catalog(&self) -> Result<(u64, Vec<(ProductRecord, i64)>), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let version = txn
                .open_table(META)
                .map_err(unavailable)?
                .get("catalog_version")
                .map_err(unavailable)?
                .map_or(0, |v| v.value());
            let products = txn.open_table(PRODUCTS).map_err(unavailable)?;
            let stock = txn.open_table(STOCK).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in products.iter().map_err(unavailable)? {
                let (id, value) = entry.map_err(unavailable)?;
                let record: ProductRecord =
                    rmp_serde::from_slice(value.value()).map_err(codec_error)?;
                let level = stock
                    .get(id.value())
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value());
                out.push((record, level));
            }
            Ok((version, out))
        })
        .await
    }

    async fn write_catalog(&self, change: &CatalogChange) -> Result<u64, StoreError> {
        let change = change.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let version = {
                let mut products = txn.open_table(PRODUCTS).map_err(unavailable)?;
                let mut stock = txn.open_table(STOCK).map_err(unavailable)?;
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                for r in &change.upserts {
                    let bytes = rmp_serde::to_vec(r).map_err(codec_error)?;
                    products
                        .insert(r.id.as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                }
                for (id, level) in &change.stock {
                    stock.insert(id.as_str(), *level).map_err(unavailable)?;
                }
                for id in &change.deletes {
                    products.remove(id.as_str()).map_err(unavailable)?;
                    stock.remove(id.as_str()).map_err(unavailable)?;
                }
                let next = meta
                    .get("catalog_version")
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value())
                    + 1;
                meta.insert("catalog_version", next).map_err(unavailable)?;
                next
            };
            txn.commit().map_err(unavailable)?;
            Ok(version)
        })
        .await
    }

    async fn publish_ruleset(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
    ) -> Result<(), StoreError> {
        let (version, document) = (version.to_owned(), document.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            publish_in(&txn, &version, &document, published_at)?;
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn publish_ruleset_if(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
        expected: Option<&str>,
        change: &[u8],
    ) -> Result<bool, StoreError> {
        let (version, document) = (version.to_owned(), document.to_vec());
        let (expected, change) = (expected.map(str::to_owned), change.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let live = {
                let live = txn.open_table(RULESET_LIVE).map_err(unavailable)?;
                live.get("live")
                    .map_err(unavailable)?
                    .map(|v| v.value().to_owned())
            };
            if live != expected {
                return Ok(false);
            }
            publish_in(&txn, &version, &document, published_at)?;
            log_change_in(&txn, &change)?;
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn append_change(&self, change: &[u8]) -> Result<(), StoreError> {
        let change = change.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            log_change_in(&txn, &change)?;
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn revoke_session(&self, session: &str, until: i64) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(REVOKED).map_err(unavailable)?;
                // Sessions that ended anyway are let go of (there are few).
                let now = crate::domain::time::unix_now();
                let mut over = Vec::new();
                for row in table.iter().map_err(unavailable)? {
                    let (k, v) = row.map_err(unavailable)?;
                    if v.value() <= now {
                        over.push(k.value().to_owned());
                    }
                }
                for k in over {
                    table.remove(k.as_str()).map_err(unavailable)?;
                }
                table.insert(session.as_str(), until).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn session_revoked(&self, session: &str, now: i64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(REVOKED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        };
        Ok(table
            .get(session)
            .map_err(unavailable)?
            .is_some_and(|until| until.value() > now))
    }

    async fn changes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(CHANGES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(unavailable)?.rev().take(limit) {
            let (_, v) = row.map_err(unavailable)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    async fn promotion_usage(&self, ids: &[String]) -> Result<Vec<(u64, i64)>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PROMO_USAGE).map_err(unavailable)?;
        ids.iter()
            .map(|id| {
                Ok(table
                    .get(id.as_str())
                    .map_err(unavailable)?
                    .map_or((0, 0), |v| v.value()))
            })
            .collect()
    }

    async fn restore_usage(&self, usage: &[(String, u64, i64)]) -> Result<(), StoreError> {
        let usage = usage.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(PROMO_USAGE).map_err(unavailable)?;
                for (id, uses, spent) in &usage {
                    let (u, s) = table
                        .get(id.as_str())
                        .map_err(unavailable)?
                        .map_or((0, 0), |v| v.value());
                    table
                        .insert(id.as_str(), (u.max(*uses), s.max(*spent)))
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn redeem(
        &self,
        order: &str,
        redemptions: &[super::Redemption],
    ) -> Result<super::Redeemed, StoreError> {
        let (order, redemptions) = (order.to_owned(), redemptions.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let outcome = {
                let mut usage = txn.open_table(PROMO_USAGE).map_err(unavailable)?;
                let mut customers = txn.open_table(PROMO_CUSTOMERS).map_err(unavailable)?;
                let mut orders = txn.open_table(REDEEMED).map_err(unavailable)?;
                if orders.get(order.as_str()).map_err(unavailable)?.is_some() {
                    super::Redeemed::AlreadyRecorded
                } else {
                    let mut now = Vec::with_capacity(redemptions.len());
                    let mut over = None;
                    for (i, r) in redemptions.iter().enumerate() {
                        let (uses, spent) = usage
                            .get(r.promotion.as_str())
                            .map_err(unavailable)?
                            .map_or((0, 0), |v| v.value());
                        let field = r.customer_field();
                        let customer = match &field {
                            Some(f) => customers
                                .get(f.as_str())
                                .map_err(unavailable)?
                                .map_or(0, |v| v.value()),
                            None => 0,
                        };
                        if !super::fits(r, uses, spent, customer) {
                            over = Some(i);
                            break;
                        }
                        now.push((uses, spent, field.map(|f| (f, customer))));
                    }
                    match over {
                        Some(i) => super::Redeemed::OverLimit(i),
                        None => {
                            for (r, (uses, spent, customer)) in redemptions.iter().zip(now) {
                                usage
                                    .insert(r.promotion.as_str(), (uses + 1, spent + r.amount))
                                    .map_err(unavailable)?;
                                if let Some((f, n)) = customer {
                                    customers.insert(f.as_str(), n + 1).map_err(unavailable)?;
                                }
                            }
                            orders
                                .insert(order.as_str(), unix_now())
                                .map_err(unavailable)?;
                            super::Redeemed::Recorded
                        }
                    }
                }
            };
            if outcome == super::Redeemed::Recorded {
                txn.commit().map_err(unavailable)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn live_ruleset(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(RULESET_LIVE).map_err(unavailable)?;
        let v = table.get("live").map_err(unavailable)?;
        Ok(v.map(|v| v.value().to_owned()))
    }

    async fn load_ruleset(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(RULESETS).map_err(unavailable)?;
        let v = table.get(version).map_err(unavailable)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    async fn ruleset_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(RULESET_ORDER).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(unavailable)?.rev() {
            let (_, v) = row.map_err(unavailable)?;
            if let Some((at, version)) = v.value().split_once(' ') {
                out.push((version.to_owned(), at.parse().unwrap_or(0)));
            }
        }
        Ok(out)
    }

    async fn activate_ruleset(&self, version: &str) -> Result<bool, StoreError> {
        let version = version.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let found = {
                let docs = txn.open_table(RULESETS).map_err(unavailable)?;
                let found = docs.get(version.as_str()).map_err(unavailable)?.is_some();
                if found {
                    let mut live = txn.open_table(RULESET_LIVE).map_err(unavailable)?;
                    live.insert("live", version.as_str()).map_err(unavailable)?;
                }
                found
            };
            txn.commit().map_err(unavailable)?;
            Ok(found)
        })
        .await
    }

    async fn models_version(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(MODELS).map_err(unavailable)?;
        let v = table.get("version").map_err(unavailable)?;
        Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    async fn load_models(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(MODELS).map_err(unavailable)?;
            let version = table.get("version").map_err(unavailable)?;
            let blob = table.get("blob").map_err(unavailable)?;
            Ok(match (version, blob) {
                (Some(v), Some(b)) => Some((
                    String::from_utf8_lossy(v.value()).into_owned(),
                    b.value().to_vec(),
                )),
                _ => None,
            })
        })
        .await
    }

    async fn save_models(&self, version: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (version, bytes) = (version.to_owned(), bytes.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(MODELS).map_err(unavailable)?;
                table
                    .insert("blob", bytes.as_slice())
                    .map_err(unavailable)?;
                table
                    .insert("version", version.as_bytes())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn link_inventory(
        &self,
        product: &str,
        items: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let (product, items) = (product.to_owned(), items.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut links = txn.open_table(INV_ITEMS).map_err(unavailable)?;
                let mut levels = txn.open_table(INV_LEVELS).map_err(unavailable)?;
                for (item, total) in &items {
                    let previous = links
                        .insert(item.as_str(), product.as_str())
                        .map_err(unavailable)?
                        .map(|v| v.value().to_owned());
                    if let Some(previous) = previous {
                        let prefix = level_key(&previous, item, "");
                        let stale: Vec<String> = levels
                            .range(prefix.as_str()..)
                            .map_err(unavailable)?
                            .map_while(|e| {
                                let key = e.ok()?.0.value().to_owned();
                                key.starts_with(&prefix).then_some(key)
                            })
                            .collect();
                        for key in stale {
                            levels.remove(key.as_str()).map_err(unavailable)?;
                        }
                    }
                    levels
                        .insert(
                            level_key(&product, item, super::ALL_LOCATIONS).as_str(),
                            *total,
                        )
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn set_inventory_level(
        &self,
        item: &str,
        location: &str,
        available: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let (item, location) = (item.to_owned(), location.to_owned());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let found = {
                let links = txn.open_table(INV_ITEMS).map_err(unavailable)?;
                let Some(product) = links
                    .get(item.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value().to_owned())
                else {
                    return Ok(None);
                };
                let mut levels = txn.open_table(INV_LEVELS).map_err(unavailable)?;
                levels
                    .remove(level_key(&product, &item, super::ALL_LOCATIONS).as_str())
                    .map_err(unavailable)?;
                levels
                    .insert(level_key(&product, &item, &location).as_str(), available)
                    .map_err(unavailable)?;
                let prefix = format!("{product}\x1f");
                let mut total = 0i64;
                for entry in levels.range(prefix.as_str()..).map_err(unavailable)? {
                    let (key, value) = entry.map_err(unavailable)?;
                    if !key.value().starts_with(&prefix) {
                        break;
                    }
                    total += value.value().max(0);
                }
                (product, total)
            };
            txn.commit().map_err(unavailable)?;
            Ok(Some(found))
        })
        .await
    }
}

#[async_trait]
impl ProfileStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        // A point read is a few microseconds on the B-tree: cheaper inline than a hop
        // to the blocking pool.
        let found = Self::read(&self.db, key).map(|p| p.map(Arc::new));
        record_result("embedded", &found);
        found
    }

    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        let batch = vec![(*key, ops.to_vec())];
        let retention = self.retention;
        let mut out = self
            .blocking(move |db| Self::write_batch(db, retention, &batch))
            .await?;
        out.pop().ok_or_else(|| unavailable("empty batch result"))
    }

    async fn apply_batch(
        &self,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Vec<Result<Applied, StoreError>> {
        let owned = batch.to_vec();
        let retention = self.retention;
        match self
            .blocking(move |db| Self::write_batch(db, retention, &owned))
            .await
        {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        let key = *key;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let existed = {
                let mut table = txn.open_table(PROFILES).map_err(unavailable)?;
                let mut expiry = txn.open_table(PROFILE_EXPIRY).map_err(unavailable)?;
                let mut applied = txn.open_table(APPLIED_OPS).map_err(unavailable)?;
                expiry
                    .remove(key.as_bytes().as_slice())
                    .map_err(unavailable)?;
                let (lo, hi) = op_range(&key);
                applied
                    .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
                    .map_err(unavailable)?;
                table
                    .remove(key.as_bytes().as_slice())
                    .map_err(unavailable)?
                    .is_some()
            };
            txn.commit().map_err(unavailable)?;
            Ok(existed)
        })
        .await
    }

    async fn erase_all(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let n = {
                let table = txn.open_table(PROFILES).map_err(unavailable)?;
                table.len().map_err(unavailable)?
            };
            txn.delete_table(PROFILES).map_err(unavailable)?;
            txn.open_table(PROFILES).map_err(unavailable)?;
            for table in [PROFILE_EXPIRY, APPLIED_OPS] {
                txn.delete_table(table).map_err(unavailable)?;
                txn.open_table(table).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(n)
        })
        .await
    }

    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        let until = unix_now().saturating_add(self.retention.profile_ttl_s());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(PROFILES).map_err(unavailable)?;
                let mut expiry = txn.open_table(PROFILE_EXPIRY).map_err(unavailable)?;
                if !table.is_empty().map_err(unavailable)? {
                    return Ok(false);
                }
                for (key, profile) in &profiles {
                    let k = key.as_bytes().as_slice();
                    table
                        .insert(k, codec::encode(profile)?.as_slice())
                        .map_err(unavailable)?;
                    expiry.insert(k, until).map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        txn.open_table(PROFILES).map_err(unavailable)?;
        Ok(())
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        // Slices until both tables have been walked through once, or the budget is spent:
        // a sweep keeps up with any rate of new visitors the store itself keeps up with.
        let started = std::time::Instant::now();
        let now = unix_now();
        let mut erased = 0;
        loop {
            erased += self.sweep_at(now).await?;
            let wrapped = {
                let from = self.sweep_from.lock().unwrap_or_else(|e| e.into_inner());
                from.0.is_empty() && from.1.is_empty()
            };
            if wrapped || started.elapsed() > SWEEP_BUDGET {
                return Ok(erased);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use redb::TableHandle;

    use super::*;

    #[tokio::test]
    async fn the_previous_versions_decision_index_moves_into_windows_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        let records: Vec<StoredDecision> = (0..3u8)
            .map(|n| {
                let mut id = decisions::id_floor(1_700_000_000_000 + i64::from(n) * 70);
                id[15] = n;
                StoredDecision {
                    id,
                    at_ms: 1_700_000_000_000 + i64::from(n) * 70,
                    visitor: ProfileKey([n % 2; 16]),
                    bytes: vec![n; 5],
                }
            })
            .collect();
        {
            let batch = DecisionBatch::of(&records).unwrap();
            let (segment, base) = Segments::open(&segments_dir(&path))
                .unwrap()
                .write(&batch)
                .unwrap();
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut index = txn.open_table(DECISION_INDEX).unwrap();
                for (r, start) in records.iter().zip(batch.starts()) {
                    let mut v = segment.to_be_bytes().to_vec();
                    v.extend_from_slice(
                        &u32::try_from(base + *start as u64).unwrap().to_le_bytes(),
                    );
                    v.extend_from_slice(r.visitor.as_bytes());
                    index.insert(r.id.as_slice(), v.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        for r in &records {
            assert_eq!(store.decision(&r.id).await.unwrap().as_ref(), Some(r));
        }
        let zeros = store
            .visitor_decisions(&ProfileKey([0; 16]), 0, 10)
            .await
            .unwrap();
        assert_eq!(zeros, [records[2].clone(), records[0].clone()]);
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            !txn.list_tables()
                .unwrap()
                .any(|t| t.name() == DECISION_INDEX.name()),
            "the old index is gone"
        );
    }

    #[test]
    fn decision_tables_of_earlier_versions_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            for name in LEGACY_DECISION_TABLES {
                let t: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
                txn.open_table(t)
                    .unwrap()
                    .insert(b"id".as_slice(), b"a record".as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        drop(EmbeddedStore::open(&path).unwrap());
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let left: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .filter(|n| LEGACY_DECISION_TABLES.contains(&n.as_str()))
            .collect();
        assert!(left.is_empty(), "still there: {left:?}");
    }
}
