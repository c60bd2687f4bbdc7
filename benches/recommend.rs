//! Scoring one request on a 100,000-product demo catalog: the CPU part of
//! `/v1/recommend` (candidate gathering, blending, filtering, ranking).
//!
//! Run: `cargo bench --bench recommend`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vitrine::config::{DemoSettings, RecommendSettings};
use vitrine::domain::profile::{Behaviour, ProfileOp};
use vitrine::domain::{Placement, Profile};
use vitrine::ingest::demo;
use vitrine::recommend::engine::Policy;
use vitrine::recommend::{CartItem, Models, Query, recommend};

fn bench(c: &mut Criterion) {
    let settings = DemoSettings {
        products: 100_000,
        customers: 10_000,
        events: 500_000,
        ..DemoSettings::default()
    };
    let shop = demo::generate(&settings, 1_700_000_000).expect("demo shop");
    let models = Models::train(
        &shop.catalog,
        &shop.interactions,
        &RecommendSettings::default(),
    );
    // As the server does before serving: no content neighbours worked out per request.
    models.prepare_content(&shop.catalog);
    let catalog = &shop.catalog;
    // A visitor with a 50-item history.
    let mut profile = Profile::default();
    for (n, i) in shop.interactions.iter().rev().take(50).enumerate() {
        let product = catalog.product(i.product);
        profile.apply(&ProfileOp::Event {
            id: n as u64,
            at: i.ts,
            behaviour: Behaviour::View,
            product_id: Some(product.id.to_string()),
            category: Some(
                catalog.categories()[usize::from(product.category)]
                    .handle
                    .to_string(),
            ),
            quantity: 1,
            price: None,
            query: None,
            order: None,
            counts_order: true,
        });
    }
    let product_ids: Vec<String> = (0..1000).map(|i| demo::product_id(i * 97)).collect();
    let cart: Vec<CartItem> = (0..5)
        .map(|i| CartItem {
            product_id: demo::product_id(i * 1013),
            quantity: 1,
        })
        .collect();

    let policy = Policy::new(&RecommendSettings::default());

    // Tail latency, which criterion's mean does not show: 100,000 timed calls.
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for n in 0..100_000usize {
        let q = Query {
            policy: &policy,
            placement: Placement::Product,
            product: Some(&product_ids[n % product_ids.len()]),
            category: None,
            search: None,
            cart: &[],
            candidates: &[],
            limit: 10,
            audience: Default::default(),
            volatile: &models.live,
        };
        let t = std::time::Instant::now();
        black_box(recommend(&models, catalog, &q, Some(&profile)));
        hist.record(t.elapsed().as_nanos() as u64).ok();
    }
    println!(
        "product placement, 50-item history, 100,000 calls: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        hist.max() as f64 / 1e3
    );
    println!(
        "model memory: {} bytes for {} products = {:.0} bytes per product",
        models.memory_bytes(),
        catalog.len(),
        models.memory_bytes() as f64 / catalog.len() as f64
    );

    let mut group = c.benchmark_group("recommend");
    let mut n = 0usize;
    group.bench_function("product_100k_catalog_50_item_history", |b| {
        b.iter(|| {
            n = (n + 1) % product_ids.len();
            let q = Query {
                policy: &policy,
                placement: Placement::Product,
                product: Some(&product_ids[n]),
                category: None,
                search: None,
                cart: &[],
                candidates: &[],
                limit: 10,
                audience: Default::default(),
                volatile: &models.live,
            };
            black_box(recommend(&models, catalog, &q, Some(&profile)))
        });
    });
    group.bench_function("home_100k_catalog_50_item_history", |b| {
        b.iter(|| {
            let q = Query {
                policy: &policy,
                placement: Placement::Home,
                product: None,
                category: None,
                search: None,
                cart: &[],
                candidates: &[],
                limit: 10,
                audience: Default::default(),
                volatile: &models.live,
            };
            black_box(recommend(&models, catalog, &q, Some(&profile)))
        });
    });
    group.bench_function("cart_5_lines_100k_catalog", |b| {
        b.iter(|| {
            let q = Query {
                policy: &policy,
                placement: Placement::Cart,
                product: None,
                category: None,
                search: None,
                cart: &cart,
                candidates: &[],
                limit: 10,
                audience: Default::default(),
                volatile: &models.live,
            };
            black_box(recommend(&models, catalog, &q, None))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
