//! The decision log's storage: records as opaque bytes, found by decision id, by
//! visitor (newest first) and by time (oldest first, for export), kept by count and by
//! age.
//!
//! Decision ids are UUIDv7s: their first 48 bits are the time in milliseconds, so
//! ordering ids orders decisions by time, and a backend keyed by id needs no separate
//! time index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{ProfileKey, StoreError};

/// One decision as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDecision {
    pub id: [u8; 16],
    /// Unix milliseconds.
    pub at_ms: i64,
    pub visitor: ProfileKey,
    pub bytes: Vec<u8>,
}

impl StoredDecision {
    /// The bytes before the record in an encoded decision: when (8, little-endian ms),
    /// the visitor (16), the id (16).
    pub const HEAD: usize = 40;

    /// Appends the decision as the stores keep it: [`StoredDecision::HEAD`], then the
    /// record.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(self.visitor.as_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.bytes);
    }

    /// A decision from [`StoredDecision::encode_into`]'s bytes.
    pub fn decode(e: &[u8]) -> Result<Self, StoreError> {
        let cut = || StoreError::Codec("decision entry cut short".into());
        let head = e.get(..Self::HEAD).ok_or_else(cut)?;
        let at: [u8; 8] = head[..8].try_into().map_err(|_| cut())?;
        let visitor: [u8; 16] = head[8..24].try_into().map_err(|_| cut())?;
        let id: [u8; 16] = head[24..40].try_into().map_err(|_| cut())?;
        Ok(Self {
            id,
            at_ms: i64::from_le_bytes(at),
            visitor: ProfileKey(visitor),
            bytes: e[Self::HEAD..].to_vec(),
        })
    }
}

/// Decisions on their way to a store, one after another in one buffer, each framed as
/// the embedded store's segment files hold it: its length (4 bytes, little-endian, of
/// what follows), then [`StoredDecision::HEAD`] and the record. Filled as answers are
/// made and written whole, then emptied and filled again (its memory stays).
#[derive(Clone, Debug, Default)]
pub struct DecisionBatch {
    data: Vec<u8>,
    starts: Vec<usize>,
}

/// One decision of a batch.
#[derive(Clone, Copy, Debug)]
pub struct DecisionRef<'a> {
    pub id: [u8; 16],
    pub at_ms: i64,
    pub visitor: ProfileKey,
    /// The record.
    pub bytes: &'a [u8],
    /// The decision as the stores keep it ([`StoredDecision::encode_into`]'s bytes).
    pub entry: &'a [u8],
}

impl DecisionRef<'_> {
    pub fn to_stored(&self) -> StoredDecision {
        StoredDecision {
            id: self.id,
            at_ms: self.at_ms,
            visitor: self.visitor,
            bytes: self.bytes.to_vec(),
        }
    }
}

impl DecisionBatch {
    /// A batch of these decisions.
    pub fn of(records: &[StoredDecision]) -> Result<Self, StoreError> {
        let mut batch = Self::default();
        for r in records {
            batch.push(r)?;
        }
        Ok(batch)
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The framed decisions, one after another.
    pub fn framed(&self) -> &[u8] {
        &self.data
    }

    /// Where each decision's frame starts in [`DecisionBatch::framed`].
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// Appends a decision (a record of 4 GiB or more cannot be framed, and is not).
    pub fn push(&mut self, d: &StoredDecision) -> Result<(), StoreError> {
        self.push_record(&d.id, d.at_ms, &d.visitor, &d.bytes)
    }

    /// Appends a decision from its parts.
    pub fn push_record(
        &mut self,
        id: &[u8; 16],
        at_ms: i64,
        visitor: &ProfileKey,
        record: &[u8],
    ) -> Result<(), StoreError> {
        let start = self.data.len();
        let len = u32::try_from(StoredDecision::HEAD + record.len())
            .map_err(|_| StoreError::Codec("decision record too large".into()))?;
        self.data.extend_from_slice(&len.to_le_bytes());
        self.data.extend_from_slice(&at_ms.to_le_bytes());
        self.data.extend_from_slice(visitor.as_bytes());
        self.data.extend_from_slice(id);
        self.data.extend_from_slice(record);
        self.starts.push(start);
        Ok(())
    }

    /// The decision at position `i`.
    fn get(&self, i: usize) -> DecisionRef<'_> {
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(self.data.len());
        let entry = &self.data[start + 4..end];
        let field =
            |from: usize| -> [u8; 16] { entry[from..from + 16].try_into().unwrap_or([0; 16]) };
        DecisionRef {
            at_ms: i64::from_le_bytes(entry[..8].try_into().unwrap_or([0; 8])),
            visitor: ProfileKey(field(8)),
            id: field(24),
            bytes: &entry[StoredDecision::HEAD..],
            entry,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = DecisionRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Keeps only the decisions `keep` says yes to (`keep` is told each one's position).
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &DecisionRef<'_>) -> bool) {
        // `keep` is asked once a decision (it may count what it keeps).
        let verdicts: Vec<bool> = self.iter().enumerate().map(|(i, d)| keep(i, &d)).collect();
        if verdicts.iter().all(|&k| k) {
            return;
        }
        let mut kept = Self::default();
        for (d, _) in self.iter().zip(&verdicts).filter(|(_, k)| **k) {
            // Framed once already, so it fits again.
            let _ = kept.push_record(&d.id, d.at_ms, &d.visitor, d.bytes);
        }
        *self = kept;
    }

    /// Empties the batch (its memory stays for the next).
    pub fn clear(&mut self) {
        self.data.clear();
        self.starts.clear();
    }
}

/// How many decisions are kept, and how long (`audit.keep`, `audit.max_age_s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionRetention {
    pub keep: u64,
    pub max_age_ms: i64,
}

impl DecisionRetention {
    /// Decisions made before this (Unix milliseconds) are expired at `now_ms`.
    pub fn oldest_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.max_age_ms)
    }
}

