//! The journal: an append-only, checksummed log of ledger events on local disk, with group
//! commit.
//!
//! Format: one file, `journal.log`, of records `[len: u32 LE][crc32: u32 LE][payload]`,
//! where the payload is the JSON of one `LedgerEvent` and the CRC covers the payload.
//! Sequences are assigned by the single writer, so they are gap-free and in file order.
//!
//! Group commit: appenders hand their event to one writer thread and wait. The writer
//! takes everything that is waiting (up to `BATCH_MAX`), writes it in one `write`, calls
//! `fdatasync` once, and only then answers every appender: an event is acknowledged only
//! once it is on disk, and a burst of concurrent sales shares one fsync instead of paying
//! one each.
//!
//! Recovery: `open` reads every record from the start. The first record that is cut short
//! (a crash during a write) or fails its CRC (a torn sector) ends the log: the file is
//! truncated there and the cut is reported, never silently accepted. Everything before it
//! was acknowledged; nothing after it was.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::event_mirror::EventMirror;
use super::outbox::Message;
use super::{EventLog, LogError};
use crate::domain::ledger::{Event, LedgerEvent};
use crate::domain::market::ConfigChange;
use crate::domain::returns::LeadReturn;

/// Appends waiting for the writer before `append` itself waits: bounds memory when the
/// disk falls behind.
const QUEUE_MAX: usize = 65_536;
/// Events written under one fsync at most: keeps one batch's latency bounded.
const BATCH_MAX: usize = 4_096;
/// A record larger than this is not one of ours: treat it as corruption, not as a reason
/// to allocate gigabytes.
const RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;
const HEADER_BYTES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(String),
    #[error("the journal writer has stopped")]
    Closed,
    /// A shared ledger (Redis) cannot be reached; nothing was acknowledged.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

impl From<io::Error> for JournalError {
    fn from(error: io::Error) -> JournalError {
        JournalError::Io(error.to_string())
    }
}

/// A record the router needs after a restart that is not a ledger event (so it takes no
/// ledger sequence, and ledger consumers never see it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InternalRecord {
    /// The first answer to a request with an `Idempotency-Key`, replayed to retries.
    Idempotency {
        supplier_id: String,
        key: String,
        body_hash: String,
        status: u16,
        body: String,
        created_at: DateTime<Utc>,
    },
    /// A supplier's `external_id` taken by a lead.
    ExternalId {
        supplier_id: String,
        external_id: String,
        lead_id: String,
        at: DateTime<Utc>,
    },
    /// A lead sold to a pull campaign, waiting for its buyer at `position`. Journaled before
    /// the sale; restored only if its sale was journaled too.
    PullLead {
        buyer_id: String,
        sale_id: String,
        position: u64,
        lead: serde_json::Value,
    },
    /// A pull buyer passed back cursor `through`: it has every lead up to there.
    PullAcknowledged {
        buyer_id: String,
        through: u64,
    },
    /// A return waiting for an operator, at its revision (a resolved return is the ledger's
    /// `ReturnResolved`).
    ReturnRequested {
        lead_return: Box<LeadReturn>,
        revision: u64,
    },
    /// A message for the outbox, journaled before the fact it announces.
    OutboxQueued {
        message: Message,
    },
    /// A delivery attempt failed; `attempts` failed so far.
    OutboxFailed {
        id: String,
        attempts: u32,
        error: String,
    },
    OutboxDelivered {
        id: String,
        at: DateTime<Utc>,
    },
    OutboxDeadLettered {
        id: String,
        attempts: u32,
        error: String,
        at: DateTime<Utc>,
    },
    /// An operator asked for a dead letter to be tried again.
    OutboxRevived {
        id: String,
        at: DateTime<Utc>,
    },
    /// An operator's change to the market, applied again over the config file at start.
    ConfigChanged {
        change: ConfigChange,
        at: DateTime<Utc>,
    },
}

