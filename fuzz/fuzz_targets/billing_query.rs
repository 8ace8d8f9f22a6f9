//! The billing worker's query parameters (`leadrouter-billing`'s `api`): query strings
//! read into the endpoints' parameter structs (`parse_query`), the list cursor and limit
//! (`cursor`, `limit`), dates (`date` for `from`/`to`, `engine::reports::parse_date` for
//! reports), and the names of document kinds, report groupings and bases.
//!
//! Laws: never panics; every query string reads (unknown names are ignored, a name given
//! twice takes its last value); what was read, percent-encoded again, reads the same; an
//! accepted cursor is not negative and an accepted limit is 1 to 500, each printed back
//! reading the same; the two date readers agree, and an accepted date is in 1970..=9999
//! and prints back to itself; an accepted name prints back to itself. Pure: a refusal
//! leaves nothing behind.

#![no_main]

use chrono::Datelike;
use leadrouter_billing::api::{
    cursor, date, limit, parse_query, DocumentsQuery, NotificationsQuery, ReportFormat, ReportParams,
};
use leadrouter_billing::domain::document::DocumentKind;
use leadrouter_billing::domain::report::{Basis, GroupBy};
use leadrouter_billing::engine::reports::parse_date;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let documents: DocumentsQuery = parse_query(text).expect("any query string reads");
    let notifications: NotificationsQuery = parse_query(text).expect("any query string reads");
    let report: ReportParams = parse_query(text).expect("any query string reads");

    let written = write(&[
        ("account", &documents.account),
        ("kind", &documents.kind),
        ("from", &documents.from),
        ("to", &documents.to),
        ("after", &documents.after),
        ("limit", &documents.limit),
    ]);
    assert_eq!(parse_query::<DocumentsQuery>(&written).ok(), Some(documents.clone()), "the query written back");
    let written = write(&[
        ("group_by", &report.group_by),
        ("basis", &report.basis),
        ("currency", &report.currency),
        ("format", &report.format),
        ("status", &notifications.status),
    ]);
    let again: ReportParams = parse_query(&written).expect("the query written back reads");
    assert_eq!((&again.group_by, &again.basis, &again.format), (&report.group_by, &report.basis, &report.format));

    if let Ok(after) = cursor(documents.after.as_deref()) {
        assert!(after >= 0);
        assert_eq!(cursor(Some(&after.to_string())).ok(), Some(after));
    }
    if let Ok(limit) = limit(documents.limit.as_deref()) {
        assert!((1..=500).contains(&limit));
        assert_eq!(limit_of(&limit.to_string()), Some(limit));
    }
    if let Ok(page) = notifications.page() {
        assert!((1..=500).contains(&page.limit) && page.after >= 0);
    }
    for (field, text) in [("from", &documents.from), ("to", &documents.to)] {
        let Some(text) = text else {
            continue;
        };
        let api = date(field, text).ok();
        let report = parse_date("date", text).ok();
        assert_eq!(api, report, "{text:?}");
        if let Some(day) = api {
            assert!((1970..=9999).contains(&day.year()));
            assert_eq!(date(field, &day.to_string()).ok(), Some(day));
        }
    }
    if let Some(kind) = documents.kind.as_deref().and_then(DocumentKind::parse) {
        assert_eq!(DocumentKind::parse(kind.as_str()), Some(kind));
        assert_eq!(Some(kind.as_str()), documents.kind.as_deref());
    }
    if let Some(group) = report.group_by.as_deref().and_then(GroupBy::parse) {
        assert_eq!(Some(group.as_str()), report.group_by.as_deref());
    }
    if let Some(basis) = report.basis.as_deref().and_then(Basis::parse) {
        assert!(["accrual", "booked"].contains(&report.basis.as_deref().unwrap_or("")), "{basis:?}");
    }
    if let Ok((query, format)) = report.query("revenue") {
        assert!((1970..=9999).contains(&query.span.from.year()) && (1970..=9999).contains(&query.span.to.year()));
        assert_eq!(format == ReportFormat::Csv, report.format.as_deref() == Some("csv"));
    }
});

fn limit_of(text: &str) -> Option<usize> {
    limit(Some(text)).ok()
}

/// The parameters that are present, every byte of names and values as `%XX`: the
/// strictest encoding, which any reader must take.
fn write(parameters: &[(&str, &Option<String>)]) -> String {
    let pairs: Vec<String> = parameters
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{}={}", encode(name), encode(value))))
        .collect();
    pairs.join("&")
}

fn encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}
