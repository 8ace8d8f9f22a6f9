//! A billing run on `as_of`: issues every document whose period has closed, the credit
//! notes for newly approved returns, and the dunning notices that have fallen due, all in
//! one transaction. A second run on the same date finds nothing left to issue.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

use super::notices;
use crate::domain::document::{
    draft_buyer, draft_supplier, due_date, BuyerBook, DocumentKind, Draft, OpenReturn, OpenSale, OpenTopUp,
};
use crate::domain::dunning::{tiers_due, DunningPolicy};
use crate::domain::facts::{BillingMode, DEFAULT_PAYMENT_TERMS_DAYS};
use crate::domain::money;
use crate::domain::period::{Interval, Period};
use crate::store::documents::{self, date, decimal, instant};
use crate::store::{ledger, rows, StoreError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunOutcome {
    pub as_of: NaiveDate,
    pub issued: Vec<String>,
    pub dunned: Vec<Dunned>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dunned {
    pub number: String,
    pub tier: u8,
}

/// How far ahead of the worker's clock a run may be dated: catch-up runs and tests go a few
/// weeks ahead; `9999-12-31` is a typo that would issue documents and dunning for good.
pub const AS_OF_AHEAD_MAX_DAYS: i64 = 366;

/// Refuses an `as_of` more than a year after `now`.
pub fn check_as_of(as_of: NaiveDate, now: DateTime<Utc>) -> Result<(), String> {
    let latest = now.date_naive() + chrono::Duration::days(AS_OF_AHEAD_MAX_DAYS);
    if as_of > latest {
        return Err(format!("{as_of} is more than a year after today ({}); at most {latest}", now.date_naive()));
    }
    Ok(())
}

/// Runs billing for `as_of`; `now` stamps the notifications it queues.
pub fn run(
    connection: &mut Connection,
    as_of: NaiveDate,
    policy: DunningPolicy,
    now: DateTime<Utc>,
) -> Result<RunOutcome, StoreError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let through = ledger::applied(&tx)?;
    tx.execute(
        "INSERT INTO runs (as_of, through_sequence, issued) VALUES (?1, ?2, 0)",
        params![as_of.to_string(), through as i64],
    )?;
    let run_id = tx.last_insert_rowid();
    let mut issued = Vec::new();

    let BuyerItems { mut sales, returned, mut credits } = open_buyer_items(&tx)?;
    let mut topups = open_topups(&tx)?;
    for book in buyer_books(&tx)? {
        let id = book.buyer_id.clone();
        let drafted = draft_buyer(
            &book.book,
            sales.remove(&id).unwrap_or_default().into_iter().map(|sale| with_return(sale, &returned)).collect(),
            credits.remove(&id).unwrap_or_default(),
            topups.remove(&id).unwrap_or_default(),
            as_of,
        );
        for draft in drafted.drafts {
            let due = (draft.kind == DocumentKind::Invoice).then(|| due_date(as_of, book.payment_terms_days));
            issued.push(issue(&tx, &draft, as_of, due, run_id, now)?);
        }
        tx.execute(
            "UPDATE accounts SET billed_through = ?1, balance = ?2 WHERE kind = 'buyer' AND id = ?3",
            params![drafted.billed_through.to_string(), money::format(drafted.balance), id],
        )?;
    }

    let (mut payouts, mut reversals) = open_supplier_items(&tx)?;
    for SupplierBook { supplier_id, interval, zone, billed_through } in supplier_books(&tx, &payouts, &reversals)? {
        let drafted = draft_supplier(
            &supplier_id,
            interval,
            zone,
            billed_through,
            payouts.remove(&supplier_id).unwrap_or_default(),
            reversals.remove(&supplier_id).unwrap_or_default(),
            as_of,
        );
        for draft in drafted.drafts {
            issued.push(issue(&tx, &draft, as_of, None, run_id, now)?);
        }
        tx.execute(
            "INSERT INTO accounts (kind, id, name, timezone, interval, billed_through)
             VALUES ('supplier', ?1, ?1, ?2, ?3, ?4)
             ON CONFLICT (kind, id) DO UPDATE SET billed_through = excluded.billed_through",
            params![supplier_id, zone.name(), interval.as_str(), drafted.billed_through.to_string()],
        )?;
    }

    let dunned = dun(&tx, as_of, policy, now)?;
    tx.execute("UPDATE runs SET issued = ?1 WHERE id = ?2", params![issued.len() as i64, run_id])?;
    tx.commit()?;
    Ok(RunOutcome { as_of, issued, dunned })
}

/// Numbers, stores and announces one document.
fn issue(
    tx: &Transaction<'_>,
    draft: &Draft,
    as_of: NaiveDate,
    due: Option<NaiveDate>,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let number = documents::next_number(tx, draft.kind, as_of.year())?;
    documents::insert(tx, &number, draft, as_of, due, run_id)?;
    notices::document_issued(tx, &number, draft, as_of, due, now)?;
    Ok(number)
}

/// Records the dunning tiers that fell due and queues their notices.
fn dun(
    tx: &Transaction<'_>,
    as_of: NaiveDate,
    policy: DunningPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<Dunned>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT number FROM documents WHERE kind = 'invoice' AND due_date <= ?1
           AND NOT EXISTS (SELECT 1 FROM dunning WHERE dunning.number = documents.number AND tier = 2)
         ORDER BY number",
    )?;
    let candidates: Vec<String> =
        statement.query_map([as_of.to_string()], |row| row.get(0))?.collect::<Result<_, _>>()?;
    let mut dunned = Vec::new();
    for number in candidates {
        let Some(invoice) = documents::load(tx, &number)? else { continue };
        let (Some(due), Some(amount_due)) = (invoice.due_date, invoice.amount_due()) else { continue };
        let recorded: Vec<u8> = invoice.dunning.iter().map(|(tier, _)| *tier).collect();
        for tier in tiers_due(policy, amount_due, due, as_of, &recorded) {
            tx.execute(
                "INSERT INTO dunning (number, tier, date) VALUES (?1, ?2, ?3)",
                params![number, tier, as_of.to_string()],
            )?;
            notices::dunning(tx, &invoice, tier, amount_due, as_of, now)?;
            dunned.push(Dunned { number: number.clone(), tier });
        }
    }
    Ok(dunned)
}

