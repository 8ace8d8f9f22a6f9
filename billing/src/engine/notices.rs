//! Notifications a run queues: a document was issued, a reminder, a formal notice. They go
//! to the notification outbox in the run's transaction, so none is lost or queued twice;
//! `notify` sends them when an SMTP server is configured.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Transaction};
use rust_decimal::Decimal;

use crate::domain::document::{DocumentKind, Draft};
use crate::domain::money;
use crate::html::escape;
use crate::store::documents::Document;
use crate::store::{ledger, StoreError};

pub fn document_issued(
    tx: &Transaction<'_>,
    number: &str,
    draft: &Draft,
    as_of: NaiveDate,
    due: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let title = draft.kind.title();
    let subject = format!("{title} {number}");
    let mut facts = vec![
        format!("Period: {}", draft.period),
        format!("Issued: {as_of}"),
        format!("Total: {} {}", money::format(draft.total()), draft.currency),
    ];
    if let Some(due) = due {
        facts.push(format!("Due: {due}"));
    }
    if let Some(closing) = draft.closing_balance {
        facts.push(format!("Closing balance: {} {}", money::format(closing), draft.currency));
    }
    if let Some(original) = &draft.refers_to {
        facts.push(format!("Corrects: {original}"));
    }
    let intro = format!("Your {} {number} has been issued.", title.to_lowercase());
    queue(tx, "document_issued", number, draft.kind, &draft.account_id, &subject, &intro, &facts, now)
}

pub fn dunning(
    tx: &Transaction<'_>,
    invoice: &Document,
    tier: u8,
    amount_due: Decimal,
    as_of: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (kind, subject, intro) = match tier {
        1 => (
            "reminder",
            format!("Payment reminder: invoice {}", invoice.number),
            "This is a friendly reminder that the invoice below is past its due date.",
        ),
        _ => (
            "notice",
            format!("Formal notice: invoice {} is overdue", invoice.number),
            "Despite our reminder, the invoice below remains unpaid. Please pay the amount due without delay.",
        ),
    };
    let facts = vec![
        format!("Invoice: {}", invoice.number),
        format!("Due: {}", invoice.due_date.map(|due| due.to_string()).unwrap_or_default()),
        format!("Amount due: {} {}", money::format(amount_due), invoice.currency),
        format!("As of: {as_of}"),
    ];
    queue(tx, kind, &invoice.number, invoice.kind, &invoice.account_id, &subject, intro, &facts, now)
}

#[allow(clippy::too_many_arguments)]
fn queue(
    tx: &Transaction<'_>,
    kind: &str,
    number: &str,
    document_kind: DocumentKind,
    account_id: &str,
    subject: &str,
    intro: &str,
    facts: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let account_kind = document_kind.account_kind().as_str();
    let recipient = ledger::email_of(tx, account_kind, account_id)?;
    let text = format!("{intro}\n\n{}\n", facts.join("\n"));
    let items: String = facts.iter().map(|fact| format!("<li>{}</li>", escape(fact))).collect();
    let html = format!(
        "<!doctype html><html><body><h1>{}</h1><p>{}</p><ul>{items}</ul></body></html>",
        escape(subject),
        escape(intro)
    );
    // Queued even without an address: the sender takes the account's current email before
    // each attempt, so a notice waits (and is listed) until the router gives it one.
    let status = "pending";
    tx.execute(
        "INSERT INTO notifications (kind, number, account_kind, account_id, recipient, subject, text_body, html_body,
            status, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![kind, number, account_kind, account_id, recipient, subject, text, html, status, now.to_rfc3339()],
    )?;
    Ok(())
}
