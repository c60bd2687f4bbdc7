//! Test harness: starts the real app on port 0 and talks to it over a real socket.

pub mod process;
pub mod redis;
pub mod rules;
pub mod shopify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vitrine::app::App;
use vitrine::config::{BannerSettings, Settings};
use vitrine::domain::Profile;
use vitrine::domain::profile::ProfileOp;
use vitrine::store::{Applied, ProfileKey, ProfileStore, StoreError};

pub const STOREFRONT_KEY: &str = "sf-test-key-0123456789";
pub const ADMIN_KEY: &str = "admin-test-key-0123456789";

/// A small demo shop: enough data for meaningful answers, fast to build in debug.
pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.server.addr = "127.0.0.1:0".parse().unwrap();
    s.demo.products = 400;
    s.demo.customers = 100;
    s.demo.events = 8_000;
    // The tests publish the rulesets they need.
    s.demo.ruleset = false;
    s.log.level = "warn".into();
    s.content.banners = ["home", "cart"]
        .iter()
        .map(|p| BannerSettings {
            id: if *p == "home" {
                "winter-sale"
            } else {
                "free-delivery"
            }
            .into(),
            placement: p.parse().unwrap(),
            title: format!("{p} banner"),
            image_url: format!("https://example.com/{p}.jpg"),
            link_url: format!("https://example.com/{p}"),
            alt: None,
        })
        .collect();
    s
}

/// The small demo shop on a Redis shared by replicas, each following the others'
/// changes every 100 ms.
pub fn on_redis(redis: &redis::RedisServer) -> Settings {
    let mut s = settings();
    s.storage.backend = vitrine::config::StorageBackend::Redis;
    s.redis.url = redis.url();
    s.catalog.sync_ms = 100;
    s.rules.sync_ms = 100;
    s.events.log_poll_ms = 100;
    s
}

/// A shop with no products and no history yet, on a Redis shared with the commands
/// (`vitrine train`, `vitrine eval --via-http`).
pub fn empty_shop_on_redis(redis: &redis::RedisServer) -> Settings {
    let mut s = on_redis(redis);
    s.demo.enabled = false;
    s
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub ops_port: Option<u16>,
    pub client: reqwest::Client,
    pub state: vitrine::http::state::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<std::io::Result<()>>>,
    /// Holds the embedded store's directory until the app is dropped.
    _dir: Option<tempfile::TempDir>,
}

/// Points the embedded store at a fresh directory unless the test chose a path.
fn isolate(mut settings: Settings) -> (Settings, Option<tempfile::TempDir>) {
    if settings.storage.path == Settings::default().storage.path {
        let dir = tempfile::tempdir().expect("temp dir");
        settings.storage.path = dir.path().join("vitrine.redb");
        (settings, Some(dir))
    } else {
        (settings, None)
    }
}

impl TestApp {
    /// The demo shop on `redis`.
    pub async fn on_redis(redis: &redis::RedisServer) -> Self {
        Self::spawn(on_redis(redis)).await
    }

    pub async fn spawn(settings: Settings) -> Self {
        let (settings, dir) = isolate(settings);
        Self::start(App::build(settings).await.expect("app builds"), dir).await
    }

    pub async fn spawn_with_store(settings: Settings, store: Arc<FaultyStore>) -> Self {
        let (settings, dir) = isolate(settings);
        let slot = store.clone();
        let app = App::build_with_store(settings, move |inner| {
            slot.set_inner(inner);
            slot as Arc<dyn ProfileStore>
        })
        .await
        .expect("app builds");
        Self::start(app, dir).await
    }

