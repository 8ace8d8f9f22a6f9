//! The notification sender against a real database file and a real SMTP server: what is
//! pending is delivered, failures are retried with backoff until delivered, and nothing
//! else is sent.

mod smtp_sink;

use std::future::Future;
use std::time::Duration;

use leadrouter_billing::notify::{self, parse_smtp_url, Backoff, Notification, NotifyError};
use leadrouter_billing::store::Db;
use rusqlite::params;
use smtp_sink::SmtpSink;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const FROM: &str = "billing@leadrouter.test";
const DEADLINE: Duration = Duration::from_secs(10);
const FAST: Backoff = Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(100) };

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("billing.db")).unwrap();
    (dir, db)
}

struct Queued<'a> {
    kind: &'a str,
    number: &'a str,
    recipient: Option<&'a str>,
    status: &'a str,
    subject: &'a str,
    text: &'a str,
    html: &'a str,
}

impl Default for Queued<'_> {
    fn default() -> Self {
        Queued {
            kind: "document_issued",
            number: "INV-2024-000001",
            recipient: Some("buyer@example.com"),
            status: "pending",
            subject: "Invoice INV-2024-000001",
            text: "Your invoice INV-2024-000001 has been issued.\n\nTotal: 100.00 EUR\n",
            html: "<!doctype html><html><body><h1>Invoice INV-2024-000001</h1></body></html>",
        }
    }
}

/// Queues a row the way `engine::notices` does.
fn queue(db: &Db, row: Queued<'_>) -> i64 {
    db.with(|connection| {
        connection
            .execute(
                "INSERT INTO notifications (kind, number, account_kind, account_id, recipient, subject, text_body,
                    html_body, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, 'buyer', 'b1', ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    row.kind,
                    row.number,
                    row.recipient,
                    row.subject,
                    row.text,
                    row.html,
                    row.status,
                    chrono::Utc::now().to_rfc3339()
                ],
            )
            .unwrap();
        connection.last_insert_rowid()
    })
}

fn get(db: &Db, id: i64) -> Notification {
    db.with(|connection| notify::list(connection, None, id - 1, 1).unwrap()).into_iter().next().unwrap()
}

