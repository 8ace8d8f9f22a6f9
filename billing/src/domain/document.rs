//! Drafting documents (DESIGN §13): which sales, returns and top-ups go on which invoice,
//! statement, credit note or supplier settlement for a run on `as_of`.
//!
//! The rules, in one place:
//! - A period closes when its last day is before `as_of`; each closed period with anything
//!   on it gets one document per account (and currency, for suppliers).
//! - An item whose period was already closed by an earlier run arrived late: it becomes an
//!   `adjustment` line on the next document, never an edit of an issued one.
//! - An approved return of a sale already on a document gets a credit note in the next run,
//!   referencing that document; a return approved before its sale was billed leaves the sale
//!   off with an `excluded` line saying why.
//! - Supplier settlements pay each lead's payout and take back, with a negative line, the
//!   payout of each approved return in the period the return was resolved.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;

use super::facts::BillingMode;
use super::period::{closed_through, closing_periods, local_date, Interval, Period};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    Statement,
    CreditNote,
    SupplierSettlement,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoice",
            DocumentKind::Statement => "statement",
            DocumentKind::CreditNote => "credit_note",
            DocumentKind::SupplierSettlement => "supplier_settlement",
        }
    }

    pub fn parse(text: &str) -> Option<DocumentKind> {
        [DocumentKind::Invoice, DocumentKind::Statement, DocumentKind::CreditNote, DocumentKind::SupplierSettlement]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// What a reader calls it: a page's heading, an email's subject.
    pub fn title(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "Invoice",
            DocumentKind::Statement => "Statement",
            DocumentKind::CreditNote => "Credit note",
            DocumentKind::SupplierSettlement => "Supplier settlement",
        }
    }

    /// The numbering series: `INV-2026-000001`.
    pub fn prefix(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "INV",
            DocumentKind::Statement => "ST",
            DocumentKind::CreditNote => "CN",
            DocumentKind::SupplierSettlement => "SS",
        }
    }

    pub fn account_kind(self) -> AccountKind {
        match self {
            DocumentKind::SupplierSettlement => AccountKind::Supplier,
            _ => AccountKind::Buyer,
        }
    }
}

/// The number of the `count`th document of a series in a year.
pub fn number(kind: DocumentKind, year: i32, count: u64) -> String {
    format!("{}-{year}-{count:06}", kind.prefix())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Buyer,
    Supplier,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Buyer => "buyer",
            AccountKind::Supplier => "supplier",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Sale,
    Return,
    Topup,
    Adjustment,
    Excluded,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Sale => "sale",
            LineKind::Return => "return",
            LineKind::Topup => "topup",
            LineKind::Adjustment => "adjustment",
            LineKind::Excluded => "excluded",
        }
    }

    pub fn parse(text: &str) -> Option<LineKind> {
        [LineKind::Sale, LineKind::Return, LineKind::Topup, LineKind::Adjustment, LineKind::Excluded]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// Whether the line counts toward what the account is charged (or paid): top-ups
    /// move a prepaid balance but are not charges.
    pub fn is_charge(self) -> bool {
        self != LineKind::Topup
    }
}

/// One line of a document. Every id it carries ties it to one ledger fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub sale_id: Option<String>,
    pub lead_id: Option<String>,
    pub return_id: Option<String>,
    /// The ledger sequence of a top-up (top-ups have no id of their own).
    pub topup_sequence: Option<u64>,
    pub vertical: Option<String>,
    pub campaign_id: Option<String>,
    pub sold_at: Option<DateTime<Utc>>,
    pub description: String,
    pub amount: Decimal,
    pub refers_to: Option<String>,
    /// The buyer's own id for the sold lead (DESIGN §5.1), on the buyer's documents only:
    /// it is the buyer's, as its price is, so settlements never show it to the supplier.
    pub buyer_reference: Option<String>,
}

/// A document before it has a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub kind: DocumentKind,
    pub account_id: String,
    pub currency: String,
    pub period: Period,
    pub lines: Vec<Line>,
    pub opening_balance: Option<Decimal>,
    pub closing_balance: Option<Decimal>,
    /// The document a credit note corrects.
    pub refers_to: Option<String>,
}

