//! HTTP load bench: starts the real `vitrine` binary with a large demo shop, then drives
//! `GET /v1/recommend` from a load generator in this process over keep-alive connections
//! on loopback.
//!
//! Run: `cargo bench --bench load`. By default it measures every path (product; home for
//! new visitors and for known customers; a 5-line cart; a search with 100 candidates; a
//! live ruleset; known customers on Redis with the L1 tier missed; all with the decision
//! log off; and the product path again with the log on and three experiments running),
//! each against a bare axum handler answering one of that path's own
//! answers byte for byte from memory (for the Redis path, after one Redis GET of a
//! profile), driven by the same generator in the same run, and prints the ratios as a
//! table. Setting any of the knobs below that pick one path (`LOAD_PLACEMENT`,
//! `LOAD_REDIS`, `LOAD_RULESET`, ...) runs that one path instead. Knobs (environment):
//! `LOAD_SECONDS` (10), `LOAD_WARMUP_SECONDS` (2), `LOAD_CONNECTIONS` (32),
//! `LOAD_PRODUCTS` (100000), `LOAD_CUSTOMERS` (1000), `LOAD_EVENTS` (200000),
//! `LOAD_PLACEMENT` (product), `LOAD_REDIS` (1: start a private redis-server and use it
//! as the store), `LOAD_L1_TTL_MS` (the L1 tier's TTL; 1 makes nearly every read go to
//! the store), `LOAD_RULESET` (1: publish a ruleset of 200 promotions, 50 price lists
//! and 100 merchandising rules before the run), `LOAD_CONTEXT` (appended to every URL, e.g. `&country=DE&device=mobile`),
//! `LOAD_OUTAGE` (`kill` or `pause`, with `LOAD_REDIS=1`: after the normal run, Redis is
//! killed or frozen and the same load runs again; both are printed with their ratio),
//! `LOAD_STALL` (1: publish the largest ruleset the limits allow, then drive 8
//! connections of `POST /v1/cart/evaluate` with 200 lines and 20 codes while a probe
//! times `GET /livez` every 20 ms), `LOAD_GROWTH` (1: profiles expire after 60 s; for
//! `LOAD_SECONDS`, every request is a view by a new session, and the embedded store's
//! file size is printed every 30 s).
//! `LOAD_AUDIT` (1: a second server with the decision log off, the same shop, and
//! `LOAD_AUDIT_ROUNDS` (20) pairs of short rounds (`LOAD_AUDIT_SECONDS`, 3, after 1 s of
//! warm-up) against both, in ABBA order so that neither always goes first: the
//! throughput ratio, bytes per record and, with `LOAD_REDIS=1`, Redis memory per
//! million records). `LOAD_EXPERIMENTS` (1: three running experiments, one with a
//! shadow variant, published on the server under test, against a second server of the
//! same shop without them, in the same paired rounds).
//! With `LOAD_SECONDS=0` it only measures start-up. `LOAD_BARE` (1, the default): after
//! the normal run, the same load against a bare handler in a process of its own (axum on
//! a multi-threaded runtime, answering every request with one of Vitrine's own answers,
//! byte for byte, from memory), and the ratios of Vitrine to it.
//!
//! The generator is deliberately minimal (raw HTTP/1.1 over tokio, one thread) so that
//! it costs the server's two cores as little as possible.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "ruleset_gen.rs"]
#[allow(dead_code)] // The load bench publishes only some of its rulesets.
mod ruleset_gen;

/// The demo catalog the server generated (same settings, same seed).
fn demo_catalog(products: usize, customers: usize, events: usize) -> vitrine::domain::Catalog {
    vitrine::ingest::demo::generate(
        &vitrine::config::DemoSettings {
            products,
            customers,
            events,
            ..vitrine::config::DemoSettings::default()
        },
        vitrine::recommend::model::unix_now(),
    )
    .expect("demo shop")
    .catalog
}

/// Publishes a ruleset document through the admin API.
fn publish_ruleset(port: u16, document: &serde_json::Value) {
    use std::io::{Read, Write};
    let body = serde_json::to_vec(document).expect("json");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        s,
        "PUT /admin/v1/ruleset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(&body).expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "publish failed: {answer}"
    );
    println!(
        "ruleset published ({} MB): {}",
        body.len() / 1_000_000,
        answer.lines().last().unwrap_or_default()
    );
}

