//! One conformance suite, run against every profile store backend: the in-process map,
//! the embedded durable store, Redis (a private `redis-server`), and Redis behind the
//! moka L1 tier.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use vitrine::domain::catalog::ProductRecord;
use vitrine::domain::profile::{Behaviour, ProfileOp};
use vitrine::domain::{Currency, Money, Profile};
use vitrine::store::redis::RedisOptions;
use vitrine::store::{
    CatalogChange, CatalogStore, DecisionBatch, DecisionRetention, EmbeddedStore, LogEntry,
    LogKind, MemoryStore, ProfileKey, ProfileStore, Redeemed, Redemption, RedisStore,
    StoredDecision, Tiered,
};

fn key(n: u8) -> ProfileKey {
    ProfileKey([n; 16])
}

fn purchase(id: u64) -> ProfileOp {
    ProfileOp::Event {
        id,
        at: 1_700_000_000 + id as i64,
        behaviour: Behaviour::Purchase,
        product_id: Some(format!("p{id}")),
        category: Some("kitchen/cookware".into()),
        quantity: 1,
        price: Some(Money::new(1_000, Currency::parse("GBP").unwrap())),
        query: None,
        order: None,
        counts_order: true,
    }
}

async fn conformance(store: Arc<dyn ProfileStore>) {
    // Seed loads into a fresh store, once.
    let mut seeded = Profile::default();
    seeded.apply(&purchase(9));
    assert!(store.seed(vec![(key(5), seeded.clone())]).await.unwrap());
    assert_eq!(*store.get(&key(5)).await.unwrap().unwrap(), seeded);
    assert!(!store.seed(vec![(key(6), seeded)]).await.unwrap());
    assert!(store.get(&key(6)).await.unwrap().is_none());

    // A missing profile reads as None.
    assert!(store.get(&key(1)).await.unwrap().is_none());

    // Apply creates the profile; reading it back gives the same profile.
    let applied = store
        .apply(&key(1), &[purchase(1), purchase(2)])
        .await
        .unwrap();
    assert_eq!(applied.fresh, vec![true, true]);
    assert_eq!(applied.profile.orders_count, 2);
    let read = store.get(&key(1)).await.unwrap().unwrap();
    assert_eq!(*read, *applied.profile);

    // A repeated op is not applied again.
    let again = store
        .apply(&key(1), &[purchase(2), purchase(3)])
        .await
        .unwrap();
    assert_eq!(again.fresh, vec![false, true]);
    assert_eq!(store.get(&key(1)).await.unwrap().unwrap().orders_count, 3);

    // Concurrent applies to one profile lose nothing.
    let tasks: Vec<_> = (100..164)
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(&key(2), &[purchase(id)]).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let p = store.get(&key(2)).await.unwrap().unwrap();
    assert_eq!(p.orders_count, 64);
    assert_eq!(p.total_spent.unwrap().amount, 64_000);

    // A batch applies per profile.
    let results = store
        .apply_batch(&[
            (key(3), vec![purchase(1)]),
            (key(4), vec![purchase(1), purchase(1)]),
        ])
        .await;
    assert_eq!(results[0].as_ref().unwrap().fresh, vec![true]);
    assert_eq!(results[1].as_ref().unwrap().fresh, vec![true, false]);

    // An op id is remembered within the window however many ops came between (far
    // more than the profile's own ring holds).
    for id in 1_000..1_300 {
        store.apply(&key(7), &[view(id)]).await.unwrap();
    }
    let late = store.apply(&key(7), &[purchase(1_000)]).await.unwrap();
    assert_eq!(late.fresh, vec![false], "a repeat after 300 ops");
    assert_eq!(late.profile.orders_count, 0);
    assert_eq!(
        store
            .apply_batch(&[(key(7), vec![view(1_001), view(1_299), view(2_000)])])
            .await[0]
            .as_ref()
            .unwrap()
            .fresh,
        vec![false, false, true]
    );

    // Delete erases (its op ids too); a second delete finds nothing.
    assert!(store.delete(&key(1)).await.unwrap());
    assert!(store.get(&key(1)).await.unwrap().is_none());
    assert!(!store.delete(&key(1)).await.unwrap());
    assert!(store.delete(&key(7)).await.unwrap());
    assert_eq!(
        store.apply(&key(7), &[view(1_000)]).await.unwrap().fresh,
        vec![true],
        "nothing of an erased profile is remembered"
    );

    store.ping().await.unwrap();
}

