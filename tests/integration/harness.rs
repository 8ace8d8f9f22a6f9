//! Test harness: the real server in-process on ephemeral ports, a plain HTTP client, and
//! real buyer HTTP servers whose behaviour each test scripts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use leadrouter::buyers::signature;
use leadrouter::clock::{Clock, ManualClock, SystemClock};
use leadrouter::domain::retry::RetryPolicy;
use leadrouter::server::{self, FileConfig, RunningServer, ServerOptions};
use leadrouter::store::journal::JournalOptions;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SUPPLIER_KEY: &str = "supplier-key-aaaaaaaaaaaa";
pub const OTHER_SUPPLIER_KEY: &str = "supplier-key-bbbbbbbbbbbb";
pub const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

/// Outbox retries in tests: 4 attempts, 25 ms doubling, so a dead letter takes ~150 ms.
pub const TEST_RETRY: RetryPolicy =
    RetryPolicy { base: Duration::from_millis(25), cap: Duration::from_millis(200), attempts_max: 4 };

pub struct TestServer {
    pub running: RunningServer,
    /// The server's data dir; removed when the test ends.
    pub data: tempfile::TempDir,
    pub base: String,
    pub ops: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn start(config: Value) -> TestServer {
    start_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn start_manual(config: Value, clock: ManualClock) -> TestServer {
    start_with_clock(config, Arc::new(clock)).await
}

async fn start_with_clock(config: Value, clock: Arc<dyn Clock>) -> TestServer {
    start_in(config, clock, tempfile::tempdir().expect("data dir")).await
}

/// Starts a server on an existing data dir (a restart).
pub async fn start_in(config: Value, clock: Arc<dyn Clock>, data: tempfile::TempDir) -> TestServer {
    start_with_journal(config, clock, data, JournalOptions::default()).await
}

/// `start_in` with the journal laid out as `journal` says (small segments, say).
pub async fn start_with_journal(
    config: Value,
    clock: Arc<dyn Clock>,
    data: tempfile::TempDir,
    journal: JournalOptions,
) -> TestServer {
    let config: FileConfig = serde_json::from_value(config).expect("test config");
    let options = ServerOptions {
        retry: TEST_RETRY,
        journal,
        ..ServerOptions::ephemeral(data.path().to_path_buf(), config, clock, ADMIN_TOKEN)
    };
    start_with(options, data).await
}

/// Starts a server as `options` say, on `data` (which the options name).
pub async fn start_with(options: ServerOptions, data: tempfile::TempDir) -> TestServer {
    let running = server::start(options).await.expect("server starts");
    let base = format!("http://{}", running.public_addr);
    let ops = format!("http://{}", running.ops_addr);
    TestServer { running, data, base, ops, client: client() }
}

/// An HTTP answer: status, headers, body as JSON (Null when not JSON) and raw.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub json: Value,
    pub raw: Bytes,
}

impl TestServer {
    /// Stops the server gracefully and hands back its data dir for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.running.shutdown().await;
        self.data
    }

    pub async fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = self.client.request(request).await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer { status, headers, json, raw }
    }

    pub async fn supplier(&self, path: &str, key: &str, body: &Value) -> Answer {
        let auth = format!("Bearer {key}");
        let url = format!("{}{}", self.base, path);
        self.send("POST", &url, &[("authorization", &auth), ("content-type", "application/json")], body.to_string())
            .await
    }

    pub async fn ping(&self, body: &Value) -> Answer {
        self.supplier("/v1/ping", SUPPLIER_KEY, body).await
    }

    pub async fn post(&self, ping_id: &str, lead: &Value) -> Answer {
        self.supplier("/v1/post", SUPPLIER_KEY, &json!({"ping_id": ping_id, "lead": lead})).await
    }

    pub async fn direct(&self, lead: &Value) -> Answer {
        self.supplier("/v1/leads", SUPPLIER_KEY, lead).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let url = format!("{}{}", self.ops, path);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send(method, &url, &[("authorization", &auth), ("content-type", "application/json")], body).await
    }

    pub async fn balance(&self, buyer_key: &str) -> Value {
        let auth = format!("Bearer {buyer_key}");
        let url = format!("{}/v1/buyer/balance", self.base);
        let answer = self.send("GET", &url, &[("authorization", &auth)], Bytes::new()).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        answer.json
    }

    pub async fn metrics(&self) -> String {
        let answer = self.send("GET", &format!("{}/metrics", self.ops), &[], Bytes::new()).await;
        String::from_utf8(answer.raw.to_vec()).unwrap()
    }

    pub async fn trace(&self, kind: &str, id: &str) -> Value {
        let answer = self.admin("GET", &format!("/admin/v1/{kind}/{id}/trace"), None).await;
        assert_eq!(answer.status, 200, "trace of {id}: {}", answer.json);
        answer.json
    }
}

