//! Issued documents: gap-free numbering, storing a draft with the items it bills, and
//! reading documents back with their payments and dunning.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use rust_decimal::Decimal;

use super::StoreError;
use crate::domain::document::{number, AccountKind, DocumentKind, Draft, Line, LineKind};
use crate::domain::dunning::{self, Status};
use crate::domain::money;
use crate::domain::period::Period;

/// A document as issued, with what happened to it since.
#[derive(Debug, Clone)]
pub struct Document {
    pub number: String,
    pub kind: DocumentKind,
    pub account_kind: AccountKind,
    pub account_id: String,
    pub currency: String,
    pub period: Period,
    pub issue_date: NaiveDate,
    pub due_date: Option<NaiveDate>,
    pub total: Decimal,
    pub opening_balance: Option<Decimal>,
    pub closing_balance: Option<Decimal>,
    pub refers_to: Option<String>,
    pub lines: Vec<Line>,
    pub payments: Vec<Payment>,
    pub dunning: Vec<(u8, NaiveDate)>,
    /// Credit notes issued against this document (negative).
    pub credited: Decimal,
    /// The latest run's `as_of`, which decides `overdue`.
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub amount: Decimal,
    pub paid_at: DateTime<Utc>,
    pub reference: String,
}

impl Document {
    pub fn paid(&self) -> Decimal {
        self.payments.iter().map(|payment| payment.amount).sum()
    }

    /// What is left to pay on an invoice: its total, less credit notes and payments.
    pub fn amount_due(&self) -> Option<Decimal> {
        (self.kind == DocumentKind::Invoice).then(|| self.total + self.credited - self.paid())
    }

    pub fn status(&self) -> Option<Status> {
        let due_date = self.due_date?;
        Some(dunning::status(self.amount_due()?, due_date, self.as_of))
    }
}

/// The next number of a series; called inside the issuing transaction, so a number is
/// either used or never handed out.
pub fn next_number(tx: &Transaction<'_>, kind: DocumentKind, year: i32) -> Result<String, StoreError> {
    let last: Option<i64> = tx
        .query_row("SELECT last FROM series WHERE prefix = ?1 AND year = ?2", params![kind.prefix(), year], |row| {
            row.get(0)
        })
        .optional()?;
    let next = last.unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO series (prefix, year, last) VALUES (?1, ?2, ?3)
         ON CONFLICT (prefix, year) DO UPDATE SET last = excluded.last",
        params![kind.prefix(), year, next],
    )?;
    Ok(number(kind, year, next as u64))
}

/// Stores an issued document and marks every item on it as billed by it.
pub fn insert(
    tx: &Transaction<'_>,
    number: &str,
    draft: &Draft,
    issue_date: NaiveDate,
    due_date: Option<NaiveDate>,
    run_id: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO documents (number, kind, account_kind, account_id, currency, period_from, period_to, issue_date,
            due_date, total, opening_balance, closing_balance, refers_to, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            number,
            draft.kind.as_str(),
            draft.kind.account_kind().as_str(),
            draft.account_id,
            draft.currency,
            draft.period.from.to_string(),
            draft.period.to.to_string(),
            issue_date.to_string(),
            due_date.map(|date| date.to_string()),
            money::format(draft.total()),
            draft.opening_balance.map(money::format),
            draft.closing_balance.map(money::format),
            draft.refers_to,
            run_id,
        ],
    )?;
    let side = match draft.kind.account_kind() {
        AccountKind::Buyer => "buyer_doc",
        AccountKind::Supplier => "supplier_doc",
    };
    let mut insert_line = tx.prepare_cached(
        "INSERT INTO lines (number, position, kind, sale_id, lead_id, return_id, topup_sequence, vertical, campaign_id,
            sold_at, description, amount, refers_to, buyer_reference)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut bill_sale =
        tx.prepare_cached(&format!("UPDATE sales SET {side} = ?1 WHERE sale_id = ?2 AND {side} IS NULL"))?;
    let mut bill_return =
        tx.prepare_cached(&format!("UPDATE returns SET {side} = ?1 WHERE return_id = ?2 AND {side} IS NULL"))?;
    let mut bill_topup = tx.prepare_cached("UPDATE topups SET doc = ?1 WHERE sequence = ?2 AND doc IS NULL")?;
    for (position, line) in draft.lines.iter().enumerate() {
        insert_line.execute(params![
            number,
            position as i64,
            line.kind.as_str(),
            line.sale_id,
            line.lead_id,
            line.return_id,
            line.topup_sequence.map(|sequence| sequence as i64),
            line.vertical,
            line.campaign_id,
            line.sold_at.map(|at| at.to_rfc3339()),
            line.description,
            money::format(line.amount),
            line.refers_to,
            line.buyer_reference,
        ])?;
        let billed = match line.kind {
            LineKind::Return | LineKind::Excluded => bill_return.execute(params![number, line.return_id])?,
            LineKind::Topup => bill_topup.execute(params![number, line.topup_sequence.map(|s| s as i64)])?,
            LineKind::Sale | LineKind::Adjustment => 1,
        };
        let bills_sale = matches!(line.kind, LineKind::Sale | LineKind::Adjustment | LineKind::Excluded);
        if bills_sale && bill_sale.execute(params![number, line.sale_id])? != 1 {
            return Err(StoreError::Corrupt(format!("{number} bills a sale that is unknown or billed already")));
        }
        if billed != 1 {
            return Err(StoreError::Corrupt(format!("{number} bills an item that is unknown or billed already")));
        }
    }
    Ok(())
}