fn view(id: u64) -> ProfileOp {
    ProfileOp::Event {
        id,
        at: 1_700_000_000,
        behaviour: Behaviour::View,
        product_id: Some(format!("p{id}")),
        category: None,
        quantity: 1,
        price: None,
        query: None,
        order: None,
        counts_order: false,
    }
}

fn record(id: &str, title: &str) -> ProductRecord {
    ProductRecord {
        id: id.into(),
        title: title.into(),
        handle: title.to_lowercase(),
        url: format!("/products/{id}"),
        image_url: String::new(),
        category: "Kitchen > Tea Ware".into(),
        tags: vec!["ceramic".into()],
        price: Money::new(2_499, Currency::parse("GBP").unwrap()),
        cost: None,
    }
}

/// The catalog half of a backend: versions move on with every change, a load sees
/// every change, stock is kept apart from records, deletes take both.
async fn catalog_conformance(store: Arc<dyn CatalogStore>) {
    assert_eq!(store.catalog_version().await.unwrap(), 0);
    assert!(store.load_catalog().await.unwrap().1.is_empty());
    let v1 = store
        .write_catalog(&CatalogChange {
            upserts: (0..2_500)
                .map(|i| record(&format!("p{i}"), "Teapot"))
                .collect(),
            deletes: vec![],
            stock: (0..2_500).map(|i| (format!("p{i}"), i)).collect(),
        })
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let v2 = store
        .write_catalog(&CatalogChange {
            upserts: vec![record("p1", "Renamed")],
            deletes: vec!["p2".into()],
            stock: vec![("p3".into(), -4)],
        })
        .await
        .unwrap();
    assert_eq!(v2, 2);
    assert_eq!(store.catalog_version().await.unwrap(), 2);
    let (version, mut all) = store.load_catalog().await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(all.len(), 2_499, "one deleted, none twice");
    all.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let find = |id: &str| all.iter().find(|(r, _)| r.id == id).cloned();
    assert_eq!(find("p1").unwrap(), (record("p1", "Renamed"), 1));
    assert!(find("p2").is_none());
    assert_eq!(find("p3").unwrap().1, -4, "stock apart from the record");
    assert_eq!(find("p2499").unwrap(), (record("p2499", "Teapot"), 2_499));

    // Trained models: none, then one, then its successor (larger than one chunk).
    assert_eq!(store.models_version().await.unwrap(), None);
    assert!(store.load_models().await.unwrap().is_none());
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.save_models("m-1", &big).await.unwrap();
    assert_eq!(
        store.models_version().await.unwrap().as_deref(),
        Some("m-1")
    );
    assert_eq!(
        store.load_models().await.unwrap(),
        Some(("m-1".to_owned(), big))
    );
    store.save_models("m-2", b"small").await.unwrap();
    assert_eq!(
        store.load_models().await.unwrap(),
        Some(("m-2".to_owned(), b"small".to_vec()))
    );

    // Platform inventory: items of a product, levels per location, totals over both.
    assert_eq!(
        store.set_inventory_level("i9", "loc1", 5).await.unwrap(),
        None
    );
    store
        .link_inventory("p1", &[("i1".into(), 10), ("i2".into(), 7)])
        .await
        .unwrap();
    let level = |item: &'static str, location: &'static str, n: i64| {
        let store = store.clone();
        async move { store.set_inventory_level(item, location, n).await.unwrap() }
    };
    // i1 is now known per location: its all-locations total gives way.
    assert_eq!(level("i1", "loc1", 3).await, Some(("p1".into(), 3 + 7)));
    assert_eq!(level("i1", "loc2", 4).await, Some(("p1".into(), 3 + 4 + 7)));
    assert_eq!(
        level("i2", "loc1", -2).await,
        Some(("p1".into(), 3 + 4)),
        "negative counts as none"
    );
    // A product update re-states i1's total; an item can move to another product.
    store
        .link_inventory("p1", &[("i1".into(), 20)])
        .await
        .unwrap();
    assert_eq!(level("i2", "loc1", 1).await, Some(("p1".into(), 20 + 1)));
    store
        .link_inventory("p2", &[("i2".into(), 6)])
        .await
        .unwrap();
    assert_eq!(level("i1", "loc1", 2).await, Some(("p1".into(), 2)));
    assert_eq!(level("i2", "loc9", 1).await, Some(("p2".into(), 1)));
}

