//! Reports (DESIGN §13): revenue, returns, payments and timeseries, as rows keyed by the
//! grouping with their measures and the totals, in one currency.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rusqlite::Connection;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::domain::document::DocumentKind;
use crate::domain::dunning::Status;
use crate::domain::money;
use crate::domain::report::{self, Basis, GroupBy, ReturnFact, SaleFact, Span};
use crate::store::documents::{self, decimal, instant, Filter};
use crate::store::{rows, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no report {0:?} (revenue, returns, payments or timeseries)")]
    Unknown(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ReportError {
    fn from(error: rusqlite::Error) -> ReportError {
        ReportError::Store(StoreError::from(error))
    }
}

#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub name: String,
    pub span: Span,
    pub group_by: Option<GroupBy>,
    pub basis: Basis,
    pub currency: Option<String>,
}

/// A report: rows in key order, each a key and its measures, and the totals.
#[derive(Debug, Clone)]
pub struct Report {
    pub json: Value,
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
}

pub fn report(connection: &Connection, query: &ReportQuery) -> Result<Report, ReportError> {
    let group_by = grouping(query)?;
    if query.span.from > query.span.to {
        return Err(ReportError::Invalid { field: "from", message: "from is after to".into() });
    }
    let (rows, totals, currency) = if query.name == "payments" {
        payments(connection, query)?
    } else {
        sales_and_returns(connection, query, group_by)?
    };
    Ok(assemble(query, group_by, rows, totals, currency))
}

/// The grouping of the report: the one asked for, if the report offers it, or its default.
fn grouping(query: &ReportQuery) -> Result<GroupBy, ReportError> {
    let (allowed, default): (&[GroupBy], GroupBy) = match query.name.as_str() {
        "revenue" => (
            &[GroupBy::Buyer, GroupBy::Supplier, GroupBy::Vertical, GroupBy::Country, GroupBy::Week, GroupBy::Month],
            GroupBy::Month,
        ),
        "returns" => (
            &[
                GroupBy::Reason,
                GroupBy::Buyer,
                GroupBy::Supplier,
                GroupBy::Vertical,
                GroupBy::Country,
                GroupBy::Week,
                GroupBy::Month,
            ],
            GroupBy::Reason,
        ),
        "payments" => (&[GroupBy::Buyer], GroupBy::Buyer),
        "timeseries" => (&[GroupBy::Week, GroupBy::Month], GroupBy::Week),
        other => return Err(ReportError::Unknown(other.to_string())),
    };
    let group_by = query.group_by.unwrap_or(default);
    if !allowed.contains(&group_by) {
        let names: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
        return Err(ReportError::Invalid {
            field: "group_by",
            message: format!("the {} report groups by {}", query.name, names.join(", ")),
        });
    }
    Ok(group_by)
}

/// The revenue, returns and timeseries reports, over the sales and resolved returns.
fn sales_and_returns(
    connection: &Connection,
    query: &ReportQuery,
    group_by: GroupBy,
) -> Result<(Rows, Value, Option<String>), ReportError> {
    let Facts { sales, returns, currency } = facts(connection, query)?;
    let (rows, totals) = match query.name.as_str() {
        "returns" => {
            let (rows, totals) = report::returns(&sales, &returns, query.span, group_by, query.basis);
            (rows.into_iter().map(|(key, row)| (key, row.to_json())).collect(), totals.to_json())
        }
        _ => {
            let (rows, totals) = report::revenue(&sales, &returns, query.span, group_by, query.basis);
            let timeseries = query.name == "timeseries";
            let shape = |row: &report::Revenue| {
                if timeseries {
                    json!({
                        "leads": row.sales,
                        "internal_leads": row.internal_sales,
                        "net_revenue": money::format(row.net_revenue()),
                        "revenue_per_lead": money::format(report::revenue_per_lead(row)),
                    })
                } else {
                    row.to_json()
                }
            };
            (rows.iter().map(|(key, row)| (key.clone(), shape(row))).collect::<Vec<_>>(), shape(&totals))
        }
    };
    Ok((rows, totals, currency))
}

/// The answer: one row per key with its measures, the columns in the totals' order.
fn assemble(query: &ReportQuery, group_by: GroupBy, rows: Rows, totals: Value, currency: Option<String>) -> Report {
    let mut columns = vec!["key".to_string()];
    if let Value::Object(measures) = &totals {
        columns.extend(measures.keys().cloned());
    }
    let rows: Vec<Map<String, Value>> = rows
        .into_iter()
        .map(|(key, measures)| {
            let mut row = Map::new();
            row.insert("key".into(), Value::String(key));
            if let Value::Object(measures) = measures {
                row.extend(measures);
            }
            row
        })
        .collect();
    let json = json!({
        "report": query.name,
        "basis": query.basis,
        "from": query.span.from.to_string(),
        "to": query.span.to.to_string(),
        "group_by": group_by.as_str(),
        "currency": currency,
        "rows": rows,
        "totals": totals,
    });
    Report { json, columns, rows }
}

/// The sales and resolved returns of one currency, with UTC dates.
struct Facts {
    sales: Vec<SaleFact>,
    returns: Vec<ReturnFact>,
    currency: Option<String>,
}

fn facts(connection: &Connection, query: &ReportQuery) -> Result<Facts, ReportError> {
    type SaleRow = (String, String, String, String, String, String, String, String, bool, String);
    let sales: Vec<SaleRow> = rows(
        connection,
        "SELECT sale_id, buyer_id, supplier_id, vertical, country, sold_at, price, payout, internal, currency FROM sales",
        [],
    )?;
    let mut by_currency: BTreeMap<String, Vec<(String, SaleFact)>> = BTreeMap::new();
    for (sale_id, buyer_id, supplier_id, vertical, country, sold_at, price, payout, internal, currency) in sales {
        let fact = SaleFact {
            buyer_id,
            supplier_id,
            vertical,
            country,
            sold_on: instant(&sold_at)?.date_naive(),
            price: decimal(&price)?,
            payout: decimal(&payout)?,
            internal,
        };
        by_currency.entry(currency).or_default().push((sale_id, fact));
    }
    let currency = pick_currency(by_currency.keys().cloned().collect(), &query.currency)?;
    let sales: Vec<(String, SaleFact)> = currency.as_ref().and_then(|c| by_currency.remove(c)).unwrap_or_default();
    let by_id: BTreeMap<&str, &SaleFact> = sales.iter().map(|(id, fact)| (id.as_str(), fact)).collect();

    let resolved: Vec<(String, String, bool, String, String, String)> =
        rows(connection, "SELECT sale_id, reason, approved, credit, payout_reversed, resolved_at FROM returns", [])?;
    let mut returns = Vec::new();
    for (sale_id, reason, approved, credit, payout_reversed, resolved_at) in resolved {
        if let Some(sale) = by_id.get(sale_id.as_str()) {
            returns.push(ReturnFact {
                sale: (*sale).clone(),
                reason,
                approved,
                credit: decimal(&credit)?,
                payout_reversed: decimal(&payout_reversed)?,
                resolved_on: instant(&resolved_at)?.date_naive(),
            });
        }
    }
    Ok(Facts { sales: sales.into_iter().map(|(_, fact)| fact).collect(), returns, currency })
}

fn pick_currency(present: BTreeSet<String>, asked: &Option<String>) -> Result<Option<String>, ReportError> {
    match asked {
        Some(currency) => Ok(Some(currency.clone())),
        None if present.len() <= 1 => Ok(present.into_iter().next()),
        None => Err(ReportError::Invalid {
            field: "currency",
            message: format!(
                "the ledger holds several currencies ({}); pass currency=",
                present.into_iter().collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

type Rows = Vec<(String, Value)>;

/// Invoices issued in the span, per buyer: invoiced, paid, open, overdue by dunning tier,
/// and days sales outstanding (receivables over invoiced, times the span's days).
fn payments(connection: &Connection, query: &ReportQuery) -> Result<(Rows, Value, Option<String>), ReportError> {
    let filter = Filter {
        kind: Some(DocumentKind::Invoice),
        from: Some(query.span.from),
        to: Some(query.span.to),
        limit: usize::MAX >> 1,
        ..Filter::default()
    };
    let invoices = documents::list(connection, &filter)?;
    let currency = pick_currency(invoices.iter().map(|(_, doc)| doc.currency.clone()).collect(), &query.currency)?;
    let days = Decimal::from((query.span.to - query.span.from).num_days() + 1);
    let mut rows: BTreeMap<String, PaymentMeasures> = BTreeMap::new();
    let mut totals = PaymentMeasures::default();
    for (_, invoice) in invoices.iter().filter(|(_, doc)| Some(&doc.currency) == currency.as_ref()) {
        let row = rows.entry(invoice.account_id.clone()).or_default();
        for measures in [row, &mut totals] {
            measures.add(invoice);
        }
    }
    let rows = rows.into_iter().map(|(key, measures)| (key, measures.to_json(days))).collect();
    Ok((rows, totals.to_json(days), currency))
}

#[derive(Debug, Default)]
struct PaymentMeasures {
    invoices: u64,
    invoiced: Decimal,
    paid: Decimal,
    open: Decimal,
    overdue: Decimal,
    overdue_tier1: Decimal,
    overdue_tier2: Decimal,
}

impl PaymentMeasures {
    fn add(&mut self, invoice: &documents::Document) {
        let due = invoice.amount_due().unwrap_or_default().max(Decimal::ZERO);
        self.invoices += 1;
        self.invoiced += invoice.total + invoice.credited;
        self.paid += invoice.paid();
        let tier = invoice.dunning.iter().map(|(tier, _)| *tier).max().unwrap_or(0);
        match (invoice.status(), tier) {
            (Some(Status::Overdue), 2) => self.overdue_tier2 += due,
            (Some(Status::Overdue), 1) => self.overdue_tier1 += due,
            (Some(Status::Overdue), _) => self.overdue += due,
            _ => self.open += due,
        }
    }

    fn to_json(&self, days: Decimal) -> Value {
        let receivable = self.open + self.overdue + self.overdue_tier1 + self.overdue_tier2;
        let dso = if self.invoiced.is_zero() { Decimal::ZERO } else { (receivable / self.invoiced * days).round_dp(1) };
        json!({
            "invoices": self.invoices,
            "invoiced": money::format(self.invoiced),
            "paid": money::format(self.paid),
            "open": money::format(self.open),
            "overdue": money::format(self.overdue),
            "overdue_tier1": money::format(self.overdue_tier1),
            "overdue_tier2": money::format(self.overdue_tier2),
            "days_sales_outstanding": format!("{dso:.1}"),
        })
    }
}

/// Parses a report date (`2026-11-30`).
pub fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, ReportError> {
    use chrono::Datelike;
    let date: NaiveDate = text
        .parse()
        .map_err(|_| ReportError::Invalid { field, message: format!("{text:?} is not a date (YYYY-MM-DD)") })?;
    if !(1970..=9999).contains(&date.year()) {
        return Err(ReportError::Invalid { field, message: format!("{text:?} is outside the years 1970 to 9999") });
    }
    Ok(date)
}
