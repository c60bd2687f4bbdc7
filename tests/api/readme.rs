//! The README's "Try it" examples, run against a fresh server on the default demo (the
//! first set-up command's), each answer checked against the output the README shows:
//! status, headers and body, all but the ids, the timings and the date.

use crate::common;

use common::TestApp;
use serde_json::Value;
use vitrine::config::Settings;

/// One example: the command's words (quotes removed, continuations joined) and the
/// output shown under it.
struct Example {
    words: Vec<String>,
    output: String,
}

fn examples(readme: &str) -> Vec<Example> {
    let section = readme
        .split("\n## Try it\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Try it section");
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line != "```sh" {
            continue;
        }
        let command: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let command = command.join("\n").replace("\\\n", " ");
        assert_eq!(lines.next(), Some(""), "a blank line after {command}");
        assert_eq!(lines.next(), Some("```"), "the output of {command}");
        let output: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push(Example {
            words: words(&command),
            output: output.join("\n"),
        });
    }
    out
}

/// A shell command's words: single quotes group, whitespace splits.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The answer to an example's curl command: status, headers, body.
async fn run(app: &TestApp, words: &[String]) -> (u16, reqwest::header::HeaderMap, String) {
    assert_eq!(words[0], "curl");
    let mut url = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut args = words[1..].iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-i" | "-s" => {}
            "-H" => headers.push(args.next().expect("a header").clone()),
            "-d" => body = Some(args.next().expect("a body").clone()),
            u if u.starts_with("http://127.0.0.1:8080") => {
                url = Some(u.replacen("http://127.0.0.1:8080", &app.base, 1));
            }
            other => panic!("an argument the test does not know: {other}"),
        }
    }
    let url = url.expect("a url");
    let mut request = match &body {
        Some(b) => app.client.post(&url).body(b.clone()),
        None => app.client.get(&url),
    };
    for h in headers {
        let (name, value) = h.split_once(':').expect("name: value");
        request = request.header(name.trim(), value.trim());
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// `actual` is `expected` but for the decision id (any) and scores (to 0.001).
fn same(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(e), keys(a), "the fields at {path}");
            for (k, v) in e {
                if k == "decision_id" {
                    assert!(a[k].as_str().is_some_and(|id| id.len() == 36), "{path}.{k}");
                } else {
                    same(v, &a[k], &format!("{path}.{k}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "the length of {path}");
            for (n, (e, a)) in e.iter().zip(a).enumerate() {
                same(e, a, &format!("{path}[{n}]"));
            }
        }
        (Value::Number(e), Value::Number(a)) if path.ends_with(".score") => {
            let (e, a) = (e.as_f64().unwrap(), a.as_f64().unwrap());
            assert!((e - a).abs() <= 0.001, "{path}: {a}, the README shows {e}");
        }
        (e, a) => assert_eq!(e, a, "{path}"),
    }
}

#[tokio::test]
async fn the_try_it_examples_answer_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 5, "{} examples", examples.len());
    // The first set-up command's server: the default demo, its ruleset, on a new store.
    let mut settings = Settings::default();
    settings.server.addr = "127.0.0.1:0".parse().unwrap();
    settings.log.level = "warn".into();
    let app = TestApp::spawn(settings).await;
    for e in &examples {
        let (status, headers, body) = run(&app, &e.words).await;
        let shown_body = if e.output.starts_with("HTTP/") {
            let (head, shown_body) = e.output.split_once("\n\n").expect("headers, then the body");
            let mut head = head.lines();
            let status_line = head.next().unwrap();
            assert!(
                status_line.starts_with(&format!("HTTP/1.1 {status} ")),
                "{status_line}: {status}"
            );
            for line in head {
                let (name, value) = line.split_once(": ").expect("a header line");
                if ["x-request-id", "server-timing", "date"].contains(&name) {
                    assert!(headers.contains_key(name), "{name}");
                    continue;
                }
                assert_eq!(
                    headers.get(name).and_then(|v| v.to_str().ok()),
                    Some(value),
                    "{name} of {:?}",
                    e.words
                );
            }
            shown_body
        } else {
            assert!(
                (200..300).contains(&status) || e.output.contains("\"error\""),
                "{status}"
            );
            e.output.as_str()
        };
        let shown: Value = serde_json::from_str(shown_body).expect("the README shows JSON");
        let actual: Value = serde_json::from_str(&body).expect("the server answers JSON");
        same(&shown, &actual, "");
    }
}

/// The demo ruleset at work at checkout: a first order over 30.00 gets 10% off and ships
/// free; a B2B buyer pays the contract price; the lapsed customer's code applies. And a
/// restart on the same store never publishes it over what is live.
#[tokio::test]
async fn the_demo_ruleset_prices_each_kind_of_customer_and_is_published_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.server.addr = "127.0.0.1:0".parse().unwrap();
    settings.log.level = "warn".into();
    settings.demo.products = 400;
    settings.demo.customers = 100;
    settings.demo.events = 8_000;
    settings.storage.path = dir.path().join("vitrine.redb");
    let mut app = TestApp::spawn(settings.clone()).await;
    let live = app.get_json("/admin/v1/ruleset").await;
    assert_ne!(live["version"], "none");
    let changes = app.get_json("/admin/v1/ruleset/changes").await;
    assert_eq!(changes["changes"][0]["who"], "demo", "{changes}");

    let product = app.get_json("/admin/v1/products/p000001").await;
    let price = product["price"]["amount"].as_i64().unwrap();
    let units = 3_000 / price + 1;
    let cart = |who: (&str, &str), codes: &[&str]| {
        serde_json::json!({who.0: who.1, "cart": [{"product_id": "p000001", "quantity": units}],
                           "codes": codes})
    };
    let first = app
        .evaluate_cart(cart(("session_id", "first-timer"), &[]))
        .await;
    let applied: Vec<&str> = first["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(applied.contains(&"welcome-10"), "{first}");
    assert!(applied.contains(&"welcome-shipping"), "{first}");
    assert_eq!(first["shipping"]["total"]["amount"], 0, "{first}");

    let buyer = app
        .evaluate_cart(cart(("customer_id", "demo-b2b"), &[]))
        .await;
    let contract = buyer["lines"][0]["unit_price"]["amount"].as_i64().unwrap();
    assert_eq!(
        buyer["lines"][0]["price_list"], "northwind-contract",
        "{buyer}"
    );
    assert!(contract < price, "{contract} under {price}");

    let lapsed = app
        .evaluate_cart(cart(("customer_id", "demo-lapsed"), &["COMEBACK15"]))
        .await;
    assert_eq!(lapsed["applied"][0]["id"], "come-back", "{lapsed}");

    // The shop's own ruleset, then a restart: the demo's is not published over it.
    let own = app
        .publish_ruleset(&serde_json::json!({"promotions": []}))
        .await;
    app.stop().await.unwrap();
    drop(app);
    let app = TestApp::spawn(settings).await;
    assert_eq!(
        app.get_json("/admin/v1/ruleset").await["version"],
        own.as_str()
    );
}
