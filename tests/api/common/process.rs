//! The real `vitrine` binary as a child process, for what only a process can show:
//! signals, SIGKILL, restarts on the same data.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    pub child: Child,
    pub base: String,
}

impl Process {
    /// Starts `vitrine serve` on a free port with a small demo shop and `env` (pairs of
    /// `VITRINE__...` variables), and waits until it answers `/livez`.
    pub fn start(env: &[(&str, String)]) -> Self {
        let port = super::redis::free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrine"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("VITRINE_ENV")
            .env("VITRINE__DEMO__PRODUCTS", "300")
            .env("VITRINE__DEMO__CUSTOMERS", "50")
            .env("VITRINE__DEMO__EVENTS", "3000")
            .env("VITRINE__LOG__LEVEL", "warn")
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("vitrine starts");
        wait_live(port, &mut child);
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and the exit status once the process is gone.
    pub fn terminate(&mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        self.child.wait().expect("reaped")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the child's `/livez` on `port` until it answers (60 s at most; the child's
/// exit fails the test at once, with its stderr when it was piped).
pub fn wait_live(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !vitrine::cli::healthcheck(&format!("http://127.0.0.1:{port}/livez")) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(stderr) = child.stderr.as_mut() {
                std::io::Read::read_to_string(stderr, &mut err).ok();
            }
            panic!("vitrine exited early: {status}: {err}");
        }
        assert!(Instant::now() < deadline, "vitrine did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}
