//! Deciding one request against a large ruleset (200 promotions, 50 price lists, 100
//! merchandising rules), without HTTP:
//! - `cart`: a 20-line cart priced and evaluated (promotions, allocation, shipping,
//!   totals): what `/v1/cart/evaluate` computes;
//! - `page`: what `/v1/recommend` adds to the recommender's answer: the visitor's offers,
//!   merchandising over 30 candidates, and the 10 answered products' prices.
//!
//! Each against a shop's usual mix of promotions and against the worst case, where every
//! promotion is live and open to the visitor so that dozens stack on one cart. Then the
//! largest request against the largest rulesets `decide::limits` allows (two shapes):
//! a 200-line cart with 20 codes, and a page re-ranking 500 candidates, all priced.
//!
//! Run: `cargo bench --bench decide` (`DECIDE_CALLS` sets the timed calls, 100,000).

// The allocator the service runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "ruleset_gen.rs"]
mod ruleset_gen;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vitrine::config::DemoSettings;
use vitrine::decide::expr::Context;
use vitrine::decide::promo::{Usage, offers};
use vitrine::decide::{merch, ruleset};
use vitrine::domain::{Catalog, Currency, Money, Placement, Profile};
use vitrine::domain::{PageContext, RawPageContext};
use vitrine::ingest::demo;
use vitrine::recommend::reads::NO_LIVE;
use vitrine::recommend::{Reason, Scored};

struct Fixture<'c> {
    catalog: &'c Catalog,
    rules: ruleset::Ruleset,
    profile: &'c Profile,
    page: &'c PageContext,
    cart: &'c [(u32, u32)],
    codes: &'c [String],
    candidates: &'c [Scored],
    /// Products the page answers (and prices).
    limit: usize,
}

impl Fixture<'_> {
    fn context(&self) -> Context<'_> {
        let lines = self
            .cart
            .iter()
            .map(|&(p, q)| vitrine::decide::line(self.catalog, &NO_LIVE, p, q))
            .collect();
        vitrine::decide::context(
            self.catalog,
            self.page,
            Some(self.profile),
            Some(Placement::Home),
            lines,
            1_800_000_000,
        )
    }
}

/// `/v1/cart/evaluate`'s decision.
fn cart(f: &Fixture<'_>) -> usize {
    let ctx = f.context();
    let eval = vitrine::decide::evaluate_cart(&f.rules, ctx, f.codes, &|_| Usage::default())
        .expect("priced");
    eval.applied.len() + eval.rejected.len()
}

/// What `/v1/recommend` decides besides recommending.
fn page(f: &Fixture<'_>) -> usize {
    let mut ctx = f.context();
    let (book, priced) = vitrine::decide::price_lines(&f.rules, &mut ctx);
    let offered = offers(f.rules.promotions(), &ctx, &priced, &|_| Usage::default());
    let active = merch::active(&f.rules.merchandising, Placement::Home, &ctx);
    let page = merch::Page {
        volatile: &NO_LIVE,
        catalog: f.catalog,
        ctx: &ctx,
        book: &book,
        excluded: &[],
        limit: f.limit,
    };
    let (picked, effects) = merch::apply(&active, &page, f.candidates.to_vec(), Vec::new);
    let prices: i64 = picked
        .iter()
        .map(|s| {
            let p = f.catalog.product(s.product);
            book.price(p, &f.catalog.categories()[usize::from(p.category)], 1)
                .unit
                .amount
        })
        .sum();
    offered.len() + effects.len() + prices as usize
}

/// p50, p99, p99.9 and max of `calls` timed calls, in µs.
fn tail(calls: usize, mut run: impl FnMut() -> usize) -> [f64; 4] {
    let mut times: Vec<u64> = (0..calls)
        .map(|_| {
            let t = std::time::Instant::now();
            black_box(run());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    let at =
        |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)] as f64 / 1000.0;
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}

/// The 100,000-product demo catalog every case runs on.
fn shop() -> demo::DemoShop {
    demo::generate(
        &DemoSettings {
            products: 100_000,
            customers: 0,
            events: 0,
            ..DemoSettings::default()
        },
        1_700_000_000,
    )
    .expect("demo shop")
}

/// A mobile visitor in Great Britain on the web, paying in pounds.
fn page_context() -> PageContext {
    PageContext::parse(RawPageContext {
        country: Some("GB".into()),
        currency: Some("GBP".into()),
        channel: Some("web".into()),
        device: Some("mobile".into()),
        ..RawPageContext::default()
    })
    .expect("a valid context")
}

/// `n` products spread over the catalog (every `stride`-th), scored down from 1 by
/// `1/spread` a place, as a recommender hands them to merchandising.
fn candidates(catalog: &Catalog, n: u32, stride: u32, spread: f32, reason: Reason) -> Vec<Scored> {
    (0..n)
        .map(|i| Scored {
            product: (i * stride) % catalog.len() as u32,
            score: 1.0 - i as f32 / spread,
            reason,
        })
        .collect()
}