const COLUMNS: &str = "number, kind, account_kind, account_id, currency, period_from, period_to, issue_date, due_date,
    total, opening_balance, closing_balance, refers_to";

/// One document, whole.
pub fn load(connection: &Connection, number: &str) -> Result<Option<Document>, StoreError> {
    let head = connection
        .query_row(&format!("SELECT {COLUMNS} FROM documents WHERE number = ?1"), [number], head_of)
        .optional()?;
    match head {
        Some(head) => Ok(Some(complete(connection, head?, last_as_of(connection)?)?)),
        None => Ok(None),
    }
}

/// What to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub account: Option<String>,
    pub kind: Option<DocumentKind>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub after: i64,
    pub limit: usize,
}

/// Documents in issue order, each with its position for the next page.
pub fn list(connection: &Connection, filter: &Filter) -> Result<Vec<(i64, Document)>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT rowid, {COLUMNS} FROM documents
         WHERE rowid > ?1 AND (?2 IS NULL OR account_id = ?2) AND (?3 IS NULL OR kind = ?3)
           AND (?4 IS NULL OR issue_date >= ?4) AND (?5 IS NULL OR issue_date <= ?5)
         ORDER BY rowid LIMIT ?6"
    ))?;
    let rows = statement.query_map(
        params![
            filter.after,
            filter.account,
            filter.kind.map(DocumentKind::as_str),
            filter.from.map(|date| date.to_string()),
            filter.to.map(|date| date.to_string()),
            filter.limit as i64,
        ],
        |row| Ok((row.get::<_, i64>(0)?, head_at(row, 1)?)),
    )?;
    let as_of = last_as_of(connection)?;
    let mut documents = Vec::new();
    for row in rows {
        let (rowid, head) = row?;
        documents.push((rowid, complete(connection, head?, as_of)?));
    }
    Ok(documents)
}

/// The `as_of` of the latest run.
pub fn last_as_of(connection: &Connection) -> Result<Option<NaiveDate>, StoreError> {
    let as_of: Option<String> = connection.query_row("SELECT MAX(as_of) FROM runs", [], |row| row.get(0))?;
    as_of.map(|text| date(&text)).transpose()
}

pub fn payments(connection: &Connection, number: &str) -> Result<Vec<Payment>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT amount, paid_at, reference FROM payments WHERE number = ?1 ORDER BY position")?;
    let rows = statement.query_map([number], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
    })?;
    rows.map(|row| {
        let (amount, paid_at, reference) = row?;
        Ok(Payment { amount: decimal(&amount)?, paid_at: instant(&paid_at)?, reference })
    })
    .collect()
}