fn entry(n: usize) -> LogEntry {
    LogEntry {
        origin: 7,
        product: format!("p{n}"),
        kind: if n.is_multiple_of(2) {
            LogKind::View
        } else {
            LogKind::Purchase
        },
        session: n as u64,
        order: (n % 2 == 1).then_some(n as u64 / 2),
        at: 1_700_000_000 + n as i64,
        country: vitrine::domain::Country::parse("DE").ok(),
        device: n
            .is_multiple_of(3)
            .then_some(vitrine::domain::Device::Mobile),
    }
}

/// Every entry after `cursor`, page by page.
async fn read_all(store: &dyn CatalogStore, mut cursor: String) -> Vec<(String, LogEntry)> {
    let mut out = Vec::new();
    loop {
        let page = store.read_log(&cursor, 1_000).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        cursor = last.0.clone();
        out.extend(page);
    }
}

async fn event_log_conformance(store: Arc<dyn CatalogStore>) {
    assert_eq!(store.log_end().await.unwrap(), "");
    assert!(store.read_log("", 10).await.unwrap().is_empty());
    let first: Vec<_> = (0..2_500).map(entry).collect();
    store.append_log(&first[..1], 0).await.unwrap();
    store.append_log(&first[1..], 0).await.unwrap();
    let all = read_all(store.as_ref(), String::new()).await;
    assert_eq!(
        all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        first,
        "every entry, in order, as written"
    );
    assert_eq!(store.log_end().await.unwrap(), all[2_499].0);
    let mid = all[999].0.clone();
    let rest = read_all(store.as_ref(), mid).await;
    assert_eq!(rest.len(), 1_500);
    assert_eq!(rest[0].1.product, "p1000");
    assert!(store.read_log(&all[2_499].0, 10).await.unwrap().is_empty());

    // Appending with a bound keeps about the newest `keep` (Redis trims whole nodes).
    store.append_log(&[entry(5_000)], 1_000).await.unwrap();
    let kept = read_all(store.as_ref(), String::new()).await;
    assert!((1_000..=1_200).contains(&kept.len()), "{}", kept.len());
    assert_eq!(kept.last().unwrap().1.product, "p5000");
    assert_eq!(store.log_end().await.unwrap(), kept.last().unwrap().0);
}

async fn budget_conformance(store: Arc<dyn CatalogStore>) {
    let ids = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        store.promotion_usage(&ids).await.unwrap(),
        vec![(0, 0), (0, 0)]
    );
    let r =
        |promotion: &str, amount: i64, max_uses: Option<u64>, max_spend: Option<i64>| Redemption {
            promotion: promotion.into(),
            amount,
            max_uses,
            max_spend,
            per_customer: None,
        };
    let both = [r("a", 500, Some(2), None), r("b", 300, None, Some(500))];
    assert_eq!(store.redeem("o1", &both).await.unwrap(), Redeemed::Recorded);
    assert_eq!(
        store.redeem("o1", &both).await.unwrap(),
        Redeemed::AlreadyRecorded
    );
    assert_eq!(
        store.promotion_usage(&ids).await.unwrap(),
        vec![(1, 500), (1, 300)]
    );
    // b would reach 600 of its 500: nothing is recorded, a's use included.
    assert_eq!(
        store.redeem("o2", &both).await.unwrap(),
        Redeemed::OverLimit(1)
    );
    assert_eq!(
        store.promotion_usage(&ids).await.unwrap(),
        vec![(1, 500), (1, 300)]
    );
    assert_eq!(
        store.redeem("o2", &both[..1]).await.unwrap(),
        Redeemed::Recorded
    );
    assert_eq!(
        store.redeem("o3", &both[..1]).await.unwrap(),
        Redeemed::OverLimit(0)
    );
    assert_eq!(
        store.promotion_usage(&ids).await.unwrap(),
        vec![(2, 1000), (1, 300)]
    );

    // Once per customer, counted in the same step: many checkouts of one customer at
    // once, exactly one is recorded; another customer still may.
    let once = |customer: &str| Redemption {
        promotion: "welcome".into(),
        amount: 100,
        max_uses: None,
        max_spend: None,
        per_customer: Some((customer.into(), 1)),
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let r = once("c0ffee");
            tokio::spawn(async move { store.redeem(&format!("w{i}"), &[r]).await.unwrap() })
        })
        .collect();
    let mut recorded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Redeemed::Recorded => recorded += 1,
            other => assert_eq!(other, Redeemed::OverLimit(0)),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(
        store.redeem("w-other", &[once("beef")]).await.unwrap(),
        Redeemed::Recorded
    );
}