/// The value of one metric line (`name{labels} value`) whose labels contain all of `labels`.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ------------------------------------------------------------------------ real binary

pub use crate::router_process::{free_port, ready_or_exited, started_ready};

/// Waits (at most 30 s) until a server's ops listener answers `/readyz` with 200.
pub async fn wait_ready(ops_port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !is_ready(ops_port).await {
        assert!(std::time::Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a server's ops listener answers `/readyz` with 200 now.
pub async fn is_ready(ops_port: u16) -> bool {
    crate::router_process::readiness(ops_port).await == Some(200)
}

// ------------------------------------------------------------------------ mock buyers

/// What a mock buyer does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Json(u16, Value),
    Status(u16),
    /// Never answers.
    Hang,
    After(Duration, Box<Reply>),
}

pub fn bid(amount: &str) -> Reply {
    Reply::Json(200, json!({ "bid": amount }))
}

pub fn accept() -> Reply {
    Reply::Json(200, json!({ "accepted": true }))
}

pub fn reject(reason: &str) -> Reply {
    Reply::Json(200, json!({ "accepted": false, "reason": reason }))
}

type Script = dyn Fn(&str, &Value) -> Reply + Send + Sync;

/// A real HTTP buyer endpoint: `/ping` and `/post` answer as its script says; every request
/// is recorded and its signature checked.
pub struct MockBuyer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
    pub bad_signatures: Arc<AtomicUsize>,
}

impl MockBuyer {
    pub fn ping_url(&self) -> String {
        format!("{}/ping", self.url)
    }

    pub fn post_url(&self) -> String {
        format!("{}/post", self.url)
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests.lock().iter().filter(|(p, _)| p == path).count()
    }

    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.requests.lock().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
    }
}

/// A buyer endpoint that answers 503 until the returned flag is set, then 200: a buyer's
/// outage and its end.
pub async fn buyer_down_until_healed() -> (MockBuyer, Arc<std::sync::atomic::AtomicBool>) {
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&healed);
    let endpoint =
        mock_buyer(move |_, _| if flag.load(Ordering::SeqCst) { Reply::Status(200) } else { Reply::Status(503) }).await;
    (endpoint, healed)
}

