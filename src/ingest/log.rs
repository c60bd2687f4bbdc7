//! Learning from the shared event log.
//!
//! Every new product event (storefront events, platform orders, imports) becomes a
//! [`LogEntry`]. The replica that takes it learns it at once (so its own next answer
//! shows it) and queues it for the log; a background task appends the queue to the
//! store in batches, off the request path, and keeps what it could not write until the
//! store is back. Another task reads what the log gained since it last looked and learns
//! what the other replicas wrote, so every replica's live models follow every event
//! within `events.log_poll_ms`.
//!
//! When trained models are swapped in, their live state starts empty; the follower then
//! relearns everything the log holds after the point the training read to (the models'
//! `log_cursor`), its own entries included, up to where it had followed. On Redis the log
//! is a stream, so all of this runs on one engine shared by the replicas.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::decide::live::LiveRules;
use crate::domain::{Audience, Catalog, Interaction, InteractionKind};
use crate::recommend::Snapshot;
use crate::recommend::{Curation, Models};
use crate::store::{CatalogStore, LogEntry, LogKind, StoreError};

/// Entries appended, and read, per round trip.
const BATCH: usize = 1_000;
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// The interaction a log entry teaches, on this catalog (`None`: not a product here).
pub fn interaction(catalog: &Catalog, e: &LogEntry) -> Option<Interaction> {
    Some(Interaction {
        session: e.session,
        customer: None,
        order: e.order,
        product: catalog.lookup(&e.product)?,
        kind: match e.kind {
            LogKind::View => InteractionKind::View,
            LogKind::AddToCart => InteractionKind::AddToCart,
            LogKind::Purchase => InteractionKind::Purchase,
        },
        ts: e.at,
        audience: Audience {
            country: e.country,
            device: e.device,
        },
    })
}

/// What fresh platform orders (ops applied to the profile under `key`) teach: each
/// line a purchase of its order.
pub fn order_entries(
    key: &crate::store::ProfileKey,
    ops: &[crate::domain::profile::ProfileOp],
    fresh: &[bool],
    origin: u64,
) -> Vec<LogEntry> {
    use crate::domain::profile::ProfileOp;
    let mut out = Vec::new();
    for (op, fresh) in ops.iter().zip(fresh) {
        if let (
            true,
            ProfileOp::Order {
                order, at, lines, ..
            },
        ) = (fresh, op)
        {
            out.extend(lines.iter().map(|(product, _, _)| LogEntry {
                origin,
                product: product.clone(),
                kind: LogKind::Purchase,
                session: key.short_id(),
                order: Some(*order),
                at: *at,
                country: None,
                device: None,
            }));
        }
    }
    out
}

/// The whole event log as training interactions on `catalog`, the cursor of the last
/// entry read, and how many entries named products not in the catalog.
pub async fn history(
    store: &dyn CatalogStore,
    catalog: &Catalog,
) -> Result<(Vec<Interaction>, String, u64), StoreError> {
    const PAGE: usize = 10_000;
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut unknown = 0;
    loop {
        let page = store.read_log(&cursor, PAGE).await?;
        let n = page.len();
        for (c, e) in page {
            match interaction(catalog, &e) {
                Some(i) => out.push(i),
                None => unknown += 1,
            }
            cursor = c;
        }
        if n < PAGE {
            return Ok((out, cursor, unknown));
        }
    }
}

/// Where the follower is: the last entry it read, and the models it taught.
struct Followed {
    cursor: String,
    models: Weak<Models>,
}

pub struct Learning {
    /// This replica's mark on the entries it writes.
    origin: u64,
    store: Arc<dyn CatalogStore>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    // A std mutex: every critical section is a push or a pop, never an await.
    queue: Mutex<VecDeque<LogEntry>>,
    capacity: usize,
    keep: u64,
    wake: Arc<tokio::sync::Notify>,
    followed: tokio::sync::Mutex<Followed>,
    rules: Arc<LiveRules>,
    /// The live overrides in the live catalog's indices, for the ruleset version and
    /// snapshot they were worked out for.
    curation: Mutex<(String, Weak<Snapshot>, Arc<Curation>)>,
}

