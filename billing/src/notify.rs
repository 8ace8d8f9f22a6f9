//! The notification sender: it owns delivering the notification outbox (the
//! `notifications` table that `engine::notices` fills inside a run's transaction) by SMTP,
//! retrying with capped exponential backoff, and listing the outbox for the API.
//!
//! A notification is never dropped or given up on: it stays `pending` until an SMTP server
//! accepts it. Delivery is at least once: a message accepted by the server just before the
//! process dies, whose `sent` mark did not reach the database, is sent again after the
//! restart. Rows with any other status (`sent`) are never sent. A row without an address
//! takes the account's current email before each attempt, so it goes out once the router
//! gives the account one.
//!
//! The database is only held for short reads and writes; the SMTP conversation happens
//! outside the lock. Logs name a notification by its id, kind and document number, never
//! by its address or its content.
//!
//! Timestamps are written as `chrono::Utc::now().to_rfc3339()`, as `engine::notices`
//! does. Due rows are chosen by parsing `next_attempt_at` in Rust, not by comparing strings
//! in SQL, so a value written in another format (fewer fractional digits, `Z`, or SQLite's
//! `datetime('now')` when an operator reschedules by hand) is still compared correctly.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};
use serde::Serialize;
use tokio::sync::watch;

use crate::store::{ledger, Db, StoreError};

pub const NOTIFICATIONS_PENDING: &str = "leadrouter_billing_notifications_pending";
pub const NOTIFICATIONS_SENT_TOTAL: &str = "leadrouter_billing_notifications_sent_total";

/// How often the sender looks for due notifications when the last round sent nothing.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Notifications taken per round.
pub const BATCH_MAX: usize = 50;

/// lettre's timeout for connecting and for each SMTP command.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound on one whole SMTP conversation, should a server answer each command just
/// inside `SMTP_TIMEOUT`.
const SEND_DEADLINE: Duration = Duration::from_secs(60);

/// `last_error` keeps at most this many characters.
const ERROR_CHARS_MAX: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Never carries the URL itself: it may hold a password.
    #[error("invalid SMTP URL: {0}")]
    InvalidUrl(String),
    #[error("unsupported SMTP URL scheme {0:?}: only smtp:// is supported (this build has no TLS)")]
    UnsupportedScheme(String),
    #[error("invalid notification From address: {0}")]
    InvalidFrom(String),
}

/// Where and as whom notifications are sent. Plain SMTP only: lettre is built without TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// (user, password) for SMTP AUTH.
    pub credentials: Option<(String, String)>,
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("from", &self.from)
            .finish()
    }
}

const SMTP_PORT: u16 = 25;

/// Parses `smtp://host[:port]` or `smtp://user:pass@host[:port]` (port 25 by default; user
/// and password may be percent-encoded; an IPv6 host goes in brackets). `from` must be a
/// valid mailbox (`billing@example.com` or `Billing <billing@example.com>`).
pub fn parse_smtp_url(url: &str, from: &str) -> Result<SmtpConfig, NotifyError> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(NotifyError::InvalidUrl("expected smtp://[user:pass@]host[:port]".into()));
    };
    if !scheme.eq_ignore_ascii_case("smtp") {
        return Err(NotifyError::UnsupportedScheme(scheme.to_string()));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(NotifyError::InvalidUrl("paths, query parameters and fragments are not supported".into()));
    }
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            let Some((user, password)) = userinfo.split_once(':') else {
                return Err(NotifyError::InvalidUrl("credentials must be given as user:password".into()));
            };
            let user = percent_decode(user)?;
            if user.is_empty() {
                return Err(NotifyError::InvalidUrl("the user name is empty".into()));
            }
            (Some((user, percent_decode(password)?)), host_port)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(inside) = host_port.strip_prefix('[') {
        let Some((host, after)) = inside.split_once(']') else {
            return Err(NotifyError::InvalidUrl("unclosed [ in the host".into()));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(NotifyError::InvalidUrl("unexpected text after the IPv6 host".into())),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(NotifyError::InvalidUrl("the host is empty".into()));
    }
    let bracketed = host_port.starts_with('[');
    if host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@' || (c == ':' && !bracketed)) {
        return Err(NotifyError::InvalidUrl("the host contains invalid characters".into()));
    }
    let port = match port {
        None => SMTP_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(NotifyError::InvalidUrl("the port must be a number from 1 to 65535".into())),
        },
    };
    if let Err(error) = from.parse::<Mailbox>() {
        return Err(NotifyError::InvalidFrom(error.to_string()));
    }
    Ok(SmtpConfig { host: host.to_string(), port, credentials, from: from.to_string() })
}