struct Book {
    buyer_id: String,
    book: BuyerBook,
    payment_terms_days: u32,
}

fn buyer_books(tx: &Transaction<'_>) -> Result<Vec<Book>, StoreError> {
    type Row = (String, Option<String>, String, Option<String>, String, Option<u32>, Option<String>, String);
    let rows: Vec<Row> = rows(
        tx,
        "SELECT id, currency, timezone, mode, interval, payment_terms_days, billed_through, balance
         FROM accounts WHERE kind = 'buyer' ORDER BY id",
        [],
    )?;
    let mut books = Vec::new();
    for (id, currency, zone, mode, interval, terms, billed_through, balance) in rows {
        let mode = mode.as_deref().and_then(BillingMode::parse).unwrap_or(BillingMode::Invoice);
        books.push(Book {
            book: BuyerBook {
                buyer_id: id.clone(),
                mode,
                interval: interval_of(&interval)?,
                zone: zone_of(&zone)?,
                currency: currency.unwrap_or_default(),
                billed_through: billed_through.as_deref().map(date).transpose()?,
                balance: decimal(&balance)?,
            },
            buyer_id: id,
            payment_terms_days: terms.filter(|days| *days > 0).unwrap_or(DEFAULT_PAYMENT_TERMS_DAYS),
        });
    }
    Ok(books)
}

type ByAccount<T> = BTreeMap<String, Vec<T>>;

/// What buyers have not been billed for yet.
struct BuyerItems {
    sales: ByAccount<OpenSale>,
    /// Approved returns of unbilled sales, by sale id: those sales are excluded.
    returned: BTreeMap<String, OpenReturn>,
    /// Approved returns of billed sales: the credit notes to issue.
    credits: ByAccount<OpenReturn>,
}

fn open_buyer_items(tx: &Transaction<'_>) -> Result<BuyerItems, StoreError> {
    let sales = open_sales(tx, "buyer_doc", "price", "AND internal = 0")?;
    let mut returned = BTreeMap::new();
    let mut credits: ByAccount<OpenReturn> = BTreeMap::new();
    for (buyer, open) in open_returns(tx, "buyer_doc", "credit", "buyer_id")? {
        if open.sale_document.is_some() {
            credits.entry(buyer).or_default().push(open);
        } else {
            returned.insert(open.sale_id.clone(), open);
        }
    }
    Ok(BuyerItems { sales, returned, credits })
}

fn with_return(mut sale: OpenSale, returned: &BTreeMap<String, OpenReturn>) -> OpenSale {
    sale.returned = returned.get(&sale.sale_id).cloned();
    sale
}

fn open_supplier_items(tx: &Transaction<'_>) -> Result<(ByAccount<OpenSale>, ByAccount<OpenReturn>), StoreError> {
    let sales = open_sales(tx, "supplier_doc", "payout", "")?;
    let mut reversals: ByAccount<OpenReturn> = BTreeMap::new();
    for (supplier, open) in open_returns(tx, "supplier_doc", "payout_reversed", "supplier_id")? {
        reversals.entry(supplier).or_default().push(open);
    }
    Ok((sales, reversals))
}

