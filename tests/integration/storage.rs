//! DESIGN §8.3 and §14: storage that a node can run on for months. A disk that fills is the
//! store's failure (503, never a false answer, nothing lost); damage is never silent; money
//! far past any input limit reads back; data files are private.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadrouter::clock::SystemClock;
use leadrouter::ledger::proto::{self, ledger_stream_client::LedgerStreamClient, SubscribeRequest};
use leadrouter::store::journal::segments;
use serde_json::{json, Value};

use crate::durability::toml_of;
use crate::harness::*;

/// A market whose every lead is sold to one pull buyer at 10.00 (no buyer server needed).
pub fn pull_market() -> Value {
    let mut pull = fixed_campaign("c1", "b1", "solar", "10.00", "http://127.0.0.1:9/unused");
    pull["delivery"] = json!({"mode": "pull"});
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [pull],
        "topups": [topup("b1", "1000000.00")],
    })
}

/// A filesystem of its own that fills up: a tmpfs of `kib` KiB mounted on a fresh dir.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// None (with the reason printed) where this machine does not let the tests mount.
    fn mount(kib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(SmallDisk { dir: Some(dir) }),
            _ => {
                eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root); this test did not run");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Gives the full disk room again (an operator freeing space).
    fn grow(&self, kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k"), "tmpfs"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Unmounts and hands back the (now empty) dir.
    fn unmount(mut self) -> tempfile::TempDir {
        let dir = self.dir.take().unwrap();
        let _ = Command::new("umount").arg(dir.path()).status();
        dir
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
    }
}

/// A fresh dir for the binary: the pull market's config file and where its data goes.
fn pull_node_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml_of(&pull_market())).unwrap();
    let data = dir.path().join("data");
    (dir, config, data)
}

