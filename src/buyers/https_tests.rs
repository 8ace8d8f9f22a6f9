//! `BuyerClient` against real https buyers on 127.0.0.1:0: a CA made in the test signs the
//! server's certificate, and the client trusts that CA (`BuyerTrust::with_ca_pem`) or not.
//!
//! The server speaks h2 or HTTP/1.1, as ALPN settles it, and records which, so the tests
//! also show the client takes h2 when a buyer offers it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{BidAnswer, BuyerClient, BuyerTrust, PostAnswer};
use crate::domain::integration::request::{Method, TokenFetch};
use crate::domain::money::Money;
use crate::engine::ports::buyers::{Outbound, Reply};

const SECRET: &str = "whsec_test_secret";
const BODY: &[u8] = br#"{"ping_id":"p1","zip":"10001","tmax_ms":300}"#;
const TOKEN: &str = "tok-1";
const UNTRUSTED: &str = "tls: certificate not trusted";

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "leadrouter test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn trusting(ca: &Ca) -> BuyerClient {
    BuyerClient::with_trust(&BuyerTrust::with_ca_pem(ca.pem().as_bytes()).unwrap())
}

/// A TLS server config whose certificate, signed by `ca`, names `names`.
fn server_config(ca: &Ca, names: &[&str]) -> rustls::ServerConfig {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let certificate = CertificateParams::new(names).unwrap().signed_by(&key, ca).unwrap();
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

struct HttpsBuyer {
    port: u16,
    /// The HTTP version of every request that got through the handshake.
    versions: Arc<Mutex<Vec<Version>>>,
    tokens_issued: Arc<AtomicUsize>,
}

impl HttpsBuyer {
    async fn start(ca: &Ca, names: &[&str]) -> HttpsBuyer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(Arc::new(server_config(ca, names)));
        let buyer = HttpsBuyer { port, versions: Arc::default(), tokens_issued: Arc::default() };
        let (versions, tokens) = (Arc::clone(&buyer.versions), Arc::clone(&buyer.tokens_issued));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, versions, tokens) = (acceptor.clone(), Arc::clone(&versions), Arc::clone(&tokens));
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = service_fn(move |request| {
                        versions.lock().push(request.version());
                        respond(request, Arc::clone(&tokens))
                    });
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
        buyer
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}/{path}", self.port)
    }

    fn requests(&self) -> usize {
        self.versions.lock().len()
    }
}

async fn respond(request: Request<Incoming>, tokens: Arc<AtomicUsize>) -> Result<Response<Full<Bytes>>, Infallible> {
    let bearer = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (status, body) = match request.uri().path() {
        "/bid" => (StatusCode::OK, r#"{"bid":"12.00"}"#.to_string()),
        "/accept" => (StatusCode::OK, r#"{"accepted":true}"#.to_string()),
        "/token" => {
            tokens.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, format!(r#"{{"access_token":"{TOKEN}"}}"#))
        }
        "/leads" if bearer.as_deref() == Some(&format!("Bearer {TOKEN}")) => (StatusCode::OK, "{}".to_string()),
        "/leads" => (StatusCode::UNAUTHORIZED, String::new()),
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn body() -> Bytes {
    Bytes::from_static(BODY)
}

/// A buyer-format POST to `url`, with a bearer token from `token_url` when given.
fn outbound(url: String, token_url: Option<String>) -> Outbound {
    let token = token_url.map(|url| TokenFetch {
        url,
        content_type: "application/x-www-form-urlencoded".to_string(),
        form_body: "grant_type=client_credentials".to_string(),
        token_path: "access_token".to_string(),
        expires_in_path: None,
        ttl_s: None,
    });
    Outbound {
        method: Method::Post,
        url,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body(),
        signing_secret: Some(SECRET.to_string()),
        token,
        answer_bytes_max: 16 * 1024,
    }
}

#[tokio::test]
async fn every_kind_of_call_reaches_an_https_buyer_whose_ca_is_trusted() {
    let ca = ca();
    let buyer = HttpsBuyer::start(&ca, &["localhost", "127.0.0.1"]).await;
    let client = trusting(&ca);
    let (bid, _) = client.ping(&buyer.url("127.0.0.1", "bid"), SECRET, body(), deadline()).await;
    assert_eq!(bid, BidAnswer::Bid(Money::parse("12.00").unwrap()));
    let (post, _) = client.post(&buyer.url("localhost", "accept"), SECRET, body(), deadline()).await;
    assert_eq!(post, PostAnswer::Accepted { buyer_reference: None });
    assert_eq!(client.deliver(&buyer.url("127.0.0.1", "accept"), SECRET, body(), deadline()).await, Ok(()));
    let leads = outbound(buyer.url("127.0.0.1", "leads"), Some(buyer.url("127.0.0.1", "token")));
    let (reply, _) = client.exchange(leads, deadline()).await;
    let Reply::Answered { status, body, .. } = reply else { panic!("answered: {reply:?}") };
    assert_eq!((status, body), (200, Bytes::from_static(b"{}")));
    assert_eq!(buyer.tokens_issued.load(Ordering::SeqCst), 1, "the token fetch went over https too");
    let versions = buyer.versions.lock().clone();
    assert_eq!(versions.len(), 5);
    assert!(versions.iter().all(|v| *v == Version::HTTP_2), "h2, offered by both sides: {versions:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_every_kind_of_call_with_a_fixed_reason() {
    let buyer = HttpsBuyer::start(&ca(), &["127.0.0.1"]).await;
    let client = BuyerClient::new();
    let (bid, _) = client.ping(&buyer.url("127.0.0.1", "bid"), SECRET, body(), deadline()).await;
    assert_eq!(bid, BidAnswer::Error(UNTRUSTED.into()));
    let (post, _) = client.post(&buyer.url("127.0.0.1", "accept"), SECRET, body(), deadline()).await;
    assert_eq!(post, PostAnswer::Error(UNTRUSTED.into()));
    let delivered = client.deliver(&buyer.url("127.0.0.1", "accept"), SECRET, body(), deadline()).await;
    assert_eq!(delivered, Err(UNTRUSTED.to_string()));
    for token in [None, Some(buyer.url("127.0.0.1", "token"))] {
        let (reply, _) = client.exchange(outbound(buyer.url("127.0.0.1", "leads"), token), deadline()).await;
        assert_eq!(reply, Reply::Error(UNTRUSTED.into()));
    }
    assert_eq!(buyer.requests(), 0, "nothing is sent before the handshake succeeds");
}

#[tokio::test]
async fn a_certificate_for_another_name_or_a_port_without_tls_fails_the_handshake() {
    let ca = ca();
    let buyer = HttpsBuyer::start(&ca, &["localhost"]).await;
    let client = trusting(&ca);
    let (bid, _) = client.ping(&buyer.url("127.0.0.1", "bid"), SECRET, body(), deadline()).await;
    assert_eq!(bid, BidAnswer::Error("tls: certificate invalid".into()), "the certificate names localhost only");

    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = plain.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = plain.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    let (bid, _) = client.ping(&format!("https://127.0.0.1:{port}/bid"), SECRET, body(), deadline()).await;
    assert_eq!(bid, BidAnswer::Error("tls handshake failed".into()));
}