pub fn dunning_of(connection: &Connection, number: &str) -> Result<Vec<(u8, NaiveDate)>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT tier, date FROM dunning WHERE number = ?1 ORDER BY tier")?;
    let rows = statement.query_map([number], |row| Ok((row.get::<_, u8>(0)?, row.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (tier, on) = row?;
        Ok((tier, date(&on)?))
    })
    .collect()
}

/// The sum of the credit notes that refer to `number` (negative).
pub fn credited(connection: &Connection, number: &str) -> Result<Decimal, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT total FROM documents WHERE refers_to = ?1 AND kind = 'credit_note'")?;
    let totals = statement.query_map([number], |row| row.get::<_, String>(0))?;
    totals.map(|total| decimal(&total?)).sum()
}

type Head = Result<Document, StoreError>;

fn head_of(row: &Row<'_>) -> rusqlite::Result<Head> {
    head_at(row, 0)
}

fn head_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Head> {
    let text = |i: usize| row.get::<_, String>(at + i);
    let optional = |i: usize| row.get::<_, Option<String>>(at + i);
    let (number, kind, account_kind, account_id, currency) = (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
    let (from, to, issue, due, total) = (text(5)?, text(6)?, text(7)?, optional(8)?, text(9)?);
    let (opening, closing, refers_to) = (optional(10)?, optional(11)?, optional(12)?);
    Ok((|| {
        let kind = DocumentKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("document kind {kind}")))?;
        let account_kind = if account_kind == "supplier" { AccountKind::Supplier } else { AccountKind::Buyer };
        Ok(Document {
            number,
            kind,
            account_kind,
            account_id,
            currency,
            period: Period { from: date(&from)?, to: date(&to)? },
            issue_date: date(&issue)?,
            due_date: due.as_deref().map(date).transpose()?,
            total: decimal(&total)?,
            opening_balance: opening.as_deref().map(decimal).transpose()?,
            closing_balance: closing.as_deref().map(decimal).transpose()?,
            refers_to,
            lines: Vec::new(),
            payments: Vec::new(),
            dunning: Vec::new(),
            credited: Decimal::ZERO,
            as_of: None,
        })
    })())
}

/// Adds lines, and for an invoice its payments, dunning and credits; `as_of` is the latest
/// run's, read once by the caller.
fn complete(connection: &Connection, mut document: Document, as_of: Option<NaiveDate>) -> Result<Document, StoreError> {
    document.lines = lines(connection, &document.number)?;
    if document.kind == DocumentKind::Invoice {
        document.payments = payments(connection, &document.number)?;
        document.dunning = dunning_of(connection, &document.number)?;
        document.credited = credited(connection, &document.number)?;
        document.as_of = as_of;
    }
    Ok(document)
}

fn lines(connection: &Connection, number: &str) -> Result<Vec<Line>, StoreError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = super::rows(
        connection,
        "SELECT kind, sale_id, lead_id, return_id, topup_sequence, vertical, campaign_id, sold_at, description, amount,
            refers_to, buyer_reference FROM lines WHERE number = ?1 ORDER BY position",
        [number],
    )?;
    rows.into_iter()
        .map(
            |(
                kind,
                sale_id,
                lead_id,
                return_id,
                topup,
                vertical,
                campaign_id,
                sold_at,
                description,
                amount,
                refers_to,
                buyer_reference,
            )| {
                Ok(Line {
                    kind: LineKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("line kind {kind}")))?,
                    sale_id,
                    lead_id,
                    return_id,
                    topup_sequence: topup.map(|sequence| sequence as u64),
                    vertical,
                    campaign_id,
                    sold_at: sold_at.as_deref().map(instant).transpose()?,
                    description,
                    amount: decimal(&amount)?,
                    refers_to,
                    buyer_reference,
                })
            },
        )
        .collect()
}

pub fn decimal(text: &str) -> Result<Decimal, StoreError> {
    money::parse(text).ok_or_else(|| StoreError::Corrupt(format!("amount {text:?}")))
}

pub fn date(text: &str) -> Result<NaiveDate, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("date {text:?}")))
}

pub fn instant(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {text:?}")))
}