impl Learning {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        rules: Arc<LiveRules>,
        settings: &crate::config::EventSettings,
    ) -> Self {
        Self {
            origin: rand::random(),
            store,
            snapshot,
            queue: Mutex::new(VecDeque::new()),
            capacity: settings.log_queue,
            keep: settings.log_keep,
            wake: Arc::default(),
            followed: tokio::sync::Mutex::new(Followed {
                cursor: String::new(),
                models: Weak::new(),
            }),
            rules,
            curation: Mutex::new((String::new(), Weak::new(), Arc::default())),
        }
    }

    /// The mark to put on entries this replica writes.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogEntry>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What learning leaves out (blocked pairs, excluded products) for `snapshot`'s
    /// catalog under the live ruleset: worked out again only when either changed.
    fn curation(&self, snapshot: &Arc<Snapshot>) -> Arc<Curation> {
        let rules = self.rules.load();
        let mut last = self.curation.lock().unwrap_or_else(|e| e.into_inner());
        // The Weak keeps the snapshot's allocation, so an equal pointer is this snapshot.
        if last.0 != rules.version || !Weak::ptr_eq(&last.1, &Arc::downgrade(snapshot)) {
            *last = (
                rules.version.clone(),
                Arc::downgrade(snapshot),
                Arc::new(rules.overrides.curation(&snapshot.catalog)),
            );
        }
        last.2.clone()
    }

    /// Learns new entries here and now, and queues them for the shared log.
    pub fn learn(&self, entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        let snapshot = self.snapshot.load_full();
        let curation = self.curation(&snapshot);
        for e in &entries {
            if let Some(i) = interaction(&snapshot.catalog, e) {
                snapshot.models.learn(&i, &curation);
            }
        }
        let mut q = self.lock();
        if q.len() + entries.len() > self.capacity {
            metrics::counter!("vitrine_event_log_dropped_total").increment(entries.len() as u64);
            return;
        }
        q.extend(entries);
        metrics::gauge!("vitrine_event_log_queued").set(q.len() as f64);
        drop(q);
        self.wake.notify_one();
    }

    /// Entries waiting to be written.
    pub fn queued(&self) -> usize {
        self.lock().len()
    }

    /// Writes the queue to the log until it is empty or the store fails (what was not
    /// written stays queued, in order).
    pub async fn flush(&self) -> Result<(), StoreError> {
        loop {
            let chunk: Vec<LogEntry> = self.lock().iter().take(BATCH).cloned().collect();
            if chunk.is_empty() {
                return Ok(());
            }
            self.store.append_log(&chunk, self.keep).await?;
            let mut q = self.lock();
            let n = chunk.len().min(q.len());
            q.drain(..n);
            metrics::gauge!("vitrine_event_log_queued").set(q.len() as f64);
            metrics::counter!("vitrine_event_log_written_total").increment(n as u64);
        }
    }

    /// Learns what the log gained since the last call: the other replicas' entries, or,
    /// after new models were swapped in, everything after their training. Returns the
    /// entries learned.
    pub async fn follow(&self) -> Result<usize, StoreError> {
        let mut followed = self.followed.lock().await;
        let snapshot = self.snapshot.load_full();
        let curation = self.curation(&snapshot);
        let models = &snapshot.models;
        let same = followed
            .models
            .upgrade()
            .is_some_and(|m| Arc::ptr_eq(&m, models));
        // New models: relearn from their training's end; this replica's own entries
        // count until the point it had followed to (after that, it learned them into the
        // new models itself when it took them).
        let mut own_until = None;
        let mut cursor = if same {
            followed.cursor.clone()
        } else {
            own_until = Some(followed.cursor.clone()).filter(|c| !c.is_empty());
            models.log_cursor.clone()
        };
        let mut learned = 0;
        loop {
            let batch = self.store.read_log(&cursor, BATCH).await?;
            let n = batch.len();
            for (c, e) in batch {
                if (own_until.is_some() || e.origin != self.origin)
                    && let Some(i) = interaction(&snapshot.catalog, &e)
                {
                    models.learn(&i, &curation);
                    learned += 1;
                }
                if own_until.as_ref() == Some(&c) {
                    own_until = None;
                }
                cursor = c;
            }
            // Keep the place after every batch: a failure later resumes from here.
            followed.cursor.clone_from(&cursor);
            followed.models = Arc::downgrade(models);
            if n < BATCH {
                break;
            }
        }
        if learned > 0 {
            metrics::counter!("vitrine_event_log_learned_total").increment(learned as u64);
        }
        Ok(learned)
    }

    /// Runs the writer and the follower for as long as the app lives.
    pub fn spawn(self: &Arc<Self>, poll: Duration) {
        let writer = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                // Wake on new entries, or look again now and then (holding no strong
                // reference while waiting, so the app can go away).
                let _ = tokio::time::timeout(RETRY_EVERY, wake.notified()).await;
                let Some(this) = writer.upgrade() else {
                    return;
                };
                if let Err(e) = this.flush().await {
                    tracing::debug!(error = %e, queued = this.queued(), "event log unavailable; entries stay queued");
                }
            }
        });
        crate::background::every(self, poll, |this: Arc<Self>| async move {
            if let Err(e) = this.follow().await {
                tracing::warn!(error = %e, "event log read failed; retrying");
            }
        });
    }
}
