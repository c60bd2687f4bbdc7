//! The container image runs as a non-root user in a root-owned `/app`; there is no Docker
//! engine here to build it, so this test lays out a directory as the Dockerfile does and
//! runs the binary there as that user (uid 10001, through `setpriv`).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const UID: &str = "10001";

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap()
}

/// `/app` as the image has it: root-owned, with the config, and the data directory the
/// Dockerfile creates for the service's user.
fn image_like_app(root: &Path) -> std::path::PathBuf {
    let app = root.join("app");
    std::fs::create_dir_all(app.join("config")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/base.toml"),
        app.join("config/base.toml"),
    )
    .unwrap();
    for dir in [root, &app, &app.join("config")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    app
}

fn serve_as_service_user(app: &Path, port: u16) -> std::process::Child {
    Command::new("setpriv")
        .args(["--reuid", UID, "--regid", UID, "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_vitrine"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .current_dir(app)
        .env_remove("VITRINE_ENV")
        .env("VITRINE_CONFIG_DIR", app.join("config"))
        .env("VITRINE__STORAGE__PATH", app.join("data/vitrine.redb"))
        .env("VITRINE__DEMO__PRODUCTS", "200")
        .env("VITRINE__DEMO__CUSTOMERS", "20")
        .env("VITRINE__DEMO__EVENTS", "1000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv runs")
}

#[test]
fn the_image_layout_lets_the_non_root_user_run_the_service() {
    let file = dockerfile();
    assert!(
        file.contains("RUN mkdir -p /app/data && chown 10001:10001 /app/data")
            && file.contains("VOLUME /app/data")
            && file.contains("useradd --system --uid 10001")
            && file.contains("VITRINE__STORAGE__PATH=/app/data/vitrine.redb"),
        "the Dockerfile gives its user a writable data volume"
    );
    if !is_root() {
        eprintln!("skipped: switching to uid {UID} needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let app = image_like_app(root.path());

    // Without the data directory (the image before), the user cannot start.
    let port = common::redis::free_port();
    let out = serve_as_service_user(&app, port)
        .wait_with_output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With it, as the Dockerfile lays it out, the service runs and writes there.
    std::fs::create_dir(app.join("data")).unwrap();
    let chown = Command::new("chown")
        .args([&format!("{UID}:{UID}"), app.join("data").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    let port = common::redis::free_port();
    let mut child = serve_as_service_user(&app, port);
    common::process::wait_live(port, &mut child);
    let store = app.join("data/vitrine.redb");
    assert!(store.exists(), "the embedded store is in the data volume");
    assert!(app.join("data/journal.redb").exists(), "and the journal");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