#[async_trait]
pub trait DecisionLog: Send + Sync + 'static {
    /// Stores decisions (in time order) and lets go of what retention no longer keeps.
    /// The batch is shared for the write only: once it is done, the caller holds the
    /// one reference again and can reuse it.
    async fn append_decisions(
        &self,
        records: Arc<DecisionBatch>,
        retention: DecisionRetention,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The decision with this id, unless it is unknown or no longer kept.
    async fn decision(&self, id: &[u8; 16]) -> Result<Option<StoredDecision>, StoreError>;

    /// A visitor's decisions made at or after `since_ms`, newest first, at most `limit`.
    async fn visitor_decisions(
        &self,
        visitor: &ProfileKey,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredDecision>, StoreError>;

    /// Erases every decision of a visitor; how many there were.
    async fn erase_decisions(&self, visitor: &ProfileKey) -> Result<u64, StoreError>;

    /// Erases every decision (a shop's data erased).
    async fn erase_all_decisions(&self) -> Result<u64, StoreError>;

    /// Decisions made in `[from_ms, until_ms)`, in the order they were stored (oldest
    /// first), at most `limit`, from `cursor` (empty: the start); and the cursor of the
    /// next page, when there may be one.
    async fn decisions_between(
        &self,
        from_ms: i64,
        until_ms: i64,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<StoredDecision>, Option<String>), StoreError>;
}

/// A page cursor that is the last decision id, in hex (the embedded and in-process
/// stores).
pub fn cursor_of(id: &[u8; 16]) -> String {
    ProfileKey(*id).to_hex()
}

pub fn parse_cursor(cursor: &str) -> Result<Option<[u8; 16]>, StoreError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    ProfileKey::from_hex(cursor)
        .map(|k| Some(k.0))
        .ok_or_else(|| StoreError::Codec(format!("not a decision cursor: {cursor:?}")))
}

/// The smallest UUIDv7 of a millisecond (and the first of the next for an end).
pub fn id_floor(ms: i64) -> [u8; 16] {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0).min((1 << 48) - 1);
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id
}

/// The millisecond a UUIDv7 was made in (its first 48 bits).
pub fn id_ms(id: &[u8; 16]) -> u64 {
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&id[..6]);
    u64::from_be_bytes(ms)
}

/// The visitor index's key: visitor, time (big-endian), id.
pub fn visitor_key(visitor: &ProfileKey, at_ms: i64, id: &[u8; 16]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..16].copy_from_slice(visitor.as_bytes());
    k[16..24].copy_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k[24..].copy_from_slice(id);
    k
}

/// Decisions in memory (the in-process store, and the shape the others follow).
#[derive(Default)]
pub struct DecisionTable {
    by_id: BTreeMap<[u8; 16], StoredDecision>,
    by_visitor: BTreeSet<[u8; 40]>,
}

impl DecisionTable {
    pub fn append(&mut self, records: &DecisionBatch, retention: DecisionRetention, now_ms: i64) {
        for r in records.iter() {
            self.by_visitor
                .insert(visitor_key(&r.visitor, r.at_ms, &r.id));
            self.by_id.insert(r.id, r.to_stored());
        }
        let oldest = retention.oldest_ms(now_ms);
        while let Some((_, first)) = self.by_id.first_key_value() {
            let over = self.by_id.len() as u64 > retention.keep;
            if !over && first.at_ms >= oldest {
                break;
            }
            let key = visitor_key(&first.visitor, first.at_ms, &first.id);
            self.by_visitor.remove(&key);
            self.by_id.pop_first();
        }
    }