/// What one journal record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
// Moved once per append; boxing the event would cost an allocation per sale.
#[allow(clippy::large_enum_variant)]
enum Record {
    Ledger(LedgerEvent),
    Internal { internal: InternalRecord },
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub events: usize,
    pub last_sequence: u64,
    /// Set when a torn or corrupt tail was cut off.
    pub truncated: Option<Truncation>,
    /// Internal records, oldest first, for the router to restore.
    pub internal: Vec<InternalRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Where the valid log ends (the new file length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    pub reason: String,
}

#[allow(clippy::large_enum_variant)] // as `Record`
enum Pending {
    Ledger {
        event: Event,
        at: DateTime<Utc>,
    },
    Internal(InternalRecord),
    /// Stop after what was sent before (a clean shutdown).
    Close,
}

struct Append {
    pending: Pending,
    /// Answers the ledger event (with its sequence), or None for an internal record.
    done: oneshot::Sender<Result<Option<LedgerEvent>, JournalError>>,
}

/// The events on disk, also kept in memory for readers (an index into the file replaces
/// this when journals outgrow memory).
struct Shared {
    events: EventMirror,
    fsyncs: AtomicU64,
}

pub struct Journal {
    appends: mpsc::Sender<Append>,
    shared: Arc<Shared>,
    path: PathBuf,
}

impl Journal {
    /// Opens (or creates) `<dir>/journal.log`, recovers it, and starts the writer.
    pub fn open(dir: &Path) -> Result<(Journal, Recovery), JournalError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.log");
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        let (events, internal, truncated) = recover(&mut file)?;
        if truncated.is_some() {
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let last_sequence = events.last().map_or(0, |e| e.sequence);
        let recovery = Recovery { events: events.len(), last_sequence, truncated, internal };
        metrics::gauge!(crate::telemetry::LEDGER_SEQUENCE).set(last_sequence as f64);
        let shared = Arc::new(Shared { events: EventMirror::new(events), fsyncs: AtomicU64::new(0) });
        let (appends, queue) = mpsc::channel(QUEUE_MAX);
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || write_loop(file, queue, last_sequence, &writer_shared))
            .map_err(|e| JournalError::Io(e.to_string()))?;
        Ok((Journal { appends, shared, path }, recovery))
    }

    /// Appends one event and returns it with its sequence once it is on disk.
    pub async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, JournalError> {
        self.submit(Pending::Ledger { event, at }).await?.ok_or(JournalError::Closed)
    }

    /// Appends an internal record; returns once it is on disk.
    pub async fn append_internal(&self, record: InternalRecord) -> Result<(), JournalError> {
        self.submit(Pending::Internal(record)).await.map(|_| ())
    }