/// The same private `redis-server` the tests use (free port, ready when it answers PING).
#[path = "../tests/api/common/redis.rs"]
mod redis_server;

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The store-read counters from the server's own `/metrics`, so a run shows which tier
/// answered.
fn store_reads(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("vitrine_store_reads_total"))
        .map(|l| l.trim_start_matches("vitrine_store_reads_total"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    other: u64,
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connection(
    port: u16,
    requests: std::sync::Arc<Vec<Vec<u8>>>,
    seed: u64,
    warmup_end: Instant,
    end: Instant,
) -> Stats {
    let mut stats = Stats {
        hist: Histogram::new_with_bounds(1, 10_000_000, 3).expect("histogram"),
        ok: 0,
        other: 0,
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut buf = Vec::with_capacity(8192);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let req = &requests[rng.random_range(0..requests.len())];
        stream.write_all(req).await.expect("write");
        let status = read_response(&mut stream, &mut buf).await.expect("read");
        if now >= warmup_end {
            let us = now.elapsed().as_micros() as u64;
            stats.hist.record(us.max(1)).ok();
            if status == 200 {
                stats.ok += 1;
            } else {
                stats.other += 1;
            }
        }
    }
    stats
}

/// One run's results.
struct Summary {
    hist: Histogram<u64>,
    ok: u64,
    other: u64,
    seconds: u64,
    /// The server's CPU time (user and system) over the measured part, in seconds.
    cpu: Option<f64>,
}

/// A process's CPU time so far (user and system), in seconds, from `/proc`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // of the line, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Summary {
    fn rate(&self) -> f64 {
        (self.ok + self.other) as f64 / self.seconds as f64
    }

    fn p99_ms(&self) -> f64 {
        self.hist.value_at_quantile(0.99) as f64 / 1000.0
    }

    fn print(&self, label: &str) {
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        let per_request = self
            .cpu
            .map(|cpu| {
                format!(
                    ", server CPU {:.1} µs a request",
                    cpu * 1e6 / (self.ok + self.other).max(1) as f64
                )
            })
            .unwrap_or_default();
        println!(
            "  {label}: {} requests, {:.0} req/s, non-200: {}{per_request}",
            self.ok + self.other,
            self.rate(),
            self.other
        );
        println!(
            "  latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            ms(0.50),
            ms(0.90),
            ms(0.99),
            ms(0.999),
            self.hist.max() as f64 / 1000.0
        );
    }
}

/// Drives the server with `connections` keep-alive connections for `warmup` then
/// `seconds` seconds, recording the latter.
fn run(
    port: u16,
    server: u32,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
    warmup: u64,
    seconds: u64,
) -> Summary {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let warmup_end = t0 + Duration::from_secs(warmup);
    let end = warmup_end + Duration::from_secs(seconds);
    // The server's CPU time over the measured part, read from another thread at its
    // start and end.
    let cpu = std::thread::spawn(move || {
        std::thread::sleep(warmup_end.saturating_duration_since(Instant::now()));
        let before = cpu_seconds(server)?;
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        Some(cpu_seconds(server)? - before)
    });
    let all = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                tokio::spawn(connection(
                    port,
                    requests.clone(),
                    c as u64,
                    warmup_end,
                    end,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("connection task"));
        }
        out
    });
    let mut summary = Summary {
        hist: Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram"),
        ok: 0,
        other: 0,
        seconds,
        cpu: cpu.join().ok().flatten(),
    };
    for s in &all {
        summary.hist.add(&s.hist).ok();
        summary.ok += s.ok;
        summary.other += s.other;
    }
    summary
}