fn percent_decode(text: &str) -> Result<String, NotifyError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) else {
                return Err(NotifyError::InvalidUrl("invalid percent-encoding in the credentials".into()));
            };
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| NotifyError::InvalidUrl("the credentials are not UTF-8".into()))
}

/// Waits between attempts of one notification: `base` after the first failure, doubling
/// after each further one, never more than `cap`. There is no last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(5), cap: Duration::from_secs(15 * 60) }
    }
}

impl Backoff {
    /// The wait after `attempts` failed attempts (counting the one that just failed):
    /// `base · 2^(attempts − 1)`, at most `cap`; `delay(0)` is `base` too. Never overflows.
    pub fn delay(&self, attempts: u32) -> Duration {
        1u32.checked_shl(attempts.saturating_sub(1))
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |delay| delay.min(self.cap))
    }
}

/// A notification as the API lists it (bodies left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub number: String,
    pub account_kind: String,
    pub account_id: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

/// Notifications with `id > after` (and the given status, if any), by id, at most `limit`.
/// The caller pages on with the last id returned.
pub fn list(
    connection: &Connection,
    status: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(
        "SELECT id, kind, number, account_kind, account_id, recipient, subject, status, attempts, last_error,
            created_at, sent_at, next_attempt_at
         FROM notifications WHERE id > ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![after, status, limit], |row| {
        Ok(Notification {
            id: row.get(0)?,
            kind: text(row, 1)?.unwrap_or_default(),
            number: text(row, 2)?.unwrap_or_default(),
            account_kind: text(row, 3)?.unwrap_or_default(),
            account_id: text(row, 4)?.unwrap_or_default(),
            recipient: text(row, 5)?,
            subject: text(row, 6)?.unwrap_or_default(),
            status: text(row, 7)?.unwrap_or_default(),
            attempts: integer(row, 8)?,
            last_error: text(row, 9)?,
            created_at: text(row, 10)?.unwrap_or_default(),
            sent_at: text(row, 11)?,
            next_attempt_at: text(row, 12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A column as text whatever SQLite holds in it, so a hand-edited row cannot stop the
/// sender or the listing.
fn text(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => None,
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Integer(value) => Some(value.to_string()),
        ValueRef::Real(value) => Some(value.to_string()),
    })
}

fn integer(row: &Row<'_>, index: usize) -> rusqlite::Result<i64> {
    Ok(match row.get_ref(index)? {
        ValueRef::Integer(value) => value,
        ValueRef::Real(value) => value as i64,
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(0),
        ValueRef::Null | ValueRef::Blob(_) => 0,
    })
}

/// Reads a stored timestamp: RFC 3339 (what this crate writes) or SQLite's
/// `YYYY-MM-DD HH:MM:SS[.fff]` (UTC).
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|at| at.and_utc()))
}

/// A missing or unreadable `next_attempt_at` counts as due: better an early attempt
/// (after which the sender writes a valid time) than a notification that is never sent.
fn is_due(next_attempt_at: Option<&str>, now: DateTime<Utc>) -> bool {
    match next_attempt_at.and_then(parse_instant) {
        Some(at) => at <= now,
        None => true,
    }
}

/// A due notification, read for one attempt.
struct Outgoing {
    id: i64,
    kind: String,
    number: String,
    attempts: i64,
    recipient: Option<String>,
    subject: String,
    text_body: String,
    html_body: String,
}

/// Why an attempt failed: `stored` goes to `last_error` (it may quote the server, which
/// may quote the address); `logged` is safe for logs (no address, no content).
struct Failure {
    stored: String,
    logged: String,
}

impl Failure {
    fn new(stored: String, logged: impl Into<String>) -> Failure {
        Failure { stored, logged: logged.into() }
    }
}

/// Sends the outbox until `shutdown` becomes true: a round every `POLL_INTERVAL`, and
/// at once after a round that sent something. An attempt in progress when shutdown is
/// asked finishes (bounded by the SMTP timeouts) and is recorded; the rest wait for the
/// next start. Should the shutdown sender be dropped, nobody can stop the sender any more,
/// so it keeps sending rather than silently stopping notifications.
pub async fn run_sender(db: Db, smtp: SmtpConfig, backoff: Backoff, mut shutdown: watch::Receiver<bool>) {
    let transport = transport(&smtp);
    let from = smtp.from.parse::<Mailbox>().map_err(|error| error.to_string());
    if from.is_err() {
        tracing::error!("the notification From address is invalid: every attempt fails until it is fixed");
    }
    tracing::info!(host = %smtp.host, port = smtp.port, "notification sender started");
    let mut watching = true;
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let sent = round(&db, &transport, &from, &backoff, &shutdown).await;
        if sent > 0 {
            continue;
        }
        if watching {
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                changed = shutdown.changed() => watching = changed.is_ok(),
            }
        } else {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    tracing::info!("notification sender stopped");
}

fn transport(smtp: &SmtpConfig) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some((user, password)) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    builder.build()
}

