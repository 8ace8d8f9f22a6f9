//! The bytes of the journal: batches of records, each batch checksummed as a whole.
//!
//! A batch is what the writer writes with one `write` and makes durable with one fsync:
//! `[magic "LRJ2"][body length: u32 LE][crc32 of the body: u32 LE][body]`. The body is
//! records `[length: u32 LE][kind: u8][payload]`, the payload being the JSON of a ledger
//! event (kind 1) or of an internal record (kind 2), so readers of the ledger skip internal
//! records without parsing them.
//!
//! Rationale for checking batches rather than records: a batch is only written after the
//! one before it was fsynced. So a damaged batch followed by a valid one hit data that was
//! once acknowledged (corruption: stop and say where), while a damaged batch with nothing
//! valid after it is the last write, cut short by a crash (a torn tail: cut it off). Pages
//! of one unacknowledged write may reach the disk in any order; checking the batch whole
//! never mistakes a stray page of it for a record.
//!
//! Decoding applies no input limits: what was written is read back (`Money` reads any
//! magnitude). A batch whose checksum holds but whose records do not decode is damage, never
//! a tail to cut.

use serde::{Deserialize, Serialize};

use super::InternalRecord;
use crate::domain::ledger::{Event, LedgerEvent};

pub const MAGIC: [u8; 4] = *b"LRJ2";
pub const BATCH_HEADER_BYTES: usize = 12;
/// A batch longer than this is not one of ours: a damaged header, not a reason to read
/// gigabytes.
pub const BATCH_BYTES_MAX: u32 = 1 << 30;
const KIND_LEDGER: u8 = 1;
const KIND_INTERNAL: u8 = 2;

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
// Moved once per append; boxing the event would cost an allocation per sale.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Ledger(LedgerEvent),
    Internal(InternalRecord),
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The bytes end before the batch does: the last write, cut short.
    CutShort,
    /// The batch is there but wrong (bad magic, implausible length, checksum, a record that
    /// does not decode).
    Damaged(String),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::CutShort => f.write_str("batch cut short"),
            BatchError::Damaged(reason) => f.write_str(reason),
        }
    }
}