/// The real binary, its output (logs, a failed start's message) kept in `<config>.log`.
fn spawn(config: &Path, data: &Path, ports: (u16, u16, u16), extra: &[&str]) -> Child {
    let (public, ops, grpc) = ports;
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(extra)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn ports() -> (u16, u16, u16) {
    (free_port(), free_port(), free_port())
}

/// `spawn` on fresh ports, ready (at most 30 s); started again on other ports when it exits
/// first (`started_ready`).
async fn spawn_ready(config: &Path, data: &Path, extra: &[&str]) -> (Child, (u16, u16, u16)) {
    started_ready((), |()| {
        let ports = ports();
        let mut child = spawn(config, data, ports, extra);
        async move {
            let log = || std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
            match ready_or_exited(&mut child, ports.1, log).await {
                Ok(()) => Ok((child, ports)),
                Err(exited) => Err(((), exited)),
            }
        }
    })
    .await
}

/// Waits for the child spawned with `config` to exit by itself; its exit code and output.
fn exited(mut child: Child, config: &Path, within: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), std::fs::read_to_string(config.with_extension("log")).unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A direct post with an `Idempotency-Key`; None when the node is gone.
async fn try_post_keyed(base: &str, key: &str, body: &Value) -> Option<(u16, Value)> {
    let request = hyper::Request::post(format!("{base}/v1/leads"))
        .header("authorization", format!("Bearer {SUPPLIER_KEY}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = client().request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&body).unwrap_or_default()))
}

pub async fn post_keyed(base: &str, key: &str, body: &Value) -> (u16, Value) {
    try_post_keyed(base, key, body).await.expect("the node answers")
}

/// Every event on the node's gRPC stream from the start: the lead ids of its sales.
async fn sales_on_stream(grpc: u16, last_sequence_at_least: u64) -> Vec<String> {
    let mut client = LedgerStreamClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let mut stream =
        client.subscribe(SubscribeRequest { after_sequence: 0, ..Default::default() }).await.unwrap().into_inner();
    let mut sales = Vec::new();
    let mut sequence = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(1_500), stream.message()).await;
        let Ok(event) = next else {
            assert!(sequence >= last_sequence_at_least, "the stream stalled at {sequence}");
            return sales;
        };
        let event = event.unwrap().expect("the stream stays open");
        assert_eq!(event.sequence, sequence + 1, "gap-free");
        sequence = event.sequence;
        if let Some(proto::ledger_event::Event::SaleSettled(sale)) = event.event {
            sales.push(sale.lead_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_that_fills_mid_load_gets_503s_never_a_false_answer_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount(1_536) else { return };
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(&config, toml_of(&pull_market())).unwrap();
    let (child, first) = spawn_ready(&config, disk.path(), &["--admin-token", ADMIN_TOKEN]).await;

    // Eight clients post distinct leads, each with its own Idempotency-Key, until the node
    // refuses or goes away.
    let base = format!("http://127.0.0.1:{}", first.0);
    let workers: Vec<_> = (0..8u32)
        .map(|worker| {
            let base = base.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..5_000u32 {
                    let key = format!("k-{worker}-{n}");
                    let body = lead("solar", worker * 100_000 + n);
                    let request = tokio::time::timeout(Duration::from_secs(20), try_post_keyed(&base, &key, &body));
                    let Ok(Some((status, answer))) = request.await else { break };
                    let refused = status == 503;
                    answers.push((key, body, status, answer));
                    if refused {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    let config_path = config.clone();
    let exit = tokio::task::spawn_blocking(move || exited(child, &config_path, Duration::from_secs(120)));
    let (code, stderr) = exit.await.unwrap();
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap_or_default());
    }
    assert_eq!(code, Some(74), "a failed journal write ends the process for a restart into recovery: {stderr}");
    assert!(stderr.contains("journal write failed"), "{stderr}");

    let sold: Vec<String> = answers
        .iter()
        .filter(|(_, _, status, answer)| *status == 200 && answer["status"] == "sold")
        .map(|(_, _, _, answer)| answer["lead_id"].as_str().unwrap().to_string())
        .collect();
    let refused: Vec<&(String, Value, u16, Value)> = answers.iter().filter(|(_, _, s, _)| *s == 503).collect();
    // About a thousand sales fit; under a loaded suite some clients give up on a slow
    // answer (20 s) before the disk fills, so only "well after the start" is asserted.
    assert!(sold.len() > 20, "the disk filled under load, not at once: {} sold", sold.len());
    assert!(!refused.is_empty(), "the full disk was noticed");
    for (key, _, status, answer) in &answers {
        assert!(
            (*status == 200 && answer["status"] == "sold") || *status == 503,
            "only sold or 503, never a rejection for our own failure: {key} {status} {answer}"
        );
    }

    // Room again: the restarted node has every sale it answered, once, and charged.
    disk.grow(65_536);
    let (child, second) = spawn_ready(&config, disk.path(), &["--admin-token", ADMIN_TOKEN]).await;
    let on_stream = sales_on_stream(second.2, 1).await;
    let unique: HashSet<&String> = on_stream.iter().collect();
    assert_eq!(unique.len(), on_stream.len(), "no sale twice");
    for lead_id in &sold {
        assert!(unique.contains(lead_id), "{lead_id} was answered sold but is gone after the restart");
    }
    let balance = get(second.0, "/v1/buyer/balance", &buyer_key("b1")).await;
    let expected = rust_decimal::Decimal::new(100_000_000 - 1_000 * on_stream.len() as i64, 2);
    assert_eq!(balance["balance"], expected.to_string(), "every sale on disk is charged, nothing else");

    // A request refused with 503 was not stored under its key: its retry runs and sells.
    let (key, body, _, _) = refused[0];
    let base = format!("http://127.0.0.1:{}", second.0);
    let (status, retried) = post_keyed(&base, key, body).await;
    assert_eq!((status, retried["status"].as_str()), (200, Some("sold")), "{retried}");
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    disk.unmount();
}

pub async fn get(public: u16, path: &str, key: &str) -> Value {
    let request = hyper::Request::get(format!("http://127.0.0.1:{public}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn after_a_failed_write_the_node_is_unready_and_refuses_everything_with_503() {
    let Some(disk) = SmallDisk::mount(512) else { return };
    let data = tempfile::TempDir::new_in(disk.path()).unwrap();
    let server = start_in(pull_market(), Arc::new(SystemClock), data).await;
    let mut n = 0;
    let refused = loop {
        let answer = server.direct(&lead("solar", n)).await;
        if answer.status != 200 {
            break answer;
        }
        assert_eq!(answer.json["status"], "sold", "{}", answer.json);
        n += 1;
        assert!(n < 10_000, "a 512 KiB disk never filled");
    };
    assert_eq!(refused.status, 503, "{}", refused.json);
    let ready = server.send("GET", &format!("{}/readyz", server.ops), &[], "").await;
    assert_eq!((ready.status, ready.json["status"].as_str()), (503, Some("storage_failed")));
    assert_eq!(server.ping(&ping_body("solar")).await.status, 503, "no ping makes holds it cannot sell");
    assert_eq!(server.direct(&lead("solar", 999_999)).await.status, 503);
    let topped = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "5.00", "reference": "wire-1"})))
        .await;
    assert_eq!(topped.status, 503, "{}", topped.json);
    server.stop().await;
    disk.unmount();
}

/// The binary sells `count` leads with 4 KiB segments, then stops cleanly.
async fn sell_and_stop(config: &Path, data: &Path, count: u32) {
    let extra = ["--admin-token", ADMIN_TOKEN, "--journal-segment-bytes", "4096", "--checkpoint-every-ms", "0"];
    let (mut child, (public, _, _)) = spawn_ready(config, data, &extra).await;
    let base = format!("http://127.0.0.1:{public}");
    for n in 0..count {
        let (status, answer) = post_keyed(&base, &format!("s-{n}"), &lead("solar", n)).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("sold")), "{answer}");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean stop: {status:?}");
}

fn segment_paths(data: &Path) -> Vec<PathBuf> {
    segments::list(&data.join("journal")).unwrap().into_iter().map(|s| s.path).collect()
}

/// `leadrouter journal verify` on `data`: its exit code and output.
fn verify(data: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["journal", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_a_flipped_bit_is_never_silent() {
    let (_dir, config, data) = pull_node_dir();
    sell_and_stop(&config, &data, 40).await;
    let listed = segment_paths(&data);
    assert!(listed.len() >= 5, "40 sales fill several 4 KiB segments: {}", listed.len());
    assert!(data.join("journal/checkpoint").exists(), "sealed segments are checkpointed");
    let (code, out) = verify(&data);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok"), "{out}");

    // A crash in the middle of a write: half a batch at the end of the newest segment.
    let newest = listed.last().unwrap();
    let length = std::fs::metadata(newest).unwrap().len();
    let mut torn = b"LRJ2\x00\x10\x00\x00".to_vec();
    torn.extend_from_slice(&[7u8; 200]);
    let mut file = std::fs::OpenOptions::new().append(true).open(newest).unwrap();
    std::io::Write::write_all(&mut file, &torn).unwrap();
    drop(file);
    let (code, out) = verify(&data);
    assert_eq!(code, Some(0), "a torn tail is no damage: {out}");
    assert!(out.contains("torn tail"), "{out}");
    let (mut child, (_, _, grpc)) = spawn_ready(&config, &data, &["--admin-token", ADMIN_TOKEN]).await;
    assert_eq!(std::fs::metadata(newest).unwrap().len(), length, "the torn write was cut");
    assert_eq!(sales_on_stream(grpc, 40).await.len(), 40, "every sale is still there");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();

    // One flipped bit in a sealed segment the checkpoint covers: the node starts (the
    // checkpoint holds every sale) and says so loudly; verify names it and exits 1.
    let sealed = &segment_paths(&data)[1];
    let name = sealed.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(sealed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(sealed, &bytes).unwrap();
    let (code, out) = verify(&data);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("DAMAGE: {name} at offset")), "{out}");
    let (mut child, (public, _, _)) = spawn_ready(&config, &data, &["--admin-token", ADMIN_TOKEN]).await;
    let balance = get(public, "/v1/buyer/balance", &buyer_key("b1")).await;
    assert_eq!(balance["balance"], "999600.00", "all 40 sales, from the checkpoint");
    let log = config.with_extension("log");
    eventually("the damage is logged", || std::fs::read_to_string(&log).unwrap().contains("journal damage")).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains(&name), "the log names the file: {logged}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();

    // Without a checkpoint to prove the sales, the same damage stops the start.
    std::fs::remove_file(data.join("journal/checkpoint")).unwrap();
    let child = spawn(&config, &data, ports(), &["--admin-token", ADMIN_TOKEN]);
    let (code, output) = exited(child, &config, Duration::from_secs(30));
    assert_ne!(code, Some(0), "a damaged journal never starts as if nothing happened");
    assert!(output.contains(&name) && output.contains("at offset"), "the message names file and offset: {output}");
    assert_eq!(std::fs::read(sealed).unwrap(), bytes, "nothing was cut from a damaged segment");
}

#[tokio::test]
async fn balances_far_above_the_input_limit_survive_a_restart_exactly() {
    let server = start(pull_market()).await;
    for n in 0..3 {
        let reference = format!("wire-{n}");
        let body = json!({"amount": "1000000000.00", "reference": reference});
        let topped = server.admin("POST", "/admin/v1/buyers/b1/topups", Some(&body)).await;
        assert_eq!(topped.status, 201, "{}", topped.json);
    }
    let too_much = json!({"amount": "1000000000.01", "reference": "wire-x"});
    assert_eq!(server.admin("POST", "/admin/v1/buyers/b1/topups", Some(&too_much)).await.status, 422);
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "3000999990.00");
    let data = server.stop().await;
    let server = start_in(pull_market(), Arc::new(SystemClock), data).await;
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "3000999990.00", "read back exactly");
    assert_eq!(server.direct(&lead("solar", 2)).await.json["status"], "sold", "and the node sells on");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "3000999980.00");
}

#[cfg(unix)]
#[tokio::test]
async fn data_files_are_private_and_loose_ones_are_narrowed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (_dir, config, data) = pull_node_dir();
    let (mut child, (public, _, _)) = spawn_ready(&config, &data, &[]).await;
    let (status, _) = post_keyed(&format!("http://127.0.0.1:{public}"), "m-1", &lead("solar", 1)).await;
    assert_eq!(status, 200);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin-token")), 0o600);
    assert_eq!(mode(&data.join("journal")), 0o700);
    let segment = segment_paths(&data).remove(0);
    assert_eq!(mode(&segment), 0o600, "the journal holds keys, secrets and PII");

    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, _) = spawn_ready(&config, &data, &[]).await;
    assert_eq!((mode(&segment), mode(&data)), (0o600, 0o700), "narrowed at start");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every kind of state a restart must rebuild: pull and async sales, dedup, idempotency,
