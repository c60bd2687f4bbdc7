//! The decision log: every answer on the record, off the request path, and read back,
//! replayed and exported.
//!
//! A request that is recorded reads live learning and stock through a recording
//! ([`crate::recommend::reads::Reads`]) and hands a [`Pending`] to [`Recorder::submit`],
//! which names products by id, encodes the record and queues its bytes: a bounded queue
//! in front of one writer task that appends batches to the store's [`DecisionLog`]. A
//! full queue drops the record (counted), never the request. Replays need the versions
//! a record names: rulesets are stored by version; the models and catalogs this
//! replica served are kept in memory ([`Recorder::keep`]) up to `audit.keep_versions`
//! beside the serving ones.

pub mod drift;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use crate::config::AuditSettings;
use crate::decide::content::Banners;
use crate::decide::live::LiveRules;
use crate::decide::record::{
    self, DecisionRecord, Difference, Endpoint, Kept, Pending, ReplayError, Replayed,
};
use crate::recommend::Snapshot;
use crate::recommend::engine::Policy;
use crate::store::{CatalogStore, DecisionRetention, ProfileKey, StoreError, StoredDecision};

/// Records written to the store in one append, at most.
const BATCH: usize = 4_096;
/// How long the writer gathers records before an append (unless a batch fills first):
/// one commit for many records, so a copy-on-write store writes its pages once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes decisions from requests and writes them.
pub struct Recorder {
    settings: AuditSettings,
    queue: mpsc::Sender<Queued>,
    /// Tells the writer the queue is half full (it is not woken per decision).
    filling: Arc<Notify>,
    store: Arc<dyn CatalogStore>,
    /// The serving settings' digest (`recommend`, `content`): a replay needs the same.
    settings_version: Arc<str>,
    /// Snapshots served lately, newest last (see [`Recorder::keep`]).
    kept: Mutex<VecDeque<Arc<Snapshot>>>,
    metrics: Metrics,
    /// Visitors erased lately, and when: what was queued for them before is not
    /// written after.
    erased: Mutex<VecDeque<(ProfileKey, std::time::Instant)>>,
}

/// The decision log's metric handles, looked up once.
struct Metrics {
    dropped: [metrics::Counter; 2],
    bytes: [metrics::Counter; 2],
    recorded: metrics::Counter,
    write_failed: metrics::Counter,
}

impl Metrics {
    fn new() -> Self {
        let endpoints = [Endpoint::Recommend, Endpoint::CartEvaluate];
        Self {
            dropped: endpoints.map(
                |e| metrics::counter!("vitrine_audit_dropped_total", "endpoint" => e.as_str()),
            ),
            bytes: endpoints
                .map(|e| metrics::counter!("vitrine_audit_bytes_total", "endpoint" => e.as_str())),
            recorded: metrics::counter!("vitrine_audit_recorded_total"),
            write_failed: metrics::counter!("vitrine_audit_write_failed_total"),
        }
    }

    fn slot(endpoint: Endpoint) -> usize {
        match endpoint {
            Endpoint::Recommend => 0,
            Endpoint::CartEvaluate => 1,
        }
    }
}

/// How long an erased visitor's queued decisions are watched for (far longer than the
/// queue takes to drain).
const ERASED_WATCH: std::time::Duration = std::time::Duration::from_secs(600);

/// Why a decision cannot be shown or replayed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no decision {0} is kept")]
    NotFound(String),
    #[error("the versions this decision names are no longer kept: {0}")]
    VersionsNotKept(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the stored record cannot be read: {0}")]
    Unreadable(String),
    #[error("the record cannot be decided again: {0}")]
    Replay(#[from] ReplayError),
}

/// A replay's answer.
#[derive(serde::Serialize)]
pub struct ReplayAnswer {
    pub identical: bool,
    pub replayed: Replayed,
    pub differences: Vec<Difference>,
    /// What was compared.
    pub compared: &'static [&'static str],
}

/// The fields a replay compares with the record.
pub const COMPARED: &[&str] = &[
    "output (every item: product, price, compare-at price, price list, score, reason; offers; banners; collections; modules; merchandising; or the cart evaluation with its currency)",
    "candidates (product, score and each source's score)",
];

