//! What every handler shares, built by [`crate::app::App`]: one `Arc`, so the clone
//! each extractor and middleware takes is one atomic increment, not one per part.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::config::Settings;
use crate::decide::content::Banners;
use crate::ingest::webhooks::WebhookState;
use crate::recommend::Snapshot;
use crate::store::{KeyHasher, ProfileStore};

use super::auth::Keys;
use crate::ingest::catalog::CatalogService;

/// Shared by every handler: one `Arc` to [`Shared`], read through it.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub store: Arc<dyn ProfileStore>,
    pub hasher: Arc<KeyHasher>,
    pub buffer: Arc<crate::ingest::buffer::EventBuffer>,
    pub webhooks: Arc<WebhookState>,
    pub keys: Arc<Keys>,
    /// Verifies signed customer identities on the storefront API.
    pub tokens: Arc<super::auth::CustomerTokens>,
    pub banners: Arc<Banners>,
    /// API requests in flight (storefront API).
    pub permits: Arc<Semaphore>,
    /// Webhook deliveries in flight: a pool of their own.
    pub webhook_permits: Arc<Semaphore>,
    /// Catalog changes, written through the store and followed from it.
    pub catalog: Arc<CatalogService>,
    /// What product events teach the live models, shared through the event log.
    pub learning: Arc<crate::ingest::log::Learning>,
    /// The decisioning ruleset in force, followed from the store.
    pub rules: Arc<crate::decide::live::LiveRules>,
    /// The recommendation rules from `recommend` settings.
    pub policy: Arc<crate::recommend::engine::Policy>,
    pub metrics: PrometheusHandle,
    /// The decision log.
    pub audit: Arc<crate::audit::Recorder>,
    /// Credits what visitors do to the experiment arms they were served.
    pub attribution: Arc<crate::ingest::attribution::Attribution>,
    /// Drift of live requests from the models' training.
    pub drift: Arc<crate::audit::drift::Drift>,
    pub cache_control: HeaderValue,
    /// Console sessions, signed with a key derived from the admin keys.
    pub sessions: Arc<super::console::session::Sessions>,
    /// The console's live figures.
    pub pulse: Arc<super::console::pulse::Pulse>,
    /// Each product's part of an answer, written once per catalog version.
    pub fragments: super::fragments::Cache,
}

impl Shared {
    /// Before exit: writes buffered events and queued event-log entries to the store,
    /// until `deadline`. What is still buffered then stays in the journal and is
    /// replayed at the next start.
    pub async fn settle(&self, deadline: tokio::time::Instant) {
        let buffered = self.buffer.len();
        if buffered > 0 {
            let drained = tokio::time::timeout_at(
                deadline,
                self.buffer.drain(self.store.as_ref(), Some(&self.learning)),
            )
            .await;
            match drained {
                Ok(Ok(n)) => tracing::info!(events = n, "buffered events written before exit"),
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    events = self.buffer.len(),
                    "the store is unavailable; buffered events stay in the journal for the next start"
                ),
                Err(_) => tracing::warn!(
                    events = self.buffer.len(),
                    "shutdown timeout; buffered events stay in the journal for the next start"
                ),
            }
        }
        // Decisions queued for the log: written now, unless the deadline comes first.
        self.audit.flush();
        while self.audit.queued() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Credits queued for experiment arms (their decisions are written by now).
        if self.attribution.queued() > 0
            && tokio::time::timeout_at(deadline, self.attribution.pass())
                .await
                .is_err()
        {
            tracing::warn!(
                queued = self.attribution.queued(),
                "experiment credits not applied before exit"
            );
        }
        if self.learning.queued() > 0 {
            let flushed = tokio::time::timeout_at(deadline, self.learning.flush()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::warn!(
                    entries = self.learning.queued(),
                    "event log entries not written before exit (training data only; profiles have them)"
                );
            }
        }
    }
}