/// Builds one batch in a buffer.
pub struct BatchBuilder<'a> {
    buffer: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> BatchBuilder<'a> {
    pub fn new(buffer: &'a mut Vec<u8>) -> BatchBuilder<'a> {
        let start = buffer.len();
        buffer.extend_from_slice(&[0; BATCH_HEADER_BYTES]);
        BatchBuilder { buffer, start }
    }

    pub fn push_ledger(&mut self, event: &LedgerEvent) -> Result<(), serde_json::Error> {
        self.push(KIND_LEDGER, |out| serde_json::to_writer(out, event))
    }

    pub fn push_internal(&mut self, record: &InternalRecord) -> Result<(), serde_json::Error> {
        self.push(KIND_INTERNAL, |out| serde_json::to_writer(out, record))
    }

    fn push(
        &mut self,
        kind: u8,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        let at = self.buffer.len();
        self.buffer.extend_from_slice(&[0; 5]);
        if let Err(error) = write(self.buffer) {
            self.buffer.truncate(at);
            return Err(error);
        }
        let len = (self.buffer.len() - at - 5) as u32;
        self.buffer[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.buffer[at + 4] = kind;
        Ok(())
    }

    /// Fills in the header; answers the batch's length in bytes.
    pub fn finish(self) -> usize {
        let body = &self.buffer[self.start + BATCH_HEADER_BYTES..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        let header = &mut self.buffer[self.start..self.start + BATCH_HEADER_BYTES];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..12].copy_from_slice(&crc.to_le_bytes());
        self.buffer.len() - self.start
    }
}

/// The length of the batch whose header starts `bytes`, header included.
pub fn batch_len(header: &[u8]) -> Result<usize, BatchError> {
    let header = header.get(..BATCH_HEADER_BYTES).ok_or(BatchError::CutShort)?;
    if header[..4] != MAGIC {
        return Err(BatchError::Damaged("no batch header here".into()));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > BATCH_BYTES_MAX {
        return Err(BatchError::Damaged(format!("batch length {len} is not plausible")));
    }
    Ok(BATCH_HEADER_BYTES + len as usize)
}

/// Checks the batch at the front of `bytes`: its body and the bytes it takes.
pub fn check_batch(bytes: &[u8]) -> Result<(&[u8], usize), BatchError> {
    let len = batch_len(bytes)?;
    let batch = bytes.get(..len).ok_or(BatchError::CutShort)?;
    let crc = u32::from_le_bytes([batch[8], batch[9], batch[10], batch[11]]);
    let body = &batch[BATCH_HEADER_BYTES..];
    if crc32fast::hash(body) != crc {
        return Err(BatchError::Damaged("batch checksum mismatch".into()));
    }
    Ok((body, len))
}

/// What a reader needs of a batch: decoding is most of what a start costs, so each reader
/// decodes only what it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Every record, whole.
    All,
    /// Ledger events; internal records are skipped unparsed.
    Ledger,
    /// Internal records, whole; ledger events are skipped unparsed (a pull fetch reading
    /// its leads back).
    Internal,
    /// Internal records, without the lead of a `PullLead` (`Value::Null`: restoring a pull
    /// queue needs its place, not the lead, which a fetch reads back from there); ledger
    /// events are skipped unparsed.
    InternalLean,
}

/// The records of a checked batch body, in order, as `decode` asks.
pub fn decode_body(body: &[u8], decode: Decode) -> Result<Vec<Record>, BatchError> {
    let mut records = Vec::new();
    for record in records_of(body) {
        let (kind, payload) = record?;
        match (kind, decode) {
            (KIND_LEDGER, Decode::All | Decode::Ledger) => records.push(Record::Ledger(ledger_event(payload)?)),
            (KIND_INTERNAL, Decode::InternalLean) => records.push(Record::Internal(lean_internal(payload)?)),
            (KIND_INTERNAL, Decode::All | Decode::Internal) => records.push(Record::Internal(internal(payload)?)),
            (KIND_LEDGER | KIND_INTERNAL, _) => {}
            (other, _) => return Err(BatchError::Damaged(format!("unknown record kind {other}"))),
        }
    }
    Ok(records)
}

/// What recovery needs of a record: sequences to check, sale ids to index, the operators'
/// changes. The batch's checksum has vouched for the bytes; a record that would not decode
/// whole still stops the start when replay reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Skim {
    Ledger { sequence: u64, sale_id: Option<String> },
    Config(crate::domain::changes::AdminChange),
    Internal,
}

#[derive(Deserialize)]
struct LedgerSkim<'a> {
    sequence: u64,
    #[serde(borrow)]
    event: EventSkim<'a>,
}

#[derive(Deserialize)]
struct EventSkim<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    sale_id: Option<String>,
}

#[derive(Deserialize)]
struct KindSkim<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// The records of a checked batch body, skimmed for recovery.
pub fn skim_body(body: &[u8]) -> Result<Vec<Skim>, BatchError> {
    let damaged = |what: &str, e: serde_json::Error| BatchError::Damaged(format!("{what} does not decode: {e}"));
    let mut records = Vec::new();
    for record in records_of(body) {
        let (kind, payload) = record?;
        match kind {
            KIND_LEDGER => {
                let skim: LedgerSkim = serde_json::from_slice(payload).map_err(|e| damaged("a ledger event", e))?;
                let sale_id = if skim.event.kind == "sale_settled" { skim.event.sale_id } else { None };
                records.push(Skim::Ledger { sequence: skim.sequence, sale_id });
            }
            KIND_INTERNAL => {
                let skim: KindSkim = serde_json::from_slice(payload).map_err(|e| damaged("an internal record", e))?;
                if skim.kind == "config_changed" {
                    match internal(payload)?.admin_change() {
                        Some(change) => records.push(Skim::Config(change)),
                        None => return Err(BatchError::Damaged("a config change does not decode".into())),
                    }
                } else {
                    records.push(Skim::Internal);
                }
            }
            other => return Err(BatchError::Damaged(format!("unknown record kind {other}"))),
        }
    }
    Ok(records)
}

