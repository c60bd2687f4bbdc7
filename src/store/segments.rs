//! The embedded store's decision records: append-only segment files beside its database.
//!
//! Decisions are written once, read rarely and let go of oldest first, so their bytes
//! go to the end of a file (one write and one sync per append, a
//! [`DecisionBatch`]'s bytes as they are) rather than into the database's copy-on-write
//! pages; the database keeps the
//! index that finds them. A segment is `<seq>.seg` (16 hex digits); a new one starts
//! when the current one passes [`SEGMENT_BYTES`], and retention deletes whole segments
//! nothing points into any more. Each entry is its length (4 bytes, little-endian, of
//! what follows) and [`StoredDecision::encode_into`]'s bytes; an erased entry is zeroed
//! in place.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{DecisionBatch, StoreError, StoredDecision};

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;

pub struct Segments {
    dir: PathBuf,
    current: Mutex<Current>,
}

/// The segment appends go to.
struct Current {
    seq: u64,
    /// No segment before this one is on disk (so most appends delete nothing without
    /// reading the directory).
    first: u64,
    file: Option<File>,
    len: u64,
}

fn failed(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn cut_short() -> StoreError {
    StoreError::Codec("decision entry cut short".into())
}

impl Segments {
    /// The segments in `dir` (created if missing); appends continue the newest.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
        let on_disk = Self::list(dir)?;
        let seq = on_disk.last().copied().unwrap_or(0);
        let first = on_disk.first().copied().unwrap_or(0);
        let path = dir.join(name(seq));
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(failed(&path, e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            current: Mutex::new(Current {
                seq,
                first,
                file: None,
                len,
            }),
        })
    }

    /// The segments on disk, oldest first.
    fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| failed(dir, e))? {
            let entry = entry.map_err(|e| failed(dir, e))?;
            let name = entry.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                out.push(seq);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(name(seq))
    }

    /// Writes a batch's entries after the current segment's end and syncs them; the
    /// segment and where they start.
    pub fn write(&self, batch: &DecisionBatch) -> Result<(u64, u64), StoreError> {
        let entries = batch.framed();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len >= SEGMENT_BYTES {
            current.seq += 1;
            current.file = None;
            current.len = 0;
        }
        let Current { seq, file, len, .. } = &mut *current;
        let path = self.path(*seq);
        if file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| failed(&path, e))?;
            // An append cut short by a crash left bytes nothing points to: go after.
            *len = f.metadata().map_err(|e| failed(&path, e))?.len();
            *file = Some(f);
        }
        let Some(f) = file.as_mut() else {
            return Err(failed(&path, "not open"));
        };
        if let Err(e) = f.write_all(entries).and_then(|()| f.sync_data()) {
            // What was written of it is left behind: the next append reopens the file
            // and goes after it.
            *file = None;
            return Err(failed(&path, e));
        }
        let start = *len;
        *len += entries.len() as u64;
        Ok((*seq, start))
    }

    /// The entry at `offset` of segment `seq` (`None`: the segment is gone).
    pub fn read(&self, seq: u64, offset: u32) -> Result<Option<StoredDecision>, StoreError> {
        let path = self.path(seq);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(&path, e)),
        };
        let entry = read_entry(&file, offset).map_err(|e| match e {
            e if e.kind() == std::io::ErrorKind::UnexpectedEof => cut_short(),
            e => failed(&path, e),
        })?;
        StoredDecision::decode(&entry).map(Some)
    }

    /// Zeroes the record of the entry at `offset` of segment `seq` (its length stays).
    pub fn zero(&self, seq: u64, offset: u32) -> Result<(), StoreError> {
        let path = self.path(seq);
        let file = match OpenOptions::new().write(true).read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(&path, e)),
        };
        let len = read_len(&file, offset).map_err(|e| failed(&path, e))?;
        file.write_all_at(&vec![0; len], u64::from(offset) + 4)
            .and_then(|()| file.sync_data())
            .map_err(|e| failed(&path, e))
    }

    /// Deletes every segment before `seq` (never the one appends go to).
    pub fn remove_before(&self, seq: u64) -> Result<(), StoreError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let before = seq.min(current.seq);
        if before <= current.first {
            return Ok(());
        }
        for s in Self::list(&self.dir)? {
            if s < before {
                let path = self.path(s);
                std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
            }
        }
        current.first = before;
        Ok(())
    }

    /// Deletes every segment; appends start a new one.
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.seq += 1;
        current.file = None;
        current.len = 0;
        current.first = current.seq;
        for s in Self::list(&self.dir)? {
            let path = self.path(s);
            std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
        }
        Ok(())
    }
}

