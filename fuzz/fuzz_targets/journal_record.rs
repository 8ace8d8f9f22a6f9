//! The journal's record decoder (`store::journal::frame`): batch headers and checksums
//! (`check_batch`, `batch_len`, `next_valid_batch`), batch bodies (`decode_body` in each of
//! its modes, `skim_body`) and the first format's records (`legacy::decode`).
//!
//! The first input byte picks what the rest is: a batch body (0), a body given a valid
//! batch header and checksum (1), a legacy record's payload given a valid header (2), or
//! raw journal bytes (3). Libfuzzer cannot forge a CRC-32, so 1 and 2 reach the decoders
//! behind the checksum.
//!
//! Laws: never panics; a body every record of which decodes is read the same by every
//! reader (the ledger-only and internal-only readers skip exactly the other kind, the lean
//! reader drops only a pull lead's lead, the recovery skim sees the same sequences, sale
//! ids and config changes); the decoder's fast path for common events reads what the full
//! decode reads; decoded records written again with `BatchBuilder` decode equal. Decoding
//! is pure: a refused batch leaves nothing behind (the journal decides what to do with it).

#![no_main]

use leadrouter::domain::ledger::{Event, LedgerEvent};
use leadrouter::store::journal::frame::{
    batch_len, check_batch, decode_body, legacy, next_valid_batch, skim_body, BatchBuilder, Decode, Record, Skim,
    BATCH_HEADER_BYTES, MAGIC,
};
use leadrouter::store::journal::InternalRecord;
use libfuzzer_sys::fuzz_target;

const KIND_LEDGER: u8 = 1;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => body(rest),
        1 => {
            let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + rest.len());
            batch.extend_from_slice(&MAGIC);
            batch.extend_from_slice(&(rest.len() as u32).to_le_bytes());
            batch.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
            batch.extend_from_slice(rest);
            assert_eq!(batch_len(&batch), Ok(batch.len()));
            let (checked, used) = check_batch(&batch).expect("a well-framed batch checks");
            assert_eq!((checked, used), (rest, batch.len()));
            // A batch found is a batch that decodes (one may hide inside a body that does not).
            let whole = decode_body(rest, Decode::All).is_ok();
            assert_eq!(next_valid_batch(&batch, 0) == Some(0), whole);
            body(rest);
        }
        2 => {
            let mut record = Vec::with_capacity(8 + rest.len());
            record.extend_from_slice(&(rest.len() as u32).to_le_bytes());
            record.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
            record.extend_from_slice(rest);
            if let Ok((decoded, used)) = legacy::decode(&record) {
                assert_eq!(used, record.len());
                round_trip(&[decoded]);
            }
        }
        _ => {
            let _ = batch_len(rest);
            let _ = legacy::decode(rest);
            let _ = next_valid_batch(rest, 0);
            if let Ok((checked, used)) = check_batch(rest) {
                assert!(used <= rest.len() && checked.len() + BATCH_HEADER_BYTES == used);
                body(checked);
            }
        }
    }
});

fn body(body: &[u8]) {
    let all = decode_body(body, Decode::All);
    let ledger = decode_body(body, Decode::Ledger);
    let internal = decode_body(body, Decode::Internal);
    let lean = decode_body(body, Decode::InternalLean);
    let skim = skim_body(body);
    let Ok(all) = all else {
        return;
    };

    let only_ledger: Vec<Record> = all.iter().filter(|r| matches!(r, Record::Ledger(_))).cloned().collect();
    assert_eq!(ledger.expect("the ledger reader reads what the full reader reads"), only_ledger);
    let only_internal: Vec<Record> = all.iter().filter(|r| matches!(r, Record::Internal(_))).cloned().collect();
    let leaned: Vec<Record> = only_internal
        .iter()
        .map(|record| match record {
            Record::Internal(InternalRecord::PullLead { buyer_id, sale_id, position, .. }) => {
                Record::Internal(InternalRecord::PullLead {
                    buyer_id: buyer_id.clone(),
                    sale_id: sale_id.clone(),
                    position: *position,
                    lead: serde_json::Value::Null,
                })
            }
            other => other.clone(),
        })
        .collect();
    assert_eq!(internal.expect("the internal reader reads what the full reader reads"), only_internal);
    assert_eq!(lean.expect("the lean reader reads what the full reader reads"), leaned);

    let skimmed: Vec<Skim> = all
        .iter()
        .map(|record| match record {
            Record::Ledger(event) => Skim::Ledger {
                sequence: event.sequence,
                sale_id: match &event.event {
                    Event::SaleSettled(sale) => Some(sale.sale_id.clone()),
                    _ => None,
                },
            },
            Record::Internal(internal @ InternalRecord::ConfigChanged { .. }) => Skim::Config(internal.admin_change().expect("a config change")),
            Record::Internal(_) => Skim::Internal,
        })
        .collect();
    assert_eq!(skim.expect("recovery skims what the full reader reads"), skimmed);

    // The fast path (`LedgerOf<T>` picked by the `type` near the front) agrees with the
    // full decode of the event.
    let mut at = 0;
    let mut events = all.iter().filter_map(|r| match r {
        Record::Ledger(event) => Some(event),
        Record::Internal(_) => None,
    });
    while at < body.len() {
        let len = u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        let (kind, payload) = (body[at + 4], &body[at + 5..at + 5 + len]);
        at += 5 + len;
        if kind == KIND_LEDGER {
            let full = serde_json::from_slice::<LedgerEvent>(payload);
            let read = events.next().expect("one event per ledger record");
            match full {
                Ok(full) => assert_eq!(&full, read, "the fast path reads another event"),
                Err(error) => panic!("the fast path reads {read:?} where the full decode refuses: {error}"),
            }
        }
    }

    round_trip(&all);
}

/// Records written again with `BatchBuilder` read back equal.
fn round_trip(records: &[Record]) {
    let mut buffer = Vec::new();
    let mut builder = BatchBuilder::new(&mut buffer);
    for record in records {
        match record {
            Record::Ledger(event) => builder.push_ledger(event),
            Record::Internal(internal) => builder.push_internal(internal),
        }
        .expect("a decoded record encodes");
    }
    let len = builder.finish();
    assert_eq!(len, buffer.len());
    let (body, used) = check_batch(&buffer).expect("a written batch checks");
    assert_eq!(used, buffer.len());
    let again = decode_body(body, Decode::All).expect("a written batch decodes");
    assert_eq!(again, records, "decode, encode, decode is the first decode");
}