/// Calls timed for the tail figures: `var` when set, else `default`.
fn calls(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    let shop = shop();
    let catalog = &shop.catalog;
    let mut profile = Profile {
        segments: vec!["segment-1".into(), "segment-3".into()],
        loyalty_tier: Some("gold".into()),
        company_id: Some("account-1".into()),
        orders_count: 2,
        last_order_at: Some(1_790_000_000),
        total_spent: Some(Money::new(45_000, Currency::parse("GBP").unwrap())),
        ..Profile::default()
    };
    profile.consent.marketing = true;
    let page_context = page_context();
    // 20 lines: some on price lists, quantity tiers reached on a few.
    let lines: Vec<(u32, u32)> = (0..20u32)
        .map(|i| {
            (
                (i * 1_400 * 7) % catalog.len() as u32,
                if i % 5 == 0 { 12 } else { 1 + i % 3 },
            )
        })
        .collect();
    let candidates = candidates(catalog, 30, 3_331, 40.0, Reason::Trending);
    let calls = calls("DECIDE_CALLS", 100_000);
    for (name, worst) in [("usual mix", false), ("worst case", true)] {
        let rules = ruleset::compile(&ruleset_gen::large_ruleset(catalog, worst)).expect("valid");
        let f = Fixture {
            catalog,
            rules,
            profile: &profile,
            page: &page_context,
            cart: &lines,
            codes: &[],
            candidates: &candidates,
            limit: 10,
        };
        let probe =
            vitrine::decide::evaluate_cart(&f.rules, f.context(), &[], &|_| Usage::default())
                .expect("priced");
        let costs = vitrine::decide::ruleset::costs(&f.rules);
        println!(
            "{name}: cost {} (cart) and {} (page) of {}; {} promotions, {} price lists, {} merchandising rules; on the 20-line cart {} promotions apply, {} are refused with a reason",
            costs.cart,
            costs.page,
            vitrine::decide::limits::MAX_COST,
            f.rules.promotions.len(),
            f.rules.price_lists.len(),
            f.rules.merchandising.len(),
            probe.applied.len(),
            probe.rejected.len()
        );
        for (what, run) in [("cart", cart as fn(&Fixture<'_>) -> usize), ("page", page)] {
            let [p50, p99, p999, max] = tail(calls, || run(&f));
            println!(
                "  {what}: {calls} calls: p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {max:.1} µs"
            );
            c.bench_function(&format!("decide {what} ({name})"), |b| {
                b.iter(|| black_box(run(&f)));
            });
        }
    }
}

/// The largest request against the largest rulesets the limits allow.
fn at_limits(c: &mut Criterion) {
    let shop = shop();
    let catalog = &shop.catalog;
    let profile = Profile {
        segments: vec!["segment-1".into()],
        orders_count: 2,
        ..Profile::default()
    };
    let page_context = page_context();
    let lines: Vec<(u32, u32)> = (0..200u32)
        .map(|i| ((i * 499) % catalog.len() as u32, 1 + i % 3))
        .collect();
    let codes = ruleset_gen::request_codes();
    let candidates = candidates(catalog, 500, 197, 600.0, Reason::MatchesSearch);
    let calls = calls("DECIDE_LIMIT_CALLS", 300);
    for shape in [ruleset_gen::AtLimits::Many, ruleset_gen::AtLimits::Heavy] {
        let started = std::time::Instant::now();
        let doc = ruleset_gen::at_limits(catalog, shape);
        let rules = ruleset::compile(&doc).unwrap_or_else(|e| panic!("{shape:?}: {e:?}"));
        let compiled = started.elapsed();
        let f = Fixture {
            catalog,
            rules,
            profile: &profile,
            page: &page_context,
            cart: &lines,
            codes: &codes,
            candidates: &candidates,
            limit: 500,
        };
        let probe =
            vitrine::decide::evaluate_cart(&f.rules, f.context(), f.codes, &|_| Usage::default())
                .expect("priced");
        let costs = vitrine::decide::ruleset::costs(&f.rules);
        println!(
            "at the limits ({shape:?}): cost {} (cart) and {} (page) of {}; {} promotions, {} price lists, {} merchandising rules, {} codes; built and compiled in {:.1} s; on the 200-line cart {} promotions apply",
            costs.cart,
            costs.page,
            vitrine::decide::limits::MAX_COST,
            f.rules.promotions.len(),
            f.rules.price_lists.len(),
            f.rules.merchandising.len(),
            f.rules.codes.len(),
            compiled.as_secs_f64(),
            probe.applied.len()
        );
        for (what, run) in [("cart", cart as fn(&Fixture<'_>) -> usize), ("page", page)] {
            let [p50, p99, p999, max] = tail(calls, || run(&f));
            println!(
                "  {what}: {calls} calls: p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {max:.1} µs"
            );
            let mut group = c.benchmark_group("decide at the limits");
            group.sample_size(20);
            group.bench_function(format!("{what} ({shape:?})"), |b| {
                b.iter(|| black_box(run(&f)));
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench, at_limits);
criterion_main!(benches);