/// One round: takes the due notifications, tries each, records each outcome as soon as it
/// is known, and publishes the pending gauge. Returns how many were sent.
async fn round(
    db: &Db,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Result<Mailbox, String>,
    backoff: &Backoff,
    shutdown: &watch::Receiver<bool>,
) -> usize {
    let due = match db.blocking(|connection| take_due(connection, Utc::now())).await {
        Ok(due) => due,
        Err(error) => {
            tracing::error!(%error, "could not read the notification outbox");
            return 0;
        }
    };
    let mut sent = 0;
    for notification in due {
        if *shutdown.borrow() {
            break;
        }
        let outcome = attempt(transport, from, &notification).await;
        let now = Utc::now();
        let attempts = notification.attempts.saturating_add(1);
        let (id, kind, number) = (notification.id, notification.kind.as_str(), notification.number.as_str());
        match outcome {
            Ok(()) => {
                sent += 1;
                metrics::counter!(NOTIFICATIONS_SENT_TOTAL, "outcome" => "sent").increment(1);
                if let Err(error) = db.blocking(move |connection| mark_sent(connection, id, now)).await {
                    // The row stays pending and is sent again: at least once.
                    tracing::error!(%error, notification = id, kind, number, "notification sent but not marked sent");
                } else {
                    tracing::info!(notification = id, kind, number, attempts, "notification sent");
                }
            }
            Err(failure) => {
                metrics::counter!(NOTIFICATIONS_SENT_TOTAL, "outcome" => "failed").increment(1);
                let delay = backoff.delay(u32::try_from(attempts).unwrap_or(u32::MAX));
                let next = TimeDelta::from_std(delay)
                    .ok()
                    .and_then(|delay| now.checked_add_signed(delay))
                    .unwrap_or(now + TimeDelta::days(1));
                let stored = shorten(&failure.stored);
                let marked = db.blocking(move |connection| mark_failed(connection, id, &stored, next)).await;
                if let Err(error) = marked {
                    tracing::error!(%error, notification = id, kind, number, "failed notification attempt not recorded");
                }
                tracing::warn!(
                    notification = id,
                    kind,
                    number,
                    attempts,
                    reason = %failure.logged,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "notification not sent; will retry"
                );
            }
        }
    }
    let pending = db
        .blocking(|connection| {
            connection.query_row("SELECT COUNT(*) FROM notifications WHERE status = 'pending'", [], |row| {
                row.get::<_, i64>(0)
            })
        })
        .await;
    match pending {
        Ok(pending) => metrics::gauge!(NOTIFICATIONS_PENDING).set(pending as f64),
        Err(error) => tracing::error!(%error, "could not count pending notifications"),
    }
    sent
}