/// (kind, payload) of each record of a body; an error ends it.
fn records_of(body: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), BatchError>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= body.len() {
            return None;
        }
        let Some(head) = body.get(at..at + 5) else {
            at = body.len();
            return Some(Err(BatchError::Damaged("record header past the batch".into())));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(payload) = body.get(at + 5..at + 5 + len) else {
            at = body.len();
            return Some(Err(BatchError::Damaged("record past the batch".into())));
        };
        at += 5 + len;
        Some(Ok((head[4], payload)))
    })
}

/// A ledger event with the variant of its event known, decoded without serde buffering
/// the whole event first (what an internally tagged enum costs: most of a replay's time).
#[derive(Deserialize)]
struct LedgerOf<T> {
    sequence: u64,
    at: chrono::DateTime<chrono::Utc>,
    event: T,
}

fn ledger_event(payload: &[u8]) -> Result<LedgerEvent, BatchError> {
    fn direct<T: serde::de::DeserializeOwned>(payload: &[u8], wrap: fn(T) -> Event) -> Option<LedgerEvent> {
        let of: LedgerOf<T> = serde_json::from_slice(payload).ok()?;
        Some(LedgerEvent { sequence: of.sequence, at: of.at, event: wrap(of.event) })
    }
    let fast = match event_type(payload) {
        Some(b"sale_settled") => direct(payload, Event::SaleSettled),
        Some(b"balance_topped_up") => direct(payload, Event::BalanceToppedUp),
        Some(b"return_resolved") => direct(payload, Event::ReturnResolved),
        _ => None,
    };
    match fast {
        Some(event) => Ok(event),
        // Anything unexpected takes the whole decode, which names what is wrong.
        None => serde_json::from_slice(payload)
            .map_err(|e| BatchError::Damaged(format!("a ledger event does not decode: {e}"))),
    }
}

/// The event's `type`, where the writer puts it: the first field of `event`, near the front.
fn event_type(payload: &[u8]) -> Option<&[u8]> {
    const FIELD: &[u8] = br#""event":{"type":""#;
    let head = &payload[..payload.len().min(160)];
    let start = head.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let len = payload.get(start..)?.iter().take(32).position(|b| *b == b'"')?;
    payload.get(start..start + len)
}

fn internal(payload: &[u8]) -> Result<InternalRecord, BatchError> {
    serde_json::from_slice(payload).map_err(|e| BatchError::Damaged(format!("an internal record does not decode: {e}")))
}

/// A pull lead's fields but the lead.
#[derive(Deserialize)]
struct PullLeadPlace {
    buyer_id: String,
    sale_id: String,
    position: u64,
}

fn lean_internal(payload: &[u8]) -> Result<InternalRecord, BatchError> {
    // The writer puts the tag first; anything else takes the whole decode.
    if payload.starts_with(br#"{"kind":"pull_lead","#) {
        if let Ok(place) = serde_json::from_slice::<PullLeadPlace>(payload) {
            return Ok(InternalRecord::PullLead {
                buyer_id: place.buyer_id,
                sale_id: place.sale_id,
                position: place.position,
                lead: serde_json::Value::Null,
            });
        }
    }
    internal(payload)
}

/// The first offset after `from` where a whole, valid batch starts, if any: proof that the
/// damage before it hit data that was once acknowledged.
pub fn next_valid_batch(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = bytes.get(at..)?.windows(MAGIC.len()).position(|w| w == MAGIC) {
        let start = at + found;
        if let Ok((body, _)) = check_batch(&bytes[start..]) {
            if decode_body(body, Decode::All).is_ok() {
                return Some(start);
            }
        }
        at = start + 1;
    }
    None
}

/// The first journal format (one file, records `[len][crc32][JSON]` with no batch frame),
/// read once to move an old journal into segments.
pub mod legacy {
    use super::*;

    #[derive(Deserialize, Serialize)]
    #[serde(untagged)]
    #[allow(clippy::large_enum_variant)]
    enum LegacyRecord {
        Ledger(LedgerEvent),
        Internal { internal: InternalRecord },
    }

