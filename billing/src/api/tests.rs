//! The API's HTTP contract at the edges: which status and error code each odd request gets
//! (unknown paths, wrong methods, missing tokens, bad query parameters, bodies of the wrong
//! type or size), and the headers every answer carries (request id, compression when
//! asked), over a real socket so that the server loop is part of what is tested. The happy
//! paths with real documents are in `tests/worker`.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{serve, AppState};
use crate::domain::dunning::DunningPolicy;
use crate::store::Db;

const TOKEN: &str = "billing-admin-token-0123456789";

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Kept so the database lives as long as the server.
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("billing.db")).expect("database");
        let state = Arc::new(AppState { db, token: TOKEN.into(), policy: DunningPolicy::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, state, stopped));
        Server { addr, stop, task, _dir: dir }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    async fn get(&self, target: &str) -> Reply {
        self.send(Request::new("GET", target).token(TOKEN)).await
    }

    async fn send(&self, request: Request) -> Reply {
        request.send(self.addr).await
    }
}

/// A request written by hand, so that odd methods, targets and headers go out as given.
struct Request {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn new(method: &'static str, target: &str) -> Request {
        Request { method, target: target.into(), headers: Vec::new(), body: Vec::new() }
    }

    fn token(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn json(self, body: &str) -> Request {
        self.header("content-type", "application/json").body(body.as_bytes())
    }

    fn body(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }

    async fn send(self, addr: SocketAddr) -> Reply {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: billing\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.method,
            self.target,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // The server may answer before it has read the body (a refused token, a body over
        // the limit): write on the side and read whatever comes back.
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let _ = writer.write_all(&self.body).await;
            writer
        });
        let mut raw = Vec::new();
        let _ = reader.read_to_end(&mut raw).await;
        let _ = writing.await;
        Reply::parse(&raw)
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw.windows(4).position(|window| window == b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok());
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let mut reply = Reply { status: status.expect("a status"), headers, body: raw[split + 4..].to_vec() };
        if reply.header("transfer-encoding") == Some("chunked") {
            reply.body = dechunk(&reply.body);
        }
        reply
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Status, error code and the first detail's field.
    fn error(&self) -> (u16, String, String) {
        let json = self.json();
        let error = &json["error"];
        let field = error["details"][0]["field"].as_str().unwrap_or("");
        (self.status, error["code"].as_str().unwrap_or("").to_string(), field.to_string())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|window| window == b"\r\n") {
        let size = std::str::from_utf8(&body[..end]).ok().and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
        let Some(size) = size.filter(|size| *size > 0) else { break };
        let start = end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

fn error(status: u16, code: &str, field: &str) -> (u16, String, String) {
    (status, code.to_string(), field.to_string())
}

#[tokio::test]
async fn health_and_metrics_are_open_and_take_only_get_and_head() {
    let server = Server::start().await;
    let health = server.send(Request::new("GET", "/healthz")).await;
    assert_eq!((health.status, health.json()), (200, serde_json::json!({"status": "ok"})));
    assert_eq!(health.header("content-type"), Some("application/json"));
    let metrics = server.send(Request::new("GET", "/metrics")).await;
    assert_eq!((metrics.status, metrics.header("content-type")), (200, Some("text/plain; version=0.0.4")));
    let head = server.send(Request::new("HEAD", "/healthz")).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    for (method, path) in [("POST", "/healthz"), ("DELETE", "/metrics"), ("GET", "/healthz/"), ("GET", "/nope")] {
        let reply = server.send(Request::new(method, path).token(TOKEN)).await;
        assert_eq!(reply.error(), error(404, "not_found", ""), "{method} {path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_token_is_checked_before_the_path_under_billing_v1() {
    let server = Server::start().await;
    let anonymous = [
        ("GET", "/billing/v1/"),
        ("GET", "/billing/v1/unknown"),
        ("GET", "/billing/v1/documents"),
        ("DELETE", "/billing/v1/documents"),
        ("POST", "/billing/v1/runs"),
        ("GET", "/billing/v1/documents/INV-2026-000001"),
        ("GET", "/billing/v1/documents/INV-2026-000001/lines"),
        ("POST", "/billing/v1/documents/"),
    ];
    for (method, path) in anonymous {
        let reply = server.send(Request::new(method, path)).await;
        assert_eq!(reply.error(), error(401, "unauthorized", ""), "{method} {path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    let wrong = [
        "Bearer not-the-token-at-all",
        "Basic billing-admin-token-0123456789",
        "Bearer billing-admin-token-012345678",
        "billing-admin-token-0123456789",
    ];
    for authorization in wrong {
        let reply =
            server.send(Request::new("GET", "/billing/v1/documents").header("authorization", authorization)).await;
        assert_eq!(reply.error(), error(401, "unauthorized", ""), "{authorization:?}");
    }
    // The token is read as the router's admin API reads it: the scheme in any case (RFC
    // 9110), blanks around the token ignored.
    for authorization in ["bearer billing-admin-token-0123456789", "Bearer  billing-admin-token-0123456789"] {
        let reply =
            server.send(Request::new("GET", "/billing/v1/documents").header("authorization", authorization)).await;
        assert_eq!(reply.status, 200, "{authorization:?}");
    }
    // Outside the prefix nothing asks for a token: an unknown path is simply unknown.
    let outside = server.send(Request::new("GET", "/billing/v1")).await;
    assert_eq!(outside.error(), error(404, "not_found", ""));
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = Server::start().await;
    let unknown = [
        ("GET", "/billing/v1/"),
        ("GET", "/billing/v1/unknown"),
        ("GET", "/billing/v1//documents"),
        ("GET", "/billing/v1/documents/INV-2026-000001/lines"),
        ("GET", "/billing/v1/reconciliation/"),
        ("POST", "/billing/v1/invoices/INV-2026-000001"),
        ("GET", "/billing/v2/documents"),
        // A path whose last segment is empty names nothing, whatever the method.
        ("GET", "/billing/v1/documents/"),
        ("POST", "/billing/v1/documents/"),
        ("GET", "/billing/v1/reports/?from=2026-11-01"),
        // Not UTF-8 once percent-decoded: no document has such a number.
        ("GET", "/billing/v1/documents/%FF"),
    ];
    for (method, path) in unknown {
        let reply = server.send(Request::new(method, path).token(TOKEN)).await;
        assert_eq!(reply.error(), error(404, "not_found", ""), "{method} {path}");
    }
    let wrong_method = [
        ("GET", "/billing/v1/runs"),
        ("PUT", "/billing/v1/runs"),
        ("POST", "/billing/v1/documents"),
        ("DELETE", "/billing/v1/documents/INV-2026-000001"),
        ("GET", "/billing/v1/invoices/INV-2026-000001/payments"),
        ("POST", "/billing/v1/notifications"),
        ("POST", "/billing/v1/reports/revenue"),
        ("PATCH", "/billing/v1/reconciliation"),
        ("OPTIONS", "/billing/v1/documents"),
    ];
    for (method, path) in wrong_method {
        let reply = server.send(Request::new(method, path).token(TOKEN)).await;
        assert_eq!(reply.error(), error(405, "method_not_allowed", ""), "{method} {path}");
        assert_eq!(reply.json()["error"]["message"], "method not allowed here");
        assert!(reply.header("allow").is_some(), "{method} {path}: a 405 says what is allowed");
    }
    assert_eq!(server.get("/billing/v1/runs").await.header("allow"), Some("POST"));
    // HEAD is answered like GET, without the body.
    let head = server.send(Request::new("HEAD", "/billing/v1/documents").token(TOKEN)).await;
    assert_eq!((head.status, head.header("content-type"), head.body.len()), (200, Some("application/json"), 0));
    let anonymous = server.send(Request::new("HEAD", "/billing/v1/documents")).await;
    assert_eq!(anonymous.status, 401);
    let missing = server.get("/billing/v1/documents/INV-2026-000001").await;
    assert_eq!(missing.error(), error(404, "not_found", ""));
    assert_eq!(missing.json()["error"]["message"], "no such document");
    for path in ["/billing/v1/documents/NOPE.csv", "/billing/v1/documents/NOPE.html", "/billing/v1/documents/NOPE.json"]
    {
        assert_eq!(server.get(path).await.error(), error(404, "not_found", ""), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn list_parameters_are_read_as_before() {
    let server = Server::start().await;
    let accepted = [
        "/billing/v1/documents",
        "/billing/v1/documents?",
        "/billing/v1/documents?limit=&after=&kind=&account=",
        "/billing/v1/documents?limit=500&after=0&kind=invoice&from=2026-11-01&to=2026-11-30",
        "/billing/v1/documents?kind=%69nvoice",
        "/billing/v1/documents?kind=credit_note&account=buy%201",
        "/billing/v1/documents?limit=0&limit=5",
        "/billing/v1/documents?unknown=1&&limit",
        "/billing/v1/notifications?status=pending&after=3&limit=10",
        "/billing/v1/notifications?status=",
    ];
    for target in accepted {
        let reply = server.get(target).await;
        assert_eq!(reply.status, 200, "{target}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    let documents = server.get("/billing/v1/documents").await.json();
    assert_eq!(documents, serde_json::json!({"documents": [], "next": null}));
    let refused = [
        ("/billing/v1/documents?limit=0", "limit"),
        ("/billing/v1/documents?limit=501", "limit"),
        ("/billing/v1/documents?limit=-1", "limit"),
        ("/billing/v1/documents?limit=ten", "limit"),
        ("/billing/v1/documents?limit=5&limit=0", "limit"),
        ("/billing/v1/documents?after=-1", "after"),
        ("/billing/v1/documents?after=x", "after"),
        ("/billing/v1/documents?kind=receipt", "kind"),
        ("/billing/v1/documents?kind=in+voice", "kind"),
        ("/billing/v1/documents?from=", "from"),
        ("/billing/v1/documents?to=2026-13-01", "to"),
        ("/billing/v1/documents?from=0001-01-01", "from"),
        ("/billing/v1/notifications?limit=1000", "limit"),
        ("/billing/v1/notifications?after=1.5", "after"),
    ];
    for (target, field) in refused {
        assert_eq!(server.get(target).await.error(), error(422, "validation_failed", field), "{target}");
    }
    let limit = server.get("/billing/v1/documents?limit=0").await.json();
    assert_eq!(
        limit,
        serde_json::json!({"error": {"code": "validation_failed", "message": "limit: is a number from 1 to 500",
            "details": [{"field": "limit", "message": "is a number from 1 to 500"}]}})
    );
    server.stop().await;
}

#[tokio::test]
async fn report_parameters_are_read_as_before() {
    let server = Server::start().await;
    let accepted = [
        "/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30",
        "/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&group_by=&basis=&format=&currency=",
        "/billing/v1/reports/returns?from=2026-11-01&to=2026-11-30&group_by=reason&basis=booked&format=json",
        "/billing/v1/reports/payments?from=2026-11-01&to=2026-11-30&currency=EUR",
        "/billing/v1/reports/timeseries?from=2026-11-01&to=2026-11-30&group_by=month",
    ];
    for target in accepted {
        let reply = server.get(target).await;
        assert_eq!(reply.status, 200, "{target}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["from"], "2026-11-01", "{target}");
    }
    let csv = server.get("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&format=csv").await;
    assert_eq!((csv.status, csv.header("content-type")), (200, Some("text/csv; charset=utf-8")));
    assert!(csv.body.starts_with(b"key,"), "{}", String::from_utf8_lossy(&csv.body));
    let refused = [
        ("/billing/v1/reports/revenue", "from"),
        ("/billing/v1/reports/revenue?from=2026-11-01", "to"),
        ("/billing/v1/reports/revenue?from=&to=2026-11-30", "from"),
        ("/billing/v1/reports/revenue?from=2026-11-01&to=tomorrow", "to"),
        ("/billing/v1/reports/revenue?from=2026-12-01&to=2026-11-30", "from"),
        ("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&group_by=reason", "group_by"),
        ("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&group_by=decade", "group_by"),
        ("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&basis=cash", "basis"),
        ("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&format=xml", "format"),
        // The query is read before the name: an unknown report with bad dates is a 422.
        ("/billing/v1/reports/profit?to=2026-11-30", "from"),
    ];
    for (target, field) in refused {
        assert_eq!(server.get(target).await.error(), error(422, "validation_failed", field), "{target}");
    }
    let unknown = server.get("/billing/v1/reports/profit?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(unknown.error(), error(404, "not_found", ""));
    server.stop().await;
}

#[tokio::test]
async fn bodies_are_checked_for_type_then_size_then_syntax() {
    let server = Server::start().await;
    let over = format!("{{\"as_of\":\"2026-11-30\",\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    let cases = [
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).json("{\"as_of\":"), error(400, "malformed_json", "")),
        (
            Request::new("POST", "/billing/v1/runs").token(TOKEN).json("{\"as_of\":20261130}"),
            error(400, "malformed_json", ""),
        ),
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).json("[]"), error(400, "malformed_json", "")),
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).json(""), error(400, "malformed_json", "")),
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).json("{}"), error(422, "validation_failed", "as_of")),
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).body(b"{}"), error(422, "validation_failed", "as_of")),
        (
            Request::new("POST", "/billing/v1/runs").token(TOKEN).header("content-type", "text/plain").body(b"{}"),
            error(415, "unsupported_media_type", ""),
        ),
        (
            Request::new("POST", "/billing/v1/runs")
                .token(TOKEN)
                .header("content-type", "Application/JSON")
                .body(b"{}"),
            error(415, "unsupported_media_type", ""),
        ),
        (Request::new("POST", "/billing/v1/runs").token(TOKEN).json(&over), error(413, "body_too_large", "")),
        (
            Request::new("POST", "/billing/v1/runs")
                .token(TOKEN)
                .header("content-type", "text/plain")
                .body(over.as_bytes()),
            error(415, "unsupported_media_type", ""),
        ),
        (Request::new("POST", "/billing/v1/runs").json(&over), error(401, "unauthorized", "")),
        (
            Request::new("POST", "/billing/v1/invoices/INV-2026-000001/payments")
                .token(TOKEN)
                .json(r#"{"amount":"1.00","paid_at":"2026-11-20T10:00:00Z","reference":"r","extra":1}"#),
            error(404, "not_found", ""),
        ),
        (
            Request::new("POST", "/billing/v1/invoices/INV-2026-000001/payments")
                .token(TOKEN)
                .json(r#"{"amount":"1.00"}"#),
            error(422, "validation_failed", "paid_at"),
        ),
    ];
    for (request, expected) in cases {
        let described = format!("{} {} {:?}", request.method, request.target, request.headers);
        assert_eq!(server.send(request).await.error(), expected, "{described}");
    }
    let utf8 = Request::new("POST", "/billing/v1/runs")
        .token(TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(br#"{"as_of":"2026-11-30"}"#);
    let run = server.send(utf8).await;
    assert_eq!(run.status, 200, "{}", String::from_utf8_lossy(&run.body));
    assert_eq!(run.json()["as_of"], "2026-11-30");
    // 64 KiB is the most a body may be.
    for (size, status) in [(64 * 1024, 200), (64 * 1024 + 1, 413)] {
        let head = "{\"as_of\":\"2026-11-30\",\"pad\":\"";
        let body = format!("{head}{}\"}}", "x".repeat(size - head.len() - 2));
        assert_eq!(body.len(), size);
        let reply = server.send(Request::new("POST", "/billing/v1/runs").token(TOKEN).json(&body)).await;
        assert_eq!(reply.status, status, "{size} bytes");
    }
    // A GET's body is never read, whatever its size.
    let ignored = server.send(Request::new("GET", "/billing/v1/documents").token(TOKEN).body(over.as_bytes())).await;
    assert_eq!(ignored.status, 200);
    let reconciliation = server.get("/billing/v1/reconciliation").await;
    assert_eq!((reconciliation.status, reconciliation.json()["ok"].clone()), (200, Value::Bool(true)));
    server.stop().await;
}

#[tokio::test]
async fn serving_stops_when_told() {
    let server = Server::start().await;
    let addr = server.addr;
    assert_eq!(server.send(Request::new("GET", "/healthz")).await.status, 200);
    tokio::time::timeout(std::time::Duration::from_secs(5), server.stop()).await.expect("serve returns");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for request in [
        Request::new("GET", "/healthz"),
        Request::new("GET", "/billing/v1/documents"),
        Request::new("GET", "/billing/v1/documents").token(TOKEN),
        Request::new("GET", "/billing/v1/documents?limit=0").token(TOKEN),
        Request::new("GET", "/nope"),
    ] {
        let reply = server.send(request).await;
        let id = reply.header("x-request-id").expect("a request id").to_string();
        // The router's form (`leadrouter_http::RequestIds`): the process's prefix, a counter.
        assert!(id.split_once('-').is_some_and(|(prefix, n)| prefix.len() == 8 && n.parse::<u64>().is_ok()), "{id}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one id per request");
    let given = server.send(Request::new("GET", "/billing/v1/nope").header("x-request-id", "from-the-caller-1")).await;
    assert_eq!((given.status, given.header("x-request-id")), (401, Some("from-the-caller-1")));
    server.stop().await;
}

#[tokio::test]
async fn answers_are_gzipped_only_for_a_client_that_asks() {
    use std::io::Read;
    let server = Server::start().await;
    let target = "/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30&group_by=week";
    let plain = server.get(target).await;
    assert_eq!((plain.status, plain.header("content-encoding")), (200, None));
    let brotli_only = server.send(Request::new("GET", target).token(TOKEN).header("accept-encoding", "br")).await;
    assert_eq!((brotli_only.header("content-encoding"), &brotli_only.body), (None, &plain.body));
    for request in [
        Request::new("GET", target).token(TOKEN).header("accept-encoding", "gzip"),
        Request::new("GET", "/billing/v1/documents?limit=0").token(TOKEN).header("accept-encoding", "gzip, br"),
    ] {
        let reply = server.send(request).await;
        assert_eq!(reply.header("content-encoding"), Some("gzip"));
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(reply.body.as_slice()).read_to_end(&mut body).expect("a gzip body");
        let json: Value = serde_json::from_slice(&body).expect("JSON inside");
        assert!(json.get("rows").is_some() || json.get("error").is_some(), "{json}");
        if json.get("rows").is_some() {
            assert_eq!(body, plain.body);
        }
    }
    server.stop().await;
}

#[test]
fn query_components_are_percent_decoded() {
    #[derive(serde::Deserialize)]
    struct One {
        q: Option<String>,
    }
    let q = |query: &str| super::parse_query::<One>(query).map(|one| one.q).expect("any query string reads");
    assert_eq!(q("q=a%20b+c"), Some("a b c".into()));
    assert_eq!(q("q=100%"), Some("100%".into()));
    assert_eq!(q("q=%zz"), Some("%zz".into()));
    assert_eq!(q("q=%C3%A9"), Some("é".into()));
    assert_eq!(q("%71=1"), Some("1".into()), "names are decoded too");
    assert_eq!(q("q"), Some(String::new()));
    assert_eq!(q("other=1"), None);
    assert_eq!(q("q=1&q=2"), Some("2".into()), "the last of a repeated name wins");
}
