//! Configuration layers and their order.
#![allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.

use std::path::Path;

use figment::Jail;
use vitrine::config::{LogFormat, Overrides, Settings};

#[test]
fn each_layer_overrides_the_one_below() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/base.toml",
            "[server]\naddr = \"127.0.0.1:1001\"\ncache_max_age_s = 7\n[recommend]\ndeadline_ms = 11\ndefault_limit = 3\n[log]\nformat = \"json\"\n",
        )?;
        jail.create_file(
            "config/staging.toml",
            "[recommend]\ndeadline_ms = 22\ndefault_limit = 4\n",
        )?;
        jail.create_file(
            "extra.toml",
            "[recommend]\ndefault_limit = 5\n[demo]\nproducts = 77\n",
        )?;
        jail.set_env("VITRINE_ENV", "staging");
        jail.set_env("VITRINE__DEMO__PRODUCTS", "88");
        jail.set_env(
            "VITRINE__AUTH__STOREFRONT_KEYS",
            "storefront-key-00001, storefront-key-00002",
        );
        let overrides = Overrides {
            config_file: Some("extra.toml".into()),
            addr: Some("127.0.0.1:1002".parse().unwrap()),
            redis: None,
        };
        let s = Settings::load(Path::new("config"), &overrides).expect("loads");
        assert_eq!(s.server.addr.port(), 1002, "CLI beats everything");
        assert_eq!(s.server.cache_max_age_s, 7, "base.toml beats defaults");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.recommend.deadline_ms, 22, "env file beats base.toml");
        assert_eq!(s.recommend.default_limit, 5, "--config file beats env file");
        assert_eq!(s.demo.products, 88, "environment beats files");
        assert_eq!(s.demo.customers, 1000, "untouched keys keep their defaults");
        assert_eq!(
            s.auth
                .storefront_keys
                .iter()
                .map(|k| k.expose())
                .collect::<Vec<_>>(),
            ["storefront-key-00001", "storefront-key-00002"],
            "comma-separated lists from the environment"
        );
        // Secrets are used, never printed: not in the settings' debug form, nor in their
        // serialized form.
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("storefront-key-0000"), "{shown}");
        assert!(shown.contains("[redacted]"));
        Ok(())
    });
}

#[test]
fn the_shipped_base_toml_is_valid_and_matches_the_compiled_defaults() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = Settings::load(&shipped, &Overrides::default()).expect("base.toml loads");
        let d = Settings::default();
        assert_eq!(s.server.addr, d.server.addr);
        assert_eq!(s.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.recommend.deadline_ms, d.recommend.deadline_ms);
        assert_eq!(s.server.body_limit_bytes, d.server.body_limit_bytes);
        assert_eq!(s.server.cache_max_age_s, d.server.cache_max_age_s);
        assert_eq!(s.demo.products, d.demo.products);
        assert_eq!(s.demo.events, d.demo.events);
        assert_eq!(s.storage.path, d.storage.path);
        assert_eq!(s.storage.profile_ttl_s, d.storage.profile_ttl_s);
        assert_eq!(s.cache.l1_ttl_ms, d.cache.l1_ttl_ms);
        assert_eq!(s.events.buffer_capacity, d.events.buffer_capacity);
        assert_eq!(s.shopify.body_limit_bytes, d.shopify.body_limit_bytes);
        assert!(!s.content.banners.is_empty(), "the demo ships banners");
        // Every other key, whole: base.toml says what the compiled defaults are.
        let mut shipped = serde_json::to_value(&s).unwrap();
        let mut compiled = serde_json::to_value(&d).unwrap();
        shipped["content"] = serde_json::Value::Null;
        compiled["content"] = serde_json::Value::Null;
        assert_eq!(shipped, compiled);
        let _ = jail;
        Ok(())
    });
}

#[test]
fn short_api_keys_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("VITRINE__AUTH__ADMIN_KEYS", "short");
        let err = Settings::load(Path::new("nowhere"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("auth"), "{err}");
        // A label does not make a short key long enough.
        jail.set_env("VITRINE__AUTH__ADMIN_KEYS", "a-long-label-for-it:short");
        let err = Settings::load(Path::new("nowhere"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("auth"), "{err}");
        jail.set_env("VITRINE__AUTH__ADMIN_KEYS", "ana:a-key-of-sixteen-or-more");
        Settings::load(Path::new("nowhere"), &Overrides::default()).unwrap();
        Ok(())
    });
}

#[test]
fn shopify_webhooks_need_the_shops_currency() {
    Jail::expect_with(|jail| {
        // Prices arrive without a currency: none is assumed.
        jail.set_env(
            "VITRINE__SHOPIFY__WEBHOOK_SECRET",
            "shopify-secret-0123456789",
        );
        let err = Settings::load(Path::new("nowhere"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("shopify.shop_currency"), "{err}");
        jail.set_env("VITRINE__SHOPIFY__SHOP_CURRENCY", "GBP");
        let s = Settings::load(Path::new("nowhere"), &Overrides::default()).unwrap();
        assert_eq!(
            s.shopify.currency().map(|c| c.to_string()).as_deref(),
            Some("GBP")
        );
        Ok(())
    });
}

/// Every setting's dotted name: the compiled defaults, serialized, to their leaves
/// (lists and unset values are leaves).
fn setting_names(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                setting_names(&name, v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// The names a configuration row documents: its first cell's code spans, `.key` after
/// a full name meaning that name's section, `{a,b}` one name for each, `<x>` any one
/// level, `[[table]]` the table.
fn documented_names(cell: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut section = String::new();
    for span in cell.split('`').skip(1).step_by(2) {
        let span = span.trim_start_matches("[[").trim_end_matches("]]");
        let full = match span.strip_prefix('.') {
            Some(key) => format!("{section}.{key}"),
            None => {
                section = span.rsplit_once('.').map_or("", |(s, _)| s).to_owned();
                span.to_owned()
            }
        };
        match (full.find('{'), full.find('}')) {
            (Some(open), Some(close)) if open < close => {
                for alt in full[open + 1..close].split(',') {
                    names.push(format!("{}{alt}{}", &full[..open], &full[close + 1..]));
                }
            }
            _ => names.push(full),
        }
    }
    names
}

fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
    p.len() == n.len()
        && p.iter()
            .zip(&n)
            .all(|(p, n)| p == n || (p.starts_with('<') && p.ends_with('>')))
}

/// The README's configuration table names every setting once, and nothing that is not
/// one.
#[test]
fn the_readme_documents_every_setting_once() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap();
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| documented_names(l.split('|').nth(1).unwrap()))
        .collect();
    let mut names = Vec::new();
    setting_names(
        "",
        &serde_json::to_value(Settings::default()).unwrap(),
        &mut names,
    );
    for name in &names {
        let rows_naming: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| r.iter().any(|p| name_matches(p, name)))
            .collect();
        assert_eq!(
            rows_naming.len(),
            1,
            "{name} is in the README's configuration table once: {rows_naming:?}"
        );
    }
    for pattern in rows.iter().flatten() {
        assert!(
            names.iter().any(|n| name_matches(pattern, n)),
            "the README's configuration table names {pattern}, which is not a setting"
        );
    }
}