fn decision(ms: i64, visitor: u8, n: u8) -> StoredDecision {
    let mut id = vitrine::store::decisions::id_floor(ms);
    id[14] = visitor;
    id[15] = n;
    StoredDecision {
        id,
        at_ms: ms,
        visitor: key(visitor),
        bytes: vec![visitor, n, 0xff],
    }
}

fn batch(records: &[StoredDecision]) -> std::sync::Arc<DecisionBatch> {
    std::sync::Arc::new(DecisionBatch::of(records).unwrap())
}

/// Reads every page of an export.
async fn export(store: &dyn CatalogStore, from: i64, until: i64) -> Vec<StoredDecision> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (page, next) = store
            .decisions_between(from, until, &cursor, 2)
            .await
            .unwrap();
        out.extend(page);
        match next {
            Some(n) => cursor = n,
            None => return out,
        }
    }
}

/// `exact`: the backend trims to exactly `keep` (Redis trims its stream to about it,
/// by whole nodes of entries, so a small stream is not cut).
async fn decision_log_conformance(store: Arc<dyn CatalogStore>, exact: bool) {
    let now = vitrine::domain::time::unix_now_ms();
    let keep = DecisionRetention {
        keep: 1_000,
        max_age_ms: 60_000,
    };
    let records: Vec<StoredDecision> = (0..5)
        .map(|i| decision(now - 5_000 + i64::from(i) * 1_000, 1 + i % 2, i))
        .collect();
    store
        .append_decisions(batch(&records), keep, now)
        .await
        .unwrap();
    for d in &records {
        assert_eq!(store.decision(&d.id).await.unwrap().as_ref(), Some(d));
    }
    assert!(
        store
            .decision(&decision(now, 9, 9).id)
            .await
            .unwrap()
            .is_none()
    );
    // A visitor's, newest first, from a time.
    let ones = store.visitor_decisions(&key(1), 0, 10).await.unwrap();
    assert_eq!(
        ones.iter().map(|d| d.id[15]).collect::<Vec<_>>(),
        vec![4, 2, 0]
    );
    let recent = store
        .visitor_decisions(&key(1), now - 3_500, 10)
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        store.visitor_decisions(&key(1), 0, 1).await.unwrap().len(),
        1
    );
    // An export reads every page, oldest first, within its range.
    assert_eq!(export(store.as_ref(), 0, now + 1).await, records);
    assert_eq!(
        export(store.as_ref(), now - 4_000, now - 2_000).await,
        records[1..3]
    );
    // Erasure takes one visitor's, all of them.
    assert_eq!(store.erase_decisions(&key(2)).await.unwrap(), 2);
    assert!(store.decision(&records[1].id).await.unwrap().is_none());
    assert!(
        store
            .visitor_decisions(&key(2), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(export(store.as_ref(), 0, now + 1).await.len(), 3);
    // Past the age: gone from every index (the index keys expire on Redis: this waits
    // for real time to pass).
    let short = DecisionRetention {
        keep: 1_000,
        max_age_ms: 1_000,
    };
    let first = decision(vitrine::domain::time::unix_now_ms(), 3, 7);
    store
        .append_decisions(batch(std::slice::from_ref(&first)), short, first.at_ms)
        .await
        .unwrap();
    assert!(store.decision(&first.id).await.unwrap().is_some());
    let mut n = 0u8;
    common::eventually("a decision past its age is gone", || {
        let store = store.clone();
        n += 1;
        let first = first.clone();
        async move {
            let t = vitrine::domain::time::unix_now_ms();
            let next = decision(t, 5, n);
            store
                .append_decisions(batch(std::slice::from_ref(&next)), short, t)
                .await
                .unwrap();
            store.decision(&first.id).await.unwrap().is_none()
                && store
                    .visitor_decisions(&key(3), 0, 10)
                    .await
                    .unwrap()
                    .is_empty()
                && !export(store.as_ref(), t - short.max_age_ms, t + 1)
                    .await
                    .iter()
                    .any(|d| d.id == first.id)
                && store.decision(&next.id).await.unwrap().is_some()
        }
    })
    .await;
    let later = vitrine::domain::time::unix_now_ms();
    // Over the count: the oldest go.
    let small = DecisionRetention {
        keep: 2,
        max_age_ms: 600_000,
    };
    let more: Vec<StoredDecision> = (0..3)
        .map(|i| decision(later + 10 + i, 4, i as u8))
        .collect();
    store
        .append_decisions(batch(&more), small, later + 20)
        .await
        .unwrap();
    assert!(store.decision(&more[2].id).await.unwrap().is_some());
    if exact {
        assert_eq!(export(store.as_ref(), 0, later + 100).await, more[1..]);
    }
    assert!(store.erase_all_decisions().await.unwrap() > 0);
    assert!(export(store.as_ref(), 0, later + 100).await.is_empty());
}

#[tokio::test]
async fn every_decision_log_conforms() {
    decision_log_conformance(Arc::new(MemoryStore::new()), true).await;
    let dir = tempfile::tempdir().unwrap();
    decision_log_conformance(
        Arc::new(EmbeddedStore::open(&dir.path().join("d.redb")).unwrap()),
        true,
    )
    .await;
    let server = RedisServer::start();
    decision_log_conformance(
        Arc::new(RedisStore::connect(&redis_options(&server)).await.unwrap()),
        false,
    )
    .await;
}

/// Conditional publishes and the change log.
async fn change_log_conformance(store: Arc<dyn CatalogStore>) {
    assert!(store.changes(10).await.unwrap().is_empty());
    // Expecting none live: the first publish goes through, and is logged with it.
    assert!(
        store
            .publish_ruleset_if("v1", b"{}", 10, None, b"one")
            .await
            .unwrap()
    );
    assert_eq!(store.live_ruleset().await.unwrap().as_deref(), Some("v1"));
    // A publish expecting a version that is no longer live writes nothing.
    assert!(
        !store
            .publish_ruleset_if("v2", b"{\"a\":1}", 11, None, b"lost")
            .await
            .unwrap()
    );
    assert!(
        !store
            .publish_ruleset_if("v2", b"{\"a\":1}", 11, Some("v0"), b"lost")
            .await
            .unwrap()
    );
    assert_eq!(store.live_ruleset().await.unwrap().as_deref(), Some("v1"));
    assert!(store.load_ruleset("v2").await.unwrap().is_none());
    assert!(
        store
            .publish_ruleset_if("v2", b"{\"a\":1}", 12, Some("v1"), b"two")
            .await
            .unwrap()
    );
    store.append_change(b"three").await.unwrap();
    // Newest first, as many as asked.
    let log = store.changes(10).await.unwrap();
    assert_eq!(log, [b"three".to_vec(), b"two".to_vec(), b"one".to_vec()]);
    assert_eq!(store.changes(2).await.unwrap().len(), 2);
    assert!(store.changes(0).await.unwrap().is_empty());
    // Plain publishes are not logged.
    store.publish_ruleset("v3", b"{}", 13).await.unwrap();
    assert_eq!(store.changes(10).await.unwrap().len(), 3);

    // A revoked console session is refused until it would have ended anyway.
    let now = vitrine::domain::time::unix_now();
    assert!(!store.session_revoked("s1", now).await.unwrap());
    store.revoke_session("s1", now + 60).await.unwrap();
    store.revoke_session("s0", now - 1).await.unwrap();
    assert!(store.session_revoked("s1", now).await.unwrap());
    assert!(!store.session_revoked("s1", now + 60).await.unwrap());
    assert!(!store.session_revoked("s0", now).await.unwrap());
    assert!(!store.session_revoked("s2", now).await.unwrap());
}

#[tokio::test]
async fn every_store_keeps_a_change_log_and_publishes_only_over_the_expected_version() {
    change_log_conformance(Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    change_log_conformance(Arc::new(
        EmbeddedStore::open(&dir.path().join("changes.redb")).unwrap(),
    ))
    .await;
    let server = RedisServer::start();
    change_log_conformance(Arc::new(
        RedisStore::connect(&redis_options(&server)).await.unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn every_catalog_store_conforms() {
    catalog_conformance(Arc::new(MemoryStore::new())).await;
    event_log_conformance(Arc::new(MemoryStore::new())).await;
    budget_conformance(Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    catalog_conformance(Arc::new(
        EmbeddedStore::open(&dir.path().join("c.redb")).unwrap(),
    ))
    .await;
    event_log_conformance(Arc::new(
        EmbeddedStore::open(&dir.path().join("log.redb")).unwrap(),
    ))
    .await;
    budget_conformance(Arc::new(
        EmbeddedStore::open(&dir.path().join("budget.redb")).unwrap(),
    ))
    .await;
    let server = RedisServer::start();
    catalog_conformance(Arc::new(
        RedisStore::connect(&redis_options(&server)).await.unwrap(),
    ))
    .await;
    let mut options = redis_options(&server);
    options.key_prefix = "log-test:".into();
    event_log_conformance(Arc::new(RedisStore::connect(&options).await.unwrap())).await;
    options.key_prefix = "budget-test:".into();
    budget_conformance(Arc::new(RedisStore::connect(&options).await.unwrap())).await;
}

fn redis_options(server: &RedisServer) -> RedisOptions {
    RedisOptions {
        url: server.url(),
        key_prefix: "test:".into(),
        retention: vitrine::store::Retention {
            profile_ttl: Duration::from_secs(3600),
            ..vitrine::store::Retention::default()
        },
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn the_embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("p.redb")).unwrap();
    conformance(Arc::new(store)).await;
}

#[tokio::test]
async fn the_redis_store_conforms() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&redis_options(&server)).await.unwrap();
    conformance(Arc::new(store)).await;
}

/// Two replicas (two stores, two connections) sending the same ops to one profile at
/// once, each op in its own apply: every op counts once, none is lost.
#[tokio::test]
async fn replicas_applying_the_same_ops_at_once_count_each_once() {
    let server = RedisServer::start();
    let a = Arc::new(RedisStore::connect(&redis_options(&server)).await.unwrap());
    let b = Arc::new(RedisStore::connect(&redis_options(&server)).await.unwrap());
    let mut tasks = Vec::new();
    for id in 0..200u64 {
        for store in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                store.apply(&key(9), &[purchase(id)]).await.unwrap().fresh[0]
            }));
        }
    }
    let mut fresh = 0;
    for t in tasks {
        fresh += usize::from(t.await.unwrap());
    }
    assert_eq!(fresh, 200, "each op fresh on exactly one replica");
    let p = a.get(&key(9)).await.unwrap().unwrap();
    assert_eq!(p.orders_count, 200);
    assert_eq!(p.total_spent.unwrap().amount, 200_000);
    // Beyond the profile's own ring, the op ids are still known to both.
    for store in [&a, &b] {
        let again = store.apply(&key(9), &[purchase(0)]).await.unwrap();
        assert_eq!(again.fresh, vec![false]);
    }
}

