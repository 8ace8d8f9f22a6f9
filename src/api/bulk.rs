//! `POST /v1/leads/bulk`: a CSV of leads, one result per row in order.
//!
//! The header row names lead fields (`first_name`, `email`, ...; `fields.<name>` for custom
//! fields; `consent.tcpa` etc.). A row that cannot become a lead gets its own 422 result;
//! it never blocks the rows around it.

use serde_json::{Map, Value};

use crate::domain::lead::{Consent, LeadInput, CONSENT_COLUMNS, LEAD_PROPERTIES};
use crate::domain::model::FieldError;
use crate::engine::ReturnInput;

/// DESIGN §4: at most 10,000 rows per file (a portal's daily export).
pub const BULK_ROWS_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkError {
    #[error("the CSV has no header row")]
    NoHeader,
    #[error("the CSV header is not valid: {0}")]
    BadHeader(String),
    #[error("more than {BULK_ROWS_MAX} rows")]
    TooManyRows,
}

pub fn parse(body: &[u8]) -> Result<Vec<Result<LeadInput, Vec<FieldError>>>, BulkError> {
    rows(
        body,
        |headers| match headers.iter().find(|name| !known_column(name)) {
            Some(name) => Err(BulkError::BadHeader(format!("unknown column {name:?}"))),
            None => Ok(headers.clone()),
        },
        |headers, record| to_lead(headers.iter().zip(record.iter())),
    )
}

/// `POST /v1/returns/bulk`: header `sale_id,reason,note` (`note` may be left out, columns
/// in any order), one return request per row.
pub fn parse_returns(body: &[u8]) -> Result<Vec<Result<ReturnInput, Vec<FieldError>>>, BulkError> {
    rows(
        body,
        |headers| {
            let column = |name: &str| headers.iter().position(|h| h == name);
            if let Some(unknown) = headers.iter().find(|h| !matches!(*h, "sale_id" | "reason" | "note")) {
                return Err(BulkError::BadHeader(format!("unknown column {unknown:?}; expected sale_id,reason,note")));
            }
            match (column("sale_id"), column("reason")) {
                (Some(sale_id), Some(reason)) => Ok((sale_id, reason, column("note"))),
                _ => Err(BulkError::BadHeader("sale_id and reason are required columns".into())),
            }
        },
        |&(sale_id, reason, note), record| {
            let cell = |at: usize| record.get(at).unwrap_or_default().to_string();
            let missing: Vec<FieldError> = [("sale_id", sale_id), ("reason", reason)]
                .into_iter()
                .filter(|(_, at)| cell(*at).is_empty())
                .map(|(name, _)| FieldError::new(name, "required"))
                .collect();
            if !missing.is_empty() {
                return Err(missing);
            }
            Ok(ReturnInput {
                sale_id: cell(sale_id),
                reason: cell(reason),
                note: note.map(cell).filter(|n| !n.is_empty()),
            })
        },
    )
}

/// The rows of a CSV body, each made into a `T` or its own field errors (a bad row never
/// blocks the others); `columns` checks the header once and says where things are.
fn rows<C, T>(
    body: &[u8],
    columns: impl FnOnce(&csv::StringRecord) -> Result<C, BulkError>,
    row: impl Fn(&C, &csv::StringRecord) -> Result<T, Vec<FieldError>>,
) -> Result<Vec<Result<T, Vec<FieldError>>>, BulkError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(body);
    let headers = reader.headers().map_err(|e| BulkError::BadHeader(e.to_string()))?.clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(BulkError::NoHeader);
    }
    // A second column of one name would silently win over the first.
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = headers.iter().find(|name| !seen.insert(*name)) {
        return Err(BulkError::BadHeader(format!("column {twice:?} appears twice")));
    }
    let layout = columns(&headers)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        if rows.len() == BULK_ROWS_MAX {
            return Err(BulkError::TooManyRows);
        }
        rows.push(match record {
            Err(e) => Err(vec![FieldError::new("row", format!("unreadable row: {e}"))]),
            Ok(record) if record.len() != headers.len() => {
                Err(vec![FieldError::new("row", format!("{} columns, the header has {}", record.len(), headers.len()))])
            }
            Ok(record) => row(&layout, &record),
        });
    }
    Ok(rows)
}

/// A bulk CSV's columns: the lead's properties (`domain::lead::LEAD_PROPERTIES`), its
/// consent (`CONSENT_COLUMNS`) and `fields.<name>` (DESIGN.md §4).
fn known_column(name: &str) -> bool {
    LEAD_PROPERTIES.contains(&name)
        || CONSENT_COLUMNS.contains(&name)
        || name.strip_prefix("fields.").is_some_and(|f| !f.is_empty())
}