/// A new session's view per request, over 8 connections, for `seconds`; the embedded
/// store's file size every 30 s.
fn growth(port: u16, seconds: u64, file: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    runtime.block_on(async {
        let workers: Vec<_> = (0..8u64)
            .map(|c| {
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
                    let mut buf = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < end {
                        n += 1;
                        let body = format!(
                            "{{\"event_id\":\"g{c}-{n}\",\"type\":\"view\",\"session_id\":\"growth-{c}-{n}\",\"product_id\":\"p{:06}\"}}",
                            1 + (n * 7 + c) % 1000
                        );
                        let req = format!(
                            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(req.as_bytes()).await.expect("write");
                        read_response(&mut stream, &mut buf).await.expect("read");
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let report = tokio::spawn({
            let sent = sent.clone();
            let file = file.to_owned();
            async move {
                println!("  seconds  new sessions  file (MiB)");
                while Instant::now() < end {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    println!(
                        "  {:7}  {:12}  {:10.2}",
                        start.elapsed().as_secs(),
                        sent.load(std::sync::atomic::Ordering::Relaxed),
                        std::fs::metadata(&file).map_or(0, |m| m.len()) as f64 / 1048576.0
                    );
                }
            }
        });
        for w in workers {
            w.await.expect("worker");
        }
        report.await.expect("report");
    });
}

/// Eight connections of the heaviest cart evaluation against the largest ruleset the
/// limits allow, and `/livez` timed every 20 ms meanwhile.
fn stall(port: u16, products: usize, customers: usize, events: usize, seconds: u64, warmup: u64) {
    let catalog = demo_catalog(products, customers, events);
    publish_ruleset(
        port,
        &ruleset_gen::at_limits(&catalog, ruleset_gen::AtLimits::Many),
    );
    let lines: Vec<serde_json::Value> = (0..200u32)
        .map(|i| {
            let p = catalog.product((i * 499) % catalog.len() as u32);
            serde_json::json!({"product_id": &*p.id, "quantity": 1 + i % 3})
        })
        .collect();
    let codes = ruleset_gen::request_codes();
    let body = serde_json::to_vec(&serde_json::json!({
        "session_id": "stall", "cart": lines, "codes": codes,
        "context": {"country": "GB", "currency": "GBP", "channel": "web"}
    }))
    .expect("json");
    let mut request = format!(
        "POST /v1/cart/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let requests = std::sync::Arc::new(vec![request]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let warmup_end = Instant::now() + Duration::from_secs(warmup);
    let end = warmup_end + Duration::from_secs(seconds.max(1));
    // The probe has a thread of its own, so that reading the carts' answers never
    // delays it.
    let probe = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let mut stream = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                let mut buf = Vec::new();
                while Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let t = Instant::now();
                    stream
                        .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        .await
                        .expect("write");
                    read_response(&mut stream, &mut buf).await.expect("read");
                    if t >= warmup_end {
                        hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                    }
                }
                hist
            })
    });
    let carts = runtime.block_on(async {
        let carts: Vec<_> = (0..8)
            .map(|c| tokio::spawn(connection(port, requests.clone(), c, warmup_end, end)))
            .collect();
        let mut all = Vec::new();
        for c in carts {
            all.push(c.await.expect("connection"));
        }
        all
    });
    let livez = probe.join().expect("probe");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let (mut ok, mut other) = (0, 0);
    for c in &carts {
        hist.add(&c.hist).ok();
        ok += c.ok;
        other += c.other;
    }
    let summary = Summary {
        hist,
        ok,
        other,
        seconds: seconds.max(1),
        cpu: None,
    };
    summary.print("POST /v1/cart/evaluate, 200 lines, 20 codes, largest ruleset, 8 connections");
    let ms = |q: f64| livez.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  GET /livez meanwhile: {} probes, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        livez.len(),
        ms(0.5),
        ms(0.99),
        livez.max() as f64 / 1000.0
    );
}