/// Batches take the pipelined way (one MGET, scripts for many profiles) until a write
/// meets another's, a key is named twice or a ring fills: two replicas applying the same
/// batches at once, past the rings' length, still count each op once.
#[tokio::test]
async fn replicas_applying_the_same_batches_at_once_count_each_once() {
    let server = RedisServer::start();
    let a = Arc::new(RedisStore::connect(&redis_options(&server)).await.unwrap());
    let b = Arc::new(RedisStore::connect(&redis_options(&server)).await.unwrap());
    const ROUNDS: u64 = 150;
    const KEYS: u8 = 20;
    let batch = |round: u64| -> Vec<(ProfileKey, Vec<ProfileOp>)> {
        let mut batch: Vec<_> = (0..KEYS)
            .map(|k| (key(k), vec![purchase(round * 1_000 + u64::from(k))]))
            .collect();
        // Key 0 twice in one batch, with another op.
        batch.push((key(0), vec![purchase(round * 1_000 + 999)]));
        batch
    };
    let mut fresh = 0;
    for rounds in (0..ROUNDS).collect::<Vec<_>>().chunks(10) {
        let mut tasks = Vec::new();
        for &round in rounds {
            for store in [a.clone(), b.clone()] {
                let batch = batch(round);
                tasks.push(tokio::spawn(async move {
                    store
                        .apply_batch(&batch)
                        .await
                        .into_iter()
                        .map(|r| r.unwrap().new_ops())
                        .sum::<usize>()
                }));
            }
        }
        for t in tasks {
            fresh += t.await.unwrap();
        }
    }
    assert_eq!(
        fresh,
        (ROUNDS * (u64::from(KEYS) + 1)) as usize,
        "each op fresh once"
    );
    for k in 0..KEYS {
        let p = a.get(&key(k)).await.unwrap().unwrap();
        let orders = if k == 0 { 2 * ROUNDS } else { ROUNDS };
        assert_eq!(u64::from(p.orders_count), orders, "key {k}");
        assert_eq!(
            p.total_spent.unwrap().amount,
            orders as i64 * 1_000,
            "key {k}"
        );
    }
    // The first round's ops fell off the rings long ago; they are still known.
    let again = b.apply_batch(&batch(0)).await;
    assert!(again.into_iter().all(|r| r.unwrap().new_ops() == 0));
}

