//! Bulk CSV: `POST /v1/leads/bulk` (`api::bulk::parse`) and `POST /v1/returns/bulk`
//! (`api::bulk::parse_returns`).
//!
//! Laws: never panics; at most `BULK_ROWS_MAX` rows; a refused row carries at least one
//! field error; the rows that were read, written out again as CSV (with a header naming
//! every column), read back the same, in the same order. Pure: a refused file leaves
//! nothing behind, and a refused row never takes the others with it.

#![no_main]

use std::collections::BTreeSet;

use leadrouter::api::bulk::{self, BULK_ROWS_MAX};
use leadrouter::domain::lead::{LeadInput, CONSENT_COLUMNS, LEAD_PROPERTIES};
use leadrouter::engine::ReturnInput;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = bulk::parse(data) {
        assert!(rows.len() <= BULK_ROWS_MAX);
        assert!(rows.iter().all(|row| row.as_ref().err().is_none_or(|errors| !errors.is_empty())));
        let leads: Vec<&LeadInput> = rows.iter().filter_map(|row| row.as_ref().ok()).collect();
        let csv = write_leads(&leads);
        let again = bulk::parse(&csv).expect("leads written out read back");
        assert_eq!(again.len(), leads.len());
        for (read, written) in again.iter().zip(&leads) {
            let read = read.as_ref().expect("a lead written out is a lead");
            assert_eq!(format!("{read:?}"), format!("{written:?}"));
        }
    }

    if let Ok(rows) = bulk::parse_returns(data) {
        assert!(rows.len() <= BULK_ROWS_MAX);
        let returns: Vec<&ReturnInput> = rows.iter().filter_map(|row| row.as_ref().ok()).collect();
        assert!(returns.iter().all(|r| !r.sale_id.is_empty() && !r.reason.is_empty()));
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["sale_id", "reason", "note"]).unwrap();
        for r in &returns {
            writer.write_record([r.sale_id.as_str(), &r.reason, r.note.as_deref().unwrap_or("")]).unwrap();
        }
        let csv = writer.into_inner().unwrap();
        let again = bulk::parse_returns(&csv).expect("returns written out read back");
        assert_eq!(again.len(), returns.len());
        for (read, written) in again.iter().zip(&returns) {
            let read = read.as_ref().expect("a return written out is a return");
            assert_eq!(format!("{read:?}"), format!("{written:?}"));
        }
    }
});

fn write_leads(leads: &[&LeadInput]) -> Vec<u8> {
    let custom: BTreeSet<&str> =
        leads.iter().flat_map(|lead| lead.fields.iter().flat_map(|fields| fields.keys())).map(String::as_str).collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> =
        LEAD_PROPERTIES
            .iter()
            .chain(CONSENT_COLUMNS.iter())
            .map(|c| c.to_string())
            .chain(custom.iter().map(|name| format!("fields.{name}")))
            .collect();
    writer.write_record(&header).unwrap();
    for lead in leads {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let consent = lead.consent.as_ref();
        let mut row = vec![
            text(&lead.vertical),
            text(&lead.first_name),
            text(&lead.last_name),
            text(&lead.email),
            text(&lead.phone),
            text(&lead.zip),
            text(&lead.country),
            text(&lead.state),
            text(&lead.city),
            text(&lead.street),
            text(&lead.external_id),
            consent.map(|c| c.tcpa.to_string()).unwrap_or_default(),
            consent.map(|c| text(&c.certificate_url)).unwrap_or_default(),
            consent.map(|c| text(&c.ip)).unwrap_or_default(),
            consent.map(|c| text(&c.captured_at)).unwrap_or_default(),
        ];
        for name in &custom {
            let cell = match lead.fields.as_ref().and_then(|fields| fields.get(*name)) {
                Some(Value::String(text)) => text.clone(),
                Some(other) => panic!("a CSV cell became {other}"),
                None => String::new(),
            };
            row.push(cell);
        }
        writer.write_record(&row).unwrap();
    }
    writer.into_inner().unwrap()
}