    /// Decodes the record at the front of `bytes`: the record and the bytes it used, or
    /// why it is not one (which ends the old log, as the old reader did).
    pub fn decode(bytes: &[u8]) -> Result<(Record, usize), String> {
        let header = bytes.get(..8).ok_or("record header cut short")?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > 16 * 1024 * 1024 {
            return Err(format!("record length {len} is not plausible"));
        }
        let end = 8 + len as usize;
        let payload = bytes.get(8..end).ok_or("record cut short")?;
        if crc32fast::hash(payload) != crc {
            return Err("record checksum mismatch".into());
        }
        match serde_json::from_slice(payload).map_err(|e| format!("record does not decode: {e}"))? {
            LegacyRecord::Ledger(event) => Ok((Record::Ledger(event), end)),
            LegacyRecord::Internal { internal } => Ok((Record::Internal(internal), end)),
        }
    }

    #[cfg(test)]
    pub fn encode(record: &Record, out: &mut Vec<u8>) {
        let payload = match record {
            Record::Ledger(event) => serde_json::to_vec(&LegacyRecord::Ledger(event.clone())),
            Record::Internal(internal) => serde_json::to_vec(&LegacyRecord::Internal { internal: internal.clone() }),
        }
        .unwrap();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::{BalanceToppedUp, Event};
    use crate::domain::money::Money;
    use chrono::{TimeZone, Utc};

    fn event(sequence: u64) -> LedgerEvent {
        LedgerEvent {
            sequence,
            at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            event: Event::BalanceToppedUp(BalanceToppedUp {
                buyer_id: "b1".into(),
                amount: Money::cents(100),
                reference: format!("r{sequence}"),
                balance_after: Money::cents(100 * sequence as i64),
                currency: crate::domain::money::Currency::EUR,
            }),
        }
    }

    fn batch(sequences: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        let mut buffer = Vec::new();
        let mut builder = BatchBuilder::new(&mut buffer);
        for sequence in sequences {
            builder.push_ledger(&event(sequence)).unwrap();
            builder.push_internal(&InternalRecord::PullAcknowledged { buyer_id: "b1".into(), through: 1 }).unwrap();
        }
        builder.finish();
        buffer
    }

    #[test]
    fn a_batch_reads_back_and_internal_records_can_be_skipped() {
        let bytes = batch(1..=3);
        let (body, used) = check_batch(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(decode_body(body, Decode::All).unwrap().len(), 6);
        let ledger = decode_body(body, Decode::Ledger).unwrap();
        assert_eq!(ledger, vec![Record::Ledger(event(1)), Record::Ledger(event(2)), Record::Ledger(event(3))]);
    }

    #[test]
    fn recovery_skims_and_restore_reads_pull_leads_without_their_lead() {
        let sale = LedgerEvent {
            sequence: 7,
            at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            event: Event::from(crate::domain::ledger::SaleSettled {
                sale_id: "sal_7".into(),
                ..crate::domain::ledger::SaleSettled::example(Utc::now())
            }),
        };
        let pull = InternalRecord::PullLead {
            buyer_id: "b1".into(),
            sale_id: "sal_7".into(),
            position: 3,
            lead: serde_json::json!({"email": "a@example.com"}),
        };
        let change = crate::domain::market::ConfigChange::DeleteBuyer("b9".into());
        let at = Utc::now();
        let by = crate::domain::operator::Actor::AdminToken;
        let config = InternalRecord::ConfigChanged { change: change.clone(), at, by: by.clone() };
        let acknowledged = InternalRecord::PullAcknowledged { buyer_id: "b1".into(), through: 2 };
        let mut buffer = Vec::new();
        let mut builder = BatchBuilder::new(&mut buffer);
        builder.push_internal(&pull).unwrap();
        builder.push_ledger(&sale).unwrap();
        builder.push_ledger(&event(8)).unwrap();
        builder.push_internal(&config).unwrap();
        builder.push_internal(&acknowledged).unwrap();
        builder.finish();
        let (body, _) = check_batch(&buffer).unwrap();
        assert_eq!(
            skim_body(body).unwrap(),
            vec![
                Skim::Internal,
                Skim::Ledger { sequence: 7, sale_id: Some("sal_7".into()) },
                Skim::Ledger { sequence: 8, sale_id: None },
                Skim::Config(crate::domain::changes::AdminChange::new(change, by, at)),
                Skim::Internal,
            ]
        );
        let ledger = decode_body(body, Decode::Ledger).unwrap();
        assert_eq!(ledger, vec![Record::Ledger(sale.clone()), Record::Ledger(event(8))], "decoded by their type");
        let lean = decode_body(body, Decode::InternalLean).unwrap();
        let placed = InternalRecord::PullLead {
            buyer_id: "b1".into(),
            sale_id: "sal_7".into(),
            position: 3,
            lead: serde_json::Value::Null,
        };
        assert_eq!(lean, vec![Record::Internal(placed), Record::Internal(config), Record::Internal(acknowledged)]);
    }

    #[test]
    fn a_sale_journaled_before_buyer_references_reads_as_none_and_one_with_a_reference_round_trips() {
        // A sale record exactly as journals written before `buyer_reference` hold it.
        let before = br#"{"sequence":5,"at":"2026-12-01T09:00:00Z","event":{"type":"sale_settled","sale_id":"sal_5","lead_id":"led_5","ping_id":null,"supplier_id":"s1","buyer_id":"b1","campaign_id":"c1","vertical":"solar","country":"DE","model":"bidding","price":"38.00","payout":"22.80","currency":"EUR","sold_at":"2026-12-01T09:00:00Z","internal":false,"dedup_keys":["ab"],"return_terms":{"window_days":7,"require_approval":false}}}"#;
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        let referenced = LedgerEvent {
            sequence: 6,
            at,
            event: Event::from(crate::domain::ledger::SaleSettled {
                sale_id: "sal_6".into(),
                buyer_reference: Some("CRM-0042".into()),
                ..crate::domain::ledger::SaleSettled::example(at)
            }),
        };
        let mut buffer = Vec::new();
        let mut builder = BatchBuilder::new(&mut buffer);
        builder
            .push(KIND_LEDGER, |out| {
                out.extend_from_slice(before);
                Ok(())
            })
            .unwrap();
        builder.push_ledger(&referenced).unwrap();
        builder.finish();
        let (body, _) = check_batch(&buffer).unwrap();
        let decoded = decode_body(body, Decode::Ledger).unwrap();
        let [Record::Ledger(old), Record::Ledger(new)] = decoded.as_slice() else { panic!("two events: {decoded:?}") };
        let Event::SaleSettled(old) = &old.event else { panic!("a sale: {old:?}") };
        assert_eq!((old.sale_id.as_str(), old.buyer_reference.as_deref()), ("sal_5", None));
        assert_eq!(new, &referenced, "a reference reads back as written");
        // The slow path (any record the fast one does not take) reads the old form too.
        let whole: LedgerEvent = serde_json::from_slice(before).unwrap();
        let Event::SaleSettled(whole) = whole.event else { panic!("a sale") };
        assert_eq!(whole.buyer_reference, None);
        // A sale without a reference is written as before: no key, not `null`.
        let unreferenced = serde_json::to_string(&crate::domain::ledger::SaleSettled::example(at)).unwrap();
        assert!(!unreferenced.contains("buyer_reference"), "{unreferenced}");
    }

    #[test]
    fn a_cut_batch_is_cut_short_and_a_flipped_bit_is_damage() {
        let bytes = batch(1..=3);
        assert_eq!(check_batch(&bytes[..bytes.len() - 1]).unwrap_err(), BatchError::CutShort);
        assert_eq!(check_batch(&bytes[..5]).unwrap_err(), BatchError::CutShort);
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(matches!(check_batch(&flipped), Err(BatchError::Damaged(_))));
    }

    #[test]
    fn a_valid_batch_after_damage_is_found() {
        let mut bytes = batch(1..=2);
        let second = bytes.len();
        bytes.extend(batch(3..=4));
        bytes[20] ^= 0xff;
        assert_eq!(next_valid_batch(&bytes, 1), Some(second));
        assert_eq!(next_valid_batch(&bytes, second + 1), None);
    }
}
