//! The decision log: every answer on the record, off the request path, and read back,
//! replayed and exported.
//!
//! A request that is recorded reads live learning and stock through a recording
//! ([`crate::recommend::reads::Reads`]) and hands a [`Pending`] to [`Recorder::submit`],
//! which encodes the record (products by id) and appends its bytes to the batch being
//! filled: a bounded queue in front of one writer task, which takes the whole batch at
//! once and appends it to the store's [`DecisionLog`], while requests fill the batch
//! written before. A full queue drops the record (counted), never the request. Replays need the versions
//! a record names: rulesets are stored by version; the models and catalogs this
//! replica served are kept in memory ([`Recorder::keep`]) up to `audit.keep_versions`
//! beside the serving ones.

pub mod drift;
pub mod experiments;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::AuditSettings;
use crate::decide::content::Banners;
use crate::decide::live::LiveRules;
use crate::decide::record::{
    self, DecisionRecord, Difference, Endpoint, Kept, Pending, ReplayError, Replayed,
};
use crate::recommend::Snapshot;
use crate::recommend::engine::Policy;
use crate::store::{CatalogStore, DecisionBatch, DecisionRetention, ProfileKey, StoreError};

/// How long the writer gathers records before an append (unless the queue is half full
/// first): one write and one commit for many records.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// A batch's buffer larger than this (after a burst) is let go of once written, not
/// kept for the next.
const SPARE_BYTES: usize = 8 << 20;

/// Takes decisions from requests and writes them.
pub struct Recorder {
    settings: AuditSettings,
    /// The batch being filled.
    queue: Mutex<Waiting>,
    /// Decisions in the batch being filled (read without the lock).
    waiting: AtomicUsize,
    /// Decisions taken by the writer and not yet written.
    writing: AtomicUsize,
    /// Wakes the writer for the first decision of a quiet spell (not for every one).
    arrived: Arc<Notify>,
    /// Tells the writer to write now: the queue is half full, or a flush.
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
        let arrived = Arc::new(Notify::new());
        let filling = Arc::new(Notify::new());
        let recorder = Arc::new(Self {
            settings,
            queue: Mutex::new(Waiting::default()),
            waiting: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            arrived: arrived.clone(),
            filling: filling.clone(),
            store,
            settings_version: settings_version.into(),
            kept: Mutex::new(VecDeque::new()),
            metrics: Metrics::new(),
            erased: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(write(Arc::downgrade(&recorder), arrived, filling));
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

    /// Decisions queued and not yet written.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed) + self.writing.load(Ordering::Relaxed)
    }

    /// Asks the writer to write what is queued now rather than after `LINGER`.
    pub fn flush(&self) {
        self.filling.notify_one();
    }

    /// Encodes a decision and queues it for the writer; a full queue drops it
    /// (counted). Encoding here, as the answer is made, frees what the decision holds
    /// at once, and the queue holds only bytes, one batch's in one buffer.
    pub fn submit(&self, pending: Pending) {
        let endpoint = pending.endpoint;
        let slot = Metrics::slot(endpoint);
        let limit = self.settings.queue.max(1);
        if self.waiting.load(Ordering::Relaxed) >= limit {
            self.metrics.dropped[slot].increment(1);
            return;
        }
        self.keep(&pending.snapshot);
        let (id, at_ms, visitor) = (
            *pending.decision_id.as_bytes(),
            pending.at_ms,
            pending.visitor,
        );
        // Room for a typical record, so it is not grown step by step.
        let mut bytes = Vec::with_capacity(1024);
        if let Err(e) = pending.encode_into(&mut bytes) {
            tracing::warn!(error = %e, "decision record not encoded");
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.batch.len() >= limit {
            drop(queue);
            self.metrics.dropped[slot].increment(1);
            return;
        }
        if let Err(e) = queue.batch.push_record(&id, at_ms, &visitor, &bytes) {
            drop(queue);
            tracing::warn!(error = %e, "decision record not queued");
            return;
        }
        queue.endpoints.push(endpoint);
        let n = queue.batch.len();
        self.waiting.store(n, Ordering::Relaxed);
        drop(queue);
        if n == 1 {
            self.arrived.notify_one();
        }
        if n == (limit / 2).max(1) {
            self.filling.notify_one();
        }
    }

    /// Takes the batch being filled (leaving `spare`, empty, in its place) and writes
    /// it; the written batch's buffer, emptied, for the next.
    async fn append(&self, mut spare: Waiting) -> Waiting {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *queue, &mut spare);
            self.writing.store(spare.batch.len(), Ordering::Relaxed);
            self.waiting.store(0, Ordering::Relaxed);
        }
        let Waiting { batch, endpoints } = &mut spare;
        // Visitors erased after their decisions were queued: those are not written.
        let erased: Vec<ProfileKey> = {
            let erased = self.erased.lock().unwrap_or_else(|e| e.into_inner());
            erased.iter().map(|(k, _)| *k).collect()
        };
        if !erased.is_empty() {
            let mut kept = Vec::with_capacity(endpoints.len());
            batch.retain(|i, d| {
                let keep = !erased.contains(&d.visitor);
                if keep {
                    kept.push(endpoints[i]);
                }
                keep
            });
            *endpoints = kept;
        }
        let mut bytes_of = [0u64; 2];
        for (d, endpoint) in batch.iter().zip(endpoints.iter()) {
            bytes_of[Metrics::slot(*endpoint)] += d.bytes.len() as u64;
        }
        let n = batch.len() as u64;
        let shared = Arc::new(std::mem::take(batch));
        match self
            .store
            .append_decisions(shared.clone(), self.retention(), now_ms())
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
        self.writing.store(0, Ordering::Relaxed);
        *batch = Arc::try_unwrap(shared)
            .ok()
            .filter(|b| b.framed().len() <= SPARE_BYTES)
            .unwrap_or_default();
        batch.clear();
        endpoints.clear();
        spare
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

    /// Whether the visitor was erased lately (what was queued for them before is not
    /// to be written after).
    pub fn erased_lately(&self, visitor: &ProfileKey) -> bool {
        let erased = self.erased.lock().unwrap_or_else(|e| e.into_inner());
        erased
            .iter()
            .any(|(k, at)| k == visitor && at.elapsed() <= ERASED_WATCH)
    }

    /// Erases every decision (the shop's data was erased).
    pub async fn erase_all(&self) -> Result<u64, StoreError> {
        self.store.erase_all_decisions().await
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

impl Drop for Recorder {
    fn drop(&mut self) {
        // The writer wakes, finds the recorder gone and ends.
        self.arrived.notify_one();
    }
}

/// The batch being filled, and each decision's endpoint.
#[derive(Default)]
struct Waiting {
    batch: DecisionBatch,
    endpoints: Vec<Endpoint>,
}

/// The writer: one wake for the first decision of a quiet spell; then the batch fills
/// without waking anyone for `LINGER`, or until the queue is half full, and is written
/// whole, until the recorder is gone.
async fn write(recorder: std::sync::Weak<Recorder>, arrived: Arc<Notify>, filling: Arc<Notify>) {
    let mut spare = Waiting::default();
    loop {
        arrived.notified().await;
        if recorder.strong_count() == 0 {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(LINGER) => {}
            () = filling.notified() => {}
        }
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        spare = recorder.append(spare).await;
    }
}