    async fn submit(&self, pending: Pending) -> Result<Option<LedgerEvent>, JournalError> {
        let (done, answer) = oneshot::channel();
        self.appends.send(Append { pending, done }).await.map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Writes everything appended so far, then stops the writer: later appends fail with
    /// `Closed`. A clean shutdown calls this last, so no straggling task writes to the file
    /// after the process has said it stopped (or after a new process opened it).
    pub async fn close(&self) {
        let _ = self.submit(Pending::Close).await;
    }

    /// How many fsyncs the writer has made (group commit makes this far smaller than the
    /// number of appends under concurrency).
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl super::Ledger for Journal {
    async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, JournalError> {
        Journal::append(self, event, at).await
    }

    async fn append_internal(&self, record: InternalRecord) -> Result<(), JournalError> {
        Journal::append_internal(self, record).await
    }

    async fn close(&self) {
        Journal::close(self).await
    }

    fn event_log(self: Arc<Self>) -> Arc<dyn EventLog> {
        self
    }
}

impl EventLog for Journal {
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<LedgerEvent>, LogError> {
        self.shared.events.read_after(after, max)
    }

    fn last_sequence(&self) -> u64 {
        self.shared.events.last_sequence()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.shared.events.watch()
    }
}

/// Reads every valid record; truncates the file at the first invalid one.
#[allow(clippy::type_complexity)]
fn recover(file: &mut File) -> Result<(Vec<LedgerEvent>, Vec<InternalRecord>, Option<Truncation>), JournalError> {
    let length = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let mut events = Vec::new();
    let mut internal = Vec::new();
    let mut offset = 0usize;
    let mut cut = None;
    while offset < bytes.len() {
        match decode(&bytes[offset..], events.len() as u64 + 1) {
            Ok((Record::Ledger(event), used)) => {
                events.push(event);
                offset += used;
            }
            Ok((Record::Internal { internal: record }, used)) => {
                internal.push(record);
                offset += used;
            }
            Err(reason) => {
                cut = Some(reason);
                break;
            }
        }
    }
    let truncated = match cut {
        None => None,
        Some(reason) => {
            file.set_len(offset as u64)?;
            let truncation = Truncation { offset: offset as u64, bytes: length - offset as u64, reason };
            tracing::warn!(
                offset = truncation.offset,
                bytes = truncation.bytes,
                reason = %truncation.reason,
                "journal tail was torn or corrupt: truncated"
            );
            Some(truncation)
        }
    };
    Ok((events, internal, truncated))
}

/// Decodes one record from the front of `bytes`: the event and the bytes it used.
fn decode(bytes: &[u8], expected_sequence: u64) -> Result<(Record, usize), String> {
    let header = bytes.get(..HEADER_BYTES).ok_or("record header cut short")?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > RECORD_BYTES_MAX {
        return Err(format!("record length {len} is not plausible"));
    }
    let end = HEADER_BYTES + len as usize;
    let payload = bytes.get(HEADER_BYTES..end).ok_or("record cut short")?;
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch".into());
    }
    let record: Record = serde_json::from_slice(payload).map_err(|e| format!("record does not decode: {e}"))?;
    if let Record::Ledger(event) = &record {
        if event.sequence != expected_sequence {
            return Err(format!("sequence {} where {expected_sequence} was expected", event.sequence));
        }
    }
    Ok((record, end))
}

fn encode(record: &Record, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let payload = serde_json::to_vec(record).map_err(|e| JournalError::Io(format!("encoding a record: {e}")))?;
    let len = u32::try_from(payload.len()).map_err(|_| JournalError::Io("event too large".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The writer thread: batch, write, fsync, then acknowledge.
fn write_loop(mut file: File, mut queue: mpsc::Receiver<Append>, mut last_sequence: u64, shared: &Shared) {
    let mut buffer = Vec::with_capacity(1 << 20);
    // The length of the acknowledged log: a failed write is cut back to it.
    let mut valid_length = file.stream_position().unwrap_or(0);
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX && !matches!(batch.last().map(|a| &a.pending), Some(Pending::Close)) {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let close = match batch.last().map(|a| &a.pending) {
            Some(Pending::Close) => batch.pop(),
            _ => None,
        };
        let mut log = Log {
            file: &mut file,
            buffer: &mut buffer,
            last_sequence: &mut last_sequence,
            valid_length: &mut valid_length,
        };
        if !batch.is_empty() && !log.write_batch(batch, shared) {
            return;
        }
        if let Some(close) = close {
            // Everything sent before the close is on disk; dropping the queue refuses the rest.
            let _ = close.done.send(Ok(None));
            return;
        }
    }
}

/// The writer's view of the file between batches.
struct Log<'a> {
    file: &'a mut File,
    buffer: &'a mut Vec<u8>,
    last_sequence: &'a mut u64,
    valid_length: &'a mut u64,
}

impl Log<'_> {
    /// Writes and fsyncs one batch and answers its appenders; false when the log can take
    /// no more (a failed write could not be cut back).
    fn write_batch(&mut self, batch: Vec<Append>, shared: &Shared) -> bool {
        let (file, buffer) = (&mut *self.file, &mut *self.buffer);
        buffer.clear();
        let mut written: Vec<Option<LedgerEvent>> = Vec::with_capacity(batch.len());
        let mut sequence = *self.last_sequence;
        let mut failed = None;
        for append in &batch {
            let record = match &append.pending {
                Pending::Ledger { event, at } => {
                    sequence += 1;
                    Record::Ledger(LedgerEvent { sequence, at: *at, event: event.clone() })
                }
                Pending::Internal(record) => Record::Internal { internal: record.clone() },
                Pending::Close => unreachable!("a close ends its batch"),
            };
            if let Err(error) = encode(&record, buffer) {
                failed = Some(error);
                break;
            }
            written.push(match record {
                Record::Ledger(event) => Some(event),
                Record::Internal { .. } => None,
            });
        }
        let outcome = match failed {
            Some(error) => Err(error),
            None => file.write_all(buffer).and_then(|()| file.sync_data()).map_err(JournalError::from),
        };
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                *self.valid_length += buffer.len() as u64;
                *self.last_sequence = sequence;
                shared.events.extend(written.iter().flatten().cloned());
                metrics::gauge!(crate::telemetry::LEDGER_SEQUENCE).set(sequence as f64);
                for (append, event) in batch.into_iter().zip(written) {
                    let _ = append.done.send(Ok(event));
                }
                true
            }
            Err(error) => {
                // Nothing of this batch is acknowledged. The file may hold a partial write:
                // cut it back so the next batch starts on a record boundary.
                tracing::error!(%error, "journal write failed; the batch is refused");
                let valid_length = *self.valid_length;
                let cut = file.set_len(valid_length).and_then(|()| file.seek(SeekFrom::Start(valid_length)));
                if cut.is_err() {
                    tracing::error!("the journal could not be cut back after a failed write; refusing further appends");
                }
                for append in batch {
                    let _ = append.done.send(Err(error.clone()));
                }
                cut.is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::BalanceToppedUp;
    use crate::domain::money::Money;

    fn top_up(n: u64) -> Event {
        Event::BalanceToppedUp(BalanceToppedUp {
            buyer_id: format!("b{}", n % 7),
            amount: Money::cents(n as i64 + 1),
            reference: format!("ref-{n}"),
            balance_after: Money::cents(1_000 + n as i64),
            currency: "EUR".into(),
        })
    }

    #[tokio::test]
    async fn appended_events_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!(recovery, Recovery { events: 0, last_sequence: 0, truncated: None, internal: Vec::new() });
            for n in 0..10 {
                let event = journal.append(top_up(n), Utc::now()).await.unwrap();
                assert_eq!(event.sequence, n + 1);
            }
        }
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.events, 10);
        assert_eq!(recovery.truncated, None);
        let events = journal.read_after(0, 100).unwrap();
        assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert_eq!(events[3].event, top_up(3));
        assert_eq!(journal.read_after(7, 100).unwrap().len(), 3);
        assert_eq!(journal.append(top_up(10), Utc::now()).await.unwrap().sequence, 11);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_gap_free_and_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let journal = Arc::new(journal);
        let mut tasks = Vec::new();
        for writer in 0..64u64 {
            let journal = Arc::clone(&journal);
            tasks.push(tokio::spawn(async move {
                let mut sequences = Vec::new();
                for n in 0..20 {
                    sequences.push(journal.append(top_up(writer * 100 + n), Utc::now()).await.unwrap().sequence);
                }
                sequences
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let sequences = task.await.unwrap();
            assert!(sequences.windows(2).all(|w| w[0] < w[1]), "one writer's events keep their order");
            all.extend(sequences);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=1280).collect::<Vec<_>>());
        assert!(journal.fsyncs() < 1280, "group commit: {} fsyncs for 1280 appends", journal.fsyncs());
        drop(journal);
        let (_, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.last_sequence, 1280);
    }

    #[tokio::test]
    async fn a_torn_tail_is_truncated_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, _) = Journal::open(dir.path()).unwrap();
            for n in 0..5 {
                journal.append(top_up(n), Utc::now()).await.unwrap();
            }
        }
        let path = dir.path().join("journal.log");
        let valid = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the sixth record's write.
        let mut record = Vec::new();
        encode(&Record::Ledger(LedgerEvent { sequence: 6, at: Utc::now(), event: top_up(5) }), &mut record).unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&record[..record.len() / 2]).unwrap();
        drop(file);

        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.events, 5);
        let truncation = recovery.truncated.expect("the cut is reported");
        assert_eq!(truncation.offset, valid);
        assert_eq!(truncation.bytes, (record.len() / 2) as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), valid);
        assert_eq!(journal.append(top_up(5), Utc::now()).await.unwrap().sequence, 6, "appends continue gap-free");
    }

    #[tokio::test]
    async fn a_corrupt_record_is_never_accepted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, _) = Journal::open(dir.path()).unwrap();
            for n in 0..3 {
                journal.append(top_up(n), Utc::now()).await.unwrap();
            }
        }
        let path = dir.path().join("journal.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.events, 2);
        assert!(recovery.truncated.unwrap().reason.contains("checksum"));
        assert_eq!(journal.read_after(0, 10).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn internal_records_take_no_ledger_sequence_and_come_back_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let claim = InternalRecord::ExternalId {
            supplier_id: "s1".into(),
            external_id: "portal-1".into(),
            lead_id: "led_1".into(),
            at: Utc::now(),
        };
        {
            let (journal, _) = Journal::open(dir.path()).unwrap();
            journal.append(top_up(0), Utc::now()).await.unwrap();
            journal.append_internal(claim.clone()).await.unwrap();
            assert_eq!(journal.append(top_up(1), Utc::now()).await.unwrap().sequence, 2);
        }
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!((recovery.events, recovery.last_sequence), (2, 2));
        assert_eq!(recovery.internal, vec![claim]);
        assert_eq!(journal.read_after(0, 10).unwrap().len(), 2, "readers see ledger events only");
    }

    #[test]
    fn garbage_never_panics_recovery() {
        for garbage in
            [&b""[..], b"\x00\x00\x00\x00", b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x05\x00\x00\x00\x00\x00\x00\x00abc"]
        {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("journal.log"), garbage).unwrap();
            let (_, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!(recovery.events, 0);
        }
    }
}