fn open_sales(tx: &Transaction<'_>, side: &str, amount: &str, filter: &str) -> Result<ByAccount<OpenSale>, StoreError> {
    let account = if side == "buyer_doc" { "buyer_id" } else { "supplier_id" };
    let sql = format!(
        "SELECT {account}, sale_id, lead_id, vertical, campaign_id, currency, sold_at, {amount}, buyer_reference
         FROM sales WHERE {side} IS NULL {filter} ORDER BY sequence"
    );
    type Row = (String, String, String, String, String, String, String, String, Option<String>);
    let rows: Vec<Row> = rows(tx, &sql, [])?;
    let mut by_account: ByAccount<OpenSale> = BTreeMap::new();
    for (account, sale_id, lead_id, vertical, campaign_id, currency, sold_at, amount, buyer_reference) in rows {
        by_account.entry(account).or_default().push(OpenSale {
            sale_id,
            lead_id,
            vertical,
            campaign_id,
            currency,
            sold_at: instant(&sold_at)?,
            amount: decimal(&amount)?,
            returned: None,
            buyer_reference,
        });
    }
    Ok(by_account)
}

/// Approved returns with money to move that are not yet on a document of this side, with
/// the document (and its period) that billed their sale, if any.
fn open_returns(
    tx: &Transaction<'_>,
    side: &str,
    amount: &str,
    account: &str,
) -> Result<Vec<(String, OpenReturn)>, StoreError> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let sql = format!(
        "SELECT r.{account}, r.return_id, r.sale_id, r.reason, r.currency, r.sold_at, r.resolved_at, r.{amount},
                s.{side}, d.period_from, d.period_to, s.buyer_reference
         FROM returns r JOIN sales s ON s.sale_id = r.sale_id LEFT JOIN documents d ON d.number = s.{side}
         WHERE r.approved = 1 AND r.{side} IS NULL
         ORDER BY r.sequence"
    );
    let rows: Vec<Row> = rows(tx, &sql, [])?;
    let mut open = Vec::new();
    for (
        account,
        return_id,
        sale_id,
        reason,
        currency,
        sold_at,
        resolved_at,
        amount,
        document,
        from,
        to,
        buyer_reference,
    ) in rows
    {
        let sale_document = match (document, from, to) {
            (Some(number), Some(from), Some(to)) => Some((number, Period { from: date(&from)?, to: date(&to)? })),
            _ => None,
        };
        let amount = decimal(&amount)?;
        if amount.is_zero() {
            continue; // an internal buyer's return moves no money
        }
        open.push((
            account,
            OpenReturn {
                return_id,
                sale_id,
                reason,
                currency,
                sold_at: instant(&sold_at)?,
                resolved_at: instant(&resolved_at)?,
                amount,
                sale_document,
                buyer_reference,
            },
        ));
    }
    Ok(open)
}

fn open_topups(tx: &Transaction<'_>) -> Result<ByAccount<OpenTopUp>, StoreError> {
    let rows: Vec<(String, i64, String, String, String)> = rows(
        tx,
        "SELECT buyer_id, sequence, at, amount, reference FROM topups WHERE doc IS NULL ORDER BY sequence",
        [],
    )?;
    let mut by_buyer: ByAccount<OpenTopUp> = BTreeMap::new();
    for (buyer, sequence, at, amount, reference) in rows {
        by_buyer.entry(buyer).or_default().push(OpenTopUp {
            sequence: sequence as u64,
            at: instant(&at)?,
            amount: decimal(&amount)?,
            reference,
        });
    }
    Ok(by_buyer)
}

struct SupplierBook {
    supplier_id: String,
    interval: Interval,
    zone: Tz,
    billed_through: Option<NaiveDate>,
}

/// Every supplier with settings or with something to settle (a supplier the stream never
/// described is settled monthly in UTC, the defaults of DESIGN §13.1).
fn supplier_books(
    tx: &Transaction<'_>,
    payouts: &ByAccount<OpenSale>,
    reversals: &ByAccount<OpenReturn>,
) -> Result<Vec<SupplierBook>, StoreError> {
    let rows: Vec<(String, String, String, Option<String>)> =
        rows(tx, "SELECT id, interval, timezone, billed_through FROM accounts WHERE kind = 'supplier'", [])?;
    let mut books = BTreeMap::new();
    for (id, interval, zone, billed_through) in rows {
        books.insert(id, (interval_of(&interval)?, zone_of(&zone)?, billed_through.as_deref().map(date).transpose()?));
    }
    let ids: BTreeSet<&String> = payouts.keys().chain(reversals.keys()).collect();
    for id in ids {
        books.entry(id.clone()).or_insert((Interval::Monthly, chrono_tz::UTC, None));
    }
    let books = books.into_iter().map(|(supplier_id, (interval, zone, billed_through))| SupplierBook {
        supplier_id,
        interval,
        zone,
        billed_through,
    });
    Ok(books.collect())
}

pub fn interval_of(text: &str) -> Result<Interval, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("interval {text:?}")))
}

pub fn zone_of(text: &str) -> Result<Tz, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("time zone {text:?}")))
}
