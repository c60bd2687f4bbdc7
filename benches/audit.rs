//! The decision log's cost, without HTTP, on the load bench's shop (100,000 products,
//! 1,000 customers, 200,000 events) and its requests (product pages of new sessions):
//! - `answer/unrecorded`: `/v1/recommend`'s decision as it is made with recording off;
//! - `answer/recorded`: the same decision recorded: live learning and stock read
//!   through a recording, the strongest candidates explained, the record encoded and
//!   queued in a batch (the work a recorded request adds on its own thread);
//! - `answer/home, known customers`: the home page of the shop's demo customers who
//!   have a history (their stored profiles, recording off): the decision core of the
//!   load bench's known-customer row, without HTTP, the store or the answer's bytes;
//! - `append/embedded`: the writer's part, a batch of 4,096 such records appended to
//!   the embedded store (segment file, index, one sync), per batch.
//!
//! Run: `cargo bench --bench audit`.

// The allocator the service runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rustc_hash::FxHashMap;
use vitrine::config::{AuditSettings, ContentSettings, DemoSettings, RecommendSettings};
use vitrine::decide::content::Banners;
use vitrine::decide::page::{self, Inputs, PageRequest};
use vitrine::decide::record::{Endpoint, Output, PageOutput, Pending, PendingRequest, usage_of};
use vitrine::decide::ruleset::Ruleset;
use vitrine::domain::{PageContext, Placement};
use vitrine::ingest::demo;
use vitrine::recommend::engine::Policy;
use vitrine::recommend::reads::{Reads, Volatile};
use vitrine::recommend::{Models, Snapshot};
use vitrine::store::{DecisionBatch, DecisionLog, EmbeddedStore, ProfileKey};

struct Shop {
    snapshot: Arc<Snapshot>,
    rules: Ruleset,
    usage: FxHashMap<String, (u64, i64)>,
    policy: Policy,
    banners: Banners,
    context: PageContext,
    products: Vec<String>,
    explain: usize,
    /// The demo customers with a history, as stored.
    known: Vec<vitrine::domain::Profile>,
}

impl Shop {
    fn new() -> Self {
        let shop = demo::generate(
            &DemoSettings {
                products: 100_000,
                customers: 1_000,
                events: 200_000,
                ..DemoSettings::default()
            },
            1_700_000_000,
        )
        .expect("demo shop");
        let known = shop
            .customers
            .iter()
            .map(|(_, p)| p.clone())
            .filter(|p| !p.recently_viewed.is_empty() || !p.purchased.is_empty())
            .collect();
        let recommend = RecommendSettings::default();
        let models = Models::train(&shop.catalog, &shop.interactions, &recommend);
        // As the server does before serving: no content neighbours worked out per request.
        models.prepare_content(&shop.catalog);
        Self {
            snapshot: Arc::new(Snapshot {
                catalog: shop.catalog,
                models: Arc::new(models),
            }),
            rules: Ruleset::empty(),
            usage: FxHashMap::default(),
            policy: Policy::new(&recommend),
            banners: Banners::new(&ContentSettings::default().banners),
            context: PageContext::default(),
            // The load bench's products: every 7th of the first 1,000.
            products: (0..1_000)
                .map(|i| demo::product_id(1 + i * 7 % 1_000))
                .collect(),
            explain: AuditSettings::default().candidates,
            known,
        }
    }