pub async fn mock_buyer(script: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> MockBuyer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let bad_signatures = Arc::new(AtomicUsize::new(0));
    let script: Arc<Script> = Arc::new(script);
    let (recorded, bad) = (Arc::clone(&requests), Arc::clone(&bad_signatures));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (script, recorded, bad) = (Arc::clone(&script), Arc::clone(&recorded), Arc::clone(&bad));
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (script, recorded, bad) = (Arc::clone(&script), Arc::clone(&recorded), Arc::clone(&bad));
                    async move { Ok::<_, Infallible>(answer(request, &*script, &recorded, &bad).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    MockBuyer { url: format!("http://{addr}"), requests, bad_signatures }
}

async fn answer(
    request: Request<Incoming>,
    script: &Script,
    recorded: &Mutex<Vec<(String, Value)>>,
    bad: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let header =
        request.headers().get(signature::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if !signature::verify(WEBHOOK_SECRET.as_bytes(), &header, &body, now, 300) {
        bad.fetch_add(1, Ordering::SeqCst);
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorded.lock().push((path.clone(), value.clone()));
    let mut reply = script(&path, &value);
    loop {
        match reply {
            Reply::After(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Response::new(Full::new(Bytes::new()));
            }
            Reply::Status(status) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                return response;
            }
            Reply::Json(status, json) => {
                let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                return response;
            }
        }
    }
}

// ------------------------------------------------------------------------ configs

pub fn supplier(id: &str, key: &str) -> Value {
    json!({"id": id, "name": id, "api_key": key, "payout": {"type": "revshare", "percent": "50"}})
}

pub fn buyer(id: &str) -> Value {
    json!({
        "id": id, "name": id, "api_key": format!("buyer-key-{id}-xxxxxxxx"),
        "webhook_secret": WEBHOOK_SECRET, "currency": "EUR", "timezone": "Europe/Berlin",
        "billing": {"mode": "prepaid"}
    })
}

pub fn buyer_key(id: &str) -> String {
    format!("buyer-key-{id}-xxxxxxxx")
}

pub fn vertical(name: &str, model: &str) -> Value {
    json!({"name": name, "model": model, "tmax_ms": 1500, "default_country": "DE"})
}

pub fn fixed_campaign(id: &str, buyer_id: &str, vertical: &str, price: &str, post_url: &str) -> Value {
    json!({
        "id": id, "buyer_id": buyer_id, "vertical": vertical,
        "pricing": {"type": "fixed", "price": price},
        "filters": {"countries": ["DE"]},
        "delivery": {"mode": "webhook", "url": post_url}
    })
}

pub fn dynamic_campaign(id: &str, buyer_id: &str, vertical: &str, buyer: &MockBuyer) -> Value {
    json!({
        "id": id, "buyer_id": buyer_id, "vertical": vertical,
        "pricing": {"type": "dynamic", "ping_url": buyer.ping_url()},
        "filters": {"countries": ["DE"]},
        "delivery": {"mode": "webhook", "url": buyer.post_url()}
    })
}

pub fn topup(buyer_id: &str, amount: &str) -> Value {
    json!({"buyer_id": buyer_id, "amount": amount, "reference": format!("opening-{buyer_id}")})
}

/// A valid Munich lead; `n` varies the contact so leads are not duplicates of each other.
pub fn lead(vertical: &str, n: u32) -> Value {
    json!({
        "vertical": vertical, "first_name": "Anna", "last_name": "Muster",
        "email": format!("anna{n}@example.com"), "phone": format!("089 {:07}", 1_000_000 + n),
        "zip": "80331", "country": "DE", "fields": {"roof_type": "tile"}
    })
}

pub fn ping_body(vertical: &str) -> Value {
    json!({"vertical": vertical, "zip": "80331", "country": "DE", "fields": {"roof_type": "tile"}})
}

// ------------------------------------------------------------------------ helpers

impl TestServer {
    /// A GET on the public listener with a party's API key.
    pub async fn get(&self, path: &str, key: &str) -> Answer {
        let auth = format!("Bearer {key}");
        self.send("GET", &format!("{}{}", self.base, path), &[("authorization", &auth)], Bytes::new()).await
    }
}

/// Waits (at most 10 s) until `done` holds, checking every 10 ms.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------------------ redis

/// A real `redis-server` on a free loopback port, in its own temp dir, killed on drop.
/// scripts/test.sh installs redis-server when it is missing.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("redis dir");
        let port = free_port();
        RedisServer::start_on(port, dir).await
    }

    /// Starts on `port` with `dir` (a restart keeps the data of an earlier server there).
    pub async fn start_on(port: u16, dir: tempfile::TempDir) -> RedisServer {
        RedisServer::start_with(port, dir, &[]).await
    }

    /// `start_on` with more arguments for `redis-server` (a cluster shard's).
    async fn start_with(port: u16, dir: tempfile::TempDir, more: &[String]) -> RedisServer {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .args(more)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        let server = RedisServer { child, port, dir };
        // Listening is not serving: a restarted server answers LOADING while it reads its
        // append-only file back.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !answers_ping(port).await {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a Redis that hangs.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Kills the server and hands back its dir, for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a Redis on `port` answers `PING` with `PONG` (not `-LOADING`, not silence).
async fn answers_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut reply)).await {
        Ok(Ok(read)) => reply[..read].starts_with(b"+PONG"),
        _ => false,
    }
}