/// Every pending notification's id and due time. Sorted in Rust rather than by an
/// `ORDER BY id`, with which SQLite would walk the whole table (sent rows included) in id
/// order instead of reading only the partial index `notifications_pending`.
const PENDING_TIMES: &str = "SELECT id, next_attempt_at FROM notifications WHERE status = 'pending'";

/// The first `BATCH_MAX` pending notifications due at `now`, by id.
fn take_due(connection: &mut Connection, now: DateTime<Utc>) -> Result<Vec<Outgoing>, StoreError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let ids = {
        let mut statement = tx.prepare_cached(PENDING_TIMES)?;
        let mut rows = statement.query([])?;
        let mut pending = Vec::new();
        while let Some(row) = rows.next()? {
            pending.push((row.get::<_, i64>(0)?, text(row, 1)?));
        }
        pending.sort_unstable_by_key(|(id, _)| *id);
        let due = pending.into_iter().filter(|(_, at)| is_due(at.as_deref(), now)).map(|(id, _)| id);
        due.take(BATCH_MAX).collect::<Vec<_>>()
    };
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        let (mut notification, account_kind, account_id) = tx.query_row(
            "SELECT id, kind, number, attempts, recipient, subject, text_body, html_body, account_kind, account_id
             FROM notifications WHERE id = ?1",
            [id],
            |row| {
                let notification = Outgoing {
                    id: row.get(0)?,
                    kind: text(row, 1)?.unwrap_or_default(),
                    number: text(row, 2)?.unwrap_or_default(),
                    attempts: integer(row, 3)?,
                    recipient: text(row, 4)?,
                    subject: text(row, 5)?.unwrap_or_default(),
                    text_body: text(row, 6)?.unwrap_or_default(),
                    html_body: text(row, 7)?.unwrap_or_default(),
                };
                Ok((notification, text(row, 8)?.unwrap_or_default(), text(row, 9)?.unwrap_or_default()))
            },
        )?;
        // A wrong or missing address is fixed by an operator on the account, in the
        // router; the account's update reaches this database with the ledger stream, and
        // a pending notification follows the account's current email from then on. An
        // account without an email keeps the address the notification was queued with.
        match ledger::email_of(&tx, &account_kind, &account_id) {
            Ok(Some(current)) if notification.recipient.as_deref() != Some(current.as_str()) => {
                tx.execute(
                    "UPDATE notifications SET recipient = ?1 WHERE id = ?2 AND status = 'pending'",
                    params![current, id],
                )?;
                notification.recipient = Some(current);
            }
            Ok(_) => {}
            // An unreadable account row must not hold up the outbox: try the address we have.
            Err(error) => tracing::warn!(%error, notification = id, "account email not read"),
        }
        due.push(notification);
    }
    tx.commit()?;
    Ok(due)
}

