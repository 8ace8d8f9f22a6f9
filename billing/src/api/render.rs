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

const CSV_HEADER: [&str; 11] = [
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
        ])?;
    }
    writer.into_inner().map_err(|error| error.into_error().into())
}

pub fn html(document: &Document) -> String {
    let currency = escape(&document.currency);
    let facts = html_facts(document);
    let rows = html_lines(document);
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
<table class="lines"><thead><tr><th>Kind</th><th>Reference</th><th>Sold</th><th>Description</th><th class="amount">Amount ({currency})</th></tr></thead>
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

/// One table row per line.
fn html_lines(document: &Document) -> String {
    document
        .lines
        .iter()
        .map(|line| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"amount\">{}</td></tr>",
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