    pub fn get(&self, id: &[u8; 16]) -> Option<StoredDecision> {
        self.by_id.get(id).cloned()
    }

    pub fn of_visitor(
        &self,
        visitor: &ProfileKey,
        since_ms: i64,
        limit: usize,
    ) -> Vec<StoredDecision> {
        let from = visitor_key(visitor, since_ms, &[0; 16]);
        let to = visitor_key(visitor, i64::MAX, &[0xff; 16]);
        self.by_visitor
            .range(from..=to)
            .rev()
            .take(limit)
            .filter_map(|k| self.by_id.get(&k[24..40].try_into().unwrap_or([0; 16])))
            .cloned()
            .collect()
    }

    pub fn erase(&mut self, visitor: &ProfileKey) -> u64 {
        let from = visitor_key(visitor, 0, &[0; 16]);
        let to = visitor_key(visitor, i64::MAX, &[0xff; 16]);
        let keys: Vec<[u8; 40]> = self.by_visitor.range(from..=to).copied().collect();
        for k in &keys {
            self.by_visitor.remove(k);
            self.by_id
                .remove(&<[u8; 16]>::try_from(&k[24..40]).unwrap_or([0; 16]));
        }
        keys.len() as u64
    }

    pub fn clear(&mut self) -> u64 {
        let n = self.by_id.len() as u64;
        self.by_id.clear();
        self.by_visitor.clear();
        n
    }

    pub fn between(
        &self,
        from_ms: i64,
        until_ms: i64,
        after: Option<[u8; 16]>,
        limit: usize,
    ) -> Vec<StoredDecision> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Included(id_floor(from_ms)),
        };
        self.by_id
            .range((start, std::ops::Bound::Excluded(id_floor(until_ms))))
            .map(|(_, r)| r)
            .filter(|r| r.at_ms >= from_ms && r.at_ms < until_ms)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ms: i64, visitor: u8) -> StoredDecision {
        let mut id = id_floor(ms);
        id[15] = visitor;
        StoredDecision {
            id,
            at_ms: ms,
            visitor: ProfileKey([visitor; 16]),
            bytes: vec![visitor],
        }
    }

    fn batch(records: &[StoredDecision]) -> DecisionBatch {
        DecisionBatch::of(records).unwrap()
    }

    #[test]
    fn a_batch_reads_back_what_was_pushed_and_keeps_what_is_retained() {
        let records = [record(100, 1), record(200, 2), record(300, 3)];
        let mut b = batch(&records);
        assert_eq!(b.len(), 3);
        let back: Vec<StoredDecision> = b.iter().map(|d| d.to_stored()).collect();
        assert_eq!(back, records);
        let mut framed = Vec::new();
        for r in &records {
            framed.extend_from_slice(&(StoredDecision::HEAD as u32 + 1).to_le_bytes());
            r.encode_into(&mut framed);
        }
        assert_eq!(
            b.framed(),
            framed,
            "framed as the segment files hold decisions"
        );
        assert_eq!(b.starts(), [0, 45, 90]);
        let mut asked = 0;
        b.retain(|i, d| {
            asked += 1;
            i != 1 && d.visitor != ProfileKey([9; 16])
        });
        assert_eq!(asked, 3, "asked once a decision");
        let kept: Vec<StoredDecision> = b.iter().map(|d| d.to_stored()).collect();
        assert_eq!(kept, [record(100, 1), record(300, 3)]);
        b.clear();
        assert!(b.is_empty() && b.framed().is_empty());
    }

    #[test]
    fn the_table_keeps_by_count_and_age_and_finds_by_visitor_and_time() {
        let mut t = DecisionTable::default();
        let keep = DecisionRetention {
            keep: 3,
            max_age_ms: 1_000,
        };
        t.append(
            &batch(&[record(100, 1), record(200, 2), record(300, 1)]),
            keep,
            300,
        );
        assert_eq!(t.of_visitor(&ProfileKey([1; 16]), 0, 10).len(), 2);
        assert_eq!(
            t.of_visitor(&ProfileKey([1; 16]), 0, 10)[0].at_ms,
            300,
            "newest first"
        );
        t.append(&batch(&[record(400, 2)]), keep, 400);
        assert!(t.get(&record(100, 1).id).is_none(), "over the count");
        t.append(&batch(&[record(1_500, 3)]), keep, 1_500);
        assert!(t.get(&record(400, 2).id).is_none(), "too old");
        assert_eq!(t.between(0, 2_000, None, 10).len(), 1);
        assert_eq!(t.erase(&ProfileKey([2; 16])), 0);
        assert!(t.of_visitor(&ProfileKey([2; 16]), 0, 10).is_empty());
        assert_eq!(t.erase(&ProfileKey([3; 16])), 1);
        assert!(t.between(0, 2_000, None, 10).is_empty());
    }
}
