//! Buyers over https: a real TLS buyer in the test (a CA made on the spot signs its
//! certificate for `localhost` and 127.0.0.1), the router told to trust that CA with
//! `--buyer-ca-file` (the real binary) or `BuyerTrust::with_ca_file` (in-process), and what
//! happens when it is not told: no sale, the reason in the trace, nothing sent, no crash.

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use leadrouter::buyers::{signature, BuyerTrust};
use leadrouter::clock::SystemClock;
use leadrouter::server::{FileConfig, ServerOptions};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_leadrouter");
const UNTRUSTED: &str = "tls: certificate not trusted";

/// A private CA, its certificate written as PEM where `--buyer-ca-file` can read it.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "buyer private CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }

    fn pem_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server config for a certificate this CA signed for `localhost` and 127.0.0.1.
    fn server_config(&self) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certificate = CertificateParams::new(names).unwrap().signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// One request as the https buyer received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    version: Version,
    signed: bool,
    body: Value,
}

/// A buyer's https endpoint: `/ping` bids 25.00, `/post` accepts (§5's protocol), `/leads`
/// answers a JSON API's `{"status":"ok","id":"R-7"}`, `/async` takes an outbox delivery.
/// It speaks h2 or HTTP/1.1, as ALPN settles it.
struct HttpsBuyer {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl HttpsBuyer {
    async fn start(ca: &Ca) -> HttpsBuyer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(Arc::new(ca.server_config()));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let recorded = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, recorded) = (acceptor.clone(), Arc::clone(&recorded));
                tokio::spawn(async move {
                    // A router that refuses the certificate ends the connection here.
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |request| answer(request, Arc::clone(&recorded)));
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    }
                });
            }
        });
        HttpsBuyer { port, received }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

