//! `vitrine import`: the real binary loads the files in tests/fixtures/import into a
//! private Redis, while a running app on the same Redis serves what was loaded.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::redis::RedisServer;
use common::{TestApp, import, settings};
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The demo shop on `redis`, its profile cache as short as it goes: what a command
/// wrote to the store is what the next read shows.
async fn app_on(redis: &RedisServer) -> TestApp {
    let mut s = common::on_redis(redis);
    s.cache.l1_ttl_ms = 1;
    TestApp::spawn(s).await
}

async fn product_within(app: &TestApp, id: &str, within: Duration) -> Value {
    let path = format!("/admin/v1/products/{id}");
    common::eventually_within(&format!("{id} served"), within, || async {
        app.get(&path).await.status() == 200
    })
    .await;
    app.get_json(&path).await
}

#[tokio::test]
async fn products_load_with_bad_lines_reported_reach_a_running_app_and_reload_as_unchanged() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;

    // Two bad lines, over the default threshold of none: every good line still loads.
    let out = import(&redis, "products", "products.ndjson", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("products.ndjson:4: price.amount must be 0 to 100000000000 minor units"),
        "{stderr}"
    );
    assert!(stderr.contains("products.ndjson:6: "), "{stderr}");
    assert!(
        text(&out.stdout).contains("3 applied, 0 unchanged"),
        "{}",
        text(&out.stdout)
    );

    let p = product_within(&app, "imp-1", Duration::from_secs(1)).await;
    assert_eq!(p["price"], json!({"amount": 3200, "currency": "GBP"}));
    assert_eq!(p["category"], "kitchen/tea-ware");
    assert_eq!(p["inventory"], 12);
    assert_eq!(app.get("/admin/v1/products/imp-3").await.status(), 404);

    // Again, with the threshold raised: nothing changes, and it says so.
    let out = import(
        &redis,
        "products",
        "products.ndjson",
        &["--max-errors", "2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 applied, 3 unchanged"),
        "{}",
        text(&out.stdout)
    );

    // Generic CSV and Shopify's product export.
    let out = import(&redis, "products", "products.csv", &["--max-errors", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("products.csv:3: title is missing"));
    let p = product_within(&app, "csv-1", Duration::from_secs(1)).await;
    assert_eq!(p["price"]["amount"], 1250);
    assert_eq!(p["tags"], json!(["linen", "set"]));

    // A Shopify export does not say its currency: refused until it is stated.
    let out = import(&redis, "products", "shopify_products.csv", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("give --currency"),
        "{}",
        text(&out.stderr)
    );
    let out = import(
        &redis,
        "products",
        "shopify_products.csv",
        &["--currency", "USD"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 applied, 0 unchanged, 1 skipped (not active), 0 bad"),
        "{}",
        text(&out.stdout)
    );
    let shirt = product_within(&app, "ocean-blue-shirt", Duration::from_secs(1)).await;
    assert_eq!(shirt["inventory"], 12, "two tracked variants");
    assert_eq!(shirt["price"], json!({"amount": 5000, "currency": "USD"}));
    assert_eq!(shirt["cost"]["amount"], 2000);
    assert_eq!(
        shirt["category"], "shirts",
        "a one-level name gets a handle too"
    );
    let jacket = product_within(&app, "classic-leather-jacket", Duration::from_secs(1)).await;
    assert_eq!(
        jacket["in_stock"], true,
        "untracked stock is always available"
    );
    assert_eq!(app.get("/admin/v1/products/draft-hat").await.status(), 404);
}

#[tokio::test]
async fn customers_orders_and_events_build_profiles_once() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    for (kind, file) in [
        ("products", "products.ndjson"),
        ("products", "shopify_products.csv"),
    ] {
        import(
            &redis,
            kind,
            file,
            &["--max-errors", "9", "--currency", "USD"],
        );
    }
    let runs = [
        (
            "customers",
            "customers.csv",
            "2 applied, 0 unchanged, 2 bad",
        ),
        ("orders", "orders.ndjson", "2 applied, 0 unchanged, 2 bad"),
        (
            "orders",
            "shopify_orders.csv",
            "2 applied, 0 unchanged, 1 skipped (no customer), 0 bad",
        ),
        ("events", "events.ndjson", "3 applied, 0 unchanged, 1 bad"),
        ("events", "events.csv", "1 applied, 0 unchanged, 1 bad"),
    ];
    for (kind, file, summary) in runs {
        let out = import(&redis, kind, file, &["--max-errors", "2"]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(summary),
            "{file}: {}",
            text(&out.stdout)
        );
    }
    let stderr = text(&import(&redis, "orders", "orders.ndjson", &["--max-errors", "2"]).stderr);
    assert!(
        stderr.contains("orders.ndjson:3: created_at \"yesterday\" is not a time"),
        "{stderr}"
    );

    let c1 = app.export_profile("imp-c1").await.unwrap();
    assert_eq!(c1["orders_count"], 2);
    assert_eq!(
        c1["total_spent"],
        json!({"amount": 8800, "currency": "GBP"})
    );
    assert_eq!(c1["segments"], json!(["vip", "newsletter"]));
    assert_eq!(c1["loyalty_tier"], "gold");
    assert_eq!(
        c1["consent"],
        json!({"personalization": true, "marketing": true})
    );
    let bought = common::purchased_ids(&c1);
    assert!(
        bought.contains(&"imp-1") && bought.contains(&"imp-4"),
        "{bought:?}"
    );
    assert!(
        !bought.contains(&"gone-99"),
        "a product not in the catalog is left out"
    );

    let c2 = app.export_profile("imp-c2").await.unwrap();
    assert_eq!(c2["company_id"], "acme-ltd");
    assert_eq!(c2["recently_viewed"], json!(["imp-4", "imp-1"]));
    assert_eq!(c2["cart"], json!([{"product_id": "imp-4", "quantity": 2}]));

    // Shopify's export names the buyer by email: never an id the API reads a profile by
    // (tests/identities.rs follows it into the customer's profile).
    assert!(app.export_profile("jane.doe@example.com").await.is_none());

    // Every file again: nothing changes.
    for (kind, file, _) in runs {
        let out = import(&redis, kind, file, &["--max-errors", "2"]);
        assert!(
            text(&out.stdout).contains(" 0 applied,"),
            "{file}: {}",
            text(&out.stdout)
        );
    }
    let again = app.export_profile("imp-c1").await.unwrap();
    assert_eq!(again["orders_count"], 2);
    assert_eq!(again["total_spent"], c1["total_spent"]);
}