async fn attempt(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Result<Mailbox, String>,
    notification: &Outgoing,
) -> Result<(), Failure> {
    let from = match from {
        Ok(from) => from.clone(),
        Err(error) => return Err(Failure::new(format!("invalid From address: {error}"), "invalid From address")),
    };
    let recipient = notification.recipient.as_deref().map(str::trim).unwrap_or_default();
    if recipient.is_empty() {
        return Err(Failure::new("no recipient address".into(), "no recipient address"));
    }
    // Stays pending: the operator fixes the account's email in the router (see `take_due`).
    let to = recipient.parse::<Mailbox>().map_err(|error| {
        Failure::new(format!("recipient is not a valid mailbox: {error}"), "recipient is not a valid mailbox")
    })?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(notification.subject.as_str())
        .multipart(MultiPart::alternative_plain_html(notification.text_body.clone(), notification.html_body.clone()))
        .map_err(|error| Failure::new(format!("message not built: {error}"), "message not built"))?;
    match tokio::time::timeout(SEND_DEADLINE, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Failure::new(error.to_string(), smtp_reason(&error))),
        Err(_) => Err(Failure::new(
            format!("SMTP conversation took longer than {} s", SEND_DEADLINE.as_secs()),
            "SMTP conversation too long",
        )),
    }
}

/// What went wrong, without the server's text (which may quote the address).
fn smtp_reason(error: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = error.status() {
        let severity = if error.is_permanent() { "permanent" } else { "transient" };
        format!("SMTP {severity} {code}")
    } else if error.is_timeout() {
        "SMTP timeout".into()
    } else if error.is_response() {
        "unreadable SMTP response".into()
    } else if error.is_client() {
        "SMTP client error".into()
    } else {
        "SMTP connection failed".into()
    }
}

fn shorten(error: &str) -> String {
    let error = error.trim();
    match error.char_indices().nth(ERROR_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error.to_string(),
    }
}

fn mark_sent(connection: &Connection, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    // `last_error` is kept: it tells why earlier attempts failed.
    connection.execute(
        "UPDATE notifications SET status = 'sent', sent_at = ?1, attempts = attempts + 1
         WHERE id = ?2 AND status = 'pending'",
        params![now.to_rfc3339(), id],
    )?;
    Ok(())
}

fn mark_failed(connection: &Connection, id: i64, error: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = ?1, next_attempt_at = ?2
         WHERE id = ?3 AND status = 'pending'",
        params![error, next.to_rfc3339(), id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_compared_as_instants() {
        let now = DateTime::parse_from_rfc3339("2024-03-01T12:00:00.5+00:00").unwrap().with_timezone(&Utc);
        assert!(is_due(Some("2024-03-01T12:00:00+00:00"), now));
        assert!(is_due(Some("2024-03-01T12:00:00.499999999+00:00"), now));
        assert!(!is_due(Some("2024-03-01T12:00:00.6Z"), now));
        assert!(is_due(Some("2024-03-01T13:00:00+01:00"), now));
        assert!(!is_due(Some("2024-03-01T12:00:01+00:00"), now));
        assert!(is_due(Some("2024-03-01 11:59:59"), now));
        assert!(!is_due(Some("2024-03-01 12:00:01.000"), now));
        assert!(is_due(None, now));
        assert!(is_due(Some("garbage"), now));
    }

    #[test]
    fn only_the_pending_index_is_read_for_due_times() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("billing.db")).unwrap();
        let plan: Vec<String> = db.with(|connection| {
            let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {PENDING_TIMES}")).unwrap();
            let rows = statement.query_map([], |row| row.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect()
        });
        assert!(plan.iter().any(|step| step.contains("notifications_pending")), "{plan:?}");
    }

    #[test]
    fn errors_are_shortened_on_a_char_boundary() {
        let long = "é".repeat(ERROR_CHARS_MAX + 10);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), ERROR_CHARS_MAX + 1);
        assert_eq!(shorten(" refused "), "refused");
    }

    #[test]
    fn credentials_are_not_debug_printed() {
        let config = parse_smtp_url("smtp://user:s3cret@mail.example.com", "billing@example.com").unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        let error = parse_smtp_url("smtp://user:s3cret@mail.example.com:x", "billing@example.com").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }
}