/// an external id, a top-up, an admin change, a return.
fn rich_market(sink: &MockBuyer) -> Value {
    let mut market = pull_market();
    let mut async_campaign = fixed_campaign("c-async", "b2", "roofing", "20.00", &sink.post_url());
    async_campaign["delivery"] = json!({"mode": "webhook_async", "url": sink.post_url()});
    async_campaign["returns_require_approval"] = json!(true);
    market["verticals"].as_array_mut().unwrap().push(vertical("roofing", "bidding"));
    market["buyers"].as_array_mut().unwrap().push(buyer("b2"));
    market["campaigns"].as_array_mut().unwrap().push(async_campaign);
    market["campaigns"][0]["dedup_days"] = json!(30);
    market["topups"].as_array_mut().unwrap().push(topup("b2", "500.00"));
    market
}

#[tokio::test]
async fn a_restart_from_a_checkpoint_rebuilds_everything_without_the_segments_it_covers() {
    let sink = mock_buyer(|_, _| accept()).await;
    let small = leadrouter::store::journal::JournalOptions { segment_bytes: 4_096 };
    let server =
        start_with_journal(rich_market(&sink), Arc::new(SystemClock), tempfile::tempdir().unwrap(), small).await;
    let mut keyed = lead("solar", 0);
    keyed["external_id"] = json!("portal-0");
    let (_, first_answer) = post_keyed(&server.base, "key-0", &keyed).await;
    assert_eq!(first_answer["status"], "sold");
    for n in 1..40 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    let roofing = server.direct(&lead("roofing", 500)).await;
    assert_eq!(roofing.json["status"], "sold");
    let sale_id = server.running.router.sales().all().into_iter().find(|s| s.buyer_id == "b2").unwrap().sale_id.clone();
    let returned =
        server.supplier("/v1/returns", &buyer_key("b2"), &json!({"sale_id": sale_id, "reason": "other"})).await;
    assert_eq!(returned.status, 201, "{}", returned.json);
    let topped = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "5.00", "reference": "wire-1"})))
        .await;
    assert_eq!(topped.status, 201);
    let mut repriced = server.admin("GET", "/admin/v1/campaigns/c1", None).await.json;
    repriced["pricing"]["price"] = json!("11.00");
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c1", Some(&repriced)).await.status, 200);
    for n in 40..60 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    assert_eq!(fetch_all(&server, "b1", 0).await.len(), 60);
    // The buyer has taken the first 45; the rest and 40 more wait (in the newer segments).
    assert_eq!(fetch_all(&server, "b1", 45).await.len(), 15);
    for n in 60..100 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    let pulled = fetch_all(&server, "b1", 45).await;
    assert_eq!(pulled.len(), 55);
    let before = (server.balance(&buyer_key("b1")).await, server.balance(&buyer_key("b2")).await);
    let checkpointed = || {
        let newest = segments::list(&server.data.path().join("journal")).unwrap().last().unwrap().number;
        let file = std::fs::read(server.data.path().join("journal/checkpoint")).unwrap_or_default();
        let covered = serde_json::from_slice::<Value>(file.get(16..).unwrap_or_default()).ok();
        covered.is_some_and(|c| c["segment"].as_u64() == Some(newest))
    };
    eventually("every sealed segment is checkpointed", checkpointed).await;
    let data = server.stop().await;

    // Retention's effect: the covered segments are gone, but for those holding leads a
    // buyer has not taken yet; only the checkpoint has the rest.
    let journal = data.path().join("journal");
    let checkpoint = leadrouter::checkpoints::load(&journal).unwrap().unwrap();
    let covered = checkpoint.segment;
    let first_waiting = checkpoint
        .state
        .pull
        .iter()
        .flat_map(|queue| queue.waiting.unpack().into_iter().map(|(_, place)| place.segment))
        .min()
        .unwrap_or(u64::MAX);
    let removable = covered.min(first_waiting);
    assert!(removable > 3, "several segments are covered and hold nothing waiting: {removable}");
    for segment in segments::list(&journal).unwrap().into_iter().filter(|s| s.number < removable) {
        std::fs::remove_file(&segment.path).unwrap();
    }
    let server = start_with_journal(rich_market(&sink), Arc::new(SystemClock), data, small).await;
    let after = (server.balance(&buyer_key("b1")).await, server.balance(&buyer_key("b2")).await);
    assert_eq!(after, before, "balances and holds as before the restart");
    assert_eq!(fetch_all(&server, "b1", 45).await, pulled, "the pull queue, lead for lead");
    let (_, replay) = post_keyed(&server.base, "key-0", &keyed).await;
    assert_eq!(replay, first_answer, "the idempotent answer");
    let mut again = lead("solar", 999);
    again["external_id"] = json!("portal-0");
    assert_eq!(server.direct(&again).await.json["error"]["code"], "duplicate_external_id");
    assert_eq!(server.direct(&lead("solar", 7)).await.json["reason"], "duplicate", "dedup keys");
    let pending = server.admin("GET", "/admin/v1/returns?status=pending", None).await;
    assert_eq!(pending.json["returns"].as_array().unwrap().len(), 1, "{}", pending.json);
    let again = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "5.00", "reference": "wire-1"})))
        .await;
    assert_eq!(again.status, 409, "the top-up reference");
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c1", None).await.json["pricing"]["price"], "11.00");
    assert_eq!(server.direct(&lead("solar", 100)).await.json["status"], "sold", "and it sells on");
}