/// Earlier versions kept every op id (8 bytes) in a set beside the profile (`:o`); until
/// those sets expire, an op they hold is known, on the one-profile way and in a batch.
#[tokio::test]
async fn ops_in_the_sets_earlier_versions_wrote_are_still_known() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&redis_options(&server)).await.unwrap();
    let k = key(9);
    // A full ring, so the sets beside the profile are read.
    for id in 1..=vitrine::domain::profile::APPLIED_WINDOW as u64 {
        store.apply(&k, &[view(id)]).await.unwrap();
    }
    // An op id whose 8 bytes are "AAAAAAAA", remembered for an hour by the old set.
    let old = u64::from_le_bytes(*b"AAAAAAAA");
    let until = (vitrine::domain::time::unix_now() + 3_600).to_string();
    let set = format!("test:p:{}:o", "\t".repeat(16));
    let added = server.command(&["ZADD", &set, &until, "AAAAAAAA"]).unwrap();
    assert!(added.starts_with(":1"), "{added}");
    assert_eq!(
        store.apply(&k, &[view(old)]).await.unwrap().fresh,
        vec![false]
    );
    let batch = vec![(k, vec![view(old)])];
    assert_eq!(
        store.apply_batch(&batch).await[0].as_ref().unwrap().fresh,
        vec![false]
    );
    // An op the set does not hold is new.
    assert_eq!(
        store.apply(&k, &[view(old + 1)]).await.unwrap().fresh,
        vec![true]
    );
}

