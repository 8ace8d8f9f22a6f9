//! Recording a payment against an invoice: partial payments add up; a payment above what
//! is left to pay is refused and changes nothing.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use rust_decimal::Decimal;

use crate::domain::document::DocumentKind;
use crate::domain::money;
use crate::store::documents::{self, Document};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no invoice {0}")]
    UnknownInvoice(String),
    #[error("the payment of {amount} exceeds the amount due of {due}")]
    Overpayment { amount: Decimal, due: Decimal },
    #[error("payment {reference:?} was recorded with {recorded}, not {amount}")]
    ReferenceReused { reference: String, recorded: Decimal, amount: Decimal },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A payment as a client sends it (validated by the caller: positive, at most two places).
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub amount: Decimal,
    pub paid_at: DateTime<Utc>,
    pub reference: String,
}

pub fn record(connection: &mut Connection, number: &str, payment: &NewPayment) -> Result<Document, PaymentError> {
    let tx =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
    let invoice = documents::load(&tx, number)?
        .filter(|document| document.kind == DocumentKind::Invoice)
        .ok_or_else(|| PaymentError::UnknownInvoice(number.to_string()))?;
    // A reference names one payment: sent again (a retry), it is the first answer; sent
    // with another amount, it is a mistake to refuse, never a second payment.
    if let Some(recorded) = invoice.payments.iter().find(|p| p.reference == payment.reference) {
        if recorded.amount != payment.amount {
            return Err(PaymentError::ReferenceReused {
                reference: payment.reference.clone(),
                recorded: recorded.amount,
                amount: payment.amount,
            });
        }
        return Ok(invoice);
    }
    let due = invoice.amount_due().unwrap_or_default();
    if payment.amount > due {
        return Err(PaymentError::Overpayment { amount: payment.amount, due });
    }
    tx.execute(
        "INSERT INTO payments (number, position, amount, paid_at, reference) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            number,
            invoice.payments.len() as i64,
            money::format(payment.amount),
            payment.paid_at.to_rfc3339(),
            payment.reference
        ],
    )
    .map_err(StoreError::from)?;
    tx.commit().map_err(StoreError::from)?;
    documents::load(connection, number)?.ok_or_else(|| PaymentError::UnknownInvoice(number.to_string()))
}
