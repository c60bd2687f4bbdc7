//! The embedded store's decision index: where each decision's record is in the segment
//! files ([`super::segments`]), in one row per window of time.
//!
//! A decision id is a UUIDv7, its first 48 bits the time in milliseconds, so the id
//! alone names the window its entry is in: a lookup reads one row. A row holds its
//! window's entries sorted by id, so windows in order list decisions in time order (an
//! export, retention) and backwards newest first (a visitor's). An append writes the
//! rows of the windows its decisions fall in (one or two for a batch gathered over a
//! window's length), not one index entry each. Retention takes whole windows, and the
//! oldest window's oldest entries when the count needs it.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{DecisionRetention, ProfileKey, StoreError, decisions};

/// A window's length.
pub const WINDOW_MS: u64 = 100;

/// Window (the ids' milliseconds / [`WINDOW_MS`]) -> its entries, sorted by id.
pub const WINDOWS: TableDefinition<u64, &[u8]> = TableDefinition::new("decision_windows");
/// Window -> how many entries its row holds (retention counts without reading rows).
pub const COUNTS: TableDefinition<u64, u64> = TableDefinition::new("decision_window_counts");
/// [`TOTAL_KEY`] -> the entries of every window.
pub const TOTAL: TableDefinition<&str, u64> = TableDefinition::new("decision_total");
const TOTAL_KEY: &str = "entries";

/// An entry's bytes: id (16), visitor (16), segment (8, big-endian), offset (4,
/// little-endian).
const ENTRY: usize = 44;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Where one decision is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: [u8; 16],
    pub visitor: ProfileKey,
    pub segment: u64,
    pub offset: u32,
}

impl Entry {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(self.visitor.as_bytes());
        out.extend_from_slice(&self.segment.to_be_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        let mut visitor = [0u8; 16];
        visitor.copy_from_slice(&b[16..32]);
        let mut segment = [0u8; 8];
        segment.copy_from_slice(&b[32..40]);
        let mut offset = [0u8; 4];
        offset.copy_from_slice(&b[40..44]);
        Self {
            id,
            visitor: ProfileKey(visitor),
            segment: u64::from_be_bytes(segment),
            offset: u32::from_le_bytes(offset),
        }
    }

    pub fn window(&self) -> u64 {
        window_of(&self.id)
    }
}

pub fn window_of(id: &[u8; 16]) -> u64 {
    decisions::id_ms(id) / WINDOW_MS
}

/// A row's entries, oldest first.
pub fn entries(row: &[u8]) -> impl DoubleEndedIterator<Item = Entry> + '_ {
    row.chunks_exact(ENTRY).map(Entry::decode)
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut row = Vec::with_capacity(entries.len() * ENTRY);
    for e in entries {
        e.encode_into(&mut row);
    }
    row
}

fn total(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let t = txn.open_table(TOTAL).map_err(unavailable)?;
    Ok(t.get(TOTAL_KEY)
        .map_err(unavailable)?
        .map_or(0, |v| v.value()))
}

fn set_total(txn: &WriteTransaction, n: u64) -> Result<(), StoreError> {
    let mut t = txn.open_table(TOTAL).map_err(unavailable)?;
    t.insert(TOTAL_KEY, n).map_err(unavailable)?;
    Ok(())
}

/// Writes a window's row (and its count); an empty one goes.
fn put(txn: &WriteTransaction, window: u64, entries: &[Entry]) -> Result<(), StoreError> {
    let mut rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    let mut counts = txn.open_table(COUNTS).map_err(unavailable)?;
    if entries.is_empty() {
        rows.remove(window).map_err(unavailable)?;
        counts.remove(window).map_err(unavailable)?;
    } else {
        rows.insert(window, encode(entries).as_slice())
            .map_err(unavailable)?;
        counts
            .insert(window, entries.len() as u64)
            .map_err(unavailable)?;
    }
    Ok(())
}

/// A window's entries.
fn row(txn: &WriteTransaction, window: u64) -> Result<Vec<Entry>, StoreError> {
    let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    Ok(rows
        .get(window)
        .map_err(unavailable)?
        .map(|v| entries(v.value()).collect())
        .unwrap_or_default())
}

/// Adds entries (in any order) to their windows.
pub fn add(txn: &WriteTransaction, mut new: Vec<Entry>) -> Result<(), StoreError> {
    new.sort_unstable_by_key(|e| e.id);
    for group in new.chunk_by(|a, b| a.window() == b.window()) {
        let window = group[0].window();
        let mut all = row(txn, window)?;
        let in_order = all.last().is_none_or(|last| last.id < group[0].id);
        all.extend_from_slice(group);
        if !in_order {
            all.sort_unstable_by_key(|e| e.id);
        }
        put(txn, window, &all)?;
    }
    let n = total(txn)? + new.len() as u64;
    set_total(txn, n)
}