#[tokio::test]
async fn redis_behind_the_l1_tier_conforms() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&redis_options(&server)).await.unwrap();
    conformance(Arc::new(Tiered::new(
        Arc::new(store),
        1_000,
        Duration::from_millis(500),
    )))
    .await;
}

#[tokio::test]
async fn the_embedded_store_keeps_profiles_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.apply(&key(1), &[purchase(1)]).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get(&key(1)).await.unwrap().unwrap().orders_count, 1);
}

/// The embedded store expires what it holds: profiles past their TTL and op ids past
/// their window are swept, and a file under a steady stream of new visitors stops
/// growing once what it holds starts expiring.
#[tokio::test]
async fn the_embedded_store_sweeps_what_expired_and_its_file_stops_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.redb");
    let retention = vitrine::store::Retention {
        profile_ttl: Duration::from_secs(3_600),
        op_window: Duration::from_secs(600),
    };
    let store = EmbeddedStore::open_with(&path, retention).unwrap();
    let now = vitrine::domain::time::unix_now();
    // Sweeping (each pass a slice, from where the last stopped) until three passes in
    // a row erase nothing, with the clock at `at`.
    let sweep = |at: i64| {
        let store = &store;
        async move {
            let (mut total, mut idle) = (0, 0);
            while idle < 3 {
                let n = store.sweep_at(at).await.unwrap();
                total += n;
                idle = if n == 0 { idle + 1 } else { 0 };
            }
            total
        }
    };
    let visitors = |round: u32| -> Vec<(ProfileKey, Vec<ProfileOp>)> {
        (0..2_000u32)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&round.to_le_bytes());
                k[4..8].copy_from_slice(&i.to_le_bytes());
                (
                    ProfileKey(k),
                    (0..5).map(|e| view(u64::from(i) * 8 + e)).collect(),
                )
            })
            .collect()
    };
    store.apply_batch(&visitors(0)).await;
    assert_eq!(sweep(now).await, 0, "nothing has expired yet");
    assert!(
        store.get(&visitors(0)[0].0).await.unwrap().is_some(),
        "a fresh profile stays"
    );
    // Past the window, op ids go (and the profiles stay); past the TTL, profiles go.
    assert_eq!(sweep(now + 601).await, 2_000 * 5);
    assert!(store.get(&visitors(0)[0].0).await.unwrap().is_some());
    assert_eq!(sweep(now + 3_601).await, 2_000);
    assert!(store.get(&visitors(0)[0].0).await.unwrap().is_none());

    // Steady state: each round of new visitors replaces an expired one in the file.
    let mut sizes = Vec::new();
    for round in 1..=6 {
        store.apply_batch(&visitors(round)).await;
        sweep(now + 3_601 * i64::from(round + 1)).await;
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    let (early, late) = (sizes[1], sizes[5]);
    assert!(
        late <= early + early / 10,
        "the file keeps growing after its entries expire: {sizes:?}"
    );
}

