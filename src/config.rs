//! Typed settings, loaded in layers and checked once at start-up.
//!
//! Layers, lowest first: compiled defaults < `config/base.toml` < `config/$VITRINE_ENV.toml`
//! < the file given with `--config` < `VITRINE__SECTION__KEY` environment variables
//! < command-line flags. Every struct denies unknown fields, so a typo in any layer stops
//! start-up with the key's name instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use secrecy::{ExposeSecret, SecretString};

use crate::domain::Placement;

/// A secret from the settings (an API key, a webhook or token secret, the id-hash
/// secret): read with [`Secret::expose`] where it is used, never printed. `Debug` shows
/// `[redacted]`; it serializes (the compiled defaults, for layering) only when empty,
/// else as `[redacted]`; the memory is wiped when it is dropped.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.is_empty() { "" } else { "[redacted]" }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub ops: OpsSettings,
    pub recommend: RecommendSettings,
    pub auth: AuthSettings,
    pub demo: DemoSettings,
    pub log: LogSettings,
    pub content: ContentSettings,
    pub storage: StorageSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub privacy: PrivacySettings,
    pub events: EventSettings,
    pub shopify: ShopifySettings,
    pub bigcommerce: BigCommerceSettings,
    pub catalog: CatalogSettings,
    pub rules: RulesSettings,
    pub audit: AuditSettings,
    pub drift: DriftSettings,
    pub experiments: ExperimentSettings,
    pub console: ConsoleSettings,
}

/// The merchandiser console at `/console`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// A console session ends this long after sign-in.
    pub session_ttl_s: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            session_ttl_s: 8 * 3600,
        }
    }
}

/// Experiments' attribution (their definitions live in the ruleset).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentSettings {
    /// A platform order is credited to the answers that showed its products to the
    /// customer within this many seconds before it.
    pub attribution_window_s: u64,
    /// Events and orders waiting to be credited; past this, new ones are not credited
    /// (counted in vitrine_experiment_uncredited_total), never refused.
    pub queue: usize,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        Self {
            attribution_window_s: 7 * 86_400,
            queue: 100_000,
        }
    }
}

/// The decision log: every answer of `/v1/recommend` and `/v1/cart/evaluate` on the
/// record, replayable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Record decisions at all.
    pub enabled: bool,
    /// The share of page answers recorded (0 to 1); degraded answers and cart
    /// evaluations are always recorded.
    pub sample_rate: f64,
    /// Decisions kept (the newest).
    pub keep: u64,
    /// Decisions older than this are let go of.
    pub max_age_s: u64,
    /// Records waiting for the writer; past this, new ones are dropped (counted in
    /// vitrine_audit_dropped_total), never the request.
    pub queue: usize,
    /// Candidates a record keeps with their sources' scores (the strongest).
    pub candidates: usize,
    /// Model and catalog versions this replica keeps in memory for replays, beside the
    /// one serving.
    pub keep_versions: usize,
}

