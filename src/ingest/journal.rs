//! The local journal of events accepted while the store could not take them.
//!
//! An event answered `buffered` is a promise, so before the answer goes out its batch
//! is written here and made durable: one redb write transaction per accepted batch,
//! committed with an fsync. The batch is a [`Prepared`]: profiles named by keyed hash
//! only, as in every store. Records are removed once applied to the store; whatever is
//! left when the process stops (SIGTERM with the store still down, SIGKILL, a crash) is
//! replayed at the next start. Applying is idempotent (op ids), so a record applied just
//! before a crash and replayed after it changes nothing the second time.
//!
//! The journal is this machine's file: with replicas, each has its own (give each a
//! persistent data directory).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::events::Prepared;

/// Sequence number -> MessagePack [`Prepared`] batch.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("buffered_batches");

#[derive(Debug, thiserror::Error)]
#[error("event journal: {0}")]
pub struct JournalError(String);

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError(e.to_string())
}

impl JournalError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

pub struct Journal {
    db: Database,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns the batches it holds, oldest
    /// first, to be replayed. A record that cannot be read is reported and kept aside.
    pub fn open(path: &Path) -> Result<(Self, Vec<(u64, Prepared)>), JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.commit().map_err(err)?;
        let mut pending = Vec::new();
        {
            let txn = db.begin_read().map_err(err)?;
            let table = txn.open_table(RECORDS).map_err(err)?;
            for row in table.iter().map_err(err)? {
                let (seq, bytes) = row.map_err(err)?;
                match rmp_serde::from_slice::<Prepared>(bytes.value()) {
                    Ok(batch) => pending.push((seq.value(), batch)),
                    Err(e) => tracing::error!(
                        seq = seq.value(),
                        error = %e,
                        "a journal record cannot be read; it is kept in the file"
                    ),
                }
            }
        }
        Ok((Self { db }, pending))
    }

    /// Appends a batch and makes it durable (fsync) before returning its sequence
    /// number. Blocking: call it off the async workers.
    pub fn append(&self, batch: &Prepared) -> Result<u64, JournalError> {
        let bytes = rmp_serde::to_vec(batch).map_err(err)?;
        let txn = self.db.begin_write().map_err(err)?;
        let seq = {
            let mut table = txn.open_table(RECORDS).map_err(err)?;
            let seq = table.last().map_err(err)?.map_or(0, |(k, _)| k.value()) + 1;
            table.insert(seq, bytes.as_slice()).map_err(err)?;
            seq
        };
        txn.commit().map_err(err)?;
        Ok(seq)
    }

    /// Removes records once their batches are applied. Blocking.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), JournalError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(RECORDS).map_err(err)?;
            for seq in seqs {
                table.remove(*seq).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }
}
