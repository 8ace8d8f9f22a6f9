//! A document as JSON (DESIGN §13.1), CSV (one row per line) and a printable HTML page.

use serde_json::{json, Map, Value};

use crate::domain::document::{DocumentKind, Line};
use crate::domain::money;
use crate::html::escape;
use crate::store::documents::Document;

pub fn json(document: &Document) -> Value {
    let mut out = Map::new();
    out.insert("number".into(), json!(document.number));
    out.insert("kind".into(), json!(document.kind.as_str()));
    out.insert("account_id".into(), json!(document.account_id));
    out.insert("account_kind".into(), json!(document.account_kind.as_str()));
    out.insert("currency".into(), json!(document.currency));
    out.insert(
        "period".into(),
        json!({"from": document.period.from.to_string(), "to": document.period.to.to_string()}),
    );
    out.insert("issue_date".into(), json!(document.issue_date.to_string()));
    if let Some(due) = document.due_date {
        out.insert("due_date".into(), json!(due.to_string()));
    }
    if let Some(status) = document.status() {
        out.insert("status".into(), json!(status.as_str()));
    }
    out.insert("total".into(), json!(money::format(document.total)));
    if let Some(due) = document.amount_due() {
        out.insert("amount_due".into(), json!(money::format(due)));
    }
    if let Some(original) = &document.refers_to {
        out.insert("refers_to".into(), json!(original));
    }
    out.insert("lines".into(), Value::Array(document.lines.iter().map(line).collect()));
    if document.kind == DocumentKind::Invoice {
        let payments: Vec<Value> = document
            .payments
            .iter()
            .map(|payment| {
                json!({"amount": money::format(payment.amount), "paid_at": utc(payment.paid_at), "reference": payment.reference})
            })
            .collect();
        out.insert("payments".into(), Value::Array(payments));
        let dunning: Vec<Value> =
            document.dunning.iter().map(|(tier, date)| json!({"tier": tier, "date": date.to_string()})).collect();
        out.insert("dunning".into(), Value::Array(dunning));
        if !document.credited.is_zero() {
            out.insert("credited".into(), json!(money::format(document.credited)));
        }
    }
    if let Some(opening) = document.opening_balance {
        out.insert("opening_balance".into(), json!(money::format(opening)));
    }
    if let Some(closing) = document.closing_balance {
        out.insert("closing_balance".into(), json!(money::format(closing)));
    }
    Value::Object(out)
}

fn line(line: &Line) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!(line.kind.as_str()));
    let optional = [
        ("sale_id", &line.sale_id),
        ("lead_id", &line.lead_id),
        ("return_id", &line.return_id),
        ("vertical", &line.vertical),
        ("campaign_id", &line.campaign_id),
        ("buyer_reference", &line.buyer_reference),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            out.insert(name.into(), json!(value));
        }
    }
    if let Some(sold_at) = line.sold_at {
        out.insert("sold_at".into(), json!(utc(sold_at)));
    }
    out.insert("description".into(), json!(line.description));
    out.insert("amount".into(), json!(money::format(line.amount)));
    if let Some(refers_to) = &line.refers_to {
        out.insert("refers_to".into(), json!(refers_to));
    }
    Value::Object(out)
}

/// New columns go last, so a reader that picks columns by position keeps working.
const CSV_HEADER: [&str; 12] = [
    "number",
    "kind",
    "sale_id",
    "lead_id",
    "return_id",
    "vertical",
    "campaign_id",
    "sold_at",
    "description",
    "amount",
    "refers_to",
    "buyer_reference",
];

pub fn csv(document: &Document) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for line in &document.lines {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        writer.write_record([
            document.number.clone(),
            line.kind.as_str().to_string(),
            text(&line.sale_id),
            text(&line.lead_id),
            text(&line.return_id),
            text(&line.vertical),
            text(&line.campaign_id),
            line.sold_at.map(utc).unwrap_or_default(),
            line.description.clone(),
            money::format(line.amount),
            text(&line.refers_to),
            inert_cell(text(&line.buyer_reference)),
        ])?;
    }
    writer.into_inner().map_err(|error| error.into_error().into())
}