    async fn start(app: App, dir: Option<tempfile::TempDir>) -> Self {
        let port = app.port();
        let ops_port = app.ops_port();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            ops_port,
            client: client(),
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A GET whose answer is JSON (an error's too).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON answer")
    }

    /// `GET /v1/recommend?QUERY`, which must answer 200.
    pub async fn recommend(&self, query: &str) -> serde_json::Value {
        let r = self.get(&format!("/v1/recommend?{query}")).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.expect("a JSON answer");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `POST /v1/events` with one event or a batch: the status and the report.
    pub async fn send_events(&self, events: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.post_json("/v1/events", events).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON report"))
    }

    /// `POST /v1/events` that must be accepted (202); the report.
    pub async fn accept_events(&self, events: &serde_json::Value) -> serde_json::Value {
        let (status, report) = self.send_events(events).await;
        assert_eq!(status, 202, "{report}");
        report
    }

    /// `PUT /admin/v1/products`, which must be applied.
    pub async fn put_products(&self, products: &serde_json::Value) {
        let r = self
            .client
            .put(self.url("/admin/v1/products"))
            .json(products)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "{}", r.text().await.unwrap());
    }

    /// The customer's profile export, `None` when there is no profile.
    pub async fn export_profile(&self, customer: &str) -> Option<serde_json::Value> {
        let r = self.get(&format!("/admin/v1/profiles/{customer}")).await;
        (r.status() == 200).then_some(r.json().await.expect("profile JSON"))
    }

    /// `DELETE /admin/v1/profiles/{customer}`: its status (204 whether or not there was
    /// one).
    pub async fn erase_profile(&self, customer: &str) -> u16 {
        self.client
            .delete(self.url(&format!("/admin/v1/profiles/{customer}")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Triggers graceful shutdown and waits for the server to stop.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `check` until it holds, failing the test after 20 s: the one way tests wait
/// for something that happens in the background.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(20), check).await;
}

/// [`eventually`] with a bound that is part of what the test shows (a change reaches
/// another replica within a second).
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP client for the tests (the process's TLS provider installed first, as the
/// service does).
pub fn client() -> reqwest::Client {
    vitrine::ingest::install_tls_provider();
    reqwest::Client::new()
}

/// `(product_id, reason)` of each recommendation in an answer, in order.
pub fn picks(answer: &serde_json::Value) -> Vec<(String, String)> {
    answer["recommendations"]
        .as_array()
        .expect("recommendations")
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().expect("product_id").to_owned(),
                i["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

/// The product ids in a profile export's `purchased`.
pub fn purchased_ids(profile: &serde_json::Value) -> Vec<&str> {
    profile["purchased"]
        .as_array()
        .expect("purchased")
        .iter()
        .map(|x| x["product_id"].as_str().expect("product_id"))
        .collect()
}

/// Reads the JSON error code of an error answer.
pub async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(
        body["error"]["message"].is_string(),
        "error.message missing in {body}"
    );
    (status, code)
}

/// A store in front of the in-process one that can be made slow or failing, and counts
/// reads in flight.
#[derive(Default)]
pub struct FaultyStore {
    inner: std::sync::OnceLock<Arc<dyn ProfileStore>>,
    pub delay_ms: AtomicU64,
    pub failing: AtomicBool,
    pub in_flight: AtomicUsize,
}

impl FaultyStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn set_inner(&self, inner: Arc<dyn ProfileStore>) {
        let _ = self.inner.set(inner);
    }

    fn inner(&self) -> Result<&Arc<dyn ProfileStore>, StoreError> {
        self.inner
            .get()
            .ok_or_else(|| StoreError::Unavailable("not started".into()))
    }

    async fn fault(&self) -> Result<(), StoreError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected fault".into()));
        }
        Ok(())
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ProfileStore for FaultyStore {
    fn backend(&self) -> &'static str {
        "faulty"
    }

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        self.fault().await?;
        self.inner()?.get(key).await
    }

    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        self.fault().await?;
        self.inner()?.apply(key, ops).await
    }

    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        self.fault().await?;
        self.inner()?.delete(key).await
    }

    async fn erase_all(&self) -> Result<u64, StoreError> {
        self.fault().await?;
        self.inner()?.erase_all().await
    }

    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        self.inner()?.seed(profiles).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fault().await
    }
}

/// Opens a raw connection to the app, sends `GET /livez` on it, checks the answer is 200
/// and returns the connection, kept alive.
pub async fn kept_alive(port: u16) -> tokio::net::TcpStream {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    livez_on(&mut c).await;
    c
}

/// Sends `GET /livez` on an open connection and checks the answer is 200.
pub async fn livez_on(c: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request written");
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.expect("answer read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Runs the real binary in the project's directory: its exit code, stdout and stderr.
pub fn vitrine(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `vitrine import KIND tests/fixtures/import/FILE` against this Redis.
pub fn import(
    redis: &redis::RedisServer,
    kind: &str,
    file: &str,
    extra: &[&str],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["import", kind, &format!("tests/fixtures/import/{file}")])
        .args(["--redis", &redis.url()])
        .args(extra)
        .output()
        .expect("vitrine runs")
}