/// Deletes the windows in `range`, rows and counts; how many entries they held.
fn drop_windows(
    txn: &WriteTransaction,
    range: impl std::ops::RangeBounds<u64> + Clone,
) -> Result<u64, StoreError> {
    let mut counts = txn.open_table(COUNTS).map_err(unavailable)?;
    let mut held = 0u64;
    for c in counts.range(range.clone()).map_err(unavailable)? {
        held += c.map_err(unavailable)?.1.value();
    }
    if held > 0 {
        counts
            .retain_in(range.clone(), |_, _| false)
            .map_err(unavailable)?;
        txn.open_table(WINDOWS)
            .map_err(unavailable)?
            .retain_in(range, |_, _| false)
            .map_err(unavailable)?;
    }
    Ok(held)
}

/// Lets go of the windows wholly older than retention's age, then of the oldest entries
/// while more than `keep` are left (once over by more than `keep / 64`, so that most
/// appends trim nothing). The segment of the oldest entry left, if any.
pub fn trim(
    txn: &WriteTransaction,
    retention: DecisionRetention,
    now_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let oldest = u64::try_from(retention.oldest_ms(now_ms)).unwrap_or(0);
    let mut left = total(txn)?.saturating_sub(drop_windows(txn, ..oldest / WINDOW_MS)?);
    let over = left.saturating_sub(retention.keep);
    if over > retention.keep / 64 {
        // Whole windows first (the table's first ones), then the oldest entries of the
        // next: `cut` is the first window not taken whole, `taken` what goes before it.
        let (mut cut, mut taken) = (None, 0u64);
        {
            let counts = txn.open_table(COUNTS).map_err(unavailable)?;
            for c in counts.iter().map_err(unavailable)? {
                let (w, n) = c.map_err(unavailable)?;
                if taken + n.value() > over {
                    cut = Some(w.value());
                    break;
                }
                taken += n.value();
            }
        }
        match cut {
            Some(w) => {
                drop_windows(txn, ..w)?;
                if taken < over {
                    let all = row(txn, w)?;
                    let from = usize::try_from(over - taken).unwrap_or(usize::MAX);
                    put(txn, w, all.get(from..).unwrap_or(&[]))?;
                }
            }
            None => {
                drop_windows(txn, ..)?;
            }
        }
        left -= over;
    }
    set_total(txn, left)?;
    let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    let first = rows.first().map_err(unavailable)?;
    Ok(first.and_then(|(_, row)| entries(row.value()).map(|e| e.segment).min()))
}

/// The entry of a decision.
pub fn find(txn: &ReadTransaction, id: &[u8; 16]) -> Result<Option<Entry>, StoreError> {
    let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    let Some(row) = rows.get(window_of(id)).map_err(unavailable)? else {
        return Ok(None);
    };
    let (entries, _) = row.value().as_chunks::<ENTRY>();
    Ok(entries
        .binary_search_by(|e| e[..16].cmp(id.as_slice()))
        .ok()
        .map(|i| Entry::decode(&entries[i])))
}

