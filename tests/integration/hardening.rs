//! Issue 12: defects found by hostile testing, each with the test that caught it.

use std::sync::Arc;

use leadrouter::clock::SystemClock;
use serde_json::{json, Value};

use crate::harness::*;
use crate::storage::pull_market;

async fn fetch(server: &TestServer, after: &str) -> Answer {
    let url = format!("{}/v1/buyer/leads?limit=1000&after={after}", server.base);
    server.send("GET", &url, &[("authorization", &format!("Bearer {}", buyer_key("b1")))], "").await
}

#[tokio::test]
async fn a_cursor_past_the_newest_lead_is_refused_and_breaks_nothing() {
    let server = start(pull_market()).await;
    for n in 0..2 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    for hostile in ["18446744073709551615", "3", "18446744073709551616", "-1", "abc"] {
        let refused = fetch(&server, hostile).await;
        assert_eq!(refused.status, 422, "after={hostile}: {}", refused.json);
        assert_eq!(refused.json["error"]["details"][0]["field"], "after", "{}", refused.json);
    }
    assert_eq!(server.direct(&lead("solar", 2)).await.json["status"], "sold");
    let page = fetch(&server, "0").await;
    assert_eq!(page.json["leads"].as_array().unwrap().len(), 3, "every lead still waits: {}", page.json);
    assert_eq!(page.json["next"], "3");
    let data = server.stop().await;
    let server = start_in(pull_market(), Arc::new(SystemClock), data).await;
    assert_eq!(fetch(&server, "0").await.json["leads"].as_array().unwrap().len(), 3, "and after a restart");
    assert_eq!(fetch(&server, "3").await.json["leads"], json!([]), "the newest cursor is fine");
}

#[tokio::test]
async fn the_ledger_sequence_gauge_holds_across_a_restart_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::durability::toml_of(&pull_market())).unwrap();
    let data = dir.path().join("data");
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut node = crate::durability::spawn_binary(&config, &data, public, ops, grpc);
    wait_ready(ops).await;
    for n in 0..3 {
        let (status, answer) =
            crate::storage::post_keyed(&format!("http://127.0.0.1:{public}"), &format!("k{n}"), &lead("solar", n))
                .await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("sold")));
    }
    let before = metric(&crate::durability::metrics_of(ops).await, "leadrouter_ledger_sequence", &[]);
    assert!(before >= 3.0, "{before}");
    node.kill().unwrap();
    node.wait().unwrap();
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut node = crate::durability::spawn_binary(&config, &data, public, ops, grpc);
    wait_ready(ops).await;
    assert_eq!(
        metric(&crate::durability::metrics_of(ops).await, "leadrouter_ledger_sequence", &[]),
        before,
        "not 0 until the next sale"
    );
    node.kill().unwrap();
    node.wait().unwrap();
}

/// Found by `loadtest pull`: with concurrent sales, position p + 1 could be journaled (and
/// handed out) before p; the buyer's next cursor then acknowledged p unseen: sold, charged,
/// never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_fetching_during_concurrent_sales_gets_every_lead_once() {
    let mut market = pull_market();
    market["topups"] = json!([topup("b1", "100000.00")]);
    let server = Arc::new(start(market).await);
    let (posters, each) = (16u32, 40u32);
    let selling: Vec<_> = (0..posters)
        .map(|worker| {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                for n in 0..each {
                    let answer = server.direct(&lead("solar", worker * 1_000 + n)).await;
                    assert_eq!(answer.json["status"], "sold", "{}", answer.json);
                }
            })
        })
        .collect();
    let fetcher = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0u64, Vec::new());
            while seen.len() < (posters * each) as usize {
                // Whether every sale was made is read before the page: an empty page after
                // the last sale means nothing is left, one before it proves nothing.
                let all_sold = server.running.router.sales().len() >= (posters * each) as usize;
                let page = fetch(&server, &cursor.to_string()).await;
                for lead in page.json["leads"].as_array().unwrap() {
                    seen.push(lead["cursor"].as_str().unwrap().parse::<u64>().unwrap());
                }
                cursor = page.json["next"].as_str().unwrap().parse().unwrap();
                if page.json["leads"].as_array().unwrap().is_empty() {
                    if all_sold {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            seen
        })
    };
    for seller in selling {
        seller.await.unwrap();
    }
    let mut seen = tokio::time::timeout(std::time::Duration::from_secs(60), fetcher).await.unwrap().unwrap();
    let total = (posters * each) as u64;
    assert_eq!(seen.len() as u64, total, "every sold lead reached the buyer");
    seen.sort_unstable();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "each once, no position skipped");
}

