//! Reconciliation (DESIGN §13): proves the documents against the ledger facts.
//!
//! - every sale is on exactly one buyer document line (or is internal, or still waiting for
//!   its period's document) and on exactly one supplier settlement line (or waiting);
//! - every approved return with money is on exactly one credit note or exclusion line, and
//!   on exactly one settlement line when it takes back a payout (or is waiting);
//! - every line carries the ledger's amount, every document adds up to its lines, every
//!   statement's balance adds up, numbering has no gaps, and per account and currency the
//!   documents sum to the ledger to the cent.
//!
//! "Waiting" is checked, not assumed: an item is late only if no document of its account
//! was issued, for a period reaching the item's date, by a run that had already seen it.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use rusqlite::{Connection, Params};
use rust_decimal::Decimal;
use serde::Serialize;

use super::run::zone_of;
use crate::domain::money;
use crate::domain::period::local_date;
use crate::store::documents::{date, decimal, instant};
use crate::store::{rows, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub ok: bool,
    pub checked: Checked,
    pub discrepancies: Vec<Discrepancy>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    pub sales: u64,
    pub sales_billed: u64,
    pub sales_internal: u64,
    pub sales_waiting: u64,
    pub payouts_settled: u64,
    pub returns_approved: u64,
    pub returns_credited: u64,
    pub returns_waiting: u64,
    pub reversals_settled: u64,
    pub documents: u64,
    pub lines: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Discrepancy {
    pub kind: &'static str,
    pub ids: Vec<String>,
    pub message: String,
}

pub fn reconcile(connection: &Connection) -> Result<Reconciliation, StoreError> {
    let mut found = Vec::new();
    let mut checked = Checked {
        documents: count(connection, "SELECT COUNT(*) FROM documents")?,
        lines: count(connection, "SELECT COUNT(*) FROM lines")?,
        ..Checked::default()
    };
    let mut audit = Audit {
        connection,
        issued: IssuedPeriods::load(connection)?,
        zones: zones(connection)?,
        checked: &mut checked,
        found: &mut found,
    };
    audit.buyer_sales()?;
    audit.supplier_sales()?;
    audit.buyer_returns()?;
    audit.supplier_reversals()?;
    unplaced_topups(connection, &mut found)?;
    line_amounts(connection, &mut found)?;
    document_totals(connection, &mut found)?;
    account_totals(connection, &mut found)?;
    numbering(connection, &mut found)?;

    Ok(Reconciliation { ok: found.is_empty(), checked, discrepancies: found })
}

/// What the checks over sales and returns share: the database, what was issued for which
/// period, the accounts' time zones, and the tallies and findings they add to.
struct Audit<'a> {
    connection: &'a Connection,
    issued: IssuedPeriods,
    zones: Zones,
    checked: &'a mut Checked,
    found: &'a mut Vec<Discrepancy>,
}