impl Draft {
    /// The sum of the charge lines.
    pub fn total(&self) -> Decimal {
        self.lines.iter().filter(|line| line.kind.is_charge()).map(|line| line.amount).sum()
    }
}

/// A sale not yet on a document of this account. `amount` is the price for buyers and the
/// payout for suppliers.
#[derive(Debug, Clone)]
pub struct OpenSale {
    pub sale_id: String,
    pub lead_id: String,
    pub vertical: String,
    pub campaign_id: String,
    pub currency: String,
    pub sold_at: DateTime<Utc>,
    pub amount: Decimal,
    /// An approved return not yet on a document (buyers only).
    pub returned: Option<OpenReturn>,
    /// The buyer's own id for the lead, if its answer named one.
    pub buyer_reference: Option<String>,
}

/// An approved return not yet on a document of this account. `amount` is the credit for
/// buyers and the payout reversed for suppliers.
#[derive(Debug, Clone)]
pub struct OpenReturn {
    pub return_id: String,
    pub sale_id: String,
    pub reason: String,
    pub currency: String,
    pub sold_at: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    pub amount: Decimal,
    /// The document that holds the returned sale, with its period, if there is one yet.
    pub sale_document: Option<(String, Period)>,
    /// The returned sale's buyer reference, so a credit note names the lead as the buyer does.
    pub buyer_reference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OpenTopUp {
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub amount: Decimal,
    pub reference: String,
}

/// A buyer's billing terms and where its last run left it.
#[derive(Debug, Clone)]
pub struct BuyerBook {
    pub buyer_id: String,
    pub mode: BillingMode,
    pub interval: Interval,
    pub zone: Tz,
    pub currency: String,
    pub billed_through: Option<NaiveDate>,
    /// The prepaid balance the last statement closed with, plus credit notes since.
    pub balance: Decimal,
}

/// What a run issues for one account and where it leaves the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drafted {
    pub drafts: Vec<Draft>,
    pub billed_through: NaiveDate,
    pub balance: Decimal,
}

/// Drafts a buyer's credit notes (first) and its invoices or statements for `as_of`.
pub fn draft_buyer(
    book: &BuyerBook,
    sales: Vec<OpenSale>,
    credits: Vec<OpenReturn>,
    topups: Vec<OpenTopUp>,
    as_of: NaiveDate,
) -> Drafted {
    let through = closed_through(book.interval, as_of).max(book.billed_through.unwrap_or(NaiveDate::MIN));
    let prepaid = book.mode == BillingMode::Prepaid;
    let mut drafts = credit_notes(book, credits);
    // Only a prepaid balance moves with credits and top-ups; an invoice buyer's credit notes
    // reduce what it owes instead.
    let mut balance = book.balance;
    if prepaid {
        balance += drafts.iter().map(|draft| -draft.total()).sum::<Decimal>();
    }

    // An internal buyer's own sales never come here (they are not charged); a sale it
    // was charged for before it became internal is still invoiced.
    let kind = if prepaid { DocumentKind::Statement } else { DocumentKind::Invoice };
    let mut sales = dated(sales, |sale| local_date(sale.sold_at, book.zone));
    let mut topups = if prepaid { dated(topups, |topup| local_date(topup.at, book.zone)) } else { Vec::new() };
    let Some(first) = sales.iter().map(|(date, _)| *date).chain(topups.iter().map(|(date, _)| *date)).min() else {
        return Drafted { drafts, billed_through: through, balance };
    };
    for period in closing_periods(book.interval, book.billed_through, first, as_of) {
        // One document per currency: a sale keeps the currency it was sold in, also if the
        // buyer's currency changed since. Top-ups are in the buyer's currency.
        let mut by_currency: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        for (_, topup) in take_through(&mut topups, period.to) {
            by_currency.entry(book.currency.clone()).or_default().push(topup_line(topup));
        }
        for (date, sale) in take_through(&mut sales, period.to) {
            let currency = sale.currency.clone();
            by_currency.entry(currency).or_default().push(buyer_sale_line(sale, date < period.from, kind));
        }
        for (currency, lines) in by_currency {
            let mut draft = Draft {
                kind,
                account_id: book.buyer_id.clone(),
                currency,
                period,
                lines,
                opening_balance: None,
                closing_balance: None,
                refers_to: None,
            };
            // The prepaid balance is kept in the buyer's currency.
            if kind == DocumentKind::Statement && draft.currency == book.currency {
                let topped_up: Decimal =
                    draft.lines.iter().filter(|line| line.kind == LineKind::Topup).map(|line| line.amount).sum();
                draft.opening_balance = Some(balance);
                balance = balance + topped_up - draft.total();
                draft.closing_balance = Some(balance);
            }
            drafts.push(draft);
        }
    }
    Drafted { drafts, billed_through: through, balance }
}