/// Entries with ids in `[from, until)` after `after`, oldest first, at most `limit`.
pub fn between(
    txn: &ReadTransaction,
    from: &[u8; 16],
    until: &[u8; 16],
    after: Option<[u8; 16]>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    let start = after.map_or(window_of(from), |a| window_of(&a).max(window_of(from)));
    let mut out = Vec::new();
    for row in rows.range(start..=window_of(until)).map_err(unavailable)? {
        let (_, row) = row.map_err(unavailable)?;
        for e in entries(row.value()) {
            if e.id < *from || after.is_some_and(|a| e.id <= a) {
                continue;
            }
            if e.id >= *until || out.len() >= limit {
                return Ok(out);
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// A visitor's entries with ids from `from`, newest first, at most `limit`.
pub fn of_visitor(
    txn: &ReadTransaction,
    visitor: &ProfileKey,
    from: &[u8; 16],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows.range(window_of(from)..).map_err(unavailable)?.rev() {
        let (_, row) = row.map_err(unavailable)?;
        for e in entries(row.value()).rev() {
            if out.len() >= limit {
                return Ok(out);
            }
            if e.visitor == *visitor && e.id >= *from {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Takes a visitor's entries out of every window; what they were.
pub fn remove_visitor(
    txn: &WriteTransaction,
    visitor: &ProfileKey,
) -> Result<Vec<Entry>, StoreError> {
    let mut theirs = Vec::new();
    let mut changed: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    {
        let rows = txn.open_table(WINDOWS).map_err(unavailable)?;
        for row in rows.iter().map_err(unavailable)? {
            let (w, row) = row.map_err(unavailable)?;
            if entries(row.value()).any(|e| e.visitor == *visitor) {
                let (mine, rest): (Vec<Entry>, Vec<Entry>) =
                    entries(row.value()).partition(|e| e.visitor == *visitor);
                theirs.extend(mine);
                changed.insert(w.value(), rest);
            }
        }
    }
    for (w, rest) in &changed {
        put(txn, *w, rest)?;
    }
    let n = total(txn)?.saturating_sub(theirs.len() as u64);
    set_total(txn, n)?;
    Ok(theirs)
}

/// Takes every entry out; how many there were.
pub fn clear(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let n = total(txn)?;
    txn.open_table(WINDOWS)
        .map_err(unavailable)?
        .retain(|_, _| false)
        .map_err(unavailable)?;
    txn.open_table(COUNTS)
        .map_err(unavailable)?
        .retain(|_, _| false)
        .map_err(unavailable)?;
    set_total(txn, 0)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::*;

    fn entry(ms: i64, visitor: u8, n: u8) -> Entry {
        let mut id = decisions::id_floor(ms);
        id[15] = n;
        Entry {
            id,
            visitor: ProfileKey([visitor; 16]),
            segment: u64::from(n),
            offset: u32::from(n) * 100,
        }
    }

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("w.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn entries_are_found_listed_and_trimmed_across_windows() {
        let (_dir, db) = db();
        // Out of order, three windows, two in one millisecond.
        let all = [
            entry(1_000, 1, 3),
            entry(1_050, 2, 1),
            entry(1_000, 1, 2),
            entry(1_150, 1, 4),
            entry(1_460, 2, 5),
        ];
        let txn = db.begin_write().unwrap();
        add(&txn, all[..3].to_vec()).unwrap();
        add(&txn, all[3..].to_vec()).unwrap();
        txn.commit().unwrap();
        let r = db.begin_read().unwrap();
        for e in &all {
            assert_eq!(find(&r, &e.id).unwrap(), Some(*e));
        }
        assert_eq!(find(&r, &entry(1_000, 1, 9).id).unwrap(), None);
        let ordered = between(&r, &[0; 16], &[0xff; 16], None, 10).unwrap();
        let n: Vec<u8> = ordered.iter().map(|e| e.id[15]).collect();
        assert_eq!(n, [2, 3, 1, 4, 5], "time order, then id");
        let page = between(&r, &[0; 16], &[0xff; 16], Some(ordered[1].id), 2).unwrap();
        assert_eq!(page, ordered[2..4]);
        let upto = between(&r, &[0; 16], &decisions::id_floor(1_150), None, 10).unwrap();
        assert_eq!(upto.len(), 3, "until is exclusive");
        let ones = of_visitor(&r, &ProfileKey([1; 16]), &[0; 16], 10).unwrap();
        let n: Vec<u8> = ones.iter().map(|e| e.id[15]).collect();
        assert_eq!(n, [4, 3, 2], "newest first");
        assert_eq!(
            of_visitor(&r, &ProfileKey([1; 16]), &decisions::id_floor(1_100), 10)
                .unwrap()
                .len(),
            1
        );
        drop(r);

        // Over the count by more than keep / 64: exactly `keep` are left, oldest go,
        // across a window's edge.
        let txn = db.begin_write().unwrap();
        let keep = DecisionRetention {
            keep: 2,
            max_age_ms: 1_000_000,
        };
        assert_eq!(trim(&txn, keep, 2_000).unwrap(), Some(4));
        txn.commit().unwrap();
        let r = db.begin_read().unwrap();
        let left: Vec<u8> = between(&r, &[0; 16], &[0xff; 16], None, 10)
            .unwrap()
            .iter()
            .map(|e| e.id[15])
            .collect();
        assert_eq!(left, [4, 5]);
        drop(r);

        // Past the age: whole windows go.
        let txn = db.begin_write().unwrap();
        let young = DecisionRetention {
            keep: 100,
            max_age_ms: 500,
        };
        assert_eq!(trim(&txn, young, 1_800).unwrap(), Some(5));
        assert_eq!(remove_visitor(&txn, &ProfileKey([2; 16])).unwrap().len(), 1);
        assert_eq!(total(&txn).unwrap(), 0);
        assert_eq!(trim(&txn, young, 1_800).unwrap(), None);
        txn.commit().unwrap();
    }
}
