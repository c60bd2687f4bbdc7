//! Building and running the service: load data, train the first models, bind the
//! listeners, serve until told to stop, then drain in-flight requests.
//!
//! [`App::build`] binds before it returns, so callers (tests on port 0 included) learn
//! the real port from [`App::port`] and can connect at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, StorageBackend};
use crate::decide::content::Banners;
use crate::domain::time::unix_now;
use crate::domain::{Catalog, Interaction, Profile, VisitorId, VisitorKey};
use crate::http;
use crate::http::auth::Keys;
use crate::http::state::AppState;
use crate::ingest::catalog::{CatalogChangeError, CatalogService};
use crate::ingest::demo;
use crate::recommend::Models;
use crate::recommend::Snapshot;
use crate::store::redis::RedisOptions;
use crate::store::{
    CatalogStore, EmbeddedStore, KeyHasher, MemoryStore, ProfileStore, RedisStore, StoreError,
    Tiered,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the live ruleset cannot be loaded: {0}")]
    Rules(String),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("{0}")]
    Journal(String),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogChangeError),
    #[error("start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
}

/// What start-up loads before serving.
struct Data {
    catalog: Catalog,
    interactions: Vec<Interaction>,
    customers: Vec<(String, Profile)>,
}

/// How often expired profiles and op ids are swept (embedded and memory stores).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The secret used when `privacy.id_hash_secret` is empty. Fine for a demo; a
/// deployment sets its own, or anyone with the code can recompute key hashes.
const DEVELOPMENT_SECRET: &[u8] = b"vitrine-development-secret-change-me";

