//! The real `leadrouter` binary: CLI help, generated admin token, demo market, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_leadrouter");

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let flags = [
        "--config",
        "--listen",
        "--ops-listen",
        "--grpc-listen",
        "--data-dir",
        "--admin-token",
        "--redis",
        "--buyer-ca-file",
    ];
    for flag in flags {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let envs = [
        "LEADROUTER_LISTEN",
        "LEADROUTER_OPS_LISTEN",
        "LEADROUTER_DATA_DIR",
        "LEADROUTER_ADMIN_TOKEN",
        "LEADROUTER_BUYER_CA_FILE",
    ];
    for env in envs {
        assert!(help.contains(env), "{env} missing from --help");
    }
}

#[test]
fn a_broken_config_file_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[[verticals]]\nname = \"solar\"\nmodel = \"lottery\"\n").unwrap();
    let output = Command::new(BINARY)
        .args(["--config", config.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lottery"), "{stderr}");
}

#[tokio::test]
async fn the_demo_starts_with_a_generated_token_sells_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (public, ops) = (free_port(), free_port());
    // No flags (settings from the environment only) on a fresh data dir: DESIGN §12's demo.
    let mut child = Command::new(BINARY)
        .env("LEADROUTER_LISTEN", format!("127.0.0.1:{public}"))
        .env("LEADROUTER_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .env("LEADROUTER_GRPC_LISTEN", "127.0.0.1:0")
        .env("LEADROUTER_DATA_DIR", dir.path())
        .env_remove("LEADROUTER_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());

    wait_ready(ops).await;
    let client = client();

    let token_path = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&token_path).unwrap().trim().to_string();
    assert!(token.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let server =
        External { base: format!("http://127.0.0.1:{public}"), ops: format!("http://127.0.0.1:{ops}"), client };
    let sold = server
        .post_json(
            "/v1/leads",
            "demo-supplier-key-solarportal",
            &json!({"vertical": "solar", "first_name": "Jan", "last_name": "Meyer", "email": "jan@example.com",
                    "phone": "040 1234567", "zip": "20095", "country": "DE", "fields": {"roof_type": "flat"}}),
        )
        .await;
    assert_eq!(sold["status"], "sold", "{sold}");
    assert_eq!(sold["payout"], "24.60", "60% of the Hamburg installer's 41.00");
    assert_eq!(server.admin_status(&token).await, 200);
    assert_eq!(server.admin_status("wrong-token-wrong-token").await, 401);
    // A process of its own, so its gauges are exactly this server's: 4 buyers, 1 supplier,
    // 2 opening top-ups and the sale on the ledger; nothing waiting in the outbox.
    let page = server.metrics().await;
    assert_eq!(metric(&page, "leadrouter_ledger_sequence", &[]), 8.0, "{page}");
    assert_eq!(metric(&page, "leadrouter_outbox_pending", &[]), 0.0);
    assert_eq!(metric(&page, "leadrouter_sales_total", &[("vertical", "solar")]), 1.0);

    #[cfg(unix)]
    {
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status}");
        let log = lines.join().unwrap().join("\n");
        assert!(log.contains("public API listening") && log.contains("stopped"), "{log}");
        for pii in ["jan@example.com", "Meyer", "1234567"] {
            assert!(!log.contains(pii), "the log contains PII ({pii}):\n{log}");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
    }
}

struct External {
    base: String,
    ops: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl External {
    async fn post_json(&self, path: &str, key: &str, body: &serde_json::Value) -> serde_json::Value {
        use http_body_util::BodyExt;
        let request = hyper::Request::post(format!("{}{}", self.base, path))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    async fn metrics(&self) -> String {
        use http_body_util::BodyExt;
        let request = hyper::Request::get(format!("{}/metrics", self.ops)).body(Default::default()).unwrap();
        let response = self.client.request(request).await.unwrap();
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    async fn admin_get(&self, path: &str) -> serde_json::Value {
        use http_body_util::BodyExt;
        let request = hyper::Request::get(format!("{}{}", self.ops, path))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Default::default())
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    async fn admin_status(&self, token: &str) -> u16 {
        let request = hyper::Request::get(format!("{}/admin/v1/verticals", self.ops))
            .header("authorization", format!("Bearer {token}"))
            .body(Default::default())
            .unwrap();
        self.client.request(request).await.unwrap().status().as_u16()
    }
}

/// Hardening #3: forgetting `--config` used to serve the public demo market, its keys and
/// its opening top-ups written to the ledger for good.
#[tokio::test]
async fn without_config_the_market_starts_empty_and_the_demo_runs_only_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let (public, ops) = (free_port(), free_port());
    let mut child = Command::new(BINARY)
        .args(["--data-dir", dir.path().to_str().unwrap(), "--admin-token", ADMIN_TOKEN])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--grpc-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    wait_ready(ops).await;
    let server = External {
        base: format!("http://127.0.0.1:{public}"),
        ops: format!("http://127.0.0.1:{ops}"),
        client: client(),
    };
    let refused = server.post_json("/v1/leads", "demo-supplier-key-solarportal", &json!({"vertical": "solar"})).await;
    assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    let buyers = server.admin_get("/admin/v1/buyers").await;
    assert_eq!(buyers["buyers"], json!([]), "an empty market");
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "leadrouter_ledger_sequence", &[]), 0.0, "nothing written to the ledger");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    child.wait().unwrap();
    let logged = lines.join().unwrap().join("\n");
    assert!(logged.contains("no --config"), "{logged}");
    assert!(!logged.contains("demo-supplier-key"), "no demo key in the log: {logged}");

    // The demo never takes over a data dir an operator's market used.
    let output = Command::new(BINARY)
        .args(["--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--ops-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "demo"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds another market"), "{output:?}");
}

/// Hardening #17: a config error names the file, the object, the field and the line, with
/// no backtrace; a start that fails writes no journal and no token.
#[test]
fn config_errors_say_where_and_a_failed_start_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let start = |config: &std::path::Path, data: &std::path::Path, listen: &str| {
        Command::new(BINARY)
            .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
            .args(["--listen", listen, "--ops-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .env("RUST_BACKTRACE", "1")
            .env_remove("LEADROUTER_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let untouched = |data: &std::path::Path| {
        assert!(!data.join("journal").exists(), "no journal");
        assert!(!data.join("admin-token").exists(), "no token");
    };

    let typed = dir.path().join("typed.toml");
    std::fs::write(&typed, "[[verticals]]\nname = \"solar\"\nmodel = \"ping_post\"\ntmax_ms = \"fast\"\n").unwrap();
    let data = dir.path().join("typed-data");
    let output = start(&typed, &data, "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for part in ["typed.toml", "line 4", "verticals[0].tmax_ms", "fast"] {
        assert!(stderr.contains(part), "{part} missing: {stderr}");
    }
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    untouched(&data);

    let dangling = dir.path().join("dangling.toml");
    let config = "[[verticals]]\nname = \"solar\"\nmodel = \"ping_post\"\n\n[[campaigns]]\nid = \"c7\"\nbuyer_id = \"nobody\"\nvertical = \"solar\"\npricing = { type = \"fixed\", price = \"10.00\" }\ndelivery = { mode = \"pull\" }\n";
    std::fs::write(&dangling, config).unwrap();
    let data = dir.path().join("dangling-data");
    let output = start(&dangling, &data, "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for part in ["dangling.toml", "line 6", "campaign \"c7\"", "buyer_id", "unknown buyer"] {
        assert!(stderr.contains(part), "{part} missing: {stderr}");
    }

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fine = dir.path().join("fine.toml");
    std::fs::write(&fine, "[[verticals]]\nname = \"solar\"\nmodel = \"ping_post\"\n").unwrap();
    let data = dir.path().join("busy-data");
    let output = start(&fine, &data, &busy.local_addr().unwrap().to_string());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"), "{output:?}");
    untouched(&data);
}
