//! `vitrine eval --via-http URL`: the same test cases replayed through a running
//! server's public API, as a shop would run it, so the served figures can be checked
//! against the evaluated ones case for case.
//!
//! The server must start with an empty catalog (`demo.enabled = false`) on the store the
//! evaluation's settings name (Redis: the two processes share it). The evaluation puts
//! the dataset's products through `PUT /admin/v1/products`, writes the training history
//! to an events file and trains on it as `vitrine train --events FILE` does (the models
//! go to the store, the server swaps them in), then sends each case's view through
//! `POST /v1/events` and reads the answer from `GET /v1/recommend` on `home`.

use std::time::Duration;

use serde_json::{Value, json};

use super::EvalError;

/// How long a swapped-in model may take to reach the server.
const MODEL_WAIT: Duration = Duration::from_secs(120);
/// A request answered 429 or 503 is tried again, this many times at most.
const RETRIES: u32 = 200;

/// Where to replay, and with what.
#[derive(Clone, Debug)]
pub struct ViaHttp {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The settings the server runs with (its store, its keys).
    pub settings: crate::config::Settings,
}

/// A running server, seen through its public API.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    /// Prefix of this run's session and event ids, so runs against one server do not
    /// meet.
    pub(crate) run: String,
    /// Answers the server marked degraded (deadline, store error).
    pub(crate) degraded: std::sync::atomic::AtomicU64,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EvalError {
    EvalError::Setup(format!("via http: {what}: {e}"))
}

impl Client {
    pub(crate) fn new(via: &ViaHttp) -> Result<Self, EvalError> {
        crate::ingest::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| failed("client", e))?;
        Ok(Self {
            http,
            base: via.url.trim_end_matches('/').to_owned(),
            // An admin key may call the storefront API too.
            key: via
                .settings
                .auth
                .admin_keys
                .first()
                .map(|k| k.expose().to_owned()),
            run: format!("eval{:x}", crate::domain::time::unix_now()),
            degraded: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sends a request built by `build`, again while the server answers 429 or 503;
    /// returns the JSON body of a 2xx.
    async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, EvalError> {
        for attempt in 0..RETRIES {
            let mut req = build(&self.http);
            if let Some(k) = &self.key {
                req = req.bearer_auth(k);
            }
            let r = req.send().await.map_err(|e| failed(what, e))?;
            let status = r.status();
            if status.is_success() {
                return r.json().await.map_err(|e| failed(what, e));
            }
            if (status.as_u16() == 429 || status.as_u16() == 503) && attempt + 1 < RETRIES {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map_or(Duration::from_millis(50), Duration::from_secs);
                tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                continue;
            }
            let body = r.text().await.unwrap_or_default();
            return Err(failed(what, format!("{status}: {body}")));
        }
        Err(failed(what, "still refused after retries"))
    }

    /// Products with ids `1..=count`, in one category, as the in-process catalog has
    /// them.
    pub(crate) async fn put_products(&self, count: u32, category: &str) -> Result<(), EvalError> {
        let url = format!("{}/admin/v1/products", self.base);
        let ids: Vec<u32> = (1..=count).collect();
        for chunk in ids.chunks(crate::http::catalog::MAX_BATCH) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|id| {
                    json!({
                        "id": super::product_id(*id),
                        "title": format!("item {id}"),
                        "category": category,
                        "price": {"amount": 100, "currency": "XXX"},
                        "inventory": 1,
                    })
                })
                .collect();
            self.call("PUT /admin/v1/products", |c| c.put(&url).json(&body))
                .await?;
        }
        Ok(())
    }

    /// Waits until the server answers with the models named `version`.
    pub(crate) async fn wait_for_models(&self, version: &str) -> Result<(), EvalError> {
        let started = std::time::Instant::now();
        loop {
            let (_, served) = self.home("warm-up", 1).await?;
            if served == version {
                return Ok(());
            }
            if started.elapsed() > MODEL_WAIT {
                return Err(failed(
                    "models",
                    format!("the server still answers with {served}, not {version}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One view of `product` at `at`, in session `session`.
    pub(crate) async fn view(
        &self,
        session: &str,
        event: &str,
        product: &str,
        at: i64,
    ) -> Result<(), EvalError> {
        let url = format!("{}/v1/events", self.base);
        let body = json!([{
            "event_id": format!("{}-{event}", self.run),
            "type": "view",
            "session_id": format!("{}-{session}", self.run),
            "product_id": product,
            "timestamp": at,
        }]);
        let report = self
            .call("POST /v1/events", |c| c.post(&url).json(&body))
            .await?;
        let status = report["results"][0]["status"].as_str().unwrap_or("");
        if status == "accepted" {
            Ok(())
        } else {
            Err(failed("POST /v1/events", report))
        }
    }

    /// The `home` answer for `session`: its product ids, and the models' version.
    pub(crate) async fn home(
        &self,
        session: &str,
        limit: usize,
    ) -> Result<(Vec<String>, String), EvalError> {
        // Session ids here are letters, digits and dashes: nothing to escape.
        let url = format!(
            "{}/v1/recommend?placement=home&session_id={}-{session}&limit={limit}",
            self.base, self.run
        );
        let answer = self.call("GET /v1/recommend", |c| c.get(&url)).await?;
        if answer["degraded"].as_bool() == Some(true) {
            self.degraded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let ids = answer["recommendations"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["product_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let version = answer["model_version"].as_str().unwrap_or("").to_owned();
        Ok((ids, version))
    }
}