#[tokio::test]
async fn invoice_and_internal_buyers_are_not_topped_up() {
    let mut market = pull_market();
    let mut invoiced = buyer("b2");
    invoiced["billing"] = json!({"mode": "invoice", "interval": "monthly"});
    let mut internal = buyer("b3");
    internal["billing"] = json!({"mode": "internal"});
    market["buyers"].as_array_mut().unwrap().extend([invoiced, internal]);
    let server = start(market).await;
    let sequence = || server.running.router.journal().clone().event_log().last_sequence();
    let before = sequence();
    for id in ["b2", "b3"] {
        let body = json!({"amount": "50.00", "reference": format!("wire-{id}")});
        let refused = server.admin("POST", &format!("/admin/v1/buyers/{id}/topups"), Some(&body)).await;
        assert_eq!(refused.status, 422, "{}", refused.json);
        assert_eq!(refused.json["error"]["code"], "buyer_not_prepaid");
    }
    assert_eq!(sequence(), before, "nothing reached the ledger");
    let body = json!({"amount": "50.00", "reference": "wire-b1"});
    assert_eq!(server.admin("POST", "/admin/v1/buyers/b1/topups", Some(&body)).await.status, 201);
    assert_eq!(sequence(), before + 1);
}

#[tokio::test]
async fn an_amount_is_read_by_one_strict_grammar_and_a_bad_one_is_a_422_naming_its_field() {
    let server = start(pull_market()).await;
    let sequence = || server.running.router.journal().clone().event_log().last_sequence();
    let before = sequence();
    for bad in ["1_0.0_0", " 10.00", "10.00 ", "+10", "1e3", "10.001", "10."] {
        let body = json!({"amount": bad, "reference": format!("wire {bad}")});
        let refused = server.admin("POST", "/admin/v1/buyers/b1/topups", Some(&body)).await;
        assert_eq!(refused.status, 422, "{bad:?}: {}", refused.json);
        assert_eq!(refused.json["error"]["details"][0]["field"], "amount", "{bad:?}: {}", refused.json);
    }
    let mut campaign = server.admin("GET", "/admin/v1/campaigns/c1", None).await.json;
    campaign["pricing"]["price"] = json!("1_2.00");
    let refused = server.admin("PUT", "/admin/v1/campaigns/c1", Some(&campaign)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    // `pricing` is a tagged union: the path ends there; the message names the value.
    let detail = &refused.json["error"]["details"][0];
    assert!(detail["field"].as_str().unwrap().starts_with("pricing"), "{}", refused.json);
    assert!(detail["message"].as_str().unwrap().contains("1_2.00"), "{}", refused.json);
    assert_eq!(sequence(), before, "nothing was booked");
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c1", None).await.json["pricing"]["price"], "10.00");
}

/// One raw HTTP/1.1 exchange: the status line's code and the body.
async fn raw_exchange(addr: std::net::SocketAddr, request: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_too_long_target_or_too_many_header_bytes_get_the_error_json() {
    let server = start(pull_market()).await;
    for addr in [server.running.public_addr, server.running.ops_addr] {
        let long = "a".repeat(10 * 1024);
        let (status, body) = raw_exchange(
            addr,
            format!("GET /v1/buyer/leads?x={long} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (414, Some("uri_too_long")), "{body}");
        let big = "b".repeat(20 * 1024);
        let (status, body) = raw_exchange(
            addr,
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (431, Some("headers_too_large")), "{body}");
        let many: String = (0..150).map(|n| format!("x-h{n}: v\r\n")).collect();
        let (status, body) =
            raw_exchange(addr, format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (431, Some("headers_too_large")), "{body}");
    }
}

/// #20: `leads_total` counts every whole lead decided, whatever path it came by.
#[tokio::test]
async fn every_path_counts_its_lead_once() {
    // A vertical of its own: the test binary shares one metrics recorder.
    let v = "metered";
    let mut pull = fixed_campaign("c1", "b1", v, "10.00", "http://127.0.0.1:9/unused");
    pull["delivery"] = json!({"mode": "pull"});
    let market = json!({
        "verticals": [vertical(v, "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [pull],
        "topups": [topup("b1", "1000.00")],
    });
    let server = start(market).await;
    let counts = |page: &str| {
        let of = |name: &str, outcome: &str| metric(page, name, &[("vertical", v), ("outcome", outcome)]);
        (
            of("leadrouter_pings_total", "bid"),
            of("leadrouter_posts_total", "sold"),
            of("leadrouter_leads_total", "sold"),
            of("leadrouter_leads_total", "invalid"),
        )
    };
    let ping = server.ping(&ping_body(v)).await;
    let ping_id = ping.json["ping_id"].as_str().unwrap().to_string();
    assert_eq!(server.post(&ping_id, &lead(v, 1)).await.json["status"], "sold");
    assert_eq!(counts(&server.metrics().await), (1.0, 1.0, 1.0, 0.0), "ping and post");
    assert_eq!(server.direct(&lead(v, 2)).await.json["status"], "sold");
    let mut bad = lead(v, 3);
    bad["email"] = json!("not-an-email");
    assert_eq!(server.direct(&bad).await.status, 422);
    assert_eq!(counts(&server.metrics().await), (1.0, 1.0, 2.0, 1.0), "a direct post, an invalid one");
    let csv = format!("vertical,first_name,last_name,email,phone,zip,fields.roof_type\n{v},Eva,Berg,eva@example.com,089 7654321,80331,tile\n");
    let bulk = send_raw(&server, "/v1/leads/bulk", "text/csv", csv).await;
    assert_eq!(bulk.status, 200, "{}", bulk.json);
    assert_eq!(counts(&server.metrics().await), (1.0, 1.0, 3.0, 1.0), "a bulk row");
}

/// #9: control characters, a custom field given twice, a CSV column given twice.
#[tokio::test]
async fn control_characters_and_names_given_twice_are_refused_with_their_path() {
    let server = start(pull_market()).await;
    let sequence = || server.running.router.journal().clone().event_log().last_sequence();
    let before = sequence();
    for bad in ["tile\u{0}", "tile\u{1b}[31m", "tile\r\nX-Injected: 1", "a\tb"] {
        let mut body = lead("solar", 1);
        body["fields"]["roof_type"] = json!(bad);
        let refused = server.direct(&body).await;
        assert_eq!(refused.status, 422, "{bad:?}: {}", refused.json);
        assert_eq!(refused.json["error"]["details"][0]["field"], "fields.roof_type", "{}", refused.json);
        let mut ping = ping_body("solar");
        ping["fields"]["roof_type"] = json!(bad);
        assert_eq!(server.ping(&ping).await.status, 422, "{bad:?} in a ping");
    }
    let twice =
        lead("solar", 2).to_string().replace(r#""roof_type":"tile""#, r#""roof_type":"tile","roof_type":"flat""#);
    assert!(twice.contains("flat"));
    let refused = send_raw(&server, "/v1/leads", "application/json", twice).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert_eq!(refused.json["error"]["details"][0]["field"], "fields", "{}", refused.json);
    let csv = "vertical,email,email\nsolar,a@example.com,b@example.com\n";
    let refused = send_raw(&server, "/v1/leads/bulk", "text/csv", csv.to_string()).await;
    assert!((400..500).contains(&refused.status), "{}", refused.json);
    assert!(refused.json["error"]["message"].as_str().unwrap().contains("appears twice"), "{}", refused.json);
    assert_eq!(sequence(), before, "nothing was sold");
}

/// #10: personal data in a ping under other names, or shaped like an email or a phone.
#[tokio::test]
async fn a_ping_refuses_personal_data_whatever_its_field_is_called() {
    let server = start(pull_market()).await;
    for (key, value) in [
        ("tel", json!("4711")),
        ("vorname", json!("Anna")),
        ("handy", json!("x")),
        ("contact", json!("anna@example.com")),
        ("callback", json!("089 1234567")),
        ("callback", json!("+49 89 1234567")),
        ("notes", json!(["ok", "555-123-4567"])),
    ] {
        let mut ping = ping_body("solar");
        ping["fields"][key] = value.clone();
        let refused = server.ping(&ping).await;
        assert_eq!(refused.status, 422, "{key}={value}: {}", refused.json);
        assert_eq!(refused.json["error"]["details"][0]["field"], format!("fields.{key}"), "{}", refused.json);
    }
    for (key, value) in
        [("meter_number", json!("12345678")), ("move_date", json!("2026-12-03")), ("loan", json!("25000.00"))]
    {
        let mut ping = ping_body("solar");
        ping["fields"][key] = value.clone();
        assert_eq!(server.ping(&ping).await.status, 200, "{key}={value} is not personal data");
    }
}

/// #5: an auction compared USD 30.00 and EUR 10.00 as 30 > 10. Every campaign of a vertical
/// now sells in one currency, checked whenever the market changes.
#[tokio::test]
async fn a_vertical_sells_in_one_currency() {
    let server = start(pull_market()).await;
    let mut dollars = buyer("b2");
    dollars["currency"] = json!("USD");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b2", Some(&dollars)).await.status, 201);
    let mut rival = fixed_campaign("c2", "b2", "solar", "30.00", "http://127.0.0.1:9/unused");
    rival["delivery"] = json!({"mode": "pull"});
    let refused = server.admin("PUT", "/admin/v1/campaigns/c2", Some(&rival)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    let message = refused.json["error"]["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("USD") && message.contains("EUR"), "{message}");
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c2", None).await.status, 404, "nothing stored");
    // Another vertical may sell in dollars.
    assert_eq!(
        server.admin("PUT", "/admin/v1/verticals/roofing", Some(&vertical("roofing", "ping_post"))).await.status,
        201
    );
    rival["vertical"] = json!("roofing");
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c2", Some(&rival)).await.status, 201);
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    // A buyer switching currency while another vertical's campaign of it sells in the old
    // one is caught the same way.
    let mut euro_roofing = fixed_campaign("c3", "b1", "roofing", "20.00", "http://127.0.0.1:9/unused");
    euro_roofing["delivery"] = json!({"mode": "pull"});
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c3", Some(&euro_roofing)).await.status, 422, "b1 pays in EUR");
    let mut switched = server.admin("GET", "/admin/v1/buyers/b2", None).await.json;
    switched["currency"] = json!("EUR");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b2", Some(&switched)).await.status, 200);
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c3", Some(&euro_roofing)).await.status, 201, "now all EUR");
    switched["currency"] = json!("GBP");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b2", Some(&switched)).await.status, 422);
}

/// A supplier's POST of a body given as text (a CSV, or JSON no `Value` can hold).
async fn send_raw(server: &TestServer, path: &str, content_type: &str, body: String) -> Answer {
    let key = format!("Bearer {SUPPLIER_KEY}");
    let url = format!("{}{path}", server.base);
    server.send("POST", &url, &[("authorization", &key), ("content-type", content_type)], body).await
}

/// A client on `from` (any 127/8 address: loopback answers them all) that sends a direct
/// post's headers and then one body byte every 200 ms, and reads whatever comes back.
async fn slow_body(from: std::net::Ipv4Addr, to: std::net::SocketAddr) -> (u16, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket.connect(to).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/leads HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {SUPPLIER_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    );
    let trickle = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        for _ in 0..1000 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    (text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0), started.elapsed())
}

/// Defect 2: 8,400 connections trickling bodies took every in-flight permit. Now a slow
/// body holds a connection (bounded per client address) and no permit, and is cut at its
/// deadline; posts from elsewhere, even with the same key, are sold meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_body_flood_from_one_address_is_bounded_and_locks_no_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::durability::toml_of(&pull_market())).unwrap();
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--admin-token", ADMIN_TOKEN, "--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--max-connections-per-address", "40", "--body-timeout-ms", "1500"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(ops).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], public).into();
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(tokio::spawn(slow_body(attacker, addr)));
        // In order, so that the first 40 are the ones let in.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let base = format!("http://127.0.0.1:{public}");
    for n in 0..20 {
        let (status, answer) = crate::storage::post_keyed(&base, &format!("k{n}"), &lead("solar", n)).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("sold")), "{answer}");
    }
    let mut answers = Vec::new();
    for client in flood {
        answers.push(client.await.unwrap());
    }
    let refused = answers.iter().filter(|(status, _)| *status == 503).count();
    let cut = answers.iter().filter(|(status, _)| *status == 408).count();
    assert_eq!((refused, cut), (20, 40), "{answers:?}");
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(slowest < std::time::Duration::from_secs(15), "cut at the deadline, not left open: {slowest:?}");
    let page = crate::durability::metrics_of(ops).await;
    let counted =
        metric(&page, "leadrouter_connections_refused_total", &[("listener", "public"), ("bound", "address")]);
    assert_eq!(counted, 20.0);
    // The address's places are given back with its connections.
    let (status, answer) = crate::storage::post_keyed(&base, "after", &lead("solar", 99)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("sold")));
    let (status, _) = slow_body(attacker, addr).await;
    assert_eq!(status, 408, "let in again");
    node.kill().unwrap();
    node.wait().unwrap();
}

/// Defect 2, second half: one key holder with many requests in flight (here to a buyer that
/// hangs) takes at most its share; others are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_holds_at_most_its_share_of_requests_in_flight() {
    let hanging = mock_buyer(|_, _| Reply::Hang).await;
    let mut pull = fixed_campaign("c2", "b1", "roofing", "10.00", "http://127.0.0.1:9/unused");
    pull["delivery"] = json!({"mode": "pull"});
    let market = json!({
        "verticals": [vertical("solar", "ping_post"), vertical("roofing", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY), supplier("s2", OTHER_SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [fixed_campaign("c1", "b1", "solar", "10.00", &hanging.post_url()), pull],
        "topups": [topup("b1", "1000.00")],
    });
    let config: leadrouter::server::FileConfig = serde_json::from_value(market).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut options = leadrouter::server::ServerOptions::ephemeral(
        data.path().to_path_buf(),
        config,
        Arc::new(SystemClock),
        ADMIN_TOKEN,
    );
    options.limits.in_flight_per_key_max = 4;
    let server = start_with(options, data).await;
    let held: Vec<_> = (0..4)
        .map(|n| {
            let base = server.base.clone();
            tokio::spawn(async move { crate::storage::post_keyed(&base, &format!("h{n}"), &lead("solar", n)).await })
        })
        .collect();
    eventually("four posts reach the hanging buyer", || hanging.count("/post") == 4).await;
    for n in 4..8 {
        let answer = server.direct(&lead("solar", n)).await;
        assert_eq!((answer.status, &answer.json["error"]["code"]), (503, &json!("overloaded")), "{}", answer.json);
    }
    let other = server.supplier("/v1/leads", OTHER_SUPPLIER_KEY, &lead("roofing", 100)).await;
    assert_eq!(other.json["status"], "sold", "another key is served: {}", other.json);
    assert_eq!(hanging.count("/post"), 4, "the refused ones reached no buyer");
    for post in held {
        let (status, _) = post.await.unwrap();
        assert_eq!(status, 200, "answered once the buyer's deadline passed");
    }
    let after = server.supplier("/v1/leads", SUPPLIER_KEY, &lead("roofing", 101)).await;
    assert_eq!(after.json["status"], "sold", "its places are given back: {}", after.json);
}

/// Everything under the journal dir, as one byte string to search.
fn journal_bytes(data: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data.join("journal")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Defect 13: dedup keys were plain SHA-256 of buyer and contact, so anyone reading the
/// journal or Redis recovered phone numbers by trying them all. They are keyed now under
/// the data dir's secret, kept across restarts; a store written before the secret still
/// catches duplicates of its plainly keyed sales for one window.
#[tokio::test]
async fn dedup_keys_are_made_under_the_data_dirs_secret_and_an_upgraded_store_keeps_its_windows() {
    use leadrouter::domain::dedup::{to_hex, DedupKeying, DedupSecret};
    let mut market = pull_market();
    market["campaigns"][0]["dedup_days"] = json!(30);
    let server = start(market.clone()).await;
    let sold = server.direct(&lead("solar", 1)).await.json;
    assert_eq!(sold["status"], "sold");
    let file: Value = serde_json::from_slice(&std::fs::read(server.data.path().join("dedup-secret")).unwrap()).unwrap();
    let secret = DedupSecret::from_hex(file["secret"].as_str().unwrap()).unwrap();
    let contacts = |n: u32| vec![format!("phone:+4989{}", 1_000_000 + n), format!("email:anna{n}@example.com")];
    let keyed = DedupKeying::new(secret.clone()).keys_for("b1", &contacts(1));
    let now = chrono::Utc::now();
    let plain_keying = DedupKeying { plain_until_then: Some(now), ..DedupKeying::new(secret) };
    let plain = plain_keying.plain_keys_for("b1", &contacts(1), now, chrono::Duration::days(1));
    let journaled = journal_bytes(server.data.path());
    assert!(contains(&journaled, &to_hex(&keyed[0])), "the keyed form is journaled");
    assert!(!contains(&journaled, &to_hex(&plain[0])), "the plain hash is not");

    // The same secret after a restart: the window holds.
    let data = server.stop().await;
    let server = start_in(market.clone(), Arc::new(SystemClock), data).await;
    assert_eq!(server.direct(&lead("solar", 1)).await.json["reason"], "duplicate");

    // A store from before the secret: a sale journaled with plain keys, no secret file.
    let data = server.stop().await;
    let (journal, _) = leadrouter::store::journal::Journal::open(&data.path().join("journal")).unwrap();
    let events = leadrouter::store::EventLog::read_after(&journal, 0, 1_000).unwrap();
    let mut old = events
        .into_iter()
        .find_map(|e| match e.event {
            leadrouter::domain::ledger::Event::SaleSettled(sale) if sale.lead_id == sold["lead_id"] => {
                Some(std::sync::Arc::unwrap_or_clone(sale))
            }
            _ => None,
        })
        .expect("the sale is journaled");
    old.sale_id = "sal_from_before_the_secret".into();
    old.dedup_keys =
        plain_keying.plain_keys_for("b1", &contacts(5), now, chrono::Duration::days(1)).iter().map(to_hex).collect();
    journal.append(leadrouter::domain::ledger::Event::from(old), now).await.unwrap();
    journal.close().await;
    drop(journal);
    std::fs::remove_file(data.path().join("dedup-secret")).unwrap();
    let server = start_in(market, Arc::new(SystemClock), data).await;
    let duplicate = server.direct(&lead("solar", 5)).await.json;
    assert_eq!(duplicate["reason"], "duplicate", "the plainly keyed sale is still in its window: {duplicate}");
    assert_eq!(server.direct(&lead("solar", 6)).await.json["status"], "sold");
    let file: Value = serde_json::from_slice(&std::fs::read(server.data.path().join("dedup-secret")).unwrap()).unwrap();
    assert!(file["plain_keys_until"].is_string(), "the change is remembered: {file}");
}
