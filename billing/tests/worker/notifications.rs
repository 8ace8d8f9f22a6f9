//! Notifications: every issued document and dunning notice is queued, listed, and sent by
//! email through a real SMTP server; a refused send is retried until it goes through.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::smtp_sink::SmtpSink;

async fn notifications(worker: &Worker, query: &str) -> Vec<Value> {
    let answer = worker.get(&format!("/billing/v1/notifications{query}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["notifications"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_documents_and_dunning_are_emailed_and_a_refused_send_is_retried() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    router.sell("solar", 1, "2026-11-02T09:00:00Z").await;
    let sink = SmtpSink::start().await;
    sink.reject_next(2);
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(
        &dir.path().join("billing.db"),
        &router.grpc,
        &[
            "--smtp",
            &sink.url(),
            "--smtp-from",
            "billing@router.example",
            "--smtp-retry-base-ms",
            "20",
            "--smtp-retry-max-ms",
            "100",
        ],
    )
    .await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    worker.run("2026-11-24").await; // reminder: one day past the due date

    let deadline = Instant::now() + Duration::from_secs(20);
    while !notifications(&worker, "?status=pending").await.is_empty() {
        assert!(Instant::now() < deadline, "notifications still pending: {:?}", notifications(&worker, "").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = notifications(&worker, "").await;
    let kinds: Vec<(&str, &str)> =
        all.iter().map(|n| (n["kind"].as_str().unwrap(), n["number"].as_str().unwrap())).collect();
    assert!(kinds.contains(&("document_issued", "INV-2026-000001")), "{kinds:?}");
    assert!(kinds.contains(&("reminder", "INV-2026-000001")), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|(kind, _)| *kind == "reminder").count(), 1);
    assert!(all.iter().all(|n| n["status"] == "sent" || n["status"] == "no_recipient"), "{all:?}");
    assert_eq!(sink.rejected(), 2);
    assert!(all.iter().any(|n| n["attempts"].as_u64().unwrap() >= 2), "the refused sends were retried: {all:?}");

    let mails = sink.messages();
    let sent = all.iter().filter(|n| n["status"] == "sent").count();
    assert_eq!(mails.len(), sent, "each notification is emailed exactly once");
    let invoice_mail = mails
        .iter()
        .find(|mail| mail.header("Subject").as_deref() == Some("Invoice INV-2026-000001"))
        .expect("the invoice email");
    assert_eq!(invoice_mail.recipients, ["inv@buyers.example"]);
    assert_eq!(invoice_mail.from, "billing@router.example");
    let text = invoice_mail.part("text/plain").expect("a plain-text body");
    assert!(text.contains("Total: 40.00 EUR") && text.contains("Due: 2026-11-23"), "{text}");
    assert!(invoice_mail.part("text/html").expect("an HTML body").contains("<li>Total: 40.00 EUR</li>"));
    let reminder = mails
        .iter()
        .find(|mail| mail.header("Subject").is_some_and(|s| s.starts_with("Payment reminder")))
        .expect("reminder");
    assert!(reminder.part("text/plain").unwrap().contains("Amount due: 40.00 EUR"));
}