/// Every lead waiting for a pull buyer after cursor `after` (which acknowledges the ones
/// before).
async fn fetch_all(server: &TestServer, buyer: &str, after: u64) -> Vec<Value> {
    let url = format!("{}/v1/buyer/leads?limit=1000&after={after}", server.base);
    let answer = server.send("GET", &url, &[("authorization", &format!("Bearer {}", buyer_key(buyer)))], "").await;
    answer.json["leads"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_around_checkpoints_under_load_loses_no_sale_answered_sold() {
    let (_dir, config, data) = pull_node_dir();
    let mut answered_sold = HashSet::new();
    // Small segments: a checkpoint every few dozen sales, so kills land before, during and
    // after writing one.
    let extra = ["--admin-token", ADMIN_TOKEN, "--journal-segment-bytes", "16384", "--checkpoint-every-ms", "0"];
    for round in 0..4u32 {
        let (mut child, (public, _, _)) = spawn_ready(&config, &data, &extra).await;
        let sold: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
        let base = format!("http://127.0.0.1:{public}");
        let workers: Vec<_> = (0..6u32)
            .map(|worker| {
                let (base, sold) = (base.clone(), Arc::clone(&sold));
                tokio::spawn(async move {
                    for n in 0..100_000u32 {
                        let key = format!("r{round}-w{worker}-{n}");
                        let body = lead("solar", round * 10_000_000 + worker * 1_000_000 + n);
                        let Some((_, answer)) = try_post_keyed(&base, &key, &body).await else { break };
                        if answer["status"] == "sold" {
                            sold.lock().push(answer["lead_id"].as_str().unwrap().to_string());
                        }
                    }
                })
            })
            .collect();
        let enough = 60 + 40 * round as usize;
        eventually("the load is under way", || sold.lock().len() >= enough).await;
        // A different moment each round, relative to the checkpoint in progress.
        tokio::time::sleep(Duration::from_millis(u64::from(round) * 37)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for worker in workers {
            let _ = worker.await;
        }
        answered_sold.extend(sold.lock().iter().cloned());
    }
    let (mut child, (public, _, grpc)) = spawn_ready(&config, &data, &extra).await;
    let on_stream = sales_on_stream(grpc, 1).await;
    let unique: HashSet<&String> = on_stream.iter().collect();
    assert_eq!(unique.len(), on_stream.len(), "no sale twice");
    for lead_id in &answered_sold {
        assert!(unique.contains(lead_id), "{lead_id} was answered sold but is gone");
    }
    let balance = get(public, "/v1/buyer/balance", &buyer_key("b1")).await;
    let expected = rust_decimal::Decimal::new(100_000_000 - 1_000 * on_stream.len() as i64, 2);
    assert_eq!(balance["balance"], expected.to_string(), "every sale charged once across four crashes");
    let pulled = get(public, "/v1/buyer/leads?limit=1000", &buyer_key("b1")).await;
    assert_eq!(pulled["leads"].as_array().unwrap().len(), on_stream.len().min(1000), "every pull lead is waiting");
    assert!(data.join("journal/checkpoint").exists());
    let (code, out) = verify(&data);
    assert_eq!(code, Some(0), "{out}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_longer_than_the_sales_kept_in_memory_restores_every_pull_lead() {
    let server = Arc::new(start(pull_market()).await);
    let total = leadrouter::engine::memory::sales::RECENT_SALES_MAX as u32 + 500;
    let workers: Vec<_> = (0..8u32)
        .map(|worker| {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                for n in (worker..total).step_by(8) {
                    assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(
        server.running.router.sales().len(),
        leadrouter::engine::memory::sales::RECENT_SALES_MAX,
        "memory is capped"
    );
    let server = Arc::into_inner(server).unwrap();
    let data = server.stop().await;
    let server = start_in(pull_market(), Arc::new(SystemClock), data).await;
    let mut cursor = 0;
    let mut waiting = 0;
    loop {
        let url = format!("{}/v1/buyer/leads?limit=1000&after={cursor}", server.base);
        let page = server.send("GET", &url, &[("authorization", &format!("Bearer {}", buyer_key("b1")))], "").await;
        let leads = page.json["leads"].as_array().unwrap();
        if leads.is_empty() {
            break;
        }
        waiting += leads.len();
        cursor = page.json["next"].as_str().unwrap().parse().unwrap();
    }
    assert_eq!(waiting, total as usize, "every pull lead of the replayed tail, not only the recent sales'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_serving_starts_and_holds_every_sale_it_copied() {
    let (dir, config, data) = pull_node_dir();
    let extra = ["--admin-token", ADMIN_TOKEN, "--journal-segment-bytes", "16384", "--checkpoint-every-ms", "0"];
    let (mut child, (public, _, _)) = spawn_ready(&config, &data, &extra).await;
    let sold: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base = format!("http://127.0.0.1:{public}");
    let workers: Vec<_> = (0..4u32)
        .map(|worker| {
            let (base, sold, stop) = (base.clone(), Arc::clone(&sold), Arc::clone(&stop));
            tokio::spawn(async move {
                for n in 0..100_000u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let Some((_, answer)) =
                        try_post_keyed(&base, &format!("b-{worker}-{n}"), &lead("solar", worker * 1_000_000 + n)).await
                    else {
                        break;
                    };
                    if answer["status"] == "sold" {
                        sold.lock().push(answer["lead_id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect();
    eventually("the load is under way", || sold.lock().len() >= 150).await;
    let answered_before_the_copy: Vec<String> = sold.lock().clone();
    let copy = dir.path().join("copy");
    let output = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["backup", "--data-dir", data.to_str().unwrap(), "--to", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sold_before_the_copy_ended = sold.lock().len();
    eventually("sales go on after the copy", || sold.lock().len() >= sold_before_the_copy_ended + 50).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (code, out) = verify(&copy);
    assert_eq!(code, Some(0), "the copy verifies: {out}");
    let (mut child, (public, _, grpc)) = spawn_ready(&config, &copy, &extra).await;
    let in_copy = sales_on_stream(grpc, 1).await;
    let all_sold: HashSet<String> = sold.lock().iter().cloned().collect();
    let copied: HashSet<&String> = in_copy.iter().collect();
    for lead_id in &answered_before_the_copy {
        assert!(copied.contains(lead_id), "{lead_id} was sold before the backup began but is not in it");
    }
    assert!(in_copy.len() < all_sold.len(), "and not the ones after it");
    assert!(in_copy.iter().all(|lead| all_sold.contains(lead)), "only sales that were made");
    let balance = get(public, "/v1/buyer/balance", &buyer_key("b1")).await;
    let expected = rust_decimal::Decimal::new(100_000_000 - 1_000 * in_copy.len() as i64, 2);
    assert_eq!(balance["balance"], expected.to_string(), "the copy's balance matches its sales");
    child.kill().unwrap();
    child.wait().unwrap();
}