impl AuditSettings {
    /// What the decision log keeps, as the stores take it.
    pub fn retention(&self) -> crate::store::DecisionRetention {
        crate::store::DecisionRetention {
            keep: self.keep,
            max_age_ms: i64::try_from(self.max_age_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            sample_rate: 1.0,
            keep: 1_000_000,
            max_age_s: 30 * 86_400,
            queue: 50_000,
            candidates: 10,
            keep_versions: 4,
        }
    }
}

/// Drift: how far live traffic has moved from what the models were trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// The rolling window live traffic is measured over.
    pub window_s: u64,
    /// Answers a window needs before its PSI is judged.
    pub min_samples: u64,
    /// A population stability index past this counts as drift (0.25 is the usual
    /// "significant shift").
    pub retrain_threshold: f64,
    /// Drift must last this long before a retrain.
    pub for_s: u64,
    /// Retrain from the event log (as `vitrine train`) when drift lasts.
    pub auto_retrain: bool,
    /// How often drift is computed.
    pub check_ms: u64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            window_s: 3_600,
            min_samples: 500,
            retrain_threshold: 0.25,
            for_s: 600,
            auto_retrain: false,
            check_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// How often a replica checks the store for catalog changes made by others.
    pub sync_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// How often a replica checks the store for a newly published (or rolled back)
    /// ruleset.
    pub sync_ms: u64,
    /// The largest ruleset document the admin API takes (price lists can be long).
    pub body_limit_bytes: usize,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self {
            sync_ms: 200,
            body_limit_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { sync_ms: 1_000 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopifySettings {
    /// The app's client secret, which signs webhooks and app proxy requests. Empty:
    /// `/webhooks/shopify` and `/proxy/shopify/*` are off.
    pub webhook_secret: Secret,
    /// The shop's currency: product payloads carry prices without one. Required with
    /// `webhook_secret`; no default, so a shop's prices are never read in a currency
    /// nobody stated.
    pub shop_currency: String,
    /// Largest webhook body accepted (orders with many lines are large).
    pub body_limit_bytes: usize,
}

impl ShopifySettings {
    /// The shop's currency, when stated.
    pub fn currency(&self) -> Option<crate::domain::Currency> {
        crate::domain::Currency::parse(self.shop_currency.trim()).ok()
    }
}

impl Default for ShopifySettings {
    fn default() -> Self {
        Self {
            webhook_secret: Secret::default(),
            shop_currency: String::new(),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BigCommerceSettings {
    /// The shared secret sent in `secret_header` by every webhook (set in the hook's
    /// `headers` when it is registered). Empty: `/webhooks/bigcommerce` is off.
    pub webhook_secret: Secret,
    /// The header that carries `webhook_secret`.
    pub secret_header: String,
    /// The store hash from the API path (`/stores/{store_hash}/...`).
    pub store_hash: String,
    /// An API account token with read scopes for orders, carts, customers and products.
    pub access_token: Secret,
    /// The REST API's base URL.
    pub api_url: String,
    /// Time for one API call; past it the call is retried.
    pub timeout_ms: u64,
    /// Retries after a failed call (timeouts, connection errors, 429 and 5xx), with
    /// exponential backoff from `backoff_ms`.
    pub retries: u32,
    pub backoff_ms: u64,
    /// The store's currency: product prices come without one.
    pub store_currency: String,
}

impl Default for BigCommerceSettings {
    fn default() -> Self {
        Self {
            webhook_secret: Secret::default(),
            secret_header: "x-webhook-secret".into(),
            store_hash: String::new(),
            access_token: Secret::default(),
            api_url: "https://api.bigcommerce.com".into(),
            timeout_ms: 2_000,
            retries: 2,
            backoff_ms: 100,
            store_currency: "USD".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A durable file in `storage.path`; no external service.
    #[default]
    Embedded,
    /// Redis at `redis.url`, shared by replicas.
    Redis,
    /// Process memory only; nothing survives a restart (tests, benchmarks).
    Memory,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// The embedded store's file.
    pub path: PathBuf,
    /// A profile not written for this long is erased, on every backend.
    pub profile_ttl_s: u64,
    /// Failed store calls in a row that open the circuit (calls then fail at once).
    pub circuit_failures: u32,
    /// How long the circuit stays open before the first probe (doubling, up to 5 s,
    /// while the store stays down).
    pub circuit_open_ms: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Embedded,
            path: PathBuf::from("data/vitrine.redb"),
            profile_ttl_s: 90 * 86_400,
            circuit_failures: 5,
            circuit_open_ms: 100,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// e.g. `redis://127.0.0.1:6379/0`; used when `storage.backend = "redis"`.
    pub url: String,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Deprecated: `storage.profile_ttl_s`, which it overrides when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_ttl_s: Option<u64>,
    /// Connect and response timeout for each Redis call.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "vitrine:".into(),
            profile_ttl_s: None,
            timeout_ms: 250,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Profiles held in the in-process L1 cache.
    pub l1_capacity: u64,
    /// How long an L1 entry is trusted; bounds how stale another replica's view can be.
    pub l1_ttl_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            l1_capacity: 100_000,
            l1_ttl_ms: 500,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    /// Secret for the keyed hash of visitor ids. Replicas sharing a store must share it.
    /// Empty: a built-in development secret is used and start-up warns.
    pub id_hash_secret: Secret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events accepted in one request.
    pub max_batch: usize,
    /// Events older than this are refused (use `vitrine import` for history).
    pub max_age_s: i64,
    /// Events held while the store is unavailable (journaled on local disk); past
    /// this, 503.
    pub buffer_capacity: usize,
    /// The journal of events accepted while the store is unavailable. Empty:
    /// `journal.redb` beside `storage.path`.
    pub journal_path: PathBuf,
    /// Product events kept in the shared event log (the newest; 0 keeps all). The
    /// log is what `vitrine train` trains on and what replicas learn from each other.
    pub log_keep: u64,
    /// How often a replica reads what other replicas added to the log.
    pub log_poll_ms: u64,
    /// Entries waiting to be written to the log; past this (the store is down for
    /// long), new entries are not logged (counted in vitrine_event_log_dropped_total).
    pub log_queue: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            max_batch: 500,
            max_age_s: 7 * 86_400,
            buffer_capacity: 100_000,
            journal_path: PathBuf::new(),
            log_keep: 2_000_000,
            log_poll_ms: 250,
            log_queue: 100_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests served at once before new ones are shed with 503.
    pub max_concurrency: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// `Cache-Control: private, max-age=N` on recommendation answers.
    pub cache_max_age_s: u32,
    /// Gzip answers for clients that accept it.
    pub compression: bool,
    /// Time for a client to send a request's headers, from its first byte.
    pub header_read_timeout_ms: u64,
    /// Time for a client to send a request's body.
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with nothing in flight is closed after this long.
    pub idle_timeout_ms: u64,
    /// Connections open at once (API and ops listeners each); past it, new ones wait
    /// in the accept queue.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            max_concurrency: 1024,
            shutdown_timeout_ms: 10_000,
            cache_max_age_s: 5,
            compression: true,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsSettings {
    /// When set, `/livez`, `/readyz` and `/metrics` move to this separate listener.
    pub addr: Option<SocketAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendSettings {
    /// Budget for one request; past it the answer is the non-personalized fallback.
    pub deadline_ms: u64,
    /// Items returned when the request gives no `limit`.
    pub default_limit: u32,
    /// Half-life of an event's weight in trending scores.
    pub trending_half_life_hours: u32,
    /// Neighbours kept per product in the co-occurrence models.
    pub neighbors: usize,
    /// Category handles whose products people buy again (consumables): only these
    /// are offered as `buy_again`, and a product bought before is never recommended
    /// unless its category is here. A handle covers its sub-categories.
    #[serde(deserialize_with = "list_or_csv")]
    pub repeatable_categories: Vec<String>,
    /// At most this many products of one category in an answer, per placement; 0 is no
    /// cap (a category page is one category).
    pub max_per_category: MaxPerCategory,
    /// How much each candidate source weighs, per placement (0: the source is off).
    pub blend: BlendSettings,
}

/// The weight of each candidate source in one placement's answer; 0 turns it off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Blend {
    /// Bought with the product in view (scaled so its best neighbour is worth the
    /// weight) or with the cart's lines (similarities summed over the lines).
    pub bought_together: f32,
    pub viewed_together: f32,
    /// Same category by shared tags, for a product without co-occurrence yet.
    pub similar_items: f32,
    /// Item-kNN over the visitor's recent views.
    pub history: f32,
    /// The recently viewed products themselves.
    pub recently_viewed: f32,
    /// Session-kNN: past sessions like the visitor's vote.
    pub sessions: f32,
    /// The customer's own purchases in repeatable categories.
    pub buy_again: f32,
    /// The trend of the page's categories (the product's, the cart's, the category
    /// page's, the visitor's favourites on home).
    pub category_trend: f32,
    /// Products added since training, on their category's page.
    pub new_arrivals: f32,
    /// Catalog matches for the search query.
    pub search: f32,
    /// The global trend, which fills every list.
    pub trending: f32,
    /// What is trending among visitors of the same country and device class; for
    /// visitors with no history of their own only.
    pub audience_trend: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlendSettings {
    pub home: Blend,
    pub product: Blend,
    pub cart: Blend,
    pub category: Blend,
    /// The history weights re-rank search `candidates`; a search without candidates
    /// answers catalog matches only.
    pub search: Blend,
    pub checkout: Blend,
    pub post_purchase: Blend,
}

impl Default for BlendSettings {
    fn default() -> Self {
        let personal = Blend {
            history: 0.5,
            recently_viewed: 0.4,
            sessions: 0.03,
            trending: 0.01,
            audience_trend: 0.02,
            ..Blend::default()
        };
        let basket = Blend {
            bought_together: 1.0,
            viewed_together: 0.02,
            category_trend: 0.05,
            trending: 0.01,
            audience_trend: 0.02,
            ..Blend::default()
        };
        Self {
            home: Blend {
                buy_again: 1.0,
                category_trend: 0.05,
                ..personal
            },
            product: Blend {
                bought_together: 1.0,
                viewed_together: 0.6,
                similar_items: 0.3,
                category_trend: 0.05,
                ..personal
            },
            cart: basket,
            category: Blend {
                category_trend: 1.0,
                new_arrivals: 0.02,
                ..personal
            },
            search: Blend {
                search: 1.0,
                buy_again: 1.0,
                ..personal
            },
            checkout: basket,
            post_purchase: basket,
        }
    }
}

impl Blend {
    /// The weight of a source by its name here (`history`, `trending`, ...), if there
    /// is such a source.
    pub fn weight_mut(&mut self, source: &str) -> Option<&mut f32> {
        Some(match source {
            "bought_together" => &mut self.bought_together,
            "viewed_together" => &mut self.viewed_together,
            "similar_items" => &mut self.similar_items,
            "history" => &mut self.history,
            "recently_viewed" => &mut self.recently_viewed,
            "sessions" => &mut self.sessions,
            "buy_again" => &mut self.buy_again,
            "category_trend" => &mut self.category_trend,
            "new_arrivals" => &mut self.new_arrivals,
            "search" => &mut self.search,
            "trending" => &mut self.trending,
            "audience_trend" => &mut self.audience_trend,
            _ => return None,
        })
    }
}

impl BlendSettings {
    pub const fn of_mut(&mut self, placement: Placement) -> &mut Blend {
        match placement {
            Placement::Home => &mut self.home,
            Placement::Product => &mut self.product,
            Placement::Cart => &mut self.cart,
            Placement::Category => &mut self.category,
            Placement::Search => &mut self.search,
            Placement::Checkout => &mut self.checkout,
            Placement::PostPurchase => &mut self.post_purchase,
        }
    }

    pub const fn of(&self, placement: Placement) -> &Blend {
        match placement {
            Placement::Home => &self.home,
            Placement::Product => &self.product,
            Placement::Cart => &self.cart,
            Placement::Category => &self.category,
            Placement::Search => &self.search,
            Placement::Checkout => &self.checkout,
            Placement::PostPurchase => &self.post_purchase,
        }
    }

    fn all(&self) -> [&Blend; 7] {
        Placement::ALL.map(|p| self.of(p))
    }
}

impl Default for RecommendSettings {
    fn default() -> Self {
        Self {
            deadline_ms: 50,
            default_limit: 10,
            trending_half_life_hours: 72,
            neighbors: 200,
            repeatable_categories: Vec::new(),
            max_per_category: MaxPerCategory::default(),
            blend: BlendSettings::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MaxPerCategory {
    pub home: usize,
    pub product: usize,
    pub cart: usize,
    pub category: usize,
    pub search: usize,
    pub checkout: usize,
    pub post_purchase: usize,
}

impl Default for MaxPerCategory {
    fn default() -> Self {
        Self {
            home: 3,
            product: 4,
            cart: 3,
            category: 0,
            search: 0,
            checkout: 3,
            post_purchase: 3,
        }
    }
}

impl MaxPerCategory {
    /// No cap anywhere.
    pub const OFF: MaxPerCategory = MaxPerCategory {
        home: 0,
        product: 0,
        cart: 0,
        category: 0,
        search: 0,
        checkout: 0,
        post_purchase: 0,
    };

    pub const fn of(&self, placement: Placement) -> usize {
        match placement {
            Placement::Home => self.home,
            Placement::Product => self.product,
            Placement::Cart => self.cart,
            Placement::Category => self.category,
            Placement::Search => self.search,
            Placement::Checkout => self.checkout,
            Placement::PostPurchase => self.post_purchase,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Keys for the storefront API (recommend, events). Empty: open access.
    #[serde(deserialize_with = "list_or_csv")]
    pub storefront_keys: Vec<Secret>,
    /// Keys for the admin API; they may also call the storefront API.
    #[serde(deserialize_with = "list_or_csv")]
    pub admin_keys: Vec<Secret>,
    /// Signs customer tokens. Set: a storefront-key request naming a customer must carry
    /// a valid token for them. Empty: customers are taken at their word (the demo).
    pub customer_token_secret: Secret,
}

impl AuthSettings {
    /// An admin key entry's label and key: `label:key`, or (`admin`, the entry) without
    /// a label.
    pub fn labelled(entry: &str) -> (&str, &str) {
        match entry.split_once(':') {
            Some((label, key)) if !label.is_empty() && !key.is_empty() => (label, key),
            _ => ("admin", entry),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Load a generated demo shop at start-up.
    pub enabled: bool,
    pub products: usize,
    pub customers: usize,
    pub events: usize,
    pub seed: u64,
    pub currency: String,
    /// Product and image urls of the demo shop start with this.
    pub base_url: String,
    /// Publish the demo ruleset (offers, price lists, shipping, banners for each kind of
    /// demo customer) when the demo seeds an empty store with nothing published.
    pub ruleset: bool,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            products: 2_000,
            customers: 1_000,
            events: 50_000,
            seed: 42,
            currency: "GBP".into(),
            base_url: "https://demo.vitrine.shop".into(),
            ruleset: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter, e.g. `info` or `vitrine=debug,tower=warn`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentSettings {
    pub banners: Vec<BannerSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BannerSettings {
    pub id: String,
    pub placement: Placement,
    pub title: String,
    pub image_url: String,
    pub link_url: String,
    #[serde(default)]
    pub alt: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration: key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Values given on the command line; they override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    /// `--redis URL`: use Redis at URL as the store.
    pub redis: Option<String>,
}

impl Settings {
    /// Loads every layer from the process environment and `config_dir`.
    pub fn load(config_dir: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let env_name = std::env::var("VITRINE_ENV").ok().filter(|e| !e.is_empty());
        let mut figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(config_dir.join("base.toml")));
        if let Some(env_name) = env_name {
            figment = figment.merge(Toml::file(config_dir.join(format!("{env_name}.toml"))));
        }
        if let Some(file) = &overrides.config_file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.clone()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("VITRINE__").split("__"));
        if let Some(addr) = overrides.addr {
            figment = figment.merge(("server.addr", addr.to_string()));
        }
        if let Some(url) = &overrides.redis {
            figment = figment
                .merge(("storage.backend", "redis"))
                .merge(("redis.url", url.as_str()));
        }
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot: ranges and relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, reason: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: reason.to_owned(),
                })
            }
        }
        let s = &self.server;
        check(
            (1024..=16 * 1024 * 1024).contains(&s.body_limit_bytes),
            "server.body_limit_bytes",
            "must be between 1024 and 16777216",
        )?;
        check(
            s.max_concurrency >= 1,
            "server.max_concurrency",
            "must be at least 1",
        )?;
        for (ms, key) in [
            (s.header_read_timeout_ms, "server.header_read_timeout_ms"),
            (s.body_read_timeout_ms, "server.body_read_timeout_ms"),
            (s.idle_timeout_ms, "server.idle_timeout_ms"),
        ] {
            check(
                (100..=3_600_000).contains(&ms),
                key,
                "must be between 100 and 3600000",
            )?;
        }
        check(
            (16..=1_000_000).contains(&s.max_connections),
            "server.max_connections",
            "must be between 16 and 1000000",
        )?;
        check(
            s.cache_max_age_s <= 86_400,
            "server.cache_max_age_s",
            "must be at most 86400",
        )?;
        let a = &self.audit;
        check(
            (0.0..=1.0).contains(&a.sample_rate),
            "audit.sample_rate",
            "must be between 0 and 1",
        )?;
        check(a.keep >= 1, "audit.keep", "must be at least 1")?;
        check(
            (60..=10 * 365 * 86_400).contains(&a.max_age_s),
            "audit.max_age_s",
            "must be between 60 and 315360000",
        )?;
        check(
            (1..=10_000_000).contains(&a.queue),
            "audit.queue",
            "must be between 1 and 10000000",
        )?;
        check(
            a.candidates <= 100,
            "audit.candidates",
            "must be at most 100",
        )?;
        check(
            a.keep_versions <= 64,
            "audit.keep_versions",
            "must be at most 64",
        )?;
        check(
            (60..=30 * 86_400).contains(&self.console.session_ttl_s),
            "console.session_ttl_s",
            "must be between 60 and 2592000",
        )?;
        let x = &self.experiments;
        check(
            (60..=90 * 86_400).contains(&x.attribution_window_s),
            "experiments.attribution_window_s",
            "must be between 60 and 7776000",
        )?;
        check(
            (1..=10_000_000).contains(&x.queue),
            "experiments.queue",
            "must be between 1 and 10000000",
        )?;
        let dr = &self.drift;
        check(
            (10..=30 * 86_400).contains(&dr.window_s),
            "drift.window_s",
            "must be between 10 and 2592000",
        )?;
        check(
            dr.retrain_threshold > 0.0 && dr.retrain_threshold.is_finite(),
            "drift.retrain_threshold",
            "must be a positive number",
        )?;
        check(
            (10..=3_600_000).contains(&dr.check_ms),
            "drift.check_ms",
            "must be between 10 and 3600000",
        )?;
        let r = &self.recommend;
        check(
            (1..=10_000).contains(&r.deadline_ms),
            "recommend.deadline_ms",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=100).contains(&r.default_limit),
            "recommend.default_limit",
            "must be between 1 and 100",
        )?;
        check(
            r.trending_half_life_hours >= 1,
            "recommend.trending_half_life_hours",
            "must be at least 1",
        )?;
        check(
            (1..=1000).contains(&r.neighbors),
            "recommend.neighbors",
            "must be between 1 and 1000",
        )?;
        let keys = self.auth.storefront_keys.iter().map(|k| k.expose()).chain(
            self.auth
                .admin_keys
                .iter()
                .map(|k| AuthSettings::labelled(k.expose()).1),
        );
        for key in keys {
            check(
                key.len() >= 16 && key.chars().all(|c| c.is_ascii_graphic()),
                "auth.*_keys",
                "every key must be at least 16 visible ASCII characters",
            )?;
        }
        check(
            self.auth.customer_token_secret.is_empty()
                || (self.auth.customer_token_secret.expose().len() >= 32
                    && self
                        .auth
                        .customer_token_secret
                        .expose()
                        .chars()
                        .all(|c| c.is_ascii_graphic())),
            "auth.customer_token_secret",
            "must be at least 32 visible ASCII characters (or empty)",
        )?;
        let d = &self.demo;
        if d.enabled {
            check(
                (1..=1_000_000).contains(&d.products),
                "demo.products",
                "must be between 1 and 1000000",
            )?;
            check(
                d.customers <= 10_000_000,
                "demo.customers",
                "must be at most 10000000",
            )?;
            check(
                d.events <= 100_000_000,
                "demo.events",
                "must be at most 100000000",
            )?;
            check(
                crate::domain::Currency::parse(&d.currency).is_ok(),
                "demo.currency",
                "must be a three-letter ISO 4217 code",
            )?;
        }
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            "is not a valid filter (e.g. `info`, `vitrine=debug`)",
        )?;
        check(
            self.storage.backend != StorageBackend::Redis || !self.redis.url.is_empty(),
            "redis.url",
            "is required when storage.backend = \"redis\" (or pass --redis URL)",
        )?;
        check(
            (1..=60_000).contains(&self.redis.timeout_ms),
            "redis.timeout_ms",
            "must be between 1 and 60000",
        )?;
        check(
            (1..=1_000).contains(&self.storage.circuit_failures),
            "storage.circuit_failures",
            "must be between 1 and 1000",
        )?;
        check(
            (10..=60_000).contains(&self.storage.circuit_open_ms),
            "storage.circuit_open_ms",
            "must be between 10 and 60000",
        )?;
        check(
            self.storage.profile_ttl_s >= 60,
            "storage.profile_ttl_s",
            "must be at least 60",
        )?;
        check(
            self.redis.profile_ttl_s.is_none_or(|t| t >= 60),
            "redis.profile_ttl_s",
            "must be at least 60 (and is deprecated: set storage.profile_ttl_s)",
        )?;
        check(
            (1..=60_000).contains(&self.cache.l1_ttl_ms),
            "cache.l1_ttl_ms",
            "must be between 1 and 60000",
        )?;
        check(
            (10..=60_000).contains(&self.events.log_poll_ms),
            "events.log_poll_ms",
            "must be between 10 and 60000",
        )?;
        check(
            (1_000..=10_000_000).contains(&self.events.log_queue),
            "events.log_queue",
            "must be between 1000 and 10000000",
        )?;
        check(
            (1..=10_000).contains(&self.events.max_batch),
            "events.max_batch",
            "must be between 1 and 10000",
        )?;
        check(
            self.events.max_age_s >= 60,
            "events.max_age_s",
            "must be at least 60",
        )?;
        check(
            self.shopify.shop_currency.is_empty()
                || crate::domain::Currency::parse(&self.shopify.shop_currency).is_ok(),
            "shopify.shop_currency",
            "must be a three-letter ISO 4217 code",
        )?;
        check(
            self.shopify.webhook_secret.is_empty() || !self.shopify.shop_currency.is_empty(),
            "shopify.shop_currency",
            "is required with shopify.webhook_secret: Shopify's product payloads carry prices without a currency",
        )?;
        check(
            (1024..=64 * 1024 * 1024).contains(&self.shopify.body_limit_bytes),
            "shopify.body_limit_bytes",
            "must be between 1024 and 67108864",
        )?;
        check(
            (1024..=256 * 1024 * 1024).contains(&self.rules.body_limit_bytes),
            "rules.body_limit_bytes",
            "must be between 1024 and 268435456",
        )?;
        check(
            (10..=60_000).contains(&self.rules.sync_ms),
            "rules.sync_ms",
            "must be between 10 and 60000",
        )?;
        check(
            (10..=60_000).contains(&self.catalog.sync_ms),
            "catalog.sync_ms",
            "must be between 10 and 60000",
        )?;
        for b in self.recommend.blend.all() {
            let weights = [
                b.bought_together,
                b.viewed_together,
                b.similar_items,
                b.history,
                b.recently_viewed,
                b.sessions,
                b.buy_again,
                b.category_trend,
                b.new_arrivals,
                b.search,
                b.trending,
                b.audience_trend,
            ];
            check(
                weights
                    .iter()
                    .all(|w| w.is_finite() && (0.0..=1000.0).contains(w)),
                "recommend.blend",
                "every weight must be a number from 0 to 1000",
            )?;
        }
        let bc = &self.bigcommerce;
        check(
            crate::domain::Currency::parse(&bc.store_currency).is_ok(),
            "bigcommerce.store_currency",
            "must be a three-letter ISO 4217 code",
        )?;
        check(
            bc.webhook_secret.is_empty()
                || (!bc.store_hash.is_empty() && !bc.access_token.is_empty()),
            "bigcommerce.store_hash",
            "and bigcommerce.access_token are required when bigcommerce.webhook_secret is set",
        )?;
        check(
            axum::http::HeaderName::from_bytes(bc.secret_header.as_bytes()).is_ok(),
            "bigcommerce.secret_header",
            "must be a valid header name",
        )?;
        check(
            bc.api_url.starts_with("http://") || bc.api_url.starts_with("https://"),
            "bigcommerce.api_url",
            "must be an http(s) URL",
        )?;
        check(
            (1..=60_000).contains(&bc.timeout_ms),
            "bigcommerce.timeout_ms",
            "must be between 1 and 60000",
        )?;
        check(
            bc.retries <= 10 && bc.backoff_ms <= 10_000,
            "bigcommerce.retries",
            "must be at most 10 (and backoff_ms at most 10000)",
        )?;
        let mut ids = std::collections::HashSet::new();
        for b in &self.content.banners {
            check(
                !b.id.is_empty() && ids.insert(b.id.as_str()),
                "content.banners.id",
                "every banner needs a unique, non-empty id",
            )?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.recommend.deadline_ms)
    }

    /// Where the journal of buffered events lives.
    pub fn journal_path(&self) -> PathBuf {
        if self.events.journal_path.as_os_str().is_empty() {
            self.storage.path.with_file_name("journal.redb")
        } else {
            self.events.journal_path.clone()
        }
    }

    /// How long the stores keep profiles and op ids.
    pub fn retention(&self) -> crate::store::Retention {
        let ttl = self
            .redis
            .profile_ttl_s
            .unwrap_or(self.storage.profile_ttl_s);
        crate::store::Retention {
            profile_ttl: Duration::from_secs(ttl),
            op_window: Duration::from_secs(self.events.max_age_s.unsigned_abs()),
        }
    }
}

/// Accepts a TOML/JSON list or a comma-separated string, so that
/// `VITRINE__AUTH__STOREFRONT_KEYS=key1,key2` works from the environment.
fn list_or_csv<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(list) => list.into_iter().map(T::from).collect(),
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| T::from(k.to_owned()))
            .collect(),
    })
}