async fn answer(
    request: Request<Incoming>,
    recorded: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (path, version) = (request.uri().path().to_string(), request.version());
    let header =
        request.headers().get(signature::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let signed = signature::verify(WEBHOOK_SECRET.as_bytes(), &header, &body, chrono::Utc::now().timestamp(), 300);
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorded.lock().push(Received { path: path.clone(), version, signed, body: body_json });
    let reply = match path.as_str() {
        "/ping" => json!({"bid": "25.00"}),
        "/post" => json!({"accepted": true}),
        "/leads" => json!({"status": "ok", "id": "R-7"}),
        _ => json!({}),
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

/// Two verticals, each sold to one https buyer: `solar` by §5's protocol (a sync webhook
/// at `localhost`), `roofing` by a JSON API in the buyer's own format (at 127.0.0.1).
fn market(endpoint: &HttpsBuyer) -> Value {
    let native = fixed_campaign("c-native", "b-native", "solar", "20.00", &endpoint.url("localhost", "/post"));
    let mut format = fixed_campaign("c-format", "b-format", "roofing", "30.00", &endpoint.url("127.0.0.1", "/leads"));
    format["delivery"]["request"] = json!({"format": "json", "fields": [
        {"name": "contact.email", "value": "{{ lead.email }}"},
        {"name": "contact.zip", "value": "{{ lead.zip }}"},
    ]});
    format["delivery"]["answer"] = json!({
        "accept": {"match": {"json": "$.status", "equals": "ok"}},
        "reference": {"json": "$.id"},
    });
    json!({
        "verticals": [vertical("solar", "bidding"), vertical("roofing", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b-native"), buyer("b-format")],
        "campaigns": [native, format],
        "topups": [topup("b-native", "100.00"), topup("b-format", "100.00")],
    })
}

/// The real binary, killed when the test ends however it ends.
struct Router {
    child: Child,
    base: String,
    ops: String,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Router {
    async fn send(&self, method: &str, url: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.map(Value::to_string).unwrap_or_default())))
            .unwrap();
        let response = client().request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn direct(&self, lead: &Value) -> Value {
        self.send("POST", &format!("{}/v1/leads", self.base), SUPPLIER_KEY, Some(lead)).await.1
    }

    async fn trace(&self, lead_id: &str) -> Value {
        let (status, trace) =
            self.send("GET", &format!("{}/admin/v1/leads/{lead_id}/trace", self.ops), ADMIN_TOKEN, None).await;
        assert_eq!(status, 200, "{trace}");
        trace
    }
}

async fn start_binary(config: &Value, data: &std::path::Path, ca_file: &std::path::Path) -> Router {
    let config_file = data.join("market.toml");
    std::fs::write(&config_file, toml::to_string(config).unwrap()).unwrap();
    let (public, ops) = (free_port(), free_port());
    let child = Command::new(BINARY)
        .args(["--config", config_file.to_str().unwrap(), "--data-dir", data.join("node").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--grpc-listen", "127.0.0.1:0", "--admin-token", ADMIN_TOKEN])
        .arg("--buyer-ca-file")
        .arg(ca_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let router = Router { child, base: format!("http://127.0.0.1:{public}"), ops: format!("http://127.0.0.1:{ops}") };
    wait_ready(ops).await;
    router
}

#[tokio::test]
async fn with_buyer_ca_file_direct_posts_sell_to_https_buyers_of_both_protocols() {
    let ca = Ca::new();
    let endpoint = HttpsBuyer::start(&ca).await;
    let data = tempfile::tempdir().unwrap();
    let router = start_binary(&market(&endpoint), data.path(), &ca.pem_file()).await;

    let native = router.direct(&lead("solar", 1)).await;
    assert_eq!((native["status"].as_str(), native["payout"].as_str()), (Some("sold"), Some("10.00")), "{native}");
    let format = router.direct(&lead("roofing", 2)).await;
    assert_eq!((format["status"].as_str(), format["payout"].as_str()), (Some("sold"), Some("15.00")), "{format}");
    let trace = router.trace(format["lead_id"].as_str().unwrap()).await;
    let sale = trace["entries"].as_array().unwrap().iter().find(|e| e["outcome"] == "sold").cloned();
    assert_eq!(sale.map(|s| s["buyer_reference"].clone()), Some(json!("R-7")), "read from the https answer: {trace}");

    let received = endpoint.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/post", "/leads"]);
    assert_eq!(received[0].body["lead"]["email"], "anna1@example.com");
    assert_eq!(received[1].body, json!({"contact": {"email": "anna2@example.com", "zip": "80331"}}));
    assert!(received.iter().all(|r| r.signed), "signed as over http");
    assert!(received.iter().all(|r| r.version == Version::HTTP_2), "h2, which both sides offer");
}

#[tokio::test]
async fn pings_and_outbox_deliveries_go_over_https_too() {
    let ca = Ca::new();
    let endpoint = HttpsBuyer::start(&ca).await;
    let mut campaign = fixed_campaign("c-bid", "b1", "solar", "1.00", &endpoint.url("127.0.0.1", "/async"));
    campaign["pricing"] = json!({"type": "dynamic", "ping_url": endpoint.url("localhost", "/ping")});
    campaign["delivery"] = json!({"mode": "webhook_async", "url": endpoint.url("127.0.0.1", "/async")});
    let config = json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [campaign],
        "topups": [topup("b1", "100.00")],
    });
    let data = tempfile::tempdir().unwrap();
    let config: FileConfig = serde_json::from_value(config).unwrap();
    let options = ServerOptions {
        retry: TEST_RETRY,
        buyer_trust: BuyerTrust::with_ca_file(&ca.pem_file()).unwrap(),
        ..ServerOptions::ephemeral(data.path().to_path_buf(), config, Arc::new(SystemClock), ADMIN_TOKEN)
    };
    let server = start_with(options, data).await;

    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "75.00", "sold at the 25.00 bid");
    eventually("the outbox delivers over https", || endpoint.received().iter().any(|r| r.path == "/async")).await;
    eventually("the outbox is empty", || server.running.router.deliveries().counts() == (0, 0)).await;
    let delivered = endpoint.received().into_iter().find(|r| r.path == "/async").unwrap();
    assert!(delivered.signed);
    assert_eq!(delivered.body["lead"]["email"], "anna1@example.com");
}

#[tokio::test]
async fn without_the_ca_an_https_buyer_gets_no_lead_and_the_trace_says_why() {
    let endpoint = HttpsBuyer::start(&Ca::new()).await;
    // The in-process router with the defaults: the public roots only.
    let server = start(market(&endpoint)).await;
    for (n, name) in [(1, "solar"), (2, "roofing")] {
        let answer = server.direct(&lead(name, n)).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(answer.json["status"], "rejected", "{name}: {}", answer.json);
        let trace = server.trace("leads", answer.json["lead_id"].as_str().unwrap()).await;
        assert!(trace.to_string().contains(UNTRUSTED), "{name}: {trace}");
    }
    assert!(endpoint.received().is_empty(), "nothing is sent before a trusted handshake");
    assert_eq!(server.balance(&buyer_key("b-native")).await["balance"], "100.00");
    let ready = server.send("GET", &format!("{}/readyz", server.ops), &[], Bytes::new()).await;
    assert_eq!(ready.status, 200, "still serving");
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_the_start_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cases = [(empty, "no PEM certificate"), (dir.path().join("missing.pem"), "cannot read it")];
    for (n, (ca_file, expected)) in cases.into_iter().enumerate() {
        let data = dir.path().join(format!("data-{n}"));
        let output = Command::new(BINARY)
            .args(["--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--ops-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .env("LEADROUTER_BUYER_CA_FILE", &ca_file)
            .env_remove("LEADROUTER_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("--buyer-ca-file {}", ca_file.display())), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!data.join("admin-token").exists() && !data.join("journal").exists(), "nothing written");
    }
}