    /// The inputs of the `n`th request, for `profile`, reading live learning through
    /// `volatile`.
    fn inputs<'a>(
        &'a self,
        n: usize,
        profile: Option<&'a vitrine::domain::Profile>,
        volatile: &'a dyn Volatile,
        explain: usize,
    ) -> Inputs<'a> {
        Inputs {
            snapshot: &self.snapshot,
            rules: &self.rules,
            usage: &self.usage,
            policy: &self.policy,
            banners: &self.banners,
            profile,
            visitor: n as u64,
            volatile,
            explain,
            now: 1_700_000_000,
            arms: vitrine::decide::experiment::Arms::None,
        }
    }

    /// The home page of the `n`th known customer, unrecorded.
    fn answer_known(&self, n: usize) -> usize {
        let profile = &self.known[n % self.known.len()];
        let inputs = self.inputs(n, Some(profile), &self.snapshot.models.live, 0);
        let request = PageRequest {
            placement: Placement::Home,
            product_id: None,
            ..self.request(n)
        };
        page::answer(&inputs, &request)
            .expect("answered")
            .items
            .len()
    }

    fn request(&self, n: usize) -> PageRequest<'_> {
        PageRequest {
            placement: Placement::Product,
            product_id: Some(&self.products[n % self.products.len()]),
            category: None,
            query: None,
            cart: &[],
            candidates: &[],
            limit: 10,
            context: &self.context,
        }
    }

    /// A product page answered; with `recording`, recorded and its record queued in
    /// `batch`.
    fn answer(&self, n: usize, recording: bool, batch: &mut DecisionBatch) -> usize {
        let live = &self.snapshot.models.live;
        let reads = recording.then(|| Reads::recording(live));
        let volatile: &dyn Volatile = match &reads {
            Some(r) => r,
            None => live,
        };
        let explain = if recording { self.explain } else { 0 };
        let inputs = self.inputs(n, None, volatile, explain);
        let request = self.request(n);
        let decided = page::answer(&inputs, &request).expect("answered");
        let items = decided.items.len();
        let Some(reads) = &reads else {
            return items;
        };
        let pending = Pending {
            decision_id: uuid::Uuid::now_v7(),
            at_ms: 1_700_000_000_000,
            endpoint: Endpoint::Recommend,
            placement: Placement::Product,
            visitor: ProfileKey([(n % 251) as u8; 16]),
            profile: None,
            snapshot: self.snapshot.clone(),
            ruleset_version: self.rules.version.clone(),
            settings_version: "bench".into(),
            usage: usage_of(&self.usage),
            exhausted: Vec::new(),
            now: 1_700_000_000,
            tape: reads.tape(),
            experiments: Vec::new(),
            shadow: None,
            output: Output::Page(PageOutput::of(&decided)),
            considered: decided.considered,
            latency_us: 40,
            degraded: None,
            request: PendingRequest {
                product_id: request.product_id.map(str::to_owned),
                category: None,
                query: None,
                cart: Vec::new(),
                candidates: Vec::new(),
                limit: 10,
                context: self.context.clone(),
                codes: Vec::new(),
            },
        };
        let (id, at_ms, visitor) = (
            *pending.decision_id.as_bytes(),
            pending.at_ms,
            pending.visitor,
        );
        let mut bytes = Vec::with_capacity(1024);
        pending.encode_into(&mut bytes).expect("encoded");
        if batch.len() >= 4_096 {
            batch.clear();
        }
        batch
            .push_record(&id, at_ms, &visitor, &bytes)
            .expect("queued");
        items
    }
}

fn bench(c: &mut Criterion) {
    let shop = Shop::new();
    let mut group = c.benchmark_group("answer");
    for (name, recording) in [("unrecorded", false), ("recorded", true)] {
        let mut batch = DecisionBatch::default();
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                black_box(shop.answer(n, recording, &mut batch))
            });
        });
    }
    let mut n = 0;
    group.bench_function("home, known customers", |b| {
        b.iter(|| {
            n += 1;
            black_box(shop.answer_known(n))
        });
    });
    group.finish();

    let mut batch = DecisionBatch::default();
    for n in 0..4_096 {
        shop.answer(n, true, &mut batch);
    }
    println!(
        "a record: {} bytes on average",
        batch.framed().len() / batch.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("store dir");
    let store = EmbeddedStore::open(&dir.path().join("vitrine.redb")).expect("store");
    let retention = AuditSettings::default().retention();
    // Each append's decisions are new (ids made now), as the writer's are.
    let fresh = || {
        let mut next = DecisionBatch::default();
        for d in batch.iter() {
            let id = *uuid::Uuid::now_v7().as_bytes();
            next.push_record(&id, d.at_ms, &d.visitor, d.bytes)
                .expect("queued");
        }
        Arc::new(next)
    };
    c.bench_function("append/embedded 4096 records", |b| {
        b.iter_batched(
            fresh,
            |batch| {
                runtime
                    .block_on(store.append_decisions(batch, retention, now_ms()))
                    .expect("appended");
            },
            criterion::BatchSize::PerIteration,
        );
    });
}

fn now_ms() -> i64 {
    vitrine::domain::time::unix_now_ms()
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