/// The bare reference: serves `body` (a file) as JSON on every path of `port` until
/// killed. Run as this bench's own executable with `LOAD_BARE_SERVE=port|file` (or
/// `port|file|key|redis-url`).
fn bare_serve(spec: &str) {
    // `port|file`, or `port|file|key|redis-url` to GET `key` from Redis before each answer.
    let mut parts = spec.splitn(4, '|');
    let (port, file) = (
        parts.next().expect("port").to_owned(),
        parts.next().expect("file").to_owned(),
    );
    let key = parts.next().map(str::to_owned);
    let url = parts.next().map(str::to_owned);
    let body = bytes::Bytes::from(std::fs::read(file).expect("bare body"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let redis = match url {
            Some(url) => Some(
                redis::Client::open(url)
                    .expect("redis url")
                    .get_connection_manager()
                    .await
                    .expect("redis"),
            ),
            None => None,
        };
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            let (redis, key) = (redis.clone(), key.clone());
            async move {
                if let (Some(mut conn), Some(key)) = (redis, key) {
                    let _: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(key.as_bytes())
                        .query_async(&mut conn)
                        .await
                        .expect("redis GET");
                }
                ([("content-type", "application/json")], body)
            }
        });
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// The bare reference: answers `body` (after one Redis GET of `redis.1` at `redis.0`,
/// when given) under the same load; its summary.
fn bare_reference(
    body: &[u8],
    redis: Option<(&str, &str)>,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
    warmup: u64,
    seconds: u64,
) -> Summary {
    let port = free_port();
    let file = tempfile::NamedTempFile::new().expect("body file");
    std::fs::write(file.path(), body).expect("write body");
    let spec = match redis {
        Some((url, key)) => format!("{port}|{}|{key}|{url}", file.path().display()),
        None => format!("{port}|{}", file.path().display()),
    };
    let mut bare = Command::new(std::env::current_exe().expect("this bench"))
        .env("LOAD_BARE_SERVE", spec)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the bare handler");
    let url = format!("http://127.0.0.1:{port}/livez");
    while !vitrine::cli::healthcheck(&url) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reference = run(port, bare.id(), requests, connections, warmup, seconds);
    let _ = bare.kill();
    let _ = bare.wait();
    reference
}

/// The same load against the bare reference answering `body`; Vitrine's ratios to it.
fn against_bare(
    normal: &Summary,
    body: &[u8],
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
    warmup: u64,
    seconds: u64,
) {
    let reference = bare_reference(body, None, requests, connections, warmup, seconds);
    reference.print(&format!("bare handler ({} byte answer)", body.len()));
    let cpu = |s: &Summary| s.cpu.map(|c| c / (s.ok + s.other).max(1) as f64);
    println!(
        "  Vitrine to the bare handler: {:.2} x the throughput, {:.2} x the p99 latency{}",
        normal.rate() / reference.rate(),
        normal.p99_ms() / reference.p99_ms(),
        match (cpu(normal), cpu(&reference)) {
            (Some(v), Some(b)) => format!(", {:.2} x the server CPU a request", v / b),
            _ => String::new(),
        }
    );
}

/// One of the server's answers to `request`, its body only.
fn answer_body(port: u16, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head =
        String::from_utf8_lossy(request).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    response.split_off(start)
}

/// The demo shop a server is started with.
struct Shop {
    products: usize,
    customers: usize,
    events: usize,
    l1_ttl: u64,
    /// The Redis to use as the store (`None`: the embedded store).
    redis: Option<String>,
}

impl Shop {
    /// Starts the real binary on `port` with this shop (and `extra` settings) and waits
    /// until it answers.
    fn start(
        &self,
        port: u16,
        store: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> std::process::Child {
        let started = Instant::now();
        let mut server = Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .env("VITRINE__SERVER__ADDR", format!("127.0.0.1:{port}"))
            .env("VITRINE__DEMO__PRODUCTS", self.products.to_string())
            .env("VITRINE__DEMO__CUSTOMERS", self.customers.to_string())
            .env("VITRINE__DEMO__EVENTS", self.events.to_string())
            .env("VITRINE__LOG__LEVEL", "warn")
            // Rows run without a ruleset unless they publish one.
            .env("VITRINE__DEMO__RULESET", "false")
            .env("VITRINE__STORAGE__PATH", store)
            .env("VITRINE__CACHE__L1_TTL_MS", self.l1_ttl.to_string())
            // The largest ruleset the limits allow is a large document.
            .env("VITRINE__RULES__BODY_LIMIT_BYTES", "268435456")
            .envs(
                (env_or("LOAD_GROWTH", 0u8) == 1)
                    .then_some([
                        ("VITRINE__STORAGE__PROFILE_TTL_S", "60"),
                        ("VITRINE__EVENTS__MAX_AGE_S", "60"),
                    ])
                    .into_iter()
                    .flatten(),
            )
            .env(
                "VITRINE__STORAGE__BACKEND",
                if self.redis.is_some() {
                    "redis"
                } else {
                    "embedded"
                },
            )
            .env(
                "VITRINE__REDIS__URL",
                self.redis.clone().unwrap_or_default(),
            )
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vitrine");
        let url = format!("http://127.0.0.1:{port}/livez");
        while !vitrine::cli::healthcheck(&url) {
            if let Ok(Some(s)) = server.try_wait() {
                panic!("server exited: {s}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Shop {
    /// A second server of this shop (`extra` settings besides) on a free port, with a
    /// store of its own (on Redis, a key prefix of its own): the port, the process and
    /// the store's directory (removed when dropped).
    fn start_beside(
        &self,
        extra: &[(&str, &str)],
    ) -> (u16, std::process::Child, tempfile::TempDir) {
        let port = free_port();
        let dir = tempfile::tempdir().expect("store dir");
        let mut settings = vec![("VITRINE__REDIS__KEY_PREFIX", "vitrine-off:")];
        settings.extend_from_slice(extra);
        let server = self.start(port, &dir.path().join("vitrine.redb"), &settings);
        (port, server, dir)
    }
}

/// A sum or count from the server's `/metrics` (every series of `name` added).
fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Throughputs and CPU a request of two servers driven alike.
struct Paired {
    with: Vec<f64>,
    without: Vec<f64>,
    cpu_with: Vec<f64>,
    cpu_without: Vec<f64>,
}

/// `LOAD_AUDIT_ROUNDS` (20) pairs of `LOAD_AUDIT_SECONDS` (3) rounds after 1 s of
/// warm-up each, against `a` and `b` in ABBA order: this machine's speed drifts over
/// seconds, and each pair sees the same drift.
fn paired_rounds(
    a: (u16, u32),
    b: (u16, u32),
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> Paired {
    let rounds: usize = env_or("LOAD_AUDIT_ROUNDS", 20);
    let round_seconds: u64 = env_or("LOAD_AUDIT_SECONDS", 3);
    let mut out = Paired {
        with: Vec::new(),
        without: Vec::new(),
        cpu_with: Vec::new(),
        cpu_without: Vec::new(),
    };
    println!("  round  A (req/s, µs CPU a request)  B  A/B");
    for round in 0..rounds {
        let drive =
            |(port, pid): (u16, u32)| run(port, pid, requests, connections, 1, round_seconds);
        let (x, y) = if round % 2 == 0 {
            let x = drive(a);
            (x, drive(b))
        } else {
            let y = drive(b);
            (drive(a), y)
        };
        let cpu = |s: &Summary| {
            s.cpu
                .map_or(0.0, |c| c * 1e6 / (s.ok + s.other).max(1) as f64)
        };
        println!(
            "  {:5}  {:8.0} {:6.1}  {:8.0} {:6.1}  {:.3}",
            round + 1,
            x.rate(),
            cpu(&x),
            y.rate(),
            cpu(&y),
            x.rate() / y.rate()
        );
        out.with.push(x.rate());
        out.without.push(y.rate());
        out.cpu_with.push(cpu(&x));
        out.cpu_without.push(cpu(&y));
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The ratio of the means and the median pair's.
fn ratios(p: &Paired) -> (f64, f64, f64, f64) {
    let mut pairs: Vec<f64> = p.with.iter().zip(&p.without).map(|(a, b)| a / b).collect();
    pairs.sort_by(f64::total_cmp);
    (
        mean(&p.with),
        mean(&p.without),
        mean(&p.with) / mean(&p.without),
        pairs.get(pairs.len() / 2).copied().unwrap_or(0.0),
    )
}

/// Three running experiments (two sharing a namespace, one with a shadow variant)
/// published on the server under test, against a second server of the same shop
/// without them (both recording decisions): what experiments cost a request.
fn against_no_experiments(
    shop: &Shop,
    on: (u16, u32),
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
) {
    let (port, mut off, _dir) = shop.start_beside(&[]);
    publish_ruleset(on.0, &experiments_ruleset());
    let p = paired_rounds(on, (port, off.id()), requests, connections);
    let (a, b, ratio, median) = ratios(&p);
    println!(
        "  experiments: three running {a:.0} req/s, none {b:.0} req/s (means of {} paired rounds): {ratio:.3} x (median pair {median:.3} x)",
        p.with.len()
    );
    let _ = off.kill();
    let _ = off.wait();
}

/// Recording on (the server under test) against recording off (a second server, the
/// same shop), in alternating rounds of the same load: the decision log's cost in
/// throughput, and what its records weigh.
fn against_unrecorded(
    shop: &Shop,
    on: (u16, u32),
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
    redis: Option<&redis_server::RedisServer>,
) {
    let (port, mut off, _dir) = shop.start_beside(&[("VITRINE__AUDIT__ENABLED", "false")]);
    if env_or("LOAD_RULESET", 0u8) == 1 {
        let catalog = demo_catalog(shop.products, shop.customers, shop.events);
        publish_ruleset(port, &ruleset_gen::large_ruleset(&catalog, false));
    }
    let memory = |r: &redis_server::RedisServer| -> f64 {
        r.command(&["INFO", "memory"])
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let (recorded_before, bytes_before, memory_before) = (
        metric(on.0, "vitrine_audit_recorded_total"),
        metric(on.0, "vitrine_audit_bytes_total"),
        redis.map(memory),
    );
    let paired = paired_rounds(on, (port, off.id()), requests, connections);
    // Let the writer finish what is queued before weighing.
    std::thread::sleep(Duration::from_secs(2));
    let recorded = metric(on.0, "vitrine_audit_recorded_total") - recorded_before;
    let dropped = metric(on.0, "vitrine_audit_dropped_total");
    let bytes = (metric(on.0, "vitrine_audit_bytes_total") - bytes_before) / recorded.max(1.0);
    let (a, b, ratio, median) = ratios(&paired);
    println!(
        "  decision log: recording on {a:.0} req/s, off {b:.0} req/s (means of {} paired rounds): {ratio:.3} x (median pair {median:.3} x); server CPU {:.1} against {:.1} µs a request",
        paired.with.len(),
        mean(&paired.cpu_with),
        mean(&paired.cpu_without)
    );
    println!(
        "  {recorded:.0} records written, {dropped:.0} dropped; {bytes:.0} bytes a record (MessagePack)"
    );
    if let (Some(r), Some(before)) = (redis, memory_before) {
        let per_million = (memory(r) - before) / recorded.max(1.0) * 1e6;
        println!(
            "  Redis memory per million decisions: {:.0} MiB (used_memory grew {:.1} MiB for {recorded:.0})",
            per_million / (1024.0 * 1024.0),
            (memory(r) - before) / (1024.0 * 1024.0)
        );
    }
    let _ = off.kill();
    let _ = off.wait();
}

/// One row of the ratio table.
struct Row {
    label: String,
    vitrine: Summary,
    reference: Summary,
    /// What the row is measured against.
    against: String,
    /// The target for the ratio (`None`: reported only).
    target: Option<f64>,
}

/// `count` GET requests of one kind, at random over the demo shop.
fn requests_of(kind: &str, products: usize, customers: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let product =
        |rng: &mut rand_chacha::ChaCha8Rng| format!("p{:06}", rng.random_range(1..=products));
    (0..count)
        .map(|n| {
            let session = rng.random_range(1..=50_000);
            let path = match kind {
                "home-new" => format!("session_id=new-{n}&placement=home"),
                "home-known" => format!(
                    "customer_id=c{:07}&placement=home",
                    rng.random_range(1..=customers.max(1))
                ),
                "cart" => {
                    let lines: Vec<String> =
                        (0..5).map(|_| format!("{}:1", product(&mut rng))).collect();
                    format!(
                        "session_id=s{session}&placement=cart&cart={}",
                        lines.join(",")
                    )
                }
                "search" => {
                    let candidates: Vec<String> = (0..100).map(|_| product(&mut rng)).collect();
                    format!(
                        "session_id=s{session}&placement=search&query=pan&candidates={}",
                        candidates.join(",")
                    )
                }
                _ => format!(
                    "session_id=s{session}&placement=product&product_id={}",
                    product(&mut rng)
                ),
            };
            format!("GET /v1/recommend?{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
        })
        .collect()
}

/// A profile's bytes copied to the ASCII key `bench:profile`, for the one-GET reference.
fn profile_copy(url: &str) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_connection().expect("redis");
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("vitrine:p:*")
        .query(&mut conn)
        .expect("KEYS");
    let key = keys
        .iter()
        .find(|k| k.len() == "vitrine:p:".len() + 16)
        .expect("a profile in Redis");
    let value: Vec<u8> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
    let _: () = redis::cmd("SET")
        .arg("bench:profile")
        .arg(&value)
        .query(&mut conn)
        .expect("SET");
    println!(
        "  the one-GET reference reads a {} byte profile",
        value.len()
    );
    "bench:profile".to_owned()
}

/// Every path against the bare handler in one run, and the ratios as a table.
fn table(shop: &Shop, connections: usize, warmup: u64, seconds: u64) {
    let mut rows: Vec<Row> = Vec::new();
    // `LOAD_ONLY=product,home-known`: just those rows (keys: product, home-new,
    // home-known, cart, search, ruleset, experiments, redis).
    let only: Option<Vec<String>> = std::env::var("LOAD_ONLY")
        .ok()
        .map(|v| v.split(',').map(|k| k.trim().to_owned()).collect());
    let wanted = |key: &str| only.as_ref().is_none_or(|o| o.iter().any(|k| k == key));
    let mut measure = |key: &str,
                       label: &str,
                       port: u16,
                       server: u32,
                       requests: Vec<Vec<u8>>,
                       redis: Option<(&str, &str)>,
                       target: Option<f64>|
     -> f64 {
        if !wanted(key) {
            return f64::NAN;
        }
        let requests = std::sync::Arc::new(requests);
        let vitrine = run(port, server, &requests, connections, warmup, seconds);
        let body = answer_body(port, &requests[0]);
        let reference = bare_reference(&body, redis, &requests, connections, warmup, seconds);
        let against = format!(
            "{}{} byte JSON",
            if redis.is_some() {
                "one Redis GET + "
            } else {
                ""
            },
            body.len()
        );
        println!(
            "  {label}: {:.0} req/s, p99 {:.2} ms; bare {:.0} req/s: {:.2} x; server CPU a request {} µs against {} µs",
            vitrine.rate(),
            vitrine.p99_ms(),
            reference.rate(),
            vitrine.rate() / reference.rate(),
            cpu_us(&vitrine),
            cpu_us(&reference)
        );
        let rate = vitrine.rate();
        rows.push(Row {
            label: label.to_owned(),
            vitrine,
            reference,
            against,
            target,
        });
        rate
    };
    let (products, customers) = (shop.products, shop.customers);
    let requests = |kind: &str| requests_of(kind, products, customers, 20_000);

    // The paths themselves: the decision log off (its cost is a row of its own).
    let unrecorded = [("VITRINE__AUDIT__ENABLED", "false")];
    let store = tempfile::tempdir().expect("store dir");
    let port = free_port();
    let mut server = shop.start(port, &store.path().join("vitrine.redb"), &unrecorded);
    let id = server.id();
    let product = measure(
        "product",
        "product, 100k products, random sessions",
        port,
        id,
        requests("product"),
        None,
        Some(0.5),
    );
    measure(
        "home-new",
        "home, new visitors",
        port,
        id,
        requests("home-new"),
        None,
        Some(0.6),
    );
    measure(
        "home-known",
        "home, known demo customers",
        port,
        id,
        requests("home-known"),
        None,
        Some(0.4),
    );
    measure(
        "cart",
        "cart, 5 lines",
        port,
        id,
        requests("cart"),
        None,
        None,
    );
    measure(
        "search",
        "search, 100 candidates",
        port,
        id,
        requests("search"),
        None,
        None,
    );
    let catalog = demo_catalog(products, customers, shop.events);
    publish_ruleset(port, &ruleset_gen::large_ruleset(&catalog, false));
    measure(
        "ruleset",
        "product, live ruleset (offers, prices, merchandising)",
        port,
        id,
        requests("product"),
        None,
        None,
    );
    let _ = server.kill();
    let _ = server.wait();
    // Every answer recorded (the default), three experiments running.
    let store = tempfile::tempdir().expect("store dir");
    let port = free_port();
    let mut server = shop.start(port, &store.path().join("vitrine.redb"), &[]);
    let id = server.id();
    publish_ruleset(port, &experiments_ruleset());
    let with = measure(
        "experiments",
        "product, decision log + 3 experiments",
        port,
        id,
        requests("product"),
        None,
        None,
    );
    let _ = server.kill();
    let _ = server.wait();

    if !wanted("redis") {
        print_table(&rows, with / product);
        return;
    }
    let redis = redis_server::RedisServer::start();
    let on_redis = Shop {
        products: shop.products,
        customers: shop.customers,
        events: shop.events,
        redis: Some(redis.url()),
        l1_ttl: 1,
    };
    let store = tempfile::tempdir().expect("store dir");
    let port = free_port();
    let mut server = on_redis.start(port, &store.path().join("vitrine.redb"), &unrecorded);
    let key = profile_copy(&redis.url());
    let url = redis.url();
    measure(
        "redis",
        "home, known customers on Redis, L1 missed",
        port,
        server.id(),
        requests("home-known"),
        Some((&url, &key)),
        Some(0.6),
    );
    let _ = server.kill();
    let _ = server.wait();

    print_table(&rows, with / product);
}

/// A run's server CPU (user and system) a request, in µs, as text (`-` when unread).
fn cpu_us(s: &Summary) -> String {
    s.cpu.map_or_else(
        || "-".to_owned(),
        |c| format!("{:.1}", c * 1e6 / (s.ok + s.other).max(1) as f64),
    )
}

/// The rows as a table, and the decision log's and experiments' cost.
fn print_table(rows: &[Row], experiments: f64) {
    println!();
    println!(
        "| path | Vitrine req/s | p50 ms | p99 ms | p99.9 ms | against | bare req/s | ratio | target | server CPU µs a request, Vitrine / bare |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let ms = |s: &Summary, q: f64| s.hist.value_at_quantile(q) as f64 / 1000.0;
        let ratio = r.vitrine.rate() / r.reference.rate();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | **{:.2}** | {} | {} / {} |",
            r.label,
            r.vitrine.rate(),
            ms(&r.vitrine, 0.5),
            ms(&r.vitrine, 0.99),
            ms(&r.vitrine, 0.999),
            r.against,
            r.reference.rate(),
            ratio,
            match r.target {
                Some(t) if ratio >= t => format!(">= {t} (met)"),
                Some(t) => format!(">= {t} (missed by {:.2})", t - ratio),
                None => String::new(),
            },
            cpu_us(&r.vitrine),
            cpu_us(&r.reference)
        );
    }
    println!(
        "\nproduct with the decision log and 3 experiments on: {:.2} x its figure with them off (target >= 0.9)",
        experiments
    );
}

/// Three running experiments, two sharing a namespace, one with a shadow variant.
fn experiments_ruleset() -> serde_json::Value {
    let arms = |a: &str, b: serde_json::Value| {
        serde_json::json!([
            {"id": "control", "weight": 0.5, "policy": {}},
            {"id": a, "weight": 0.5, "policy": b}
        ])
    };
    let mut shadowed = arms(
        "more-bought",
        serde_json::json!({"blend": {"bought_together": 2.0}}),
    );
    shadowed.as_array_mut().expect("variants").push(
        serde_json::json!({"id": "popular", "shadow": true, "policy": {"baseline": "popularity"}}),
    );
    serde_json::json!({"experiments": [
        {"id": "pdp-a", "status": "running", "placements": ["product"], "hash_attribute": "session_id",
         "variants": arms("popular", serde_json::json!({"baseline": "popularity"})),
         "namespace": {"id": "pdp", "range": [0.0, 0.5]}},
        {"id": "pdp-b", "status": "running", "placements": ["product"], "hash_attribute": "session_id",
         "variants": shadowed, "namespace": {"id": "pdp", "range": [0.5, 1.0]}},
        {"id": "offers", "status": "running", "hash_attribute": "session_id", "coverage": 0.5,
         "variants": arms("no-offers", serde_json::json!({"offers": false}))}
    ]})
}

fn main() {
    if let Ok(spec) = std::env::var("LOAD_BARE_SERVE") {
        bare_serve(&spec);
        return;
    }
    let seconds: u64 = env_or("LOAD_SECONDS", 10);
    let warmup: u64 = env_or("LOAD_WARMUP_SECONDS", 2);
    let connections: usize = env_or("LOAD_CONNECTIONS", 32);
    let products: usize = env_or("LOAD_PRODUCTS", 100_000);
    let customers: usize = env_or("LOAD_CUSTOMERS", 1_000);
    let events: usize = env_or("LOAD_EVENTS", 200_000);
    let placement: String = env_or("LOAD_PLACEMENT", "product".to_owned());
    let context: String = env_or("LOAD_CONTEXT", String::new());

    // The default: every path against the bare handler, as a table of ratios.
    let single = [
        "LOAD_PLACEMENT",
        "LOAD_REDIS",
        "LOAD_RULESET",
        "LOAD_OUTAGE",
        "LOAD_STALL",
        "LOAD_GROWTH",
        "LOAD_AUDIT",
        "LOAD_EXPERIMENTS",
        "LOAD_CONTEXT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok());
    if !single && seconds > 0 {
        let shop = Shop {
            products,
            customers,
            events,
            l1_ttl: env_or("LOAD_L1_TTL_MS", 500),
            redis: None,
        };
        println!(
            "ratio table: {connections} connections, {seconds} s after {warmup} s of warm-up per run; {products} products, {customers} customers, {events} events"
        );
        table(&shop, connections, warmup, seconds);
        return;
    }
    let port = free_port();
    let store_dir = tempfile::tempdir().expect("store dir");
    let mut redis = (env_or("LOAD_REDIS", 0u8) == 1).then(redis_server::RedisServer::start);
    let l1_ttl: u64 = env_or("LOAD_L1_TTL_MS", 500);
    let shop = Shop {
        products,
        customers,
        events,
        l1_ttl,
        redis: redis.as_ref().map(redis_server::RedisServer::url),
    };
    let started = Instant::now();
    let mut server = shop.start(port, &store_dir.path().join("vitrine.redb"), &[]);
    let startup = started.elapsed();
    if env_or("LOAD_RULESET", 0u8) == 1 {
        let catalog = demo_catalog(products, customers, events);
        publish_ruleset(port, &ruleset_gen::large_ruleset(&catalog, false));
    }
    println!(
        "start-up: {:.2} s with {products} products, {customers} customers, {events} events; RSS {:.0} MiB",
        startup.as_secs_f64(),
        rss_mib(server.id())
    );

    if env_or("LOAD_GROWTH", 0u8) == 1 {
        growth(port, seconds, &store_dir.path().join("vitrine.redb"));
    } else if env_or("LOAD_STALL", 0u8) == 1 {
        stall(port, products, customers, events, seconds, warmup);
    } else if seconds > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let requests: Vec<Vec<u8>> = (0..20_000)
            .map(|_| {
                let product = rng.random_range(1..=products);
                let session = rng.random_range(1..=50_000);
                let path = match placement.as_str() {
                    "home" => format!("/v1/recommend?session_id=s{session}&placement=home"),
                    "customer" => format!(
                        "/v1/recommend?customer_id=c{:07}&placement=home",
                        rng.random_range(1..=customers.max(1))
                    ),
                    _ => format!("/v1/recommend?session_id=s{session}&placement=product&product_id=p{product:06}"),
                };
                format!("GET {path}{context} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
            })
            .collect();
        let requests = std::sync::Arc::new(requests);
        let store = if redis.is_some() { "redis" } else { "embedded" };
        println!(
            "GET /v1/recommend placement={placement}: {connections} connections, {seconds} s (after {warmup} s warm-up); store {store}, L1 TTL {l1_ttl} ms"
        );
        let normal = run(port, server.id(), &requests, connections, warmup, seconds);
        normal.print("normal");
        println!("  server RSS after load {:.0} MiB", rss_mib(server.id()));
        println!("  store reads {}", store_reads(port));
        if env_or("LOAD_BARE", 1u8) == 1 {
            let body = answer_body(port, &requests[0]);
            against_bare(&normal, &body, &requests, connections, warmup, seconds);
        }
        if env_or("LOAD_EXPERIMENTS", 0u8) == 1 {
            against_no_experiments(&shop, (port, server.id()), &requests, connections);
        }
        if env_or("LOAD_AUDIT", 0u8) == 1 {
            against_unrecorded(
                &shop,
                (port, server.id()),
                &requests,
                connections,
                redis.as_ref(),
            );
        }
        let outage: String = env_or("LOAD_OUTAGE", String::new());
        if let Some(redis) = redis.as_mut().filter(|_| !outage.is_empty()) {
            match outage.as_str() {
                "pause" => redis.pause(),
                _ => redis.kill(),
            }
            let down = run(port, server.id(), &requests, connections, warmup, seconds);
            down.print(&format!("redis {outage}"));
            println!("  store reads {}", store_reads(port));
            println!(
                "  during the outage: {:.2} x the normal throughput, p99 {:.3} ms",
                down.rate() / normal.rate(),
                down.p99_ms()
            );
            if outage == "pause" {
                redis.resume();
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    drop(redis);
}