/// A cell from outside (the buyer's reference is whatever its endpoint answered) that a
/// spreadsheet must not run: one starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return gets a leading `'` (OWASP's CSV injection advice).
fn inert_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

pub fn html(document: &Document) -> String {
    let currency = escape(&document.currency);
    let facts = html_facts(document);
    // The buyer's reference gets a column only on documents that have one, so every
    // document without (all of them before references existed) prints as it did.
    let referenced = document.lines.iter().any(|line| line.buyer_reference.is_some());
    let rows = html_lines(document, referenced);
    let reference_heading = if referenced { "<th>Buyer reference</th>" } else { "" };
    let summary = html_summary(document, &currency);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{number}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #111; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.25em 0.75em; border-bottom: 1px solid #ddd; vertical-align: top; }}
.amount {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
@media print {{ body {{ margin: 0; }} }}
</style></head>
<body>
<h1>{title} {number}</h1>
<table class="facts">{facts}</table>
<table class="lines"><thead><tr><th>Kind</th><th>Reference</th>{reference_heading}<th>Sold</th><th>Description</th><th class="amount">Amount ({currency})</th></tr></thead>
<tbody>{rows}</tbody></table>
<table class="summary">{summary}</table>
</body></html>
"#,
        number = escape(&document.number),
        title = document.kind.title(),
    )
}

/// The header table: account, period, dates, status, the document corrected.
fn html_facts(document: &Document) -> String {
    let mut facts = vec![
        ("Account".to_string(), format!("{} ({})", document.account_id, document.account_kind.as_str())),
        ("Period".to_string(), document.period.to_string()),
        ("Issued".to_string(), document.issue_date.to_string()),
    ];
    if let Some(due) = document.due_date {
        facts.push(("Due".into(), due.to_string()));
    }
    if let Some(status) = document.status() {
        facts.push(("Status".into(), status.as_str().into()));
    }
    if let Some(original) = &document.refers_to {
        facts.push(("Corrects".into(), original.clone()));
    }
    facts.iter().map(|(name, value)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(name), escape(value))).collect()
}