#[test]
fn an_embedded_file_of_another_format_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("profiles");
            let mut t = txn.open_table(table).unwrap();
            t.insert([0u8; 16].as_slice(), [1u8, 0x90].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = EmbeddedStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("another format"), "{err}");
}

#[tokio::test]
async fn redis_keys_hold_no_raw_ids_and_always_expire() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&redis_options(&server)).await.unwrap();
    let hasher = vitrine::store::KeyHasher::new(b"a-test-secret");
    let id = vitrine::domain::VisitorId::parse("customer-4711@example.com").unwrap();
    let k = hasher.key(&vitrine::domain::VisitorKey::Customer(id));
    store.apply(&k, &[purchase(1)]).await.unwrap();
    let keys = server.command(&["KEYS", "*"]).unwrap();
    assert!(
        !keys.contains("4711") && !keys.contains("example"),
        "{keys}"
    );
    let ttl = server
        .command(&["PTTL", &format!("test:p:{}", "x")])
        .unwrap();
    assert!(ttl.starts_with(":-2"), "no such key: {ttl}");
    // Every key written has a TTL: check through SCAN of the profile keys.
    let scan = server
        .command(&["SCAN", "0", "MATCH", "test:p:*", "COUNT", "100"])
        .unwrap();
    // A profile whose ring of applied ops has room: one key.
    assert_eq!(scan.matches("test:p:").count(), 1, "{scan}");
    // Ops beyond the ring: the set of those fallen off it beside the profile.
    for id in 2..(vitrine::domain::profile::APPLIED_WINDOW as u64 + 10) {
        store.apply(&k, &[view(id)]).await.unwrap();
    }
    let scan = server
        .command(&["SCAN", "0", "MATCH", "test:p:*", "COUNT", "100"])
        .unwrap();
    let raw_key_count = scan.matches("test:p:").count();
    assert_eq!(raw_key_count, 2, "{scan}");
    assert!(scan.contains(":f\r\n"), "{scan}");
    let dbsize = server.command(&["DBSIZE"]).unwrap();
    assert!(dbsize.starts_with(":2"), "{dbsize}");
    let expiring = server.command(&["INFO", "keyspace"]).unwrap();
    assert!(expiring.contains("expires=2"), "{expiring}");
}

/// On Redis, count retention trims the stream only: the id hashes of minutes well
/// before the stream's first entry are deleted by the appends, not left to `max_age`.
#[tokio::test]
async fn redis_drops_the_id_hashes_count_retention_has_outrun() {
    use vitrine::store::DecisionLog;
    let server = RedisServer::start();
    let store = RedisStore::connect(&redis_options(&server)).await.unwrap();
    let now = vitrine::domain::time::unix_now_ms();
    // Ids made 30 and 5 minutes before the stream's entries (written now).
    let old = decision(now - 30 * 60_000, 1, 1);
    let recent = decision(now - 5 * 60_000, 2, 2);
    let keep = DecisionRetention {
        keep: 1_000,
        max_age_ms: 3_600_000,
    };
    store
        .append_decisions(batch(&[old.clone(), recent.clone()]), keep, now)
        .await
        .unwrap();
    let minute = |d: &StoredDecision| vitrine::store::decisions::id_ms(&d.id) / 60_000;
    let exists = |d: &StoredDecision| {
        server
            .command(&["EXISTS", &format!("test:deci:{}", minute(d))])
            .unwrap()
    };
    assert_eq!(
        exists(&old),
        ":0\r\n",
        "ten minutes and more before the first entry"
    );
    assert_eq!(exists(&recent), ":1\r\n");
    assert!(store.decision(&old.id).await.unwrap().is_none());
    assert_eq!(store.decision(&recent.id).await.unwrap(), Some(recent));
}