#[tokio::test]
async fn an_embedded_store_held_by_a_running_server_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vitrine.redb");
    let mut s = settings();
    s.storage.path = path.clone();
    let _app = TestApp::spawn(s).await;
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["import", "products", "tests/fixtures/import/products.csv"])
        .env("VITRINE__STORAGE__PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("vitrine import: ") && stderr.contains("vitrine.redb"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["import", "events", "tests/fixtures/import/none.ndjson"])
        .env("VITRINE__STORAGE__PATH", dir.path().join("v.redb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("none.ndjson: No such file"),
        "{}",
        text(&out.stderr)
    );
}

/// `vitrine import` and `vitrine train` are library functions the binary only wraps:
/// the same loading, reporting and training, run here in the test's own process.
#[tokio::test]
async fn import_and_train_run_in_process_as_the_commands_run_them() {
    use vitrine::ingest::import::{Format, Kind};
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.demo.enabled = false;
    s.storage.path = dir.path().join("vitrine.redb");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
    let quiet = |_: u64, _: &vitrine::ingest::import::Report| {};
    let run = |kind, file: &'static str| {
        let (s, fixtures) = (&s, &fixtures);
        async move {
            let file = fixtures.join(file);
            let job = vitrine::app::ImportJob {
                kind,
                file: &file,
                format: Format::Auto,
                currency: None,
            };
            vitrine::app::import(s, &job, &quiet).await.unwrap()
        }
    };
    let products = run(Kind::Products, "products.ndjson").await;
    assert_eq!(
        (products.applied, products.bad.len()),
        (3, 2),
        "{products:?}"
    );
    let summary = products.summary(Duration::from_secs(1));
    assert!(
        summary.contains("3 applied, 0 unchanged, 2 bad"),
        "{summary}"
    );
    let events = run(Kind::Events, "events.ndjson").await;
    assert_eq!((events.applied, events.bad.len()), (3, 1), "{events:?}");

    // Training on what the import wrote to the event log.
    let trained = vitrine::app::train(&s, None).await.unwrap();
    assert_eq!(trained.products, 3);
    assert_eq!(trained.interactions, 2, "the two views of catalog products");
    assert!(trained.bytes > 0 && !trained.version.is_empty());
    let summary = trained.summary(Duration::from_secs(1));
    assert!(
        summary.contains("trained on 2 interactions from 2 event log entries"),
        "{summary}"
    );
    // An events file that is not there is an error that names it, not a panic.
    let missing = fixtures.join("no-such-history.ndjson");
    let e = vitrine::app::train(&s, Some((&missing, Format::Auto)))
        .await
        .err()
        .expect("refused");
    assert!(e.contains("no-such-history.ndjson"), "{e}");
}