impl Recorder {
    /// A recorder and its writer task (on the current runtime).
    pub fn start(
        settings: AuditSettings,
        store: Arc<dyn CatalogStore>,
        settings_version: String,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let filling = Arc::new(Notify::new());
        let recorder = Arc::new(Self {
            settings,
            queue: tx,
            filling: filling.clone(),
            store,
            settings_version: settings_version.into(),
            kept: Mutex::new(VecDeque::new()),
            metrics: Metrics::new(),
            erased: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(write(Arc::downgrade(&recorder), rx, filling));
        recorder
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    pub fn settings_version(&self) -> &Arc<str> {
        &self.settings_version
    }

    /// Whether a decision is recorded: always when degraded or a checkout, else for
    /// `audit.sample_rate` of them (by the decision id's random bits, so the choice
    /// costs nothing and is the same on every look).
    pub fn wants(&self, endpoint: Endpoint, degraded: bool, decision_id: &uuid::Uuid) -> bool {
        if !self.settings.enabled {
            return false;
        }
        if degraded || endpoint == Endpoint::CartEvaluate || self.settings.sample_rate >= 1.0 {
            return true;
        }
        let random = u64::from_be_bytes(decision_id.as_bytes()[8..].try_into().unwrap_or([0; 8]));
        (random >> 11) as f64 / (1u64 << 53) as f64 <= self.settings.sample_rate
    }

    /// Decisions queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Encodes a decision and queues it for the writer; a full queue drops it
    /// (counted). Encoding here, as the answer is made, frees what the decision holds
    /// at once, and the queue holds only bytes.
    pub fn submit(&self, pending: Pending) {
        let slot = Metrics::slot(pending.endpoint);
        let Ok(permit) = self.queue.try_reserve() else {
            self.metrics.dropped[slot].increment(1);
            return;
        };
        self.keep(&pending.snapshot);
        let r = pending.into_record();
        match record::encode(&r) {
            Ok(bytes) => {
                permit.send(Queued {
                    slot,
                    decision: StoredDecision {
                        id: *r.decision_id.as_bytes(),
                        at_ms: r.at_ms,
                        visitor: r.visitor,
                        bytes,
                    },
                });
                if self.queue.capacity() < self.queue.max_capacity() / 2 {
                    self.filling.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "decision record not encoded"),
        }
    }

    /// Writes a batch of queued decisions (leaving `batch` empty).
    async fn append(&self, batch: &mut Vec<Queued>) {
        let mut stored = Vec::with_capacity(batch.len());
        let mut bytes_of = [0u64; 2];
        for queued in batch.drain(..) {
            if self.was_erased(&queued.decision.visitor) {
                continue;
            }
            bytes_of[queued.slot] += queued.decision.bytes.len() as u64;
            stored.push(queued.decision);
        }
        let n = stored.len() as u64;
        match self
            .store
            .append_decisions(&stored, self.retention(), now_ms())
            .await
        {
            Ok(()) => {
                self.metrics.recorded.increment(n);
                for (counter, bytes) in self.metrics.bytes.iter().zip(bytes_of) {
                    counter.increment(bytes);
                }
            }
            Err(e) => {
                self.metrics.write_failed.increment(n);
                tracing::warn!(error = %e, records = n, "decision records not written");
            }
        }
    }

    /// Keeps a snapshot served for a recorded decision, so its models and catalog can
    /// be replayed after newer ones replace them.
    fn keep(&self, snapshot: &Arc<Snapshot>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.back().is_some_and(|k| Arc::ptr_eq(k, snapshot)) {
            return;
        }
        let same = |k: &Arc<Snapshot>| {
            k.models.version == snapshot.models.version
                && k.catalog.version() == snapshot.catalog.version()
        };
        if let Some(i) = kept.iter().position(same) {
            // The newer instance (its stock is the newer) stands for the version.
            kept.remove(i);
        }
        kept.push_back(snapshot.clone());
        while kept.len() > self.settings.keep_versions + 1 {
            kept.pop_front();
        }
    }

    /// The snapshot of a record's model and catalog versions: the serving one, or one
    /// kept.
    fn snapshot_for(
        &self,
        serving: &Arc<Snapshot>,
        r: &DecisionRecord,
    ) -> Result<Arc<Snapshot>, AuditError> {
        let matches = |s: &Snapshot| {
            s.models.version == r.versions.model
                && format!("{:016x}", s.catalog.version()) == r.versions.catalog
        };
        if matches(serving) {
            return Ok(serving.clone());
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = kept.iter().rev().find(|s| matches(s)) {
            return Ok(s.clone());
        }
        let model_kept = serving.models.version == r.versions.model
            || kept.iter().any(|s| s.models.version == r.versions.model);
        Err(AuditError::VersionsNotKept(if model_kept {
            format!("catalog {}", r.versions.catalog)
        } else {
            format!("model {}", r.versions.model)
        }))
    }

    fn retention(&self) -> DecisionRetention {
        self.settings.retention()
    }

    /// A kept decision.
    pub async fn get(&self, id: &uuid::Uuid) -> Result<DecisionRecord, AuditError> {
        let stored = self
            .store
            .decision(id.as_bytes())
            .await?
            .filter(|d| d.at_ms >= self.retention().oldest_ms(now_ms()))
            .ok_or_else(|| AuditError::NotFound(id.to_string()))?;
        record::decode(&stored.bytes).map_err(AuditError::Unreadable)
    }

    /// A visitor's decisions, newest first.
    pub async fn of_visitor(
        &self,
        visitor: &ProfileKey,
        placement: Option<crate::domain::Placement>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, AuditError> {
        let since = since_ms.max(self.retention().oldest_ms(now_ms()));
        let mut out = Vec::new();
        // Filtering by placement reads further than `limit`, within reason.
        let scan = if placement.is_some() {
            limit * 10
        } else {
            limit
        };
        for d in self.store.visitor_decisions(visitor, since, scan).await? {
            let r = record::decode(&d.bytes).map_err(AuditError::Unreadable)?;
            if placement.is_none_or(|p| p == r.placement) {
                out.push(r);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Erases a visitor's decisions (their profile was erased), those still queued too.
    pub async fn erase(&self, visitor: &ProfileKey) -> Result<u64, StoreError> {
        {
            let mut erased = self.erased.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            while erased
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > ERASED_WATCH)
            {
                erased.pop_front();
            }
            erased.push_back((*visitor, now));
        }
        self.store.erase_decisions(visitor).await
    }

    /// Erases every decision (the shop's data was erased).
    pub async fn erase_all(&self) -> Result<u64, StoreError> {
        self.store.erase_all_decisions().await
    }

    /// Whether a visitor was erased after this decision was queued.
    fn was_erased(&self, visitor: &ProfileKey) -> bool {
        let erased = self.erased.lock().unwrap_or_else(|e| e.into_inner());
        erased.iter().any(|(k, _)| k == visitor)
    }

    /// Decides a kept decision again with the versions it names and compares.
    pub async fn replay(
        &self,
        id: &uuid::Uuid,
        serving: &Arc<Snapshot>,
        rules: &LiveRules,
        policy: &Policy,
        banners: &Banners,
    ) -> Result<ReplayAnswer, AuditError> {
        let r = self.get(id).await?;
        if r.versions.settings != *self.settings_version {
            return Err(AuditError::VersionsNotKept(format!(
                "settings {} (serving {})",
                r.versions.settings, self.settings_version
            )));
        }
        let snapshot = self.snapshot_for(serving, &r)?;
        let ruleset = rules.version(&r.versions.ruleset).await.map_err(|e| {
            AuditError::VersionsNotKept(format!("ruleset {} ({e})", r.versions.ruleset))
        })?;
        let kept = Kept {
            snapshot: &snapshot,
            rules: &ruleset,
            policy,
            banners,
        };
        let replayed = match r.endpoint {
            Endpoint::Recommend => record::replay_page(&r, kept, self.settings.candidates)?,
            Endpoint::CartEvaluate => record::replay_cart(&r, kept)?,
        };
        let differences = record::differences(&r, &replayed);
        Ok(ReplayAnswer {
            identical: differences.is_empty(),
            replayed,
            differences,
            compared: COMPARED,
        })
    }
}

fn now_ms() -> i64 {
    crate::domain::time::unix_now_ms()
}

/// One page of the kept decisions made in `[from_ms, until_ms)`, oldest first, from
/// `cursor` (empty: the start), and the next page's cursor: what an export reads, with
/// or without a running recorder.
pub async fn page(
    store: &dyn CatalogStore,
    retention: DecisionRetention,
    from_ms: i64,
    until_ms: i64,
    cursor: &str,
    limit: usize,
) -> Result<(Vec<DecisionRecord>, Option<String>), AuditError> {
    let from = from_ms.max(retention.oldest_ms(now_ms()));
    let (stored, next) = store
        .decisions_between(from, until_ms, cursor, limit)
        .await?;
    let records = stored
        .iter()
        .map(|d| record::decode(&d.bytes).map_err(AuditError::Unreadable))
        .collect::<Result<_, _>>()?;
    Ok((records, next))
}

/// A decision encoded and waiting for the writer.
struct Queued {
    /// Its endpoint's slot in [`Metrics`].
    slot: usize,
    decision: StoredDecision,
}

/// The writer: takes what is queued, in batches, until every sender is gone.
async fn write(
    recorder: std::sync::Weak<Recorder>,
    mut rx: mpsc::Receiver<Queued>,
    filling: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // One wake for the first decision of a quiet spell; then the queue fills
        // without waking anyone for LINGER, or until it is half full.
        match rx.recv().await {
            Some(q) => batch.push(q),
            None => return,
        }
        tokio::select! {
            () = tokio::time::sleep(LINGER) => {}
            () = filling.notified() => {}
        }
        loop {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            let full = batch.len() == BATCH;
            let Some(recorder) = recorder.upgrade() else {
                return;
            };
            recorder.append(&mut batch).await;
            if !full {
                break;
            }
        }
    }
}
