//! The gRPC ledger stream (DESIGN §7) over a real tonic client: replay, live tail,
//! reconnect without gaps or repeats, health.

use std::time::Duration;

use leadrouter::ledger::proto::ledger_event::Event;
use leadrouter::ledger::proto::ledger_stream_client::LedgerStreamClient;
use leadrouter::ledger::proto::{LedgerEvent, SubscribeRequest};
use serde_json::json;
use tonic::Streaming;

use crate::harness::*;

async fn next(stream: &mut Streaming<LedgerEvent>) -> LedgerEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event within 5 s")
        .expect("a healthy stream")
        .expect("the stream goes on")
}

async fn subscribe(addr: std::net::SocketAddr, after: u64) -> Streaming<LedgerEvent> {
    let mut client = LedgerStreamClient::connect(format!("http://{addr}")).await.unwrap();
    client.subscribe(SubscribeRequest { after_sequence: after, ..Default::default() }).await.unwrap().into_inner()
}

#[tokio::test]
async fn subscribers_replay_then_tail_and_reconnect_without_gaps_or_repeats() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [fixed_campaign("c1", "b1", "solar", "38.50", &sink.post_url())],
        "topups": [topup("b1", "1000.00")],
    }))
    .await;
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold");

    let addr = server.running.grpc_addr;
    let mut stream = subscribe(addr, 0).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut stream).await);
    }
    assert_eq!(seen.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(matches!(seen[0].event, Some(Event::BuyerUpdated(_))));
    assert!(matches!(seen[1].event, Some(Event::SupplierUpdated(_))));
    let Some(Event::BalanceToppedUp(top_up)) = &seen[2].event else { panic!("{:?}", seen[2]) };
    assert_eq!((top_up.amount.as_str(), top_up.balance_after.as_str()), ("1000.00", "1000.00"));
    let Some(Event::SaleSettled(sale)) = &seen[3].event else { panic!("{:?}", seen[3]) };
    assert_eq!(sale.lead_id, sold.json["lead_id"].as_str().unwrap());
    assert_eq!((sale.price.as_str(), sale.payout.as_str(), sale.currency.as_str()), ("38.50", "19.25", "EUR"));

    // Live: a sale after subscribing arrives on the open stream.
    let live = server.direct(&lead("solar", 2)).await;
    let event = next(&mut stream).await;
    assert_eq!(event.sequence, 5);
    let Some(Event::SaleSettled(sale)) = &event.event else { panic!("{event:?}") };
    assert_eq!(sale.lead_id, live.json["lead_id"].as_str().unwrap());
    drop(stream);

    // Away: two more sales; back with the last sequence seen: exactly those two, in order.
    server.direct(&lead("solar", 3)).await;
    server.direct(&lead("solar", 4)).await;
    let mut stream = subscribe(addr, 5).await;
    assert_eq!(next(&mut stream).await.sequence, 6);
    assert_eq!(next(&mut stream).await.sequence, 7);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.message()).await.is_err(),
        "nothing twice, nothing extra"
    );

    // Gauges are process-wide here and other servers start alongside (a fresh journal sets
    // ledger_sequence to 0); `binary.rs` checks the exact value on a process of its own.
    let page = server.metrics().await;
    assert!(page.lines().any(|line| line.starts_with("leadrouter_ledger_sequence ")), "the gauge is exported");
    assert!(metric(&page, "leadrouter_ledger_subscribers", &[]) >= 1.0);
}

#[tokio::test]
async fn grpc_health_answers_serving() {
    let server = start(json!({"verticals": [vertical("solar", "ping_post")]})).await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.running.grpc_addr)).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await.unwrap());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "leadrouter.v1.LedgerStream".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_lists_the_ledger_service_as_grpcurl_would() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = start(json!({"verticals": [vertical("solar", "ping_post")]})).await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.running.grpc_addr)).unwrap();
    let mut reflection = ServerReflectionClient::new(endpoint.connect().await.unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"leadrouter.v1.LedgerStream".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    // Older clients (grpcurl before 1.8.8, grpcio) speak v1alpha.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(endpoint.connect().await.unwrap());
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut answers = alpha.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"leadrouter.v1.LedgerStream".to_string()), "{names:?}");
}

#[tokio::test]
async fn the_server_stops_promptly_while_a_subscriber_is_tailing() {
    let server = start(json!({"verticals": [vertical("solar", "ping_post")]})).await;
    let mut stream = subscribe(server.running.grpc_addr, 0).await;
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited for a subscriber that never leaves");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "no event after the stop: {end:?}");
}

#[tokio::test]
async fn a_resolved_return_reaches_the_stream_with_the_original_sold_at() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut campaign = fixed_campaign("c1", "b1", "solar", "38.50", &sink.post_url());
    campaign["returns_require_approval"] = json!(true);
    let server = start(json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [campaign],
        "topups": [topup("b1", "1000.00")],
    }))
    .await;
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    let sale = server.running.router.sales().all().remove(0);
    let asked =
        server.supplier("/v1/returns", &buyer_key("b1"), &json!({"sale_id": sale.sale_id, "reason": "other"})).await;
    let return_id = asked.json["return_id"].as_str().unwrap().to_string();
    let mut stream = subscribe(server.running.grpc_addr, 4).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.message()).await.is_err(),
        "a pending return is not on the ledger"
    );
    let approved = server.admin("POST", &format!("/admin/v1/returns/{return_id}/approve"), None).await;
    assert_eq!(approved.status, 200);
    let event = next(&mut stream).await;
    assert_eq!(event.sequence, 5);
    let Some(Event::ReturnResolved(resolved)) = &event.event else { panic!("{event:?}") };
    assert_eq!((resolved.return_id.as_str(), resolved.sale_id.as_str()), (return_id.as_str(), sale.sale_id.as_str()));
    assert!(resolved.approved);
    assert_eq!((resolved.credit.as_str(), resolved.payout_reversed.as_str()), ("38.50", "19.25"));
    assert_eq!(resolved.sold_at, sale.sold_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    assert_eq!(resolved.reason, "other");
}