impl Audit<'_> {
    /// Sales, buyer side: each on one buyer document line, or internal, or waiting.
    fn buyer_sales(&mut self) -> Result<(), StoreError> {
        let Audit { connection, issued, zones, checked, found } = self;
        for (sale_id, buyer, sequence, sold_at, internal, billed, lines) in rows::<SaleRow>(
        connection,
        "SELECT s.sale_id, s.buyer_id, s.sequence, s.sold_at, s.internal, s.buyer_doc,
                (SELECT COUNT(*) FROM lines l JOIN documents d ON d.number = l.number
                 WHERE l.sale_id = s.sale_id AND d.account_kind = 'buyer' AND l.kind IN ('sale', 'adjustment', 'excluded'))
                || ':' || (SELECT COUNT(*) FROM lines l WHERE l.number = s.buyer_doc AND l.sale_id = s.sale_id
                 AND l.kind IN ('sale', 'adjustment', 'excluded'))
         FROM sales s",
        [],
    )? {
        checked.sales += 1;
        if internal {
            checked.sales_internal += 1;
            if !lines.starts_with("0:") {
                found.push(discrepancy("internal_sale_billed", [&sale_id], "an internal buyer's sale is on a document"));
            }
            continue;
        }
        match placement(&lines, billed.as_ref()) {
            Placement::Once => checked.sales_billed += 1,
            Placement::Nowhere => {
                let sold_on = local_date(instant(&sold_at)?, zones.get(&("buyer", buyer.clone())).copied().unwrap_or(chrono_tz::UTC));
                if !zones.contains_key(&("buyer", buyer.clone())) {
                    found.push(discrepancy("unknown_buyer", [&sale_id, &buyer], "the ledger never described this sale's buyer"));
                } else if issued.should_hold("buyer", &buyer, sequence, sold_on) {
                    found.push(discrepancy("sale_not_billed", [&sale_id, &buyer], "a document issued after this sale for its period left it out"));
                } else {
                    checked.sales_waiting += 1;
                }
            }
            misplaced => found.extend(misplaced.discrepancy(&SALE, &sale_id)),
        }
    }
        Ok(())
    }

    /// Sales, supplier side: each payout on one settlement line, or waiting.
    fn supplier_sales(&mut self) -> Result<(), StoreError> {
        let Audit { connection, issued, zones, checked, found } = self;
        for (sale_id, supplier, sequence, sold_at, _, settled, lines) in rows::<SaleRow>(
            connection,
            "SELECT s.sale_id, s.supplier_id, s.sequence, s.sold_at, s.internal, s.supplier_doc,
                (SELECT COUNT(*) FROM lines l JOIN documents d ON d.number = l.number
                 WHERE l.sale_id = s.sale_id AND d.account_kind = 'supplier' AND l.kind IN ('sale', 'adjustment'))
                || ':' || (SELECT COUNT(*) FROM lines l WHERE l.number = s.supplier_doc AND l.sale_id = s.sale_id
                 AND l.kind IN ('sale', 'adjustment'))
         FROM sales s",
            [],
        )? {
            match placement(&lines, settled.as_ref()) {
                Placement::Once => checked.payouts_settled += 1,
                Placement::Nowhere => {
                    let zone = zones.get(&("supplier", supplier.clone())).copied().unwrap_or(chrono_tz::UTC);
                    if issued.should_hold("supplier", &supplier, sequence, local_date(instant(&sold_at)?, zone)) {
                        found.push(discrepancy(
                            "payout_not_settled",
                            [&sale_id, &supplier],
                            "a settlement issued after this sale for its period left it out",
                        ));
                    }
                }
                misplaced => found.extend(misplaced.discrepancy(&PAYOUT, &sale_id)),
            }
        }
        Ok(())
    }

    /// Approved returns, buyer side: each credit on one credit note or exclusion line, or
    /// waiting.
    fn buyer_returns(&mut self) -> Result<(), StoreError> {
        let Audit { connection, checked, found, .. } = self;
        for (return_id, buyer, sequence, credit, sale_run, credited, lines) in rows::<CreditRow>(
            connection,
            "SELECT r.return_id, r.buyer_id, r.sequence, r.credit,
                (SELECT d.run_id FROM sales s JOIN documents d ON d.number = s.buyer_doc WHERE s.sale_id = r.sale_id),
                r.buyer_doc,
                (SELECT COUNT(*) FROM lines l JOIN documents d ON d.number = l.number
                 WHERE l.return_id = r.return_id AND d.account_kind = 'buyer')
                || ':' || (SELECT COUNT(*) FROM lines l WHERE l.number = r.buyer_doc AND l.return_id = r.return_id)
         FROM returns r WHERE r.approved = 1",
            [],
        )? {
            checked.returns_approved += 1;
            if decimal(&credit)?.is_zero() {
                continue;
            }
            match placement(&lines, credited.as_ref()) {
                Placement::Once => checked.returns_credited += 1,
                Placement::Nowhere => {
                    let sequence: i64 = sequence;
                    // Credit notes are due from the first run that saw the return after its
                    // sale was billed.
                    let due = match sale_run {
                        Some(run) => {
                            count_params(
                                connection,
                                "SELECT COUNT(*) FROM runs WHERE id >= ?1 AND through_sequence >= ?2",
                                rusqlite::params![run, sequence],
                            )? > 0
                        }
                        None => false,
                    };
                    if due {
                        found.push(discrepancy(
                            "return_not_credited",
                            [&return_id, &buyer],
                            "a run after this return issued no credit note for it",
                        ));
                    } else {
                        checked.returns_waiting += 1;
                    }
                }
                misplaced => found.extend(misplaced.discrepancy(&RETURN, &return_id)),
            }
        }
        Ok(())
    }

    /// Approved returns that take a payout back, supplier side: each on one settlement line, or
    /// waiting.
    fn supplier_reversals(&mut self) -> Result<(), StoreError> {
        let Audit { connection, issued, zones, checked, found } = self;
        for (return_id, supplier, sequence, reversed, resolved_at, settled, lines) in rows::<ReversalRow>(
            connection,
            "SELECT r.return_id, r.supplier_id, r.sequence, r.payout_reversed, r.resolved_at, r.supplier_doc,
                (SELECT COUNT(*) FROM lines l JOIN documents d ON d.number = l.number
                 WHERE l.return_id = r.return_id AND d.account_kind = 'supplier')
                || ':' || (SELECT COUNT(*) FROM lines l WHERE l.number = r.supplier_doc AND l.return_id = r.return_id)
         FROM returns r WHERE r.approved = 1",
            [],
        )? {
            if decimal(&reversed)?.is_zero() {
                continue;
            }
            match placement(&lines, settled.as_ref()) {
                Placement::Once => checked.reversals_settled += 1,
                Placement::Nowhere => {
                    let zone = zones.get(&("supplier", supplier.clone())).copied().unwrap_or(chrono_tz::UTC);
                    let resolved_on = local_date(instant(&resolved_at)?, zone);
                    if issued.should_hold("supplier", &supplier, sequence, resolved_on) {
                        found.push(discrepancy(
                            "reversal_not_settled",
                            [&return_id, &supplier],
                            "a settlement issued after this return for its period left it out",
                        ));
                    }
                }
                misplaced => found.extend(misplaced.discrepancy(&REVERSAL, &return_id)),
            }
        }
        Ok(())
    }
}