/// A Redis Cluster of real `redis-server` shards (primaries only) on free loopback ports,
/// each in its own temp dir with its `nodes.conf` and append-only file, created by
/// `redis-cli --cluster create` (package redis-tools; scripts/test.sh installs it), killed
/// on drop.
pub struct RedisCluster {
    pub shards: Vec<RedisServer>,
}

/// A cluster's shards after `RedisCluster::stop`: their ports and dirs, for a restart.
pub struct StoppedCluster {
    shards: Vec<(u16, tempfile::TempDir)>,
}

impl RedisCluster {
    /// Starts `shards` shards, joins them into one cluster with every slot assigned, and
    /// waits until every shard says `cluster_state:ok`.
    pub async fn start(shards: usize) -> RedisCluster {
        let mut started = Vec::with_capacity(shards);
        for _ in 0..shards {
            let dir = tempfile::tempdir().expect("redis dir");
            let port = free_port();
            let more = RedisCluster::shard_args(&dir);
            started.push(RedisServer::start_with(port, dir, &more).await);
        }
        let cluster = RedisCluster { shards: started };
        let addresses: Vec<String> = cluster.shards.iter().map(|shard| format!("127.0.0.1:{}", shard.port)).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("redis-cli runs (scripts/test.sh installs redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.until_ok().await;
        cluster
    }

    fn shard_args(dir: &tempfile::TempDir) -> Vec<String> {
        let nodes = dir.path().join("nodes.conf");
        vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            nodes.to_str().expect("a UTF-8 temp dir").into(),
            // Failures noticed (and a restarted shard let back in) within seconds.
            "--cluster-node-timeout".into(),
            "2000".into(),
        ]
    }

    /// Waits (at most 30 s) until every shard says `cluster_state:ok`.
    async fn until_ok(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for shard in &self.shards {
            loop {
                let info = shard.query::<String>(&redis::cmd("CLUSTER").arg("INFO").clone()).await;
                if info.is_some_and(|info| info.contains("cluster_state:ok")) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the cluster did not become ok");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `redis+cluster://` and every shard as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.shards.iter().map(|shard| format!("127.0.0.1:{}", shard.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Signals every shard (`-STOP`, `-CONT`): a cluster that hangs.
    pub fn signal(&self, signal: &str) {
        for shard in &self.shards {
            shard.signal(signal);
        }
    }

    /// Kills every shard and hands back their ports and dirs, for `restart`.
    pub fn stop(self) -> StoppedCluster {
        StoppedCluster { shards: self.shards.into_iter().map(|shard| (shard.port, shard.stop())).collect() }
    }

    /// Starts the shards of a stopped cluster again, each on its port with its data (its
    /// `nodes.conf` and append-only file), and waits until the cluster is ok.
    pub async fn restart(stopped: StoppedCluster) -> RedisCluster {
        let mut shards = Vec::with_capacity(stopped.shards.len());
        for (port, dir) in stopped.shards {
            let more = RedisCluster::shard_args(&dir);
            shards.push(RedisServer::start_with(port, dir, &more).await);
        }
        let cluster = RedisCluster { shards };
        cluster.until_ok().await;
        cluster
    }

    /// How many keys each shard holds (`DBSIZE`), in shard order.
    pub async fn keys_per_shard(&self) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            counts.push(shard.query::<u64>(&redis::cmd("DBSIZE")).await.expect("DBSIZE answers"));
        }
        counts
    }
}

impl RedisServer {
    /// One command to this server alone (a cluster shard answers for itself); None when it
    /// does not answer.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        command.query_async(&mut connection).await.ok()
    }
}