/// The sender task, as the binary runs it.
struct Sender {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sender {
    fn start(db: &Db, url: &str, backoff: Backoff) -> Sender {
        let smtp = parse_smtp_url(url, FROM).unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(notify::run_sender(db.clone(), smtp, backoff, stopped));
        Sender { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task).await.expect("the sender stops on shutdown").unwrap();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `DEADLINE`.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn eventually_async<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sent(db: &Db, id: i64) -> Option<Notification> {
    Some(get(db, id)).filter(|notification| notification.status == "sent")
}

#[tokio::test]
async fn pending_notifications_are_delivered_as_text_and_html() {
    let (_dir, db) = open();
    let sink = SmtpSink::start().await;
    // Long lines and non-ASCII text, as real notices have, so the parts get encoded.
    let html = format!(
        "<!doctype html><html><body><h1>Invoice INV-2024-000001</h1><p>Your invoice has been issued.</p><ul>{}</ul></body></html>",
        "<li>Total: 1 234.50 €</li>".repeat(5)
    );
    let first = queue(
        &db,
        Queued {
            text: "Your invoice INV-2024-000001 has been issued.\n\nTotal: 1 234.50 €\n",
            html: &html,
            ..Default::default()
        },
    );
    let second = queue(
        &db,
        Queued {
            kind: "reminder",
            number: "INV-2024-000002",
            recipient: Some("other.buyer@example.org"),
            subject: "Payment reminder: invoice INV-2024-000002",
            // Mostly non-ASCII: this part goes out in base64.
            text: "Напоминание: счёт INV-2024-000002 ожидает оплаты.\n",
            html: "<p>This is a friendly reminder.</p>",
            ..Default::default()
        },
    );
    let sender = Sender::start(&db, &sink.url(), Backoff::default());

    let one = eventually("the first notification is sent", || sent(&db, first)).await;
    let two = eventually("the second notification is sent", || sent(&db, second)).await;
    sender.stop().await;

    for notification in [&one, &two] {
        assert_eq!(notification.attempts, 1);
        assert_eq!(notification.last_error, None);
        let sent_at = notification.sent_at.as_deref().expect("sent_at is set");
        chrono::DateTime::parse_from_rfc3339(sent_at).expect("sent_at is RFC 3339");
    }
    let mails = sink.messages();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let mail = mails.iter().find(|mail| mail.recipients == ["buyer@example.com"]).expect("the first mail");
    assert_eq!(mail.from, FROM);
    assert_eq!(mail.header("To").as_deref(), Some("buyer@example.com"));
    assert_eq!(mail.header("From").as_deref(), Some(FROM));
    assert_eq!(mail.header("Subject").as_deref(), Some("Invoice INV-2024-000001"));
    assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"), "{}", mail.data);
    assert_eq!(
        mail.part("text/plain").unwrap().replace("\r\n", "\n"),
        "Your invoice INV-2024-000001 has been issued.\n\nTotal: 1 234.50 €\n"
    );
    assert_eq!(mail.part("text/html").unwrap().replace("\r\n", "\n"), html);

    let mail = mails.iter().find(|mail| mail.recipients == ["other.buyer@example.org"]).expect("the second mail");
    assert_eq!(mail.header("To").as_deref(), Some("other.buyer@example.org"));
    assert_eq!(mail.header("Subject").as_deref(), Some("Payment reminder: invoice INV-2024-000002"));
    assert_eq!(
        mail.part("text/plain").unwrap().replace("\r\n", "\n"),
        "Напоминание: счёт INV-2024-000002 ожидает оплаты.\n"
    );
    assert!(mail.part("text/html").unwrap().contains("<p>This is a friendly reminder.</p>"));
}

#[tokio::test]
async fn a_refused_notification_is_retried_until_delivered_once() {
    let (_dir, db) = open();
    let sink = SmtpSink::start().await;
    sink.reject_next(2);
    let id = queue(&db, Queued::default());
    let sender = Sender::start(&db, &sink.url(), FAST);

    let notification = eventually("the notification is sent", || sent(&db, id)).await;
    sender.stop().await;

    assert_eq!(sink.rejected(), 2);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(notification.attempts, 3);
    let error = notification.last_error.expect("the refusals were recorded");
    assert!(error.contains("451"), "{error}");
}

#[tokio::test]
async fn nothing_is_lost_while_the_smtp_server_is_down() {
    let (_dir, db) = open();
    // A free port with nothing listening on it (yet).
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let id = queue(&db, Queued::default());
    let sender = Sender::start(&db, &format!("smtp://{addr}"), FAST);

    let failed = eventually("an attempt has failed", || {
        Some(get(&db, id)).filter(|notification| notification.attempts >= 1 && notification.last_error.is_some())
    })
    .await;
    assert_eq!(failed.status, "pending");
    assert!(failed.next_attempt_at.is_some());

    let sink = eventually_async("the sink listens on the port", || async { SmtpSink::bind(addr).await.ok() }).await;
    let notification = eventually("the notification is sent", || sent(&db, id)).await;
    sender.stop().await;

    assert!(notification.attempts >= 2, "{notification:?}");
    assert!(notification.last_error.is_some());
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipients, ["buyer@example.com"]);
}

#[tokio::test]
async fn only_pending_notifications_are_sent() {
    let (_dir, db) = open();
    let sink = SmtpSink::start().await;
    let no_recipient =
        queue(&db, Queued { number: "INV-2024-000001", recipient: None, status: "no_recipient", ..Default::default() });
    let already_sent = queue(
        &db,
        Queued { number: "INV-2024-000002", recipient: Some("sent@example.com"), status: "sent", ..Default::default() },
    );
    // Queued last: once it is sent, the rounds have gone past the rows before it.
    let pending = queue(
        &db,
        Queued {
            number: "INV-2024-000003",
            recipient: Some("pending@example.com"),
            subject: "Invoice INV-2024-000003",
            ..Default::default()
        },
    );
    let sender = Sender::start(&db, &sink.url(), FAST);
    eventually("the pending notification is sent", || sent(&db, pending)).await;
    sender.stop().await;

    let mails = sink.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].recipients, ["pending@example.com"]);
    for (id, status) in [(no_recipient, "no_recipient"), (already_sent, "sent")] {
        let notification = get(&db, id);
        assert_eq!(notification.status, status);
        assert_eq!(notification.attempts, 0);
        assert_eq!(notification.sent_at, None);
    }
}

#[tokio::test]
async fn a_bad_address_stays_pending_until_the_account_is_fixed() {
    let (_dir, db) = open();
    let sink = SmtpSink::start().await;
    let bad = queue(&db, Queued { recipient: Some("not an address"), ..Default::default() });
    let good = queue(
        &db,
        Queued {
            number: "INV-2024-000002",
            recipient: Some("good@example.com"),
            subject: "Invoice 2",
            ..Default::default()
        },
    );
    let sender = Sender::start(&db, &sink.url(), FAST);

    // The bad row does not hold up the others.
    eventually("the good notification is sent", || sent(&db, good)).await;
    let failed = eventually("the bad address has failed twice", || {
        Some(get(&db, bad)).filter(|notification| notification.attempts >= 2)
    })
    .await;
    assert_eq!(failed.status, "pending");
    assert!(failed.last_error.as_deref().unwrap().contains("not a valid mailbox"), "{failed:?}");

    // An operator fixes the buyer's email in the router; the account update arrives.
    db.with(|connection| {
        connection
            .execute(
                "INSERT INTO accounts (kind, id, name, email, timezone, interval)
                 VALUES ('buyer', 'b1', 'Buyer One', 'fixed@example.com', 'UTC', 'monthly')",
                [],
            )
            .unwrap()
    });
    let notification = eventually("the fixed notification is sent", || sent(&db, bad)).await;
    sender.stop().await;

    assert_eq!(notification.recipient.as_deref(), Some("fixed@example.com"));
    let mails = sink.messages();
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1].recipients, ["fixed@example.com"]);
}