fn name(seq: u64) -> String {
    format!("{seq:016x}.seg")
}

fn read_len(file: &File, offset: u32) -> std::io::Result<usize> {
    let mut len = [0u8; 4];
    file.read_exact_at(&mut len, u64::from(offset))?;
    Ok(u32::from_le_bytes(len) as usize)
}

fn read_entry(file: &File, offset: u32) -> std::io::Result<Vec<u8>> {
    let len = read_len(file, offset)?;
    let mut entry = vec![0; len];
    file.read_exact_at(&mut entry, u64::from(offset) + 4)?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProfileKey;

    fn decision(n: u8) -> StoredDecision {
        StoredDecision {
            id: [n; 16],
            at_ms: i64::from(n),
            visitor: ProfileKey([n; 16]),
            bytes: vec![n; 10 + usize::from(n)],
        }
    }

    fn append(s: &Segments, records: &[StoredDecision]) -> Vec<(u64, u32)> {
        let batch = DecisionBatch::of(records).unwrap();
        let (seq, base) = s.write(&batch).unwrap();
        batch
            .starts()
            .iter()
            .map(|o| (seq, u32::try_from(base + *o as u64).unwrap()))
            .collect()
    }

    #[test]
    fn entries_read_back_zero_in_place_and_go_with_their_segment() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let at = append(&s, &[decision(1), decision(2)]);
        let more = append(&s, &[decision(3)]);
        for ((seq, offset), n) in at.iter().chain(&more).zip(1..) {
            assert_eq!(s.read(*seq, *offset).unwrap(), Some(decision(n)));
        }
        s.zero(at[0].0, at[0].1).unwrap();
        let zeroed = s.read(at[0].0, at[0].1).unwrap().unwrap();
        assert_eq!((zeroed.id, zeroed.bytes.len()), ([0; 16], 11));
        assert_eq!(s.read(at[1].0, at[1].1).unwrap(), Some(decision(2)));

        // Bytes a crash left after the last entry: a reopened log appends after them.
        drop(s);
        let path = dir.path().join(name(0));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7; 5]).unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let after = append(&s, &[decision(4)]);
        assert_eq!(s.read(after[0].0, after[0].1).unwrap(), Some(decision(4)));
        assert_eq!(s.read(more[0].0, more[0].1).unwrap(), Some(decision(3)));

        // A newer segment (as after 64 MiB): the older goes once nothing points into it.
        drop(s);
        File::create(dir.path().join(name(3))).unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let newer = append(&s, &[decision(6)]);
        assert_eq!(newer[0].0, 3);
        s.remove_before(2).unwrap();
        assert_eq!(s.read(at[1].0, at[1].1).unwrap(), None);
        assert_eq!(s.read(newer[0].0, newer[0].1).unwrap(), Some(decision(6)));

        s.clear().unwrap();
        assert_eq!(s.read(newer[0].0, newer[0].1).unwrap(), None);
        let fresh = append(&s, &[decision(5)]);
        assert!(
            fresh[0].0 > newer[0].0,
            "a cleared log starts a new segment"
        );
        s.remove_before(fresh[0].0 + 1).unwrap();
        assert_eq!(
            s.read(fresh[0].0, fresh[0].1).unwrap(),
            Some(decision(5)),
            "the segment appends go to is never removed"
        );
    }
}
