//! Events accepted while the store is down wait here, bounded, and are written when it
//! comes back.
//!
//! The buffer is all-or-nothing per request: a batch either fits whole or the request
//! is answered 503 with `Retry-After`, so nothing is ever dropped silently. While the
//! buffer holds events, new batches queue behind them, so a visitor's events are
//! applied in the order they arrived. A background task drains it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::{Event, ingest};
use crate::store::{KeyHasher, ProfileStore};

const DRAIN_CHUNK: usize = 500;
const RETRY_EVERY: Duration = Duration::from_millis(200);

pub struct EventBuffer {
    // A std mutex: every critical section is a push or a pop, never an await.
    queue: Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl EventBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues the whole batch, or nothing when it does not fit.
    pub fn push_all(&self, events: Vec<Event>) -> bool {
        let mut q = self.lock();
        if q.len() + events.len() > self.capacity {
            return false;
        }
        q.extend(events);
        metrics::gauge!("vitrine_events_buffered").set(q.len() as f64);
        true
    }

    /// Writes buffered events to the store until it is empty or the store fails.
    pub async fn drain(
        &self,
        store: &dyn ProfileStore,
        hasher: &KeyHasher,
        catalog: &crate::domain::Catalog,
        learning: Option<&super::log::Learning>,
    ) -> Result<(), crate::store::StoreError> {
        loop {
            let chunk: Vec<Event> = {
                let q = self.lock();
                q.iter().take(DRAIN_CHUNK).cloned().collect()
            };
            if chunk.is_empty() {
                return Ok(());
            }
            // Applying twice is harmless (events are idempotent), so the chunk leaves the
            // queue only once it is stored.
            let fresh = ingest(store, hasher, catalog, &chunk).await?;
            if let Some(learning) = learning {
                learning.learn(super::events::log_entries(
                    &chunk,
                    &fresh,
                    hasher,
                    learning.origin(),
                ));
            }
            let mut q = self.lock();
            let n = chunk.len().min(q.len());
            q.drain(..n);
            metrics::gauge!("vitrine_events_buffered").set(q.len() as f64);
            metrics::counter!("vitrine_events_flushed_total").increment(n as u64);
        }
    }
}

/// Drains the buffer in the background for as long as the app lives.
pub fn spawn_flusher(state: &crate::app::AppState) {
    let buffer = Arc::downgrade(&state.buffer);
    let store = Arc::downgrade(&state.store);
    let hasher = state.hasher.clone();
    let snapshot = state.snapshot.clone();
    let learning = Arc::downgrade(&state.learning);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            let (Some(buffer), Some(store), Some(learning)) =
                (buffer.upgrade(), store.upgrade(), learning.upgrade())
            else {
                return;
            };
            if buffer.is_empty() {
                continue;
            }
            let catalog = snapshot.load();
            if let Err(e) = buffer
                .drain(store.as_ref(), &hasher, &catalog.catalog, Some(&learning))
                .await
            {
                tracing::debug!(error = %e, pending = buffer.len(), "store still unavailable; events stay buffered");
            } else {
                tracing::info!("buffered events written to the store");
            }
        }
    });
}