/// Drafts a supplier's settlements (one per closed period and currency) for `as_of`.
pub fn draft_supplier(
    supplier_id: &str,
    interval: Interval,
    zone: Tz,
    billed_through: Option<NaiveDate>,
    sales: Vec<OpenSale>,
    reversals: Vec<OpenReturn>,
    as_of: NaiveDate,
) -> Drafted {
    let through = closed_through(interval, as_of).max(billed_through.unwrap_or(NaiveDate::MIN));
    let mut sales = dated(sales, |sale| local_date(sale.sold_at, zone));
    let mut reversals = dated(reversals, |reversal| local_date(reversal.resolved_at, zone));
    let mut drafts = Vec::new();
    let Some(first) = sales.iter().map(|(date, _)| *date).chain(reversals.iter().map(|(date, _)| *date)).min() else {
        return Drafted { drafts, billed_through: through, balance: Decimal::ZERO };
    };
    for period in closing_periods(interval, billed_through, first, as_of) {
        let mut by_currency: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        for (date, sale) in take_through(&mut sales, period.to) {
            by_currency.entry(sale.currency.clone()).or_default().push(payout_line(sale, date < period.from));
        }
        for (_, reversal) in take_through(&mut reversals, period.to) {
            by_currency.entry(reversal.currency.clone()).or_default().push(reversal_line(reversal, interval, zone));
        }
        for (currency, lines) in by_currency {
            drafts.push(Draft {
                kind: DocumentKind::SupplierSettlement,
                account_id: supplier_id.to_string(),
                currency,
                period,
                lines,
                opening_balance: None,
                closing_balance: None,
                refers_to: None,
            });
        }
    }
    Drafted { drafts, billed_through: through, balance: Decimal::ZERO }
}

/// One credit note per billed document that has newly approved returns.
fn credit_notes(book: &BuyerBook, credits: Vec<OpenReturn>) -> Vec<Draft> {
    let mut by_document: BTreeMap<(String, Period), Vec<OpenReturn>> = BTreeMap::new();
    for credit in credits {
        if let Some(document) = credit.sale_document.clone() {
            by_document.entry(document).or_default().push(credit);
        }
    }
    by_document
        .into_iter()
        .map(|((number, period), mut credits)| {
            credits.sort_by(|a, b| (a.resolved_at, &a.return_id).cmp(&(b.resolved_at, &b.return_id)));
            // A credit note is in the currency of the sales it credits.
            let currency = credits.first().map_or_else(|| book.currency.clone(), |credit| credit.currency.clone());
            let lines = credits
                .into_iter()
                .map(|credit| Line {
                    kind: LineKind::Return,
                    description: format!(
                        "Credit for return {} ({}) of sale {} sold {}",
                        credit.return_id,
                        credit.reason,
                        credit.sale_id,
                        local_date(credit.sold_at, book.zone)
                    ),
                    amount: -credit.amount,
                    sold_at: Some(credit.sold_at),
                    refers_to: Some(number.clone()),
                    sale_id: Some(credit.sale_id),
                    return_id: Some(credit.return_id),
                    buyer_reference: credit.buyer_reference,
                    ..blank_line()
                })
                .collect();
            Draft {
                kind: DocumentKind::CreditNote,
                account_id: book.buyer_id.clone(),
                currency,
                period,
                lines,
                opening_balance: None,
                closing_balance: None,
                refers_to: Some(number),
            }
        })
        .collect()
}