/// Top-ups only land on prepaid statements: one for an invoice or internal buyer (the
/// router refuses them now; older ledgers may hold some) would be on no document.
fn unplaced_topups(connection: &Connection, found: &mut Vec<Discrepancy>) -> Result<(), StoreError> {
    for (sequence, buyer, mode) in rows::<(i64, String, Option<String>)>(
        connection,
        "SELECT t.sequence, t.buyer_id, a.mode FROM topups t
         LEFT JOIN accounts a ON a.kind = 'buyer' AND a.id = t.buyer_id
         WHERE t.doc IS NULL AND COALESCE(a.mode, '') <> 'prepaid'",
        [],
    )? {
        let message = match mode {
            Some(mode) => format!("a top-up of a {mode} buyer lands on no document"),
            None => "the ledger never described this top-up's buyer".to_string(),
        };
        found.push(discrepancy("topup_unplaced", [&sequence.to_string(), &buyer], &message));
    }
    Ok(())
}

/// Every line carries the amount the ledger says.
fn line_amounts(connection: &Connection, found: &mut Vec<Discrepancy>) -> Result<(), StoreError> {
    let checks = [
        ("SELECT l.number, l.sale_id, l.amount, s.price FROM lines l JOIN documents d ON d.number = l.number
            LEFT JOIN sales s ON s.sale_id = l.sale_id
          WHERE d.account_kind = 'buyer' AND l.kind IN ('sale', 'adjustment')", false),
        ("SELECT l.number, l.sale_id, l.amount, s.payout FROM lines l JOIN documents d ON d.number = l.number
            LEFT JOIN sales s ON s.sale_id = l.sale_id
          WHERE d.account_kind = 'supplier' AND l.kind IN ('sale', 'adjustment')", false),
        ("SELECT l.number, l.return_id, l.amount, r.credit FROM lines l JOIN documents d ON d.number = l.number
            LEFT JOIN returns r ON r.return_id = l.return_id
          WHERE d.account_kind = 'buyer' AND l.kind = 'return'", true),
        ("SELECT l.number, l.return_id, l.amount, r.payout_reversed FROM lines l JOIN documents d ON d.number = l.number
            LEFT JOIN returns r ON r.return_id = l.return_id
          WHERE d.account_kind = 'supplier' AND l.kind = 'return'", true),
        ("SELECT l.number, CAST(l.topup_sequence AS TEXT), l.amount, t.amount FROM lines l
            LEFT JOIN topups t ON t.sequence = l.topup_sequence WHERE l.kind = 'topup'", false),
    ];
    for (sql, negative) in checks {
        for (number, id, amount, ledger) in
            rows::<(String, Option<String>, String, Option<String>)>(connection, sql, [])?
        {
            let id = id.unwrap_or_default();
            let Some(ledger) = ledger else {
                found.push(discrepancy("line_without_fact", [&number, &id], "the line names nothing the ledger holds"));
                continue;
            };
            let expected = if negative { -decimal(&ledger)? } else { decimal(&ledger)? };
            if decimal(&amount)? != expected {
                found.push(discrepancy(
                    "line_amount_mismatch",
                    [&number, &id],
                    &format!("the line says {amount}, the ledger {}", money::format(expected)),
                ));
            }
        }
    }
    Ok(())
}

/// Every document adds up to its lines, and every statement's balance adds up.
fn document_totals(connection: &Connection, found: &mut Vec<Discrepancy>) -> Result<(), StoreError> {
    let mut sums: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for (number, kind, amount) in
        rows::<(String, String, String)>(connection, "SELECT number, kind, amount FROM lines", [])?
    {
        let entry = sums.entry(number).or_default();
        if kind == "topup" {
            entry.1 += decimal(&amount)?;
        } else {
            entry.0 += decimal(&amount)?;
        }
    }
    let totals: Vec<(String, String, Option<String>, Option<String>)> =
        rows(connection, "SELECT number, total, opening_balance, closing_balance FROM documents", [])?;
    for (number, total, opening, closing) in totals {
        let (charges, topups) = sums.get(&number).copied().unwrap_or_default();
        if decimal(&total)? != charges {
            found.push(discrepancy(
                "document_total_mismatch",
                [&number],
                &format!("total {total}, lines {}", money::format(charges)),
            ));
        }
        if let (Some(opening), Some(closing)) = (opening, closing) {
            if decimal(&opening)? + topups - charges != decimal(&closing)? {
                found.push(discrepancy(
                    "statement_balance_mismatch",
                    [&number],
                    "opening + top-ups - charges is not the closing balance",
                ));
            }
        }
    }
    Ok(())
}

/// Per account and currency, the documents sum to the ledger amounts of what they bill.
fn account_totals(connection: &Connection, found: &mut Vec<Discrepancy>) -> Result<(), StoreError> {
    let mut ledger: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    let facts = [
        ("buyer", "SELECT buyer_id, currency, price FROM sales WHERE buyer_doc IS NOT NULL", false),
        ("buyer", "SELECT buyer_id, currency, credit FROM returns WHERE buyer_doc IS NOT NULL", true),
        ("supplier", "SELECT supplier_id, currency, payout FROM sales WHERE supplier_doc IS NOT NULL", false),
        ("supplier", "SELECT supplier_id, currency, payout_reversed FROM returns WHERE supplier_doc IS NOT NULL", true),
    ];
    for (kind, sql, negative) in facts {
        for (account, currency, amount) in rows::<(String, String, String)>(connection, sql, [])? {
            let amount = decimal(&amount)?;
            *ledger.entry((kind.to_string(), account, currency)).or_default() +=
                if negative { -amount } else { amount };
        }
    }
    let mut documents: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    let totals: Vec<(String, String, String, String)> =
        rows(connection, "SELECT account_kind, account_id, currency, total FROM documents", [])?;
    for (kind, account, currency, total) in totals {
        *documents.entry((kind, account, currency)).or_default() += decimal(&total)?;
    }
    let keys: std::collections::BTreeSet<_> = ledger.keys().chain(documents.keys()).cloned().collect();
    for key in keys {
        let (in_ledger, in_documents) =
            (ledger.get(&key).copied().unwrap_or_default(), documents.get(&key).copied().unwrap_or_default());
        if in_ledger != in_documents {
            let (kind, account, currency) = &key;
            found.push(discrepancy(
                "account_total_mismatch",
                [account, currency],
                &format!(
                    "{kind} documents sum to {}, the ledger to {}",
                    money::format(in_documents),
                    money::format(in_ledger)
                ),
            ));
        }
    }
    Ok(())
}

/// Every series numbers its documents 1, 2, 3... per year.
fn numbering(connection: &Connection, found: &mut Vec<Discrepancy>) -> Result<(), StoreError> {
    let mut series: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (number,) in rows::<(String,)>(connection, "SELECT number FROM documents", [])? {
        let mut parts = number.splitn(3, '-');
        let (prefix, year, count) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        series.entry((prefix.to_string(), year.to_string())).or_default().push(count.parse().unwrap_or(0));
    }
    for ((prefix, year), mut counts) in series {
        counts.sort_unstable();
        if counts.iter().enumerate().any(|(i, count)| *count != i as u64 + 1) {
            found.push(discrepancy(
                "numbering_gap",
                [&format!("{prefix}-{year}")],
                "the series skips or repeats a number",
            ));
        }
    }
    Ok(())
}

/// For each account: the documents of its periods, with the ledger sequence their run had
/// seen and the last day they reached.
struct IssuedPeriods(HashMap<(String, String), Vec<(i64, NaiveDate)>>);

impl IssuedPeriods {
    fn load(connection: &Connection) -> Result<IssuedPeriods, StoreError> {
        let documents: Vec<(String, String, i64, String)> = rows(
            connection,
            "SELECT d.account_kind, d.account_id, r.through_sequence, d.period_to FROM documents d
             JOIN runs r ON r.id = d.run_id WHERE d.kind IN ('invoice', 'statement', 'supplier_settlement')",
            [],
        )?;
        let mut issued: HashMap<(String, String), Vec<(i64, NaiveDate)>> = HashMap::new();
        for (kind, account, through, to) in documents {
            issued.entry((kind, account)).or_default().push((through, date(&to)?));
        }
        Ok(IssuedPeriods(issued))
    }

    /// Whether some document of the account should hold an item of `sequence` dated `on`.
    fn should_hold(&self, kind: &str, account: &str, sequence: i64, on: NaiveDate) -> bool {
        self.0
            .get(&(kind.to_string(), account.to_string()))
            .is_some_and(|issued| issued.iter().any(|(through, to)| *through >= sequence && *to >= on))
    }
}

/// The discrepancy kinds of one sort of item.
struct Item {
    missing: &'static str,
    elsewhere: &'static str,
    several: &'static str,
    what: &'static str,
}

const SALE: Item = Item {
    missing: "sale_line_missing",
    elsewhere: "sale_document_mismatch",
    several: "sale_billed_twice",
    what: "sale",
};
const PAYOUT: Item = Item {
    missing: "payout_line_missing",
    elsewhere: "payout_document_mismatch",
    several: "payout_settled_twice",
    what: "payout",
};
const RETURN: Item = Item {
    missing: "return_line_missing",
    elsewhere: "return_document_mismatch",
    several: "return_credited_twice",
    what: "return",
};
const REVERSAL: Item = Item {
    missing: "reversal_line_missing",
    elsewhere: "reversal_document_mismatch",
    several: "reversal_settled_twice",
    what: "reversal",
};

/// Where an item's lines are, from `all:on the marked document` line counts and the mark.
enum Placement<'a> {
    /// One line, on the document the item is marked with.
    Once,
    /// No line and no mark: not billed yet.
    Nowhere,
    /// Marked with a document that has no line for it.
    Missing(&'a String),
    /// Its one line is on another document than the marked one.
    Elsewhere(&'a String),
    Several(String),
}

fn placement<'a>(lines: &str, marked: Option<&'a String>) -> Placement<'a> {
    match (lines, marked) {
        ("1:1", Some(_)) => Placement::Once,
        ("0:0", None) => Placement::Nowhere,
        ("0:0", Some(number)) => Placement::Missing(number),
        ("1:0", Some(number)) => Placement::Elsewhere(number),
        (counts, _) => Placement::Several(counts.to_string()),
    }
}

impl Placement<'_> {
    /// The discrepancy of a misplaced item; none for one placed once or not yet.
    fn discrepancy(self, item: &Item, id: &String) -> Option<Discrepancy> {
        let what = item.what;
        Some(match self {
            Placement::Missing(number) => discrepancy(
                item.missing,
                [id, number],
                &format!("the {what} is marked billed by {number}, which has no line for it"),
            ),
            Placement::Elsewhere(number) => discrepancy(
                item.elsewhere,
                [id, number],
                &format!("the {what}'s line is on another document than {number}"),
            ),
            Placement::Several(counts) => discrepancy(
                item.several,
                [id],
                &format!("the {what} is on several lines (all:on the marked document = {counts})"),
            ),
            Placement::Once | Placement::Nowhere => return None,
        })
    }
}

type Zones = HashMap<(&'static str, String), chrono_tz::Tz>;

fn zones(connection: &Connection) -> Result<Zones, StoreError> {
    let mut zones = HashMap::new();
    for (kind, id, zone) in rows::<(String, String, String)>(connection, "SELECT kind, id, timezone FROM accounts", [])?
    {
        let kind = if kind == "supplier" { "supplier" } else { "buyer" };
        zones.insert((kind, id), zone_of(&zone)?);
    }
    Ok(zones)
}

/// A sale or return with where its lines are: id, account, ledger sequence, a date or
/// amount column, one more column, the document it is marked with, and the line counts
/// `all:on the marked document`.
type SaleRow = (String, String, i64, String, bool, Option<String>, String);
type CreditRow = (String, String, i64, String, Option<i64>, Option<String>, String);
type ReversalRow = (String, String, i64, String, String, Option<String>, String);

fn count(connection: &Connection, sql: &str) -> Result<u64, StoreError> {
    count_params(connection, sql, [])
}

fn count_params(connection: &Connection, sql: &str, params: impl Params) -> Result<u64, StoreError> {
    let count: i64 = connection.query_row(sql, params, |row| row.get(0))?;
    Ok(count as u64)
}

fn discrepancy<const N: usize>(kind: &'static str, ids: [&String; N], message: &str) -> Discrepancy {
    Discrepancy { kind, ids: ids.into_iter().cloned().collect(), message: message.to_string() }
}