/// A shop's own catalog, imported into a fresh store, is served alone even with the demo
/// on (the default): the demo never mixes with it. And `vitrine train` from the event log
/// refuses a store that holds the demo, whose models the log could not rebuild.
#[tokio::test]
async fn the_demo_never_mixes_with_an_imported_shop_nor_is_retrained_from_the_log() {
    let redis = RedisServer::start();
    // The fixture has one bad row among its products.
    let out = import(&redis, "products", "products.csv", &["--max-errors", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = TestApp::spawn(common::on_redis(&redis)).await;
    let status = own.get_json("/admin/v1/status").await;
    let imported = status["products"].as_u64().unwrap();
    assert!((1..=3).contains(&imported), "{status}");
    assert_eq!(status["products_out_of_stock"], 0, "{status}");
    let answer = own.recommend("session_id=s&placement=home").await;
    for (product, _) in common::picks(&answer) {
        assert!(product.starts_with("csv-"), "{product} in {answer}");
    }
    // No demo customers were seeded over the shop either.
    assert_eq!(own.export_profile("c0000001").await, None);

    let demo = RedisServer::start();
    let app = TestApp::on_redis(&demo).await;
    let before = app.get_json("/admin/v1/status").await["model_version"].clone();
    let (code, _, stderr) = common::vitrine(&["train", "--redis", &demo.url()]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("the store holds the demo shop"), "{stderr}");
    assert_eq!(
        app.get_json("/admin/v1/status").await["model_version"],
        before
    );
}

/// The README's way from the demo to a shop of one's own, on the sample shop of
/// `examples/import/`: every file imports without a bad row, `vitrine train` learns the
/// history, and the quick-start ruleset of docs/rules.md publishes and prices a cart as
/// that page says.
#[tokio::test]
async fn the_sample_shop_imports_trains_and_takes_the_quick_start_ruleset() {
    let redis = RedisServer::start();
    for (kind, file) in [
        ("products", "products.csv"),
        ("customers", "customers.csv"),
        ("orders", "orders.ndjson"),
        ("events", "events.ndjson"),
    ] {
        let (code, stdout, stderr) = common::vitrine(&[
            "import",
            kind,
            &format!("examples/import/{file}"),
            "--redis",
            &redis.url(),
        ]);
        assert_eq!(code, Some(0), "{kind}: {stdout} {stderr}");
        assert!(stdout.contains(" 0 bad"), "{kind}: {stdout}");
    }
    let (code, stdout, stderr) = common::vitrine(&["train", "--redis", &redis.url()]);
    assert_eq!(code, Some(0), "{stderr}");
    // The 13 events and the orders' 4 lines, all in the event log.
    assert!(
        stdout.contains("trained on 17 interactions from 17 event log entries (0 bad"),
        "{stdout}"
    );

    let app = TestApp::spawn(common::empty_shop_on_redis(&redis)).await;
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")).unwrap();
    let quick_start: Value = serde_json::from_str(
        rules
            .split("\n## Quick start\n")
            .nth(1)
            .and_then(|s| s.split("```json\n").nth(1))
            .and_then(|s| s.split("\n```").next())
            .expect("the quick-start document"),
    )
    .unwrap();
    app.publish_ruleset(&quick_start).await;

    // A member's six teas: 9.80 less 5% is 9.31, 55.86 in all, so 10% off and free shipping.
    let cart = app
        .evaluate_cart(json!({"customer_id": "cust-1002",
                              "cart": [{"product_id": "tea-sencha", "quantity": 6}]}))
        .await;
    assert_eq!(cart["lines"][0]["price_list"], "members", "{cart}");
    assert_eq!(cart["lines"][0]["unit_price"]["amount"], 931, "{cart}");
    assert_eq!(cart["applied"][0]["id"], "spend-50", "{cart}");
    assert_eq!(cart["shipping"]["total"]["amount"], 0, "{cart}");
    // Anyone else pays the catalog price and, under 40.00, for shipping.
    let small = app
        .evaluate_cart(
            json!({"session_id": "s", "cart": [{"product_id": "tea-sencha", "quantity": 1}]}),
        )
        .await;
    assert_eq!(small["lines"][0]["unit_price"]["amount"], 980, "{small}");
    assert_eq!(small["shipping"]["total"]["amount"], 399, "{small}");
    let home = app.recommend("customer_id=cust-1002&placement=home").await;
    assert_eq!(home["banners"][0]["id"], "new-teas", "{home}");
    assert!(!common::picks(&home).is_empty(), "{home}");
}