/// One table row per line; with the buyer's reference column when `referenced`.
fn html_lines(document: &Document, referenced: bool) -> String {
    document
        .lines
        .iter()
        .map(|line| {
            let reference = match (referenced, &line.buyer_reference) {
                (true, reference) => format!("<td>{}</td>", escape(reference.as_deref().unwrap_or(""))),
                (false, _) => String::new(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td>{reference}<td>{}</td><td>{}</td><td class=\"amount\">{}</td></tr>",
                escape(line.kind.as_str()),
                escape(line.sale_id.as_deref().or(line.return_id.as_deref()).unwrap_or("")),
                line.sold_at.map(|at| at.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default(),
                escape(&line.description),
                escape(&money::format(line.amount)),
            )
        })
        .collect()
}

/// The totals table, in `currency` (escaped).
fn html_summary(document: &Document, currency: &str) -> String {
    let mut summary = vec![("Total".to_string(), document.total)];
    if let Some(opening) = document.opening_balance {
        summary.insert(0, ("Opening balance".into(), opening));
    }
    if let Some(closing) = document.closing_balance {
        summary.push(("Closing balance".into(), closing));
    }
    if document.kind == DocumentKind::Invoice {
        if !document.credited.is_zero() {
            summary.push(("Credited".into(), document.credited));
        }
        summary.push(("Paid".into(), document.paid()));
        if let Some(due) = document.amount_due() {
            summary.push(("Amount due".into(), due));
        }
    }
    summary
        .iter()
        .map(|(name, amount)| {
            format!(
                "<tr><th>{}</th><td class=\"amount\">{} {currency}</td></tr>",
                escape(name),
                escape(&money::format(*amount))
            )
        })
        .collect()
}

/// RFC 3339 in UTC with a `Z`, as everywhere on leadrouter's wire.
fn utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, Utc};
    use leadrouter_types::{Currency, Model};
    use rust_decimal_macros::dec;

    use super::*;
    use crate::domain::dunning::DunningPolicy;
    use crate::domain::facts::{BillingMode, Buyer, Entry, Fact, Sale};
    use crate::domain::period::Interval;
    use crate::engine::run::run;
    use crate::store::{documents, ledger, Db};

    fn sale(n: u64, buyer_reference: Option<&str>) -> Entry {
        let sold_at = format!("2026-11-0{}T09:00:00Z", n + 2).parse().expect("a time");
        Entry {
            sequence: n + 1,
            at: sold_at,
            fact: Fact::Sale(Sale {
                sale_id: format!("sal_{n}").into(),
                lead_id: format!("led_{n}").into(),
                ping_id: None,
                supplier_id: "sup".into(),
                buyer_id: "inv".into(),
                campaign_id: "c-solar".into(),
                vertical: "solar".into(),
                country: "DE".into(),
                model: Model::Bidding,
                price: dec!(40.00),
                payout: dec!(20.00),
                currency: Currency::EUR,
                sold_at,
                internal: false,
                buyer_reference: buyer_reference.map(str::to_string),
            }),
        }
    }

    #[test]
    fn an_invoice_line_shows_the_buyers_reference_in_json_csv_and_html_and_is_empty_without_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("billing.db")).expect("database");
        let buyer = Entry {
            sequence: 1,
            at: "2026-11-01T00:00:00Z".parse().expect("a time"),
            fact: Fact::Buyer(Buyer {
                buyer_id: "inv".into(),
                name: "Invoice buyer".into(),
                email: None,
                currency: Currency::EUR,
                timezone: chrono_tz::UTC,
                mode: BillingMode::Invoice,
                interval: Interval::Weekly,
                payment_terms_days: 14,
                credit_limit: None,
            }),
        };
        let entries = [buyer, sale(1, Some("CRM-<7>")), sale(2, None), sale(3, Some("=HYPERLINK(\"x\")"))];
        db.with(|connection| ledger::apply(connection, &entries)).expect("applied");
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 9).expect("a date");
        let outcome = db.with(|connection| run(connection, as_of, DunningPolicy::default(), Utc::now())).expect("run");
        assert_eq!(outcome.issued, ["INV-2026-000001"]);
        let invoice =
            db.with(|connection| documents::load(connection, "INV-2026-000001")).expect("loaded").expect("issued");

        let lines = json(&invoice)["lines"].clone();
        assert_eq!(
            (lines[0]["sale_id"].as_str(), lines[0]["buyer_reference"].as_str()),
            (Some("sal_1"), Some("CRM-<7>"))
        );
        assert_eq!(lines[1]["sale_id"], "sal_2");
        assert!(lines[1].get("buyer_reference").is_none(), "left out, not null: {}", lines[1]);

        let csv = String::from_utf8(csv(&invoice).expect("csv")).expect("utf-8");
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[0].ends_with(",refers_to,buyer_reference"), "a new last column: {}", rows[0]);
        assert!(rows[1].starts_with("INV-2026-000001,sale,sal_1,") && rows[1].ends_with(",CRM-<7>"), "{}", rows[1]);
        assert!(rows[2].ends_with(','), "empty without a reference: {}", rows[2]);
        assert!(rows[3].ends_with(r#","'=HYPERLINK(""x"")""#), "a formula made inert: {}", rows[3]);

        let page = html(&invoice);
        assert!(page.contains("<th>Buyer reference</th>") && page.contains("<td>CRM-&lt;7&gt;</td>"), "{page}");
    }
}
