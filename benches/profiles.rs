//! Profile store figures against a private `redis-server`: event ingestion rate through
//! the events path (validation -> ops -> CAS per profile), and Redis memory per typical
//! profile over 1,000,000 profiles.
//!
//! Run: `cargo bench --bench profiles`. Knobs: `PROFILES_EVENTS` (200000),
//! `PROFILES_CUSTOMERS` (50000), `PROFILES_MEMORY_COUNT` (1000000), `PROFILES_CONCURRENCY` (8).

/// The allocator the server runs with (`src/main.rs`), so that the figure is the
/// server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same private `redis-server` the tests use (free port, ready when it answers PING).
#[path = "../tests/api/common/redis.rs"]
mod redis_server;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitrine::config::DemoSettings;
use vitrine::domain::profile::{Behaviour, ProfileOp};
use vitrine::domain::{Currency, Money, Profile, VisitorId, VisitorKey};
use vitrine::ingest::demo;
use vitrine::ingest::events::{Event, ingest};
use vitrine::store::redis::RedisOptions;
use vitrine::store::{EventLog, KeyHasher, ProfileStore, RedisStore};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn used_memory(url_port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &url_port.to_string(), "INFO", "memory"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A typical returning customer: a handful of views, two orders, three categories.
fn typical(n: u64) -> Profile {
    let gbp = Currency::parse("GBP").expect("GBP");
    let mut p = Profile::default();
    for i in 0..12u64 {
        let behaviour = if i % 6 == 5 {
            Behaviour::Purchase
        } else {
            Behaviour::View
        };
        p.apply(&ProfileOp::Event {
            id: n * 100 + i,
            at: 1_700_000_000 + i as i64 * 3600,
            behaviour,
            product_id: Some(format!("p{:06}", (n * 7 + i * 13) % 100_000)),
            category: Some(
                ["kitchen/cookware", "home/bedding", "outdoor/camping"][(i % 3) as usize].into(),
            ),
            quantity: 1,
            price: Some(Money::new(2_499, gbp)),
            query: None,
            order: None,
            counts_order: true,
        });
    }
    p
}

fn main() {
    let events_n: usize = env_or("PROFILES_EVENTS", 200_000);
    let customers: usize = env_or("PROFILES_CUSTOMERS", 50_000);
    let memory_n: u64 = env_or("PROFILES_MEMORY_COUNT", 1_000_000);
    let concurrency: usize = env_or("PROFILES_CONCURRENCY", 8);

    let redis = redis_server::RedisServer::start();
    let port = redis.port;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(
            RedisStore::connect(&RedisOptions {
                url: format!("redis://127.0.0.1:{port}/0"),
                key_prefix: "bench:".into(),
                retention: vitrine::store::Retention {
            profile_ttl: Duration::from_secs(86_400),
            ..vitrine::store::Retention::default()
        },
                timeout: Duration::from_secs(5),
            })
            .await
            .expect("redis"),
        );
        let hasher = Arc::new(KeyHasher::new(b"bench-secret"));
        let shop = demo::generate(
            &DemoSettings {
                products: 10_000,
                customers: 0,
                events: 0,
                ..DemoSettings::default()
            },
            1_700_000_000,
        )
        .expect("demo");
        let catalog = Arc::new(shop.catalog);

        // Ingestion: events for `customers` customers, in batches of 500.
        let now = vitrine::recommend::model::unix_now();
        let events: Vec<Event> = (0..events_n)
            .map(|i| {
                let raw = vitrine::ingest::events::RawEvent {
                    event_id: Some(format!("e{i}")),
                    kind: Some(if i % 10 == 9 { "purchase" } else { "view" }.into()),
                    customer_id: Some(format!("c{}", (i * 7919) % customers)),
                    product_id: Some(demo::product_id(i % 10_000)),
                    price: Some(vitrine::domain::RawMoney {
                        amount: 1_999,
                        currency: "GBP".into(),
                    }),
                    ..Default::default()
                };
                raw.validate(now, 3600).expect("valid")
            })
            .collect();
        let batches: Vec<Vec<Event>> = events.chunks(500).map(<[Event]>::to_vec).collect();
        let memory_before = used_memory(port);
        let started = Instant::now();
        let mut queue = batches.into_iter();
        let mut running = Vec::new();
        loop {
            while running.len() < concurrency {
                let Some(batch) = queue.next() else { break };
                let (store, hasher, catalog) = (store.clone(), hasher.clone(), catalog.clone());
                running.push(tokio::spawn(async move {
                    ingest(store.as_ref(), &hasher, &catalog, &batch).await.expect("ingest");
                }));
            }
            if running.is_empty() {
                break;
            }
            running.remove(0).await.expect("task");
        }
        let took = started.elapsed();
        println!(
            "ingestion into Redis: {events_n} events for {customers} customers in {:.2} s = {:.0} events/s ({concurrency} batches of 500 in flight)",
            took.as_secs_f64(),
            events_n as f64 / took.as_secs_f64()
        );
        let sample = store
            .get(&hasher.key(&VisitorKey::Customer(VisitorId::parse("c1").expect("id"))))
            .await
            .expect("get")
            .expect("profile");
        println!("  a sampled profile after ingestion: {} views, {} orders, {} purchased, {} ops", sample.recently_viewed.len(), sample.orders_count, sample.purchased.len(), sample.applied.len());
        // What the ingested profiles take in Redis, with the op fingerprints fallen off
        // each profile's ring within the idempotency window (a sorted set beside the
        // profile, only once the ring is full).
        let ops_bytes = {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
                .expect("client")
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let key = {
                let mut k = b"bench:p:".to_vec();
                k.extend_from_slice(
                    hasher
                        .key(&VisitorKey::Customer(VisitorId::parse("c1").expect("id")))
                        .as_bytes(),
                );
                k.extend_from_slice(b":f");
                k
            };
            let n: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(0);
            n
        };
        println!(
            "  Redis memory after ingestion: {:.0} bytes per customer ({} events each), of which the sampled customer's set of ops fallen off its ring takes {ops_bytes} bytes",
            (used_memory(port) - memory_before) as f64 / customers as f64,
            events_n / customers
        );

        // The event log: the same events appended to the stream in batches of 1,000 (what
        // the log writer sends), its memory, then read back and learned (what a replica
        // does when it follows the log or relearns it after a model swap).
        let entries: Vec<_> = events.iter().filter_map(|e| e.log_entry(&hasher, 1)).collect();
        let before = used_memory(port);
        let started = Instant::now();
        for batch in entries.chunks(1_000) {
            store.append_log(batch, 0).await.expect("append");
        }
        let took = started.elapsed();
        let after = used_memory(port);
        println!(
            "event log: {} entries appended in {:.2} s = {:.0} entries/s; Redis memory {:.0} bytes per entry",
            entries.len(),
            took.as_secs_f64(),
            entries.len() as f64 / took.as_secs_f64(),
            (after - before) as f64 / entries.len() as f64
        );
        let models = vitrine::recommend::Models::train(&catalog, &[], &Default::default());
        let started = Instant::now();
        let mut cursor = String::new();
        let mut learned = 0usize;
        loop {
            let page = store.read_log(&cursor, 1_000).await.expect("read");
            let Some(last) = page.last() else { break };
            cursor = last.0.clone();
            for (_, e) in &page {
                if let Some(i) = vitrine::ingest::log::interaction(&catalog, e) {
                    models.learn(&i, &vitrine::recommend::Curation::default());
                    learned += 1;
                }
            }
        }
        let took = started.elapsed();
        println!(
            "event log: {learned} entries read and learned in {:.2} s = {:.0} entries/s",
            took.as_secs_f64(),
            learned as f64 / took.as_secs_f64()
        );

        // Memory: a fresh prefix of typical profiles.
        let before = used_memory(port);
        let mut encoded = 0usize;
        let memory_store = RedisStore::connect(&RedisOptions {
            url: format!("redis://127.0.0.1:{port}/0"),
            key_prefix: "mem:".into(),
            retention: vitrine::store::Retention {
            profile_ttl: Duration::from_secs(86_400),
            ..vitrine::store::Retention::default()
        },
            timeout: Duration::from_secs(30),
        })
        .await
        .expect("redis");
        let chunk = 50_000u64;
        let mut first = true;
        for start in (0..memory_n).step_by(chunk as usize) {
            let profiles: Vec<_> = (start..(start + chunk).min(memory_n))
                .map(|n| {
                    let p = typical(n);
                    encoded += vitrine::store::codec::encode(&p).map(|b| b.len()).unwrap_or(0);
                    (hasher.key(&VisitorKey::Customer(VisitorId::parse(&format!("m{n}")).expect("id"))), p)
                })
                .collect();
            if first {
                memory_store.seed(profiles).await.expect("seed");
                first = false;
            } else {
                // seed() loads once per prefix; later chunks go through the same pipeline
                // by re-arming the marker.
                let _ = Command::new("redis-cli").args(["-p", &port.to_string(), "DEL", "mem:seeded"]).output();
                memory_store.seed(profiles).await.expect("seed");
            }
        }
        let after = used_memory(port);
        println!(
            "Redis memory: {memory_n} typical profiles (12 events each) take {:.1} MiB = {:.0} bytes per profile (encoded value {:.0} bytes)",
            (after - before) as f64 / 1_048_576.0,
            (after - before) as f64 / memory_n as f64,
            encoded as f64 / memory_n as f64
        );
    });
    drop(redis);
}