impl App {
    /// Builds the service with the configured store (the embedded default unless
    /// configured otherwise), loading the demo shop when `demo.enabled`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_store(settings, |store| store).await
    }

    /// Like [`App::build`], but lets the caller wrap the store (tests put a slow or
    /// failing store in front of it).
    pub async fn build_with_store<F>(settings: Settings, wrap: F) -> Result<Self, StartError>
    where
        F: FnOnce(Arc<dyn ProfileStore>) -> Arc<dyn ProfileStore>,
    {
        crate::ingest::install_tls_provider();
        let metrics = metrics_handle();
        let hasher = Arc::new(key_hasher(&settings));
        let (base, catalog_store) = open_store(&settings).await?;
        // Every metric family at zero before anything counts.
        crate::http::metrics::register(base.backend());
        let base: Arc<dyn ProfileStore> = Arc::new(crate::store::Breaker::new(
            base,
            settings.storage.circuit_failures,
            Duration::from_millis(settings.storage.circuit_open_ms),
        ));
        let store: Arc<dyn ProfileStore> = Arc::new(Tiered::new(
            base,
            settings.cache.l1_capacity,
            Duration::from_millis(settings.cache.l1_ttl_ms),
        ));
        let store = wrap(store);

        // The live ruleset first: its overrides shape the demo's training.
        let rules = Arc::new(crate::decide::live::LiveRules::new(catalog_store.clone()));
        rules
            .sync()
            .await
            .map_err(|e| StartError::Rules(e.to_string()))?;
        let live_rules = rules.load();
        let mut demo_settings = settings.demo.clone();
        // The demo never mixes with a shop's own catalog.
        if demo_settings.enabled && catalog_store.catalog_version().await? > 0 {
            let (_, stored) = catalog_store.load_catalog().await?;
            if let demo::StoredShop::Own { products } =
                demo::stored_shop(&stored, &demo_settings.base_url)
            {
                tracing::warn!(
                    products,
                    "the store holds a shop's own catalog: the demo is not loaded over it (set demo.enabled = false)"
                );
                demo_settings.enabled = false;
            }
        }
        let recommend_settings = settings.recommend.clone();
        let seed_hasher = hasher.clone();
        let (catalog, interactions, seed, models) =
            tokio::task::spawn_blocking(move || -> Result<_, StartError> {
                let Data {
                    catalog,
                    interactions,
                    customers,
                } = load_data(&demo_settings)?;
                let curation = live_rules.overrides.curation(&catalog);
                let models =
                    Models::train_curated(&catalog, &interactions, &recommend_settings, &curation);
                models.prepare_content(&catalog);
                let seed: Vec<_> = customers
                    .into_iter()
                    .filter_map(|(id, profile)| {
                        let id = VisitorId::parse(&id).ok()?;
                        Some((seed_hasher.key(&VisitorKey::Customer(id)), profile))
                    })
                    .collect();
                Ok((catalog, interactions, seed, models))
            })
            .await??;
        let demo_profiles = seed.len();
        let seeded = if seed.is_empty() {
            false
        } else {
            store.seed(seed).await?
        };
        tracing::info!(
            products = catalog.len(),
            demo_profiles,
            seeded,
            interactions = interactions.len(),
            model_version = %models.version,
            model_memory_bytes = models.memory_bytes(),
            store = store.backend(),
            "data loaded"
        );
        drop(interactions);
        if seeded && settings.demo.ruleset {
            publish_demo_ruleset(&rules, &catalog, &settings.demo.base_url).await;
        }

        let keys = Arc::new(Keys::new(&settings.auth));
        if keys.is_open() {
            tracing::warn!("no API keys configured: the API is open to anyone who can reach it");
        } else if settings.auth.customer_token_secret.is_empty()
            && !settings.auth.storefront_keys.is_empty()
        {
            tracing::warn!(
                "auth.customer_token_secret is not set: anyone with the (publishable) storefront key can read and change any customer's profile by naming their id"
            );
        }
        let cache_control = HeaderValue::from_str(&format!(
            "private, max-age={}",
            settings.server.cache_max_age_s
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("private, max-age=5"));
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            catalog,
            models: Arc::new(models),
        }));
        let learning = Arc::new(crate::ingest::log::Learning::new(
            catalog_store.clone(),
            snapshot.clone(),
            rules.clone(),
            &settings.events,
        ));
        let journal = settings.journal_path();
        let capacity = settings.events.buffer_capacity;
        let buffer = tokio::task::spawn_blocking(move || {
            crate::ingest::buffer::EventBuffer::open(&journal, capacity)
        })
        .await?
        .map_err(|e| StartError::Journal(e.to_string()))?;
        rules.spawn_follower(Duration::from_millis(settings.rules.sync_ms));
        let audit = crate::audit::Recorder::start(
            settings.audit.clone(),
            catalog_store.clone(),
            serving_settings_version(&settings),
        );
        let attribution = crate::ingest::attribution::Attribution::start(
            settings.experiments.clone(),
            store.clone(),
            catalog_store.clone(),
            hasher.clone(),
            snapshot.clone(),
            rules.clone(),
            audit.clone(),
        );
        let catalog = Arc::new(CatalogService::new(snapshot.clone(), catalog_store));
        catalog.start().await?;
        // Weak: the follower must not keep the ruleset (and its store) alive.
        let live = Arc::downgrade(&rules);
        catalog.spawn_follower(Duration::from_millis(settings.catalog.sync_ms), move || {
            let Some(live) = live.upgrade() else {
                return crate::ingest::catalog::Restorable::default();
            };
            let ruleset = live.load();
            crate::ingest::catalog::Restorable {
                ruleset: (ruleset.version != crate::decide::ruleset::Ruleset::empty().version)
                    .then(|| serde_json::to_vec(&ruleset.source).ok())
                    .flatten()
                    .map(|doc| (ruleset.version.clone(), doc)),
                usage: live
                    .usage()
                    .iter()
                    .map(|(id, (uses, spent))| (id.clone(), *uses, *spent))
                    .collect(),
            }
        });
        // The follower's first look relearns what the log holds since the models'
        // training, in the background.
        learning.spawn(Duration::from_millis(settings.events.log_poll_ms));
        let state = AppState::new(crate::http::state::Shared {
            banners: Arc::new(Banners::new(&settings.content.banners)),
            permits: Arc::new(Semaphore::new(settings.server.max_concurrency)),
            webhook_permits: Arc::new(Semaphore::new(settings.server.max_concurrency)),
            catalog,
            learning,
            rules,
            policy: Arc::new(crate::recommend::engine::Policy::new(&settings.recommend)),
            keys: keys.clone(),
            tokens: Arc::new(crate::http::auth::CustomerTokens::new(
                settings.auth.customer_token_secret.expose(),
            )),
            snapshot,
            webhooks: Arc::new(
                crate::ingest::webhooks::WebhookState::new(&settings)
                    .map_err(StartError::Webhooks)?,
            ),
            buffer: Arc::new(buffer),
            store,
            hasher,
            metrics,
            audit,
            attribution,
            drift: Arc::new(crate::audit::drift::Drift::new(settings.drift.clone())),
            cache_control,
            sessions: Arc::new(crate::http::console::session::Sessions::new(
                keys.admin_keys(),
                i64::try_from(settings.console.session_ttl_s).unwrap_or(i64::MAX),
            )),
            pulse: Arc::default(),
            fragments: Default::default(),
            settings: Arc::new(settings),
        });

        crate::ingest::buffer::spawn_flusher(&state.buffer, &state.store, &state.learning);
        watch_drift(&state);
        // Backends that do not expire entries themselves erase them a slice at a time.
        crate::background::every(
            &state.store,
            SWEEP_EVERY,
            |store: Arc<dyn ProfileStore>| async move {
                match store.sweep().await {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!("vitrine_store_expired_total").increment(n);
                        tracing::debug!(erased = n, "expired profiles and op ids erased");
                    }
                    Err(e) => tracing::debug!(error = %e, "sweep failed; retried later"),
                }
            },
        );

        let addr = state.settings.server.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let ops_listener = match state.settings.ops.addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Self {
            state,
            listener,
            ops_listener,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub fn ops_port(&self) -> Option<u16> {
        self.ops_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains: in-flight
    /// requests finish and kept-alive connections are answered and closed, for at most
    /// `server.shutdown_timeout_ms`.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let draining = CancellationToken::new();
        let settings = self.state.settings.clone();
        let limits = http::serve::Limits::new(&settings.server);
        let ops = self.ops_listener.map(|listener| {
            tokio::spawn(http::serve::serve(
                listener,
                http::ops_router(&self.state),
                limits,
                draining.clone(),
            ))
        });
        let router = http::router(&self.state, ops.is_none());
        tracing::info!(addr = %self.listener.local_addr()?, "serving");
        let server = tokio::spawn(http::serve::serve(
            self.listener,
            router,
            limits,
            draining.clone(),
        ));
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let grace = Duration::from_millis(settings.server.shutdown_timeout_ms);
        let deadline = tokio::time::Instant::now() + grace;
        draining.cancel();
        if tokio::time::timeout_at(deadline, server).await.is_err() {
            tracing::warn!(
                timeout_ms = grace.as_millis() as u64,
                "shutdown timed out; dropping remaining connections"
            );
        }
        if let Some(ops) = ops {
            ops.abort();
        }
        self.state.settle(deadline).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The keyed hash of visitor ids, from `privacy.id_hash_secret`.
pub fn key_hasher(settings: &Settings) -> KeyHasher {
    if settings.privacy.id_hash_secret.is_empty() {
        tracing::warn!("privacy.id_hash_secret is not set: using the built-in development secret");
        KeyHasher::new(DEVELOPMENT_SECRET)
    } else {
        KeyHasher::new(settings.privacy.id_hash_secret.expose().as_bytes())
    }
}

type OpenedStores = (Arc<dyn ProfileStore>, Arc<dyn CatalogStore>);

/// What `vitrine train` did.
pub struct Trained {
    pub version: String,
    pub interactions: usize,
    pub products: usize,
    /// The rows read (an events file's, with its bad rows; or the log's).
    pub report: crate::ingest::import::Report,
    /// Time spent reading the history.
    pub read: Duration,
    /// Size of the stored models.
    pub bytes: usize,
    /// Whether the history came from an events file (else the stored event log).
    pub read_from_file: bool,
}

impl Trained {
    /// One line for the terminal: the version, what it was trained on, and how long.
    pub fn summary(&self, took: Duration) -> String {
        let report = &self.report;
        let source = if self.read_from_file {
            "rows"
        } else {
            "event log entries"
        };
        format!(
            "{}: trained on {} interactions from {} {source} ({} bad, {} about products not in the catalog) over {} products in {:.2} s (reading {:.2} s); stored {} bytes",
            self.version,
            self.interactions,
            report.rows,
            report.bad.len(),
            report.unknown_products,
            self.products,
            took.as_secs_f64(),
            self.read.as_secs_f64(),
            self.bytes,
        )
    }
}

/// Trains the models on the stored catalog from `events` (a file and its format) or,
/// without one, from the store's event log, and stores them: running replicas swap
/// them in.
pub async fn train(
    settings: &Settings,
    events: Option<(&std::path::Path, crate::ingest::import::Format)>,
) -> Result<Trained, String> {
    let (_, store) = open_store(settings).await.map_err(|e| e.to_string())?;
    if events.is_none() {
        let (_, stored) = store.load_catalog().await.map_err(|e| e.to_string())?;
        if demo::stored_shop(&stored, &settings.demo.base_url) == demo::StoredShop::Demo {
            return Err("the store holds the demo shop: its models come from the demo's generated history, which the event log does not hold, so training on the log would replace them with models of the few events logged since. Train from an events file (--events), or import your own shop into a store without the demo (demo.enabled = false) and train there".into());
        }
    }
    train_on(store.as_ref(), settings, events).await
}

/// [`train`] on a store already open (a running server retraining itself).
pub async fn train_on(
    store: &dyn CatalogStore,
    settings: &Settings,
    events: Option<(&std::path::Path, crate::ingest::import::Format)>,
) -> Result<Trained, String> {
    use crate::ingest::import;
    let started = std::time::Instant::now();
    let catalog = import::load_catalog(store)
        .await
        .map_err(|e| e.to_string())?;
    // The models learn live from the log entries after `cursor`: with a file, what the
    // log gains from now on.
    let (interactions, report, cursor) = match events {
        Some((file, format)) => {
            let cursor = store.log_end().await.map_err(|e| e.to_string())?;
            let (interactions, report) = import::interactions(file, format, &catalog, unix_now())
                .map_err(|e| e.to_string())?;
            (interactions, report, cursor)
        }
        None => {
            let (interactions, cursor, unknown) = crate::ingest::log::history(store, &catalog)
                .await
                .map_err(|e| e.to_string())?;
            let report = import::Report {
                rows: interactions.len() as u64 + unknown,
                unknown_products: unknown,
                ..import::Report::default()
            };
            (interactions, report, cursor)
        }
    };
    // The live overrides: a blocked pair is never learned back.
    let rules = crate::decide::live::stored_live(store)
        .await
        .map_err(|e| format!("the live ruleset (its overrides shape training): {e}"))?;
    let read = started.elapsed();
    // Off the async workers: a server retraining itself keeps answering meanwhile.
    let recommend = settings.recommend.clone();
    let (models, bytes, interactions, catalog) = tokio::task::spawn_blocking(move || {
        let curation = rules.overrides.curation(&catalog);
        let mut models = Models::train_curated(&catalog, &interactions, &recommend, &curation);
        models.log_cursor = cursor;
        let bytes = crate::recommend::portable::encode(&models, &catalog)?;
        Ok::<_, String>((models, bytes, interactions.len(), catalog.len()))
    })
    .await
    .map_err(|e| format!("training task failed: {e}"))??;
    store
        .save_models(&models.version, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Trained {
        version: models.version.clone(),
        interactions,
        products: catalog,
        report,
        read,
        bytes: bytes.len(),
        read_from_file: events.is_some(),
    })
}

/// The configured backend, as the profile store and the catalog store (one backend
/// holds both).
pub async fn open_store(settings: &Settings) -> Result<OpenedStores, StartError> {
    fn both<S: ProfileStore + CatalogStore>(store: S) -> OpenedStores {
        let store = Arc::new(store);
        (store.clone(), store)
    }
    let retention = settings.retention();
    if settings.redis.profile_ttl_s.is_some() {
        tracing::warn!("redis.profile_ttl_s is deprecated: set storage.profile_ttl_s");
    }
    Ok(match settings.storage.backend {
        StorageBackend::Memory => both(MemoryStore::with_retention(retention)),
        StorageBackend::Embedded => {
            let path = settings.storage.path.clone();
            both(
                tokio::task::spawn_blocking(move || EmbeddedStore::open_with(&path, retention))
                    .await??,
            )
        }
        StorageBackend::Redis => both(
            RedisStore::connect(&RedisOptions {
                url: settings.redis.url.clone(),
                key_prefix: settings.redis.key_prefix.clone(),
                retention,
                timeout: Duration::from_millis(settings.redis.timeout_ms),
            })
            .await?,
        ),
    })
}

fn load_data(settings: &crate::config::DemoSettings) -> Result<Data, StartError> {
    if !settings.enabled {
        return Ok(Data {
            catalog: Catalog::empty(),
            interactions: Vec::new(),
            customers: Vec::new(),
        });
    }
    let shop = demo::generate(settings, unix_now())?;
    Ok(Data {
        catalog: shop.catalog,
        interactions: shop.interactions,
        customers: shop.customers,
    })
}

/// Publishes the demo ruleset on the store the demo has just seeded, unless a ruleset is
/// live already (another replica's, or one published before): it never replaces one.
async fn publish_demo_ruleset(
    rules: &crate::decide::live::LiveRules,
    catalog: &crate::domain::Catalog,
    base_url: &str,
) {
    let none = crate::decide::Ruleset::empty().version;
    if rules.load().version != none {
        return;
    }
    let document = crate::ingest::demo::ruleset(catalog, base_url);
    let compiled = match crate::decide::live::LiveRules::validate(&document) {
        Ok(c) => c,
        Err(errors) => {
            tracing::error!(?errors, "the demo ruleset does not compile; none published");
            return;
        }
    };
    let change = crate::decide::live::Change::new(unix_now(), "demo", "published the demo ruleset");
    match rules
        .publish_change(compiled, &document, &none, change)
        .await
    {
        Ok(r) => tracing::info!(ruleset_version = %r.version, "demo ruleset published"),
        Err(crate::decide::live::PublishError::Moved(_)) => {}
        Err(e) => tracing::warn!(error = %e, "the demo ruleset was not published"),
    }
}

/// The process-wide Prometheus recorder. `metrics` allows one global recorder, so
/// every app in the process (tests start several) shares it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: [f64; 12] = [
                0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// What `vitrine import` loads: a file of one kind, in a format, with the currency of a
/// Shopify product export (`--currency`, else `shopify.shop_currency`).
pub struct ImportJob<'a> {
    pub kind: crate::ingest::import::Kind,
    pub file: &'a std::path::Path,
    pub format: crate::ingest::import::Format,
    pub currency: Option<&'a str>,
}

/// Loads `job` into the configured store; `progress` sees the bytes read and the report
/// so far. An error is one the import cannot run past (settings, file, store).
pub async fn import(
    settings: &Settings,
    job: &ImportJob<'_>,
    progress: &(dyn Fn(u64, &crate::ingest::import::Report) + Sync),
) -> Result<crate::ingest::import::Report, String> {
    use crate::ingest::import;
    let shop_currency = match job.currency {
        Some(c) => Some(crate::domain::Currency::parse(c).map_err(|e| format!("--currency: {e}"))?),
        None => settings.shopify.currency(),
    };
    let (profiles, catalog) = open_store(settings).await.map_err(|e| e.to_string())?;
    let target = import::Target {
        profiles,
        catalog,
        hasher: Arc::new(key_hasher(settings)),
        experiments: settings.experiments.clone(),
        shop_currency,
        now: unix_now(),
        log_keep: settings.events.log_keep,
    };
    import::run(&target, job.kind, job.file, job.format, progress)
        .await
        .map_err(|e| e.to_string())
}

/// A digest of the settings answers depend on besides the models and the ruleset (the
/// `recommend` blend and rules, the configured content): a decision replays the same
/// only under the same.
pub fn serving_settings_version(settings: &Settings) -> String {
    let text = format!("{:?}{:?}", settings.recommend, settings.content);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// Records fetched from the store per page of an export.
const EXPORT_PAGE: usize = 1_000;

/// Writes the kept decisions made in `[since_ms, until_ms)` as NDJSON, oldest first;
/// how many.
pub async fn export_decisions(
    settings: &Settings,
    since_ms: i64,
    until_ms: i64,
    out: &mut dyn std::io::Write,
) -> Result<u64, String> {
    let (_, store) = open_store(settings).await.map_err(|e| e.to_string())?;
    let retention = settings.audit.retention();
    let mut cursor = String::new();
    let mut n = 0u64;
    loop {
        let (page, next) = crate::audit::page(
            store.as_ref(),
            retention,
            since_ms,
            until_ms,
            &cursor,
            EXPORT_PAGE,
        )
        .await
        .map_err(|e| e.to_string())?;
        for record in &page {
            serde_json::to_writer(&mut *out, record).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
            n += 1;
        }
        match next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Computes drift every `drift.check_ms` (the PSI gauges) and, when a feature has
/// drifted for `drift.for_s` with `drift.auto_retrain` on, retrains the models from the
/// event log once for the serving version (as `vitrine train`) and swaps them in; other
/// replicas follow the stored models as usual.
fn watch_drift(state: &AppState) {
    let period = Duration::from_millis(state.settings.drift.check_ms);
    let settings = state.settings.clone();
    // Weak: the watch must not keep the catalog (and its store) alive past the server.
    let catalog = Arc::downgrade(&state.catalog);
    crate::background::every(
        &state.drift,
        period,
        move |drift: Arc<crate::audit::drift::Drift>| {
            let settings = settings.clone();
            let catalog = catalog.upgrade();
            async move {
                let Some(catalog) = catalog else {
                    return;
                };
                let report = drift.check(unix_now());
                if !report.retrain {
                    return;
                }
                drift.retraining(&report, unix_now());
                let drifted: Vec<&str> = report
                    .features
                    .iter()
                    .filter(|f| f.drifting)
                    .map(|f| f.feature)
                    .collect();
                tracing::warn!(model_version = %report.model_version, features = ?drifted, "drift: retraining from the event log");
                metrics::counter!("vitrine_drift_retrains_total").increment(1);
                match train_on(catalog.store(), &settings, None).await {
                    Ok(trained) => {
                        tracing::info!(model_version = %trained.version, interactions = trained.interactions, "drift: retrained");
                        if let Err(e) = catalog.sync_models().await {
                            tracing::warn!(error = %e, "drift: retrained models not swapped in yet; the follower retries");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "drift: retraining failed"),
                }
            }
        },
    );
}
