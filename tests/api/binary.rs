//! The `vitrine` binary itself: configuration layers, errors naming the key, signals.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The binary, with a small demo shop and its own store directory (kept until the
/// process ends: each test's server must not share the embedded store's file).
fn vitrine() -> Command {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut c = Command::new(env!("CARGO_BIN_EXE_vitrine"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VITRINE__STORAGE__PATH", dir.join("vitrine.redb"))
        .env_remove("VITRINE_ENV")
        .env("VITRINE__DEMO__PRODUCTS", "300")
        .env("VITRINE__DEMO__CUSTOMERS", "50")
        .env("VITRINE__DEMO__EVENTS", "3000")
        .env("VITRINE__LOG__FORMAT", "json");
    c
}

#[test]
fn sigterm_stops_the_server_cleanly_with_exit_code_0() {
    let port = common::redis::free_port();
    let mut child = vitrine()
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::process::wait_live(port, &mut child);
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Logs are JSON lines, and they say it stopped.
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("API is open")),
        "open access is warned about"
    );
}

#[test]
fn an_environment_variable_sets_the_listen_address() {
    let port = common::redis::free_port();
    let mut child = vitrine()
        .args(["serve"])
        .env("VITRINE__SERVER__ADDR", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::process::wait_live(port, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn start_error(extra_env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = vitrine();
    cmd.arg("serve").args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "start-up must fail");
    String::from_utf8_lossy(&out.stderr).to_lowercase()
}

#[test]
fn unknown_keys_and_invalid_values_stop_start_up_naming_the_key() {
    let msg = start_error(&[("VITRINE__SERVER__ADRESS", "x")], &[]);
    assert!(msg.contains("adress"), "{msg}");
    let msg = start_error(&[("VITRINE__RECOMMEND__DEADLINE_MS", "0")], &[]);
    assert!(msg.contains("recommend.deadline_ms"), "{msg}");
    let msg = start_error(&[("VITRINE__SERVER__ADDR", "not-an-address")], &[]);
    assert!(msg.contains("addr"), "{msg}");
    let msg = start_error(&[("VITRINE__LOG__FORMAT", "xml")], &[]);
    assert!(msg.contains("format"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[demo]\nproducts = 10\ncolour = \"red\"\n").unwrap();
    let msg = start_error(&[], &["--config", file.to_str().unwrap()]);
    assert!(msg.contains("colour") && msg.contains("demo"), "{msg}");
    let msg = start_error(&[], &["--config", "/no/such/file.toml"]);
    assert!(msg.contains("/no/such/file.toml"), "{msg}");
}

#[test]
fn help_documents_every_flag() {
    let out = vitrine().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--addr", "--config-dir"] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    let out = vitrine().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("healthcheck"),
        "{text}"
    );
}