#[tokio::test]
async fn notifications_are_listed_by_id_and_status() {
    let (_dir, db) = open();
    let ids: Vec<i64> = ["pending", "sent", "pending", "no_recipient"]
        .into_iter()
        .map(|status| queue(&db, Queued { status, ..Default::default() }))
        .collect();
    db.with(|connection| {
        let all = notify::list(connection, None, 0, 100).unwrap();
        assert_eq!(all.iter().map(|n| n.id).collect::<Vec<_>>(), ids);
        let page = notify::list(connection, None, ids[0], 2).unwrap();
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), ids[1..3]);
        let pending = notify::list(connection, Some("pending"), 0, 100).unwrap();
        assert_eq!(pending.iter().map(|n| n.id).collect::<Vec<_>>(), [ids[0], ids[2]]);
        assert!(notify::list(connection, Some("pending"), ids[2], 100).unwrap().is_empty());
        // Bodies are not listed.
        let json = serde_json::to_value(&all[0]).unwrap();
        assert!(json.get("text_body").is_none() && json.get("html_body").is_none());
        assert_eq!(json["recipient"], "buyer@example.com");
        assert_eq!(json["attempts"], 0);
    });
}

#[test]
fn smtp_urls() {
    let plain = parse_smtp_url("smtp://mail.example.com:2525", FROM).unwrap();
    assert_eq!(
        (plain.host.as_str(), plain.port, plain.credentials.clone(), plain.from.as_str()),
        ("mail.example.com", 2525, None, FROM)
    );
    let default_port = parse_smtp_url("smtp://mail.example.com", FROM).unwrap();
    assert_eq!(default_port.port, 25);
    let with_slash = parse_smtp_url("smtp://127.0.0.1:1025/", FROM).unwrap();
    assert_eq!((with_slash.host.as_str(), with_slash.port), ("127.0.0.1", 1025));
    let authenticated = parse_smtp_url("smtp://user:p%40ss:word@mail.example.com:587", FROM).unwrap();
    assert_eq!(authenticated.credentials, Some(("user".to_string(), "p@ss:word".to_string())));
    assert_eq!((authenticated.host.as_str(), authenticated.port), ("mail.example.com", 587));
    let ipv6 = parse_smtp_url("smtp://[::1]:2525", FROM).unwrap();
    assert_eq!((ipv6.host.as_str(), ipv6.port), ("::1", 2525));
    let named_from = parse_smtp_url("SMTP://mail.example.com", "Billing <billing@example.com>").unwrap();
    assert_eq!(named_from.from, "Billing <billing@example.com>");

    for scheme in ["smtps://mail.example.com", "http://mail.example.com", "submission://mail.example.com:587"] {
        assert!(matches!(parse_smtp_url(scheme, FROM), Err(NotifyError::UnsupportedScheme(_))), "{scheme}");
    }
    for invalid in [
        "mail.example.com:25",
        "smtp://",
        "smtp://:25",
        "smtp://mail.example.com:",
        "smtp://mail.example.com:0",
        "smtp://mail.example.com:65536",
        "smtp://mail.example.com:port",
        "smtp://user@mail.example.com",
        "smtp://:pass@mail.example.com",
        "smtp://mail.example.com:25?tls=required",
        "smtp://mail.example.com/ehlo",
        "smtp://mail example.com",
        "smtp://[::1",
        "smtp://user:p%zz@mail.example.com",
    ] {
        assert!(matches!(parse_smtp_url(invalid, FROM), Err(NotifyError::InvalidUrl(_))), "{invalid}");
    }
    for from in ["", "billing", "not an address"] {
        assert!(matches!(parse_smtp_url("smtp://mail.example.com", from), Err(NotifyError::InvalidFrom(_))), "{from}");
    }
    let error = parse_smtp_url("smtps://user:secret@mail.example.com", FROM).unwrap_err();
    assert!(error.to_string().contains("smtps") && !error.to_string().contains("secret"), "{error}");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let backoff = Backoff::default();
    assert_eq!((backoff.base, backoff.cap), (Duration::from_secs(5), Duration::from_secs(15 * 60)));
    let delays: Vec<u64> = (1..=10).map(|attempts| backoff.delay(attempts).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
    assert_eq!(backoff.delay(0), Duration::from_secs(5));
    for attempts in [31, 32, 33, 64, 1000, u32::MAX] {
        assert_eq!(backoff.delay(attempts), backoff.cap, "{attempts}");
    }
    let huge = Backoff { base: Duration::MAX, cap: Duration::from_secs(60) };
    assert_eq!(huge.delay(1), Duration::from_secs(60));
    assert_eq!(huge.delay(2), Duration::from_secs(60));
    assert_eq!(FAST.delay(1), Duration::from_millis(20));
    assert_eq!(FAST.delay(2), Duration::from_millis(40));
    assert_eq!(FAST.delay(4), Duration::from_millis(100));
}
