//! Applying ledger entries: each batch in one transaction together with the cursor, so a
//! crash at any moment leaves either all of a batch and its cursor, or none of it.
//!
//! Entries at or below the cursor are skipped (a replay after a crash, or a second worker
//! on the same database); an entry that skips a sequence is refused, never papered over.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::StoreError;
use crate::domain::facts::{Buyer, Entry, Fact, Return, Sale, Supplier, TopUp};
use crate::domain::money;

pub fn applied(connection: &Connection) -> Result<u64, StoreError> {
    let applied: i64 = connection.query_row("SELECT applied FROM cursor WHERE id = 1", [], |row| row.get(0))?;
    Ok(applied as u64)
}

/// Applies the entries after the cursor; answers the cursor afterwards.
pub fn apply(connection: &mut Connection, entries: &[Entry]) -> Result<u64, StoreError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cursor = applied(&tx)?;
    for entry in entries {
        if entry.sequence <= cursor {
            continue;
        }
        if entry.sequence != cursor + 1 {
            return Err(StoreError::Gap { applied: cursor, got: entry.sequence });
        }
        apply_one(&tx, entry)?;
        cursor = entry.sequence;
    }
    tx.execute("UPDATE cursor SET applied = ?1 WHERE id = 1", params![cursor as i64])?;
    tx.commit()?;
    Ok(cursor)
}

fn apply_one(tx: &Transaction<'_>, entry: &Entry) -> Result<(), StoreError> {
    let sequence = entry.sequence as i64;
    match &entry.fact {
        Fact::Sale(sale) => insert_sale(tx, sequence, sale),
        Fact::Return(ret) => insert_return(tx, sequence, ret),
        Fact::TopUp(topup) => insert_topup(tx, sequence, entry.at, topup),
        Fact::Buyer(buyer) => upsert_buyer(tx, buyer),
        Fact::Supplier(supplier) => upsert_supplier(tx, supplier),
    }
}

fn insert_sale(tx: &Transaction<'_>, sequence: i64, sale: &Sale) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sales (sale_id, sequence, lead_id, ping_id, supplier_id, buyer_id, campaign_id, vertical,
            country, model, price, payout, currency, sold_at, internal, buyer_reference)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            sale.sale_id.as_str(),
            sequence,
            sale.lead_id.as_str(),
            sale.ping_id.as_ref().map_or("", |id| id.as_str()),
            sale.supplier_id.as_str(),
            sale.buyer_id.as_str(),
            sale.campaign_id.as_str(),
            sale.vertical,
            sale.country,
            sale.model.as_str(),
            money::format(sale.price),
            money::format(sale.payout),
            sale.currency.as_str(),
            sale.sold_at.to_rfc3339(),
            sale.internal,
            sale.buyer_reference,
        ],
    )?;
    Ok(())
}

fn insert_return(tx: &Transaction<'_>, sequence: i64, ret: &Return) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO returns (return_id, sequence, sale_id, buyer_id, supplier_id, approved, credit,
            payout_reversed, currency, reason, note, requested_at, resolved_at, sold_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            ret.return_id.as_str(),
            sequence,
            ret.sale_id.as_str(),
            ret.buyer_id.as_str(),
            ret.supplier_id.as_str(),
            ret.approved,
            money::format(ret.credit),
            money::format(ret.payout_reversed),
            ret.currency.as_str(),
            ret.reason,
            ret.note,
            ret.requested_at.to_rfc3339(),
            ret.resolved_at.to_rfc3339(),
            ret.sold_at.to_rfc3339(),
        ],
    )?;
    Ok(())
}

fn insert_topup(tx: &Transaction<'_>, sequence: i64, at: DateTime<Utc>, topup: &TopUp) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO topups (sequence, buyer_id, amount, reference, balance_after, currency, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            sequence,
            topup.buyer_id.as_str(),
            money::format(topup.amount),
            topup.reference,
            money::format(topup.balance_after),
            topup.currency.as_str(),
            at.to_rfc3339(),
        ],
    )?;
    Ok(())
}

fn upsert_buyer(tx: &Transaction<'_>, buyer: &Buyer) -> Result<(), StoreError> {
    // Where the account's billing stands (billed_through, balance) is the worker's
    // own state and survives a settings change.
    tx.execute(
        "INSERT INTO accounts (kind, id, name, email, currency, timezone, mode, interval, payment_terms_days, credit_limit)
         VALUES ('buyer', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, email = excluded.email,
            currency = excluded.currency, timezone = excluded.timezone, mode = excluded.mode,
            interval = excluded.interval, payment_terms_days = excluded.payment_terms_days,
            credit_limit = excluded.credit_limit",
        params![
            buyer.buyer_id.as_str(),
            buyer.name,
            buyer.email,
            buyer.currency.as_str(),
            buyer.timezone.name(),
            buyer.mode.as_str(),
            buyer.interval.as_str(),
            buyer.payment_terms_days,
            buyer.credit_limit.map(money::format),
        ],
    )?;
    Ok(())
}

fn upsert_supplier(tx: &Transaction<'_>, supplier: &Supplier) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO accounts (kind, id, name, email, timezone, interval)
         VALUES ('supplier', ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, email = excluded.email,
            timezone = excluded.timezone, interval = excluded.interval",
        params![
            supplier.supplier_id.as_str(),
            supplier.name,
            supplier.email,
            supplier.timezone.name(),
            supplier.interval.as_str()
        ],
    )?;
    Ok(())
}

/// The account's email, if it has one.
pub fn email_of(connection: &Connection, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
    let email: Option<Option<String>> = connection
        .query_row("SELECT email FROM accounts WHERE kind = ?1 AND id = ?2", params![kind, id], |row| row.get(0))
        .optional()?;
    Ok(email.flatten().filter(|email| !email.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::TopUp;
    use rust_decimal_macros::dec;

    fn topup(sequence: u64) -> Entry {
        Entry {
            sequence,
            at: "2026-11-02T10:00:00Z".parse().unwrap(),
            fact: Fact::TopUp(TopUp {
                buyer_id: "buy_1".into(),
                amount: dec!(100),
                reference: format!("wire-{sequence}"),
                balance_after: dec!(100),
                currency: leadrouter_types::Currency::EUR,
            }),
        }
    }

    fn memory() -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        super::super::prepare_schema(&mut connection).unwrap();
        connection
    }

    #[test]
    fn entries_at_or_below_the_cursor_are_applied_once() {
        let mut connection = memory();
        assert_eq!(apply(&mut connection, &[topup(1), topup(2)]).unwrap(), 2);
        assert_eq!(apply(&mut connection, &[topup(1), topup(2), topup(3)]).unwrap(), 3);
        let count: i64 = connection.query_row("SELECT COUNT(*) FROM topups", [], |row| row.get(0)).unwrap();
        assert_eq!(count, 3);
    }

    #[test]
    fn a_gap_is_refused_and_applies_nothing_of_its_batch() {
        let mut connection = memory();
        apply(&mut connection, &[topup(1)]).unwrap();
        let error = apply(&mut connection, &[topup(2), topup(4)]).unwrap_err();
        assert!(matches!(error, StoreError::Gap { applied: 2, got: 4 }), "{error}");
        assert_eq!(applied(&connection).unwrap(), 1);
        let count: i64 = connection.query_row("SELECT COUNT(*) FROM topups", [], |row| row.get(0)).unwrap();
        assert_eq!(count, 1);
    }
}
