//! The real `leadrouter` binary as a child process on free loopback ports, killed on drop.
//! Shared by the test targets that need a router process of its own (the integration
//! tests' nodes on Redis, `cluster.rs`, and the browser tests), each including this file
//! with `#[path]`; it names only dependencies every test target has.
#![allow(dead_code)] // each target uses a part

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub const BINARY: &str = env!("CARGO_BIN_EXE_leadrouter");

/// A loopback port that was free a moment ago (for a child process's listeners).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One router process: its public, ops and gRPC listeners on loopback, its data dir (and
/// the config it was written, when `start_with_config` wrote one); its output goes to
/// `<data dir>/node.log`.
pub struct RouterProcess {
    child: Child,
    pub public: u16,
    pub ops: u16,
    pub grpc: u16,
    data: Option<tempfile::TempDir>,
    _config: Option<tempfile::TempDir>,
}

impl RouterProcess {
    /// Starts the binary on `config` in `data` (a restart when an earlier process left its
    /// data there) with `--admin-token admin_token` and `more` flags.
    pub fn spawn(config: &Path, data: tempfile::TempDir, admin_token: &str, more: &[&str]) -> RouterProcess {
        let (public, ops, grpc) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(data.path().join("node.log")).expect("a log file");
        let child = Command::new(BINARY)
            .args(["--config", config.to_str().unwrap(), "--data-dir", data.path().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}"), "--admin-token", admin_token])
            .args(more)
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("the router binary starts");
        RouterProcess { child, public, ops, grpc, data: Some(data), _config: None }
    }

    /// Writes `toml` as the config file (into a temp dir the process keeps) and starts on
    /// it in a fresh data dir.
    pub fn start_with_config(toml: &str, admin_token: &str, more: &[&str]) -> RouterProcess {
        let (dir, config) = write_config(toml);
        let mut process = RouterProcess::spawn(&config, tempfile::tempdir().expect("a data dir"), admin_token, more);
        process._config = Some(dir);
        process
    }

    /// `start_with_config`, ready (see `start_ready`).
    pub async fn start_ready_with_config(toml: &str, admin_token: &str, more: &[&str]) -> RouterProcess {
        let (dir, config) = write_config(toml);
        let data = tempfile::tempdir().expect("a data dir");
        let mut process =
            RouterProcess::start_ready(data, |data| RouterProcess::spawn(&config, data, admin_token, more)).await;
        process._config = Some(dir);
        process
    }

    /// The process `start` starts on `data`, ready; started again (on other ports, on the
    /// same data) when it exits before it is ready, as it does when another process took
    /// one of its ports between `free_port` and its bind. Three exits in a row fail the
    /// test with the last one's log.
    pub async fn start_ready(
        data: tempfile::TempDir,
        mut start: impl FnMut(tempfile::TempDir) -> RouterProcess,
    ) -> RouterProcess {
        started_ready(data, |data| {
            let mut process = start(data);
            async move {
                match process.ready_or_exited().await {
                    Ok(()) => Ok(process),
                    Err(exited) => Err((process.kill(), exited)),
                }
            }
        })
        .await
    }

    /// `http://127.0.0.1:<public port>`, the public API's base URL.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.public)
    }

    /// `http://127.0.0.1:<ops port>`, the ops listener's base URL.
    pub fn ops_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ops)
    }

    /// Waits (at most 30 s) until the process answers `/readyz` with 200; one that exits or
    /// stays unready fails the test with what it logged.
    pub async fn until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.readiness().await != Some(200) {
            assert!(Instant::now() < deadline, "node {} did not become ready; its log:\n{}", self.ops, self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `until_ready`, but a process that exited says so with what it logged instead of
    /// failing the test, so the caller may start another.
    pub async fn ready_or_exited(&mut self) -> Result<(), String> {
        let log = self.data.as_ref().map(|data| data.path().join("node.log"));
        ready_or_exited(&mut self.child, self.ops, || read_log(log.as_deref())).await
    }

    /// The status of `/readyz`, or `None` while nothing answers.
    pub async fn readiness(&self) -> Option<u16> {
        readiness(self.ops).await
    }

    /// What the process logged, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.data.as_ref().map(|data| data.path().join("node.log")).as_deref())
    }

    /// Stops the process as an operator does (`SIGTERM`: it finishes its requests and
    /// shuts down cleanly) and waits at most 30 s for it to exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("the process's status").is_none() {
            assert!(Instant::now() < deadline, "node {} did not stop within 30 s:\n{}", self.ops, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`; answers the data dir, for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data.take().expect("a data dir")
    }
}

/// The status of `/readyz` on `ops_port`, or `None` while nothing answers.
pub async fn readiness(ops_port: u16) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request =
        hyper::Request::get(format!("http://127.0.0.1:{ops_port}/readyz")).body(Full::new(Bytes::new())).unwrap();
    client.request(request).await.ok().map(|response| response.status().as_u16())
}

/// Waits (at most 30 s) until the binary `child` answers `/readyz` on `ops_port` with 200;
/// one that exits first says so with what it logged (`log`) instead of failing the test,
/// so the caller may start another. One that stays unready fails the test.
pub async fn ready_or_exited(child: &mut Child, ops_port: u16, log: impl Fn() -> String) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while readiness(ops_port).await != Some(200) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("node {ops_port} exited ({status}):\n{}", log()));
        }
        assert!(Instant::now() < deadline, "node {ops_port} did not become ready; its log:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts a binary from `state` until one is ready: `start` answers it ready, or gives
/// `state` back with what the one that exited logged (as a binary does when another process
/// took one of its ports between `free_port` and its bind), and is called again, on other
/// ports. Three exits in a row fail the test with the last log.
pub async fn started_ready<S, P, Ready>(mut state: S, mut start: impl FnMut(S) -> Ready) -> P
where
    Ready: std::future::Future<Output = Result<P, (S, String)>>,
{
    let mut last = String::new();
    for _ in 0..3 {
        match start(state).await {
            Ok(started) => return started,
            Err((back, exited)) => {
                eprintln!("a router exited before it was ready; starting another:\n{exited}");
                last = exited;
                state = back;
            }
        }
    }
    panic!("three routers in a row exited before they were ready; the last:\n{last}")
}

fn read_log(path: Option<&Path>) -> String {
    path.and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default()
}

/// `toml` written as `leadrouter.toml` in a new temp dir: the dir and the file's path.
fn write_config(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a config dir");
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, toml).expect("the config file");
    (dir, config)
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