fn to_lead<'a>(cells: impl Iterator<Item = (&'a str, &'a str)>) -> Result<LeadInput, Vec<FieldError>> {
    let mut lead = LeadInput::default();
    let mut fields = Map::new();
    let mut consent: Option<Consent> = None;
    let mut errors = Vec::new();
    for (column, cell) in cells {
        if cell.is_empty() {
            continue;
        }
        let text = Some(cell.to_string());
        match column {
            "vertical" => lead.vertical = text,
            "first_name" => lead.first_name = text,
            "last_name" => lead.last_name = text,
            "email" => lead.email = text,
            "phone" => lead.phone = text,
            "zip" => lead.zip = text,
            "country" => lead.country = text,
            "state" => lead.state = text,
            "city" => lead.city = text,
            "street" => lead.street = text,
            "external_id" => lead.external_id = text,
            "consent.tcpa" => match cell.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => consent.get_or_insert_with(empty_consent).tcpa = true,
                "false" | "0" | "no" => consent.get_or_insert_with(empty_consent).tcpa = false,
                _ => errors.push(FieldError::new("consent.tcpa", "true or false")),
            },
            "consent.certificate_url" => consent.get_or_insert_with(empty_consent).certificate_url = text,
            "consent.ip" => consent.get_or_insert_with(empty_consent).ip = text,
            "consent.captured_at" => consent.get_or_insert_with(empty_consent).captured_at = text,
            other => {
                if let Some(name) = other.strip_prefix("fields.") {
                    fields.insert(name.to_string(), Value::String(cell.to_string()));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    lead.fields = (!fields.is_empty()).then_some(fields);
    lead.consent = consent;
    Ok(lead)
}

fn empty_consent() -> Consent {
    Consent { tcpa: false, certificate_url: None, ip: None, captured_at: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_leads_and_bad_rows_stand_alone() {
        let csv =
            "vertical,first_name,email,zip,fields.roof\nsolar,Anna,a@example.com,80331,tile\nsolar,\"Bob\nsolar,x\n";
        let rows = parse(csv.as_bytes()).unwrap();
        assert!(
            rows[0].is_ok() && rows[1..].iter().all(Result::is_err),
            "a broken quote makes bad rows, not a failure: {rows:?}"
        );
        let csv = "vertical,first_name,email,zip,fields.roof\nsolar,Anna,a@example.com,80331,tile\nsolar,only,two\n";
        let rows = parse(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        let first = rows[0].as_ref().unwrap();
        assert_eq!(first.first_name.as_deref(), Some("Anna"));
        assert_eq!(first.fields.as_ref().unwrap()["roof"], "tile");
        assert!(rows[1].is_err());
    }

    #[test]
    fn unknown_columns_and_too_many_rows_are_refused() {
        assert!(matches!(parse(b"vertical,password\nsolar,x\n"), Err(BulkError::BadHeader(_))));
        let mut csv = String::from("vertical\n");
        for _ in 0..=BULK_ROWS_MAX {
            csv.push_str("solar\n");
        }
        assert_eq!(parse(csv.as_bytes()).unwrap_err(), BulkError::TooManyRows);
    }

    #[test]
    fn return_rows_stand_alone_and_the_header_is_checked() {
        let rows =
            parse_returns(b"sale_id,reason,note\nsal_1,invalid_phone,dead number\n,other,\nsal_3,duplicate\n").unwrap();
        assert_eq!(rows.len(), 3);
        let first = rows[0].as_ref().unwrap();
        assert_eq!((first.sale_id.as_str(), first.note.as_deref()), ("sal_1", Some("dead number")));
        assert!(rows[1].is_err() && rows[2].is_err(), "missing sale_id; short row");
        let no_note = parse_returns(b"reason,sale_id\nother,sal_9\n").unwrap();
        assert_eq!(no_note[0].as_ref().unwrap().sale_id, "sal_9");
        assert!(matches!(parse_returns(b"sale_id,price\n"), Err(BulkError::BadHeader(_))));
        assert!(matches!(parse_returns(b"sale_id,note\n"), Err(BulkError::BadHeader(_))));
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let twice = parse(b"vertical,email,email\nsolar,a@example.com,b@example.com\n");
        assert!(matches!(twice, Err(BulkError::BadHeader(message)) if message.contains("\"email\" appears twice")));
        let custom = parse(b"vertical,fields.roof,fields.roof\nsolar,tile,flat\n");
        assert!(matches!(custom, Err(BulkError::BadHeader(_))));
    }

    #[test]
    fn garbage_never_panics() {
        for input in [&b""[..], b"\xff\xfe\x00", b",,,\n,,,", b"\"", b"vertical\n\"\"\"\n"] {
            let _ = parse(input);
            let _ = parse_returns(input);
        }
    }
}