fn buyer_sale_line(sale: OpenSale, late: bool, kind: DocumentKind) -> Line {
    let sold_on = sale.sold_at.format("%Y-%m-%d %H:%M UTC");
    let (line_kind, description, amount) = match (&sale.returned, late) {
        (Some(returned), _) => (
            LineKind::Excluded,
            format!(
                "Not charged: returned ({}) before this {} was issued, return {}",
                returned.reason,
                kind_word(kind),
                returned.return_id
            ),
            Decimal::ZERO,
        ),
        (None, true) => (
            LineKind::Adjustment,
            format!("Late sale of {sold_on} from an already closed period: lead {} ({})", sale.lead_id, sale.vertical),
            sale.amount,
        ),
        (None, false) => {
            (LineKind::Sale, format!("Lead {} ({}) sold {sold_on}", sale.lead_id, sale.vertical), sale.amount)
        }
    };
    Line {
        kind: line_kind,
        return_id: sale.returned.map(|returned| returned.return_id),
        sale_id: Some(sale.sale_id),
        lead_id: Some(sale.lead_id),
        vertical: Some(sale.vertical),
        campaign_id: Some(sale.campaign_id),
        sold_at: Some(sale.sold_at),
        description,
        amount,
        buyer_reference: sale.buyer_reference,
        ..blank_line()
    }
}

fn kind_word(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Statement => "statement",
        _ => "invoice",
    }
}

fn topup_line(topup: OpenTopUp) -> Line {
    Line {
        kind: LineKind::Topup,
        topup_sequence: Some(topup.sequence),
        description: format!("Top-up {} on {}", topup.reference, topup.at.format("%Y-%m-%d")),
        amount: topup.amount,
        ..blank_line()
    }
}

/// A supplier's line for a sale; the buyer's reference stays off it (see `Line`).
fn payout_line(sale: OpenSale, late: bool) -> Line {
    let sold_on = sale.sold_at.format("%Y-%m-%d %H:%M UTC");
    let (kind, description) = if late {
        (
            LineKind::Adjustment,
            format!(
                "Late payout for lead {} ({}) sold {sold_on}, from an already closed period",
                sale.lead_id, sale.vertical
            ),
        )
    } else {
        (LineKind::Sale, format!("Payout for lead {} ({}) sold {sold_on}", sale.lead_id, sale.vertical))
    };
    Line {
        kind,
        sale_id: Some(sale.sale_id),
        lead_id: Some(sale.lead_id),
        vertical: Some(sale.vertical),
        campaign_id: Some(sale.campaign_id),
        sold_at: Some(sale.sold_at),
        description,
        amount: sale.amount,
        ..blank_line()
    }
}

fn reversal_line(reversal: OpenReturn, interval: Interval, zone: Tz) -> Line {
    let sale_period = interval.period_of(local_date(reversal.sold_at, zone));
    Line {
        kind: LineKind::Return,
        description: format!(
            "Payout taken back: return {} ({}) of sale {} from the period {sale_period}",
            reversal.return_id, reversal.reason, reversal.sale_id
        ),
        amount: -reversal.amount,
        sold_at: Some(reversal.sold_at),
        refers_to: reversal.sale_document.map(|(number, _)| number),
        sale_id: Some(reversal.sale_id),
        return_id: Some(reversal.return_id),
        ..blank_line()
    }
}

fn blank_line() -> Line {
    Line {
        kind: LineKind::Sale,
        sale_id: None,
        lead_id: None,
        return_id: None,
        topup_sequence: None,
        vertical: None,
        campaign_id: None,
        sold_at: None,
        description: String::new(),
        amount: Decimal::ZERO,
        refers_to: None,
        buyer_reference: None,
    }
}

/// Items with their local date, oldest first.
fn dated<T>(items: Vec<T>, date: impl Fn(&T) -> NaiveDate) -> Vec<(NaiveDate, T)> {
    let mut dated: Vec<(NaiveDate, T)> = items.into_iter().map(|item| (date(&item), item)).collect();
    dated.sort_by_key(|(date, _)| *date);
    dated
}

/// Removes and returns the items dated on or before `last`.
fn take_through<T>(items: &mut Vec<(NaiveDate, T)>, last: NaiveDate) -> Vec<(NaiveDate, T)> {
    let cut = items.partition_point(|(date, _)| *date <= last);
    items.drain(..cut).collect()
}

/// The due date of a document issued on `issue_date`.
pub fn due_date(issue_date: NaiveDate, payment_terms_days: u32) -> NaiveDate {
    super::period::days_after(issue_date, u64::from(payment_terms_days))
}

#[cfg(test)]
mod tests;
