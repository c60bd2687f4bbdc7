//! Events accepted while the store is down wait here, bounded and journaled, and are
//! written when it comes back.
//!
//! A batch is answered `buffered` only once it is in the [`Journal`] on this machine's
//! disk (fsync'd), so it survives SIGTERM, SIGKILL and crashes: what the journal holds
//! at start-up is queued again and written when the store answers. The buffer is
//! all-or-nothing per request: a batch either fits whole (`events.buffer_capacity`
//! events in all) or the request is answered 503 with `Retry-After`, so nothing is ever
//! dropped silently. While the buffer holds events, new batches queue behind them, so a
//! visitor's events are applied in the order they arrived.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::Prepared;
use super::journal::{Journal, JournalError};
use super::log::Learning;
use crate::store::{ProfileStore, StoreError};

const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Journal records removed per commit while draining.
const REMOVE_EVERY: usize = 64;

/// One journaled batch waiting for the store.
#[derive(Clone)]
struct Pending {
    seq: u64,
    batch: Arc<Prepared>,
}

/// Why a batch could not be buffered; the request is answered 503 either way.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the event buffer is full")]
    Full,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub struct EventBuffer {
    // A std mutex: every critical section is a push or a pop, never an await.
    queue: Mutex<VecDeque<Pending>>,
    /// Events held: queued, or being journaled.
    held: AtomicUsize,
    capacity: usize,
    journal: Arc<Journal>,
    /// One drain at a time (the background flusher, shutdown).
    draining: tokio::sync::Mutex<()>,
}

impl EventBuffer {
    /// Opens the journal at `path`; the batches it holds (accepted by an earlier run and
    /// never written to the store) are queued first.
    pub fn open(path: &Path, capacity: usize) -> Result<Self, JournalError> {
        let (journal, pending) = Journal::open(path)?;
        let held = pending.iter().map(|(_, b)| b.len()).sum();
        if held > 0 {
            tracing::warn!(
                events = held,
                batches = pending.len(),
                "events accepted before the last stop are still to be written; replaying them"
            );
        }
        metrics::gauge!("vitrine_events_buffered").set(held as f64);
        Ok(Self {
            queue: Mutex::new(
                pending
                    .into_iter()
                    .map(|(seq, batch)| Pending {
                        seq,
                        batch: Arc::new(batch),
                    })
                    .collect(),
            ),
            held: AtomicUsize::new(held),
            capacity,
            journal: Arc::new(journal),
            draining: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Journals the whole batch and queues it, or refuses it whole when it does not fit
    /// or cannot be made durable. On `Ok` the batch will reach the store, whatever
    /// happens to this process.
    pub async fn push(&self, batch: Prepared) -> Result<(), Refused> {
        let n = batch.len();
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before + n > self.capacity {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        let batch = Arc::new(batch);
        let journal = self.journal.clone();
        let record = batch.clone();
        let seq = match tokio::task::spawn_blocking(move || journal.append(&record)).await {
            Ok(Ok(seq)) => seq,
            Ok(Err(e)) => {
                self.held.fetch_sub(n, Ordering::AcqRel);
                return Err(e.into());
            }
            Err(e) => {
                self.held.fetch_sub(n, Ordering::AcqRel);
                return Err(Refused::Journal(JournalError::new(format!(
                    "journal task: {e}"
                ))));
            }
        };
        {
            let mut q = self.lock();
            // Journal order is queue order (two pushes may finish their fsyncs out of
            // order).
            let at = q.partition_point(|p| p.seq < seq);
            q.insert(at, Pending { seq, batch });
        }
        metrics::gauge!("vitrine_events_buffered").set(self.len() as f64);
        metrics::counter!("vitrine_events_journaled_total").increment(n as u64);
        Ok(())
    }

    /// Writes buffered batches to the store, oldest first, until none is left or the
    /// store fails (what was not written stays, in the journal too). Returns the events
    /// written.
    pub async fn drain(
        &self,
        store: &dyn ProfileStore,
        learning: Option<&Learning>,
    ) -> Result<usize, StoreError> {
        let _turn = self.draining.lock().await;
        let mut written = 0;
        let mut applied = Vec::new();
        let result = loop {
            let Some(front) = self.lock().front().cloned() else {
                break Ok(written);
            };
            // Applying twice is harmless (op ids), so a batch leaves the queue and the
            // journal only once it is stored.
            let fresh = match front.batch.apply(store).await {
                Ok(fresh) => fresh,
                Err(e) => break Err(e),
            };
            if let Some(learning) = learning {
                learning.learn(front.batch.lessons(&fresh));
            }
            {
                let mut q = self.lock();
                if q.front().is_some_and(|p| p.seq == front.seq) {
                    q.pop_front();
                }
            }
            let n = front.batch.len();
            self.held.fetch_sub(n, Ordering::AcqRel);
            written += n;
            metrics::gauge!("vitrine_events_buffered").set(self.len() as f64);
            metrics::counter!("vitrine_events_flushed_total").increment(n as u64);
            applied.push(front.seq);
            if applied.len() >= REMOVE_EVERY {
                self.forget(std::mem::take(&mut applied)).await;
            }
        };
        self.forget(applied).await;
        result
    }

    /// Removes applied batches from the journal. A failure only means they are
    /// replayed, harmlessly, at the next start.
    async fn forget(&self, seqs: Vec<u64>) {
        if seqs.is_empty() {
            return;
        }
        let journal = self.journal.clone();
        let removed = tokio::task::spawn_blocking(move || journal.remove(&seqs)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, "applied events stay in the journal; replayed harmlessly at start-up");
        }
    }
}

/// Drains the buffer in the background for as long as it lives.
pub fn spawn_flusher(
    buffer: &Arc<EventBuffer>,
    store: &Arc<dyn ProfileStore>,
    learning: &Arc<Learning>,
) {
    let store = Arc::downgrade(store);
    let learning = Arc::downgrade(learning);
    crate::background::every(buffer, RETRY_EVERY, move |buffer: Arc<EventBuffer>| {
        let store = store.upgrade();
        let learning = learning.upgrade();
        async move {
            let (Some(store), Some(learning)) = (store, learning) else {
                return;
            };
            if buffer.is_empty() {
                return;
            }
            match buffer.drain(store.as_ref(), Some(&learning)).await {
                Ok(n) => tracing::info!(events = n, "buffered events written to the store"),
                Err(e) => {
                    tracing::debug!(error = %e, pending = buffer.len(), "store still unavailable; events stay buffered");
                }
            }
        }
    });
}
