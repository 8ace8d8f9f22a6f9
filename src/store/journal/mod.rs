//! The journal: an append-only, checksummed log of ledger events and internal records on
//! local disk, in segments, with group commit.
//!
//! Format (`frame`, `segments`): segment files of batches; each batch is what one `write`
//! and one `fdatasync` made durable, checksummed whole. Sequences are assigned by the single
//! writer, so they are gap-free and in file order. A segment is sealed once it passes
//! `JournalOptions::segment_bytes` and never changes again.
//!
//! Group commit: appenders hand their record to one writer thread and wait. The writer
//! takes everything that is waiting (up to `BATCH_MAX`), writes it in one `write`, calls
//! `fdatasync` once, and only then answers every appender: a record is acknowledged only
//! once it is on disk, and a burst of concurrent sales shares one fsync instead of paying
//! one each.
//!
//! A failed write or fsync is final for this process: nothing of the batch is acknowledged,
//! every later append fails, and `failure()` says why, so the node turns unready and exits
//! into recovery. Rationale: after a failed fsync the kernel may have dropped the dirty pages
//! and cleared the error, so a later fsync that succeeds proves nothing about earlier
//! bytes; what is on disk is what the next start reads back, and only a restart rebuilds
//! the in-memory state from exactly that.
//!
//! Recovery (`open`) reads every segment. A batch cut short or damaged at the end of the
//! newest segment, with nothing valid after it, is the last write torn by a crash: it is
//! cut off with a warning (nothing in it was acknowledged). Any other damage (in a sealed
//! segment, or before valid data) is corruption of acknowledged data: `open` fails and names
//! the file and offset, rather than start with fewer sales than were acknowledged.
//!
//! Readers of the ledger (`EventLog`) get recent events from memory and older ones from the
//! segments through a sparse offset index, so memory does not grow with history.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

use super::files;
use super::{EventLog, LogError};
use crate::domain::changes::AdminChange;
use crate::domain::ledger::{Event, LedgerEvent, SaleSettled};
pub use crate::engine::ports::ledger::{InternalRecord, JournalError, Location};
use frame::{BatchBuilder, Decode, Record, Skim};
use segments::{ReadError, Segment, SparseIndex};

pub mod consumers;
pub mod frame;
pub mod retention;
pub mod sale_index;
pub mod segments;
pub mod verify;

/// Appends waiting for the writer before `append` itself waits: bounds memory when the
/// disk falls behind.
const QUEUE_MAX: usize = 65_536;
/// Records written under one fsync at most: keeps one batch's latency bounded.
const BATCH_MAX: usize = 4_096;
/// Ledger events kept in memory for readers at the tail (live gRPC subscribers); older
/// ones are read from the segments.
const RECENT_MAX: usize = 16_384;
/// The journal of the first versions: one file, moved into segments on open.
const LEGACY_FILE: &str = "journal.log";

/// How the journal lays out its files.
#[derive(Debug, Clone, Copy)]
pub struct JournalOptions {
    /// A segment is sealed and the next one started once it is at least this long.
    pub segment_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions { segment_bytes: 64 * 1024 * 1024 }
    }
}

impl From<io::Error> for JournalError {
    fn from(error: io::Error) -> JournalError {
        JournalError::Io(error.to_string())
    }
}

impl From<ReadError> for JournalError {
    fn from(error: ReadError) -> JournalError {
        match error {
            ReadError::Io(message) => JournalError::Io(message),
            damaged @ ReadError::Damaged { .. } => JournalError::Corrupt(damaged.to_string()),
        }
    }
}

/// What the writer answers an appender: the event with its sequence, if it was one, and
/// where it was written.
struct Written {
    event: Option<LedgerEvent>,
    location: Location,
}

/// Where a checkpoint leaves off: recovery checks and replays only from `segment` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The first segment the checkpoint does not cover.
    pub segment: u64,
    /// The last ledger sequence it covers.
    pub last_sequence: u64,
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub events: u64,
    pub last_sequence: u64,
    /// Set when a torn tail was cut off.
    pub truncated: Option<Truncation>,
    /// Operators' changes to the market, oldest first (the market is built from them before
    /// anything else is replayed).
    pub config_changes: Vec<AdminChange>,
    pub segments: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: String,
    /// Where the valid log ends (the segment's new length).
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
    /// Seal the segment being written, if anything is in it, after what was sent before.
    Seal,
    /// Stop after what was sent before (a clean shutdown).
    Close,
}

impl Pending {
    /// A seal or a close ends the batch it arrives in: what came before is written first.
    fn is_barrier(&self) -> bool {
        matches!(self, Pending::Seal | Pending::Close)
    }
}

struct Append {
    pending: Pending,
    /// Answers the ledger event (with its sequence), or None for an internal record.
    done: oneshot::Sender<Result<Written, JournalError>>,
}

/// A segment as readers see it: how much of it is acknowledged, and its index once built.
struct SegmentState {
    segment: Segment,
    end: u64,
    index: Option<Arc<SparseIndex>>,
}

/// What the writer and the readers share.
struct Shared {
    segments: RwLock<Vec<SegmentState>>,
    /// (sale id hash, batch offset) of the sales in the segment being written; sealed
    /// segments have theirs in a sidecar (`sale_index`).
    active_sales: parking_lot::Mutex<Vec<(u64, u64)>>,
    recent: RwLock<VecDeque<Arc<LedgerEvent>>>,
    last: watch::Sender<u64>,
    fsyncs: AtomicU64,
    failure: watch::Sender<Option<String>>,
    /// The number of the newest sealed segment (0 while none is).
    sealed: watch::Sender<u64>,
}

pub struct Journal {
    appends: mpsc::Sender<Append>,
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, recovers it, and starts the writer.
    pub fn open(dir: &Path) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_with(dir, JournalOptions::default())
    }

    pub fn open_with(dir: &Path, options: JournalOptions) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_resuming(dir, options, None)
    }

    /// Opens the journal after a checkpoint: only the segments from `resume.segment` on
    /// are read and checked (the others are `journal verify`'s to check), so a start takes
    /// as long as the tail, not the history.
    pub fn open_resuming(
        dir: &Path,
        options: JournalOptions,
        resume: Option<Resume>,
    ) -> Result<(Journal, Recovery), JournalError> {
        files::create_dir_all(dir)?;
        files::tighten(dir)?;
        migrate_legacy(dir)?;
        let mut listed = segments::list(dir)?;
        if listed.is_empty() {
            let first = Segment::new(dir, 1, 1);
            files::options().write(true).create_new(true).open(&first.path)?;
            files::sync_dir(dir)?;
            listed.push(first);
        }
        let (states, recovery, active_sales) = recover(&listed, resume)?;
        let index = states.last().and_then(|state| state.index.as_deref().cloned()).unwrap_or_default();
        let active = listed.last().cloned().ok_or_else(|| JournalError::Io("no segment".into()))?;
        let mut file = files::options().read(true).write(true).open(&active.path)?;
        let length = file.metadata()?.len();
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(length))?;
        metrics::gauge!(crate::telemetry::LEDGER_SEQUENCE).set(recovery.last_sequence as f64);
        let shared = Arc::new(Shared {
            segments: RwLock::new(states),
            active_sales: parking_lot::Mutex::new(active_sales),
            recent: RwLock::new(VecDeque::new()),
            last: watch::channel(recovery.last_sequence).0,
            fsyncs: AtomicU64::new(0),
            failure: watch::channel(None).0,
            sealed: watch::channel(listed.len().checked_sub(2).map_or(0, |i| listed[i].number)).0,
        });
        let (appends, queue) = mpsc::channel(QUEUE_MAX);
        let writer = Writer {
            dir: dir.to_path_buf(),
            options,
            segment: active,
            file,
            length,
            index,
            last_sequence: recovery.last_sequence,
            buffer: Vec::with_capacity(1 << 20),
            shared: Arc::clone(&shared),
        };
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| JournalError::Io(e.to_string()))?;
        Ok((Journal { appends, shared, dir: dir.to_path_buf() }, recovery))
    }

    /// Appends one event and returns it with its sequence once it is on disk.
    pub async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, JournalError> {
        self.submit(Pending::Ledger { event, at }).await?.event.ok_or(JournalError::Closed)
    }

    /// Appends an internal record; returns once it is on disk.
    pub async fn append_internal(&self, record: InternalRecord) -> Result<(), JournalError> {
        self.append_internal_at(record).await.map(|_| ())
    }

    /// Appends an internal record; answers where it was written once it is on disk.
    pub async fn append_internal_at(&self, record: InternalRecord) -> Result<Location, JournalError> {
        self.submit(Pending::Internal(record)).await.map(|written| written.location)
    }

    /// The internal records of the batch at `location`.
    pub fn internal_at(&self, location: Location) -> Result<Vec<InternalRecord>, LogError> {
        let found = {
            let states = self.shared.segments.read();
            states.iter().find(|s| s.segment.number == location.segment).map(|s| (s.segment.path.clone(), s.end))
        };
        let Some((path, end)) = found else {
            return Err(LogError::Unavailable(format!("segment {} is not in the journal", location.segment)));
        };
        let mut reader = segments::BatchReader::open(&path, location.offset, end).map_err(|e| log_error(e, 0))?;
        let records = reader.next_batch(Decode::Internal).map_err(|e| log_error(e, 0))?.map(|(_, records)| records);
        Ok(records
            .unwrap_or_default()
            .into_iter()
            .filter_map(|record| match record {
                Record::Internal(internal) => Some(internal),
                Record::Ledger(_) => None,
            })
            .collect())
    }

    async fn submit(&self, pending: Pending) -> Result<Written, JournalError> {
        if let Some(reason) = self.failure() {
            return Err(JournalError::Failed(reason));
        }
        let (done, answer) = oneshot::channel();
        self.appends.send(Append { pending, done }).await.map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> JournalError {
        self.failure().map_or(JournalError::Closed, JournalError::Failed)
    }

    /// Writes everything appended so far and seals the segment being written (when anything
    /// is in it), so a checkpoint can cover all of it; answers the newest sealed segment's
    /// number (0 while none is). A clean shutdown seals before its last checkpoint, so the
    /// next start replays nothing.
    pub async fn seal(&self) -> Result<u64, JournalError> {
        self.submit(Pending::Seal).await.map(|written| written.location.segment)
    }

    /// Writes everything appended so far, then stops the writer: later appends fail with
    /// `Closed`. A clean shutdown calls this last, so no straggling task writes to the file
    /// after the process has said it stopped (or after a new process opened it).
    pub async fn close(&self) {
        let _ = self.submit(Pending::Close).await;
    }

    /// Why the journal stopped taking appends, if a write failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.borrow().clone()
    }

    /// Changes to `Some(reason)` when a write fails.
    pub fn failures(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.subscribe()
    }

    /// How many fsyncs the writer has made (group commit makes this far smaller than the
    /// number of appends under concurrency).
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes to the number of the newest sealed segment whenever one is sealed.
    pub fn sealed(&self) -> watch::Receiver<u64> {
        self.shared.sealed.subscribe()
    }

    /// The first sequence of segment `number` (the one its first event takes).
    pub fn segment_start(&self, number: u64) -> Option<u64> {
        let states = self.shared.segments.read();
        states.iter().find(|s| s.segment.number == number).map(|s| s.segment.first_sequence)
    }

    /// Every record of the segments numbered `from..to`, in file order, from disk.
    pub fn scan_segments(
        &self,
        from: u64,
        to: u64,
        decode: Decode,
        mut visit: impl FnMut(Location, Record) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let plan: Vec<(u64, PathBuf, u64)> = self
            .shared
            .segments
            .read()
            .iter()
            .filter(|s| (from..to).contains(&s.segment.number))
            .map(|s| (s.segment.number, s.segment.path.clone(), s.end))
            .collect();
        for (segment, path, end) in plan {
            let mut reader = segments::BatchReader::open(&path, 0, end)?;
            while let Some((offset, records)) = reader.next_batch(decode)? {
                for record in records {
                    visit(Location { segment, offset }, record)?;
                }
            }
        }
        Ok(())
    }

    /// Every record from the start, in file order, read from disk (start-up replays it in
    /// passes without holding it in memory), decoded as `decode` says.
    pub fn scan(
        &self,
        decode: Decode,
        mut visit: impl FnMut(Record) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.scan_segments(0, u64::MAX, decode, |_, record| visit(record))
    }

    /// Up to `max` events after `after` from the segments (the recent tail is in memory).
    fn read_from_disk(&self, after: u64, max: usize) -> Result<Vec<LedgerEvent>, LogError> {
        let wanted = after + 1;
        let (position, plan) = {
            let states = self.shared.segments.read();
            let first_retained = states.first().map_or(1, |s| s.segment.first_sequence);
            if wanted < first_retained {
                return Err(LogError::Removed { first_retained });
            }
            let position = states.partition_point(|s| s.segment.first_sequence <= wanted).saturating_sub(1);
            let plan: Vec<(PathBuf, u64, Option<Arc<SparseIndex>>)> =
                states[position..].iter().map(|s| (s.segment.path.clone(), s.end, s.index.clone())).collect();
            (position, plan)
        };
        let mut out = Vec::with_capacity(max.min(4_096));
        for (n, (path, end, index)) in plan.into_iter().enumerate() {
            let start = if n == 0 {
                let index = match index {
                    Some(index) => index,
                    None => self.build_index(position, &path, end)?,
                };
                index.start_for(wanted)
            } else {
                0
            };
            segments::events_after(&path, start, end, after, max, &mut out).map_err(|e| log_error(e, after))?;
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// A sale by id from disk (sales past their return window are not kept in memory).
    pub fn find_sale(&self, sale_id: &str) -> Result<Option<SaleSettled>, LogError> {
        let hash = sale_index::hash(sale_id);
        let (active_offsets, plan) = {
            let states = self.shared.segments.read();
            let active = self.shared.active_sales.lock();
            let offsets: Vec<u64> = active.iter().filter(|(h, _)| *h == hash).map(|(_, offset)| *offset).collect();
            let plan: Vec<(PathBuf, u64)> = states.iter().map(|s| (s.segment.path.clone(), s.end)).collect();
            (offsets, plan)
        };
        let Some(((active_path, active_end), sealed)) = plan.split_last() else { return Ok(None) };
        for offset in active_offsets {
            if let Some(sale) =
                sale_index::sale_in_batch(active_path, offset, *active_end, sale_id).map_err(|e| log_error(e, 0))?
            {
                return Ok(Some(sale));
            }
        }
        for (path, end) in sealed.iter().rev() {
            let offsets = match sale_index::offsets_in_sidecar(path, hash) {
                Some(offsets) => offsets,
                None => {
                    let entries = sale_index::entries_of(path, *end).map_err(|e| log_error(e, 0))?;
                    let offsets = entries.iter().filter(|(h, _)| *h == hash).map(|(_, offset)| *offset).collect();
                    if let Err(error) = sale_index::write(path, entries) {
                        tracing::warn!(%error, segment = %path.display(), "sale index not rewritten");
                    }
                    offsets
                }
            };
            for offset in offsets {
                if let Some(sale) =
                    sale_index::sale_in_batch(path, offset, *end, sale_id).map_err(|e| log_error(e, 0))?
                {
                    return Ok(Some(sale));
                }
            }
        }
        Ok(None)
    }

    /// Every segment, oldest first: its number and first sequence.
    pub fn segment_starts(&self) -> Vec<(u64, u64)> {
        self.shared.segments.read().iter().map(|s| (s.segment.number, s.segment.first_sequence)).collect()
    }

    /// Removes the sealed segments numbered below `number` (retention has checked that
    /// nothing needs them), oldest first, so that a crash midway leaves no hole. Answers
    /// how many went and their bytes.
    pub fn remove_before(&self, number: u64) -> std::io::Result<(usize, u64)> {
        let mut states = self.shared.segments.write();
        let sealed = states.len().saturating_sub(1);
        let count = states[..sealed].iter().take_while(|s| s.segment.number < number).count();
        let mut bytes = 0;
        for state in &states[..count] {
            bytes += segments::remove(&state.segment)?;
        }
        if count > 0 {
            files::sync_dir(&self.dir)?;
            states.drain(..count);
        }
        Ok((count, bytes))
    }

    fn build_index(&self, position: usize, path: &Path, end: u64) -> Result<Arc<SparseIndex>, LogError> {
        let index = Arc::new(SparseIndex::build(path, end).map_err(|e| log_error(e, 0))?);
        if let Some(state) = self.shared.segments.write().get_mut(position) {
            if state.segment.path == path && state.index.is_none() {
                state.index = Some(Arc::clone(&index));
            }
        }
        Ok(index)
    }
}

fn log_error(error: ReadError, sequence: u64) -> LogError {
    match error {
        ReadError::Io(message) => LogError::Unavailable(message),
        damaged @ ReadError::Damaged { .. } => LogError::Corrupt { sequence, message: damaged.to_string() },
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

    fn failure(&self) -> Option<String> {
        Journal::failure(self)
    }

    fn failures(&self) -> watch::Receiver<Option<String>> {
        Journal::failures(self)
    }

    fn find_sale(&self, sale_id: &str) -> Result<Option<SaleSettled>, LogError> {
        Journal::find_sale(self, sale_id)
    }

    fn finds_sales(&self) -> bool {
        true
    }

    async fn append_internal_at(&self, record: InternalRecord) -> Result<Location, JournalError> {
        Journal::append_internal_at(self, record).await
    }

    fn internal_at(&self, location: Location) -> Result<Vec<InternalRecord>, LogError> {
        Journal::internal_at(self, location)
    }

    fn event_log(self: Arc<Self>) -> Arc<dyn EventLog> {
        self
    }
}

impl EventLog for Journal {
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<LedgerEvent>, LogError> {
        if after >= self.last_sequence() || max == 0 {
            return Ok(Vec::new());
        }
        {
            let recent = self.shared.recent.read();
            if let Some(front) = recent.front() {
                if front.sequence <= after + 1 {
                    let skip = usize::try_from(after + 1 - front.sequence).unwrap_or(usize::MAX);
                    return Ok(recent.iter().skip(skip).take(max).map(|event| (**event).clone()).collect());
                }
            }
        }
        self.read_from_disk(after, max)
    }

    fn last_sequence(&self) -> u64 {
        *self.shared.last.borrow()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.shared.last.subscribe()
    }

    fn first_sequence(&self) -> u64 {
        self.shared.segments.read().first().map_or(1, |s| s.segment.first_sequence)
    }
}

/// Checks every segment and cuts a torn tail off the newest; answers the readers' view of
/// the segments and what recovery found.
#[allow(clippy::type_complexity)]
fn recover(
    listed: &[Segment],
    resume: Option<Resume>,
) -> Result<(Vec<SegmentState>, Recovery, Vec<(u64, u64)>), JournalError> {
    let mut states = Vec::with_capacity(listed.len());
    let from = match resume {
        Some(resume) => {
            let Some(at) = listed.iter().position(|s| s.number == resume.segment) else {
                return Err(JournalError::Corrupt(format!(
                    "the checkpoint goes on at segment {}, which is missing",
                    resume.segment
                )));
            };
            at
        }
        None if listed[0].first_sequence != 1 => {
            return Err(JournalError::Corrupt(format!(
                "the journal starts at {} (sequence {}): earlier segments are gone and no checkpoint covers them",
                listed[0].name(),
                listed[0].first_sequence
            )))
        }
        None => 0,
    };
    for (n, segment) in listed[..from].iter().enumerate() {
        if n > 0 && segment.number != listed[n - 1].number + 1 {
            return Err(JournalError::Corrupt(format!("segment {} is missing", listed[n - 1].number + 1)));
        }
        let end = std::fs::metadata(&segment.path)?.len();
        states.push(SegmentState { segment: segment.clone(), end, index: None });
    }
    let mut last_sequence = match resume {
        Some(resume) => resume.last_sequence,
        None => 0,
    };
    let mut events = 0;
    let mut config_changes = Vec::new();
    let mut truncated = None;
    let mut sales = Vec::new();
    for (n, segment) in listed.iter().enumerate().skip(from) {
        let newest = n + 1 == listed.len();
        if n > 0 && segment.number != listed[n - 1].number + 1 {
            return Err(JournalError::Corrupt(format!(
                "segment {} is missing before {}",
                listed[n - 1].number + 1,
                segment.name()
            )));
        }
        if segment.first_sequence != last_sequence + 1 {
            return Err(JournalError::Corrupt(format!(
                "{} starts at sequence {} where {} was expected",
                segment.name(),
                segment.first_sequence,
                last_sequence + 1
            )));
        }
        let bytes = std::fs::read(&segment.path)?;
        let mut index = SparseIndex::default();
        sales.clear();
        let mut offset = 0usize;
        while offset < bytes.len() {
            let checked = frame::check_batch(&bytes[offset..])
                .and_then(|(body, used)| frame::skim_body(body).map(|records| (records, used)));
            let (records, used) = match checked {
                Ok(batch) => batch,
                Err(error) => {
                    let damaged = |detail: &str| {
                        JournalError::Corrupt(format!("{} at offset {offset}: {error}{detail}", segment.name()))
                    };
                    if !newest {
                        return Err(damaged(" (in a sealed segment)"));
                    }
                    if let Some(valid) = frame::next_valid_batch(&bytes, offset + 1) {
                        return Err(damaged(&format!(" (valid data follows at offset {valid})")));
                    }
                    truncated = Some(cut_tail(segment, offset as u64, bytes.len() as u64, error.to_string())?);
                    break;
                }
            };
            let mut first_in_batch = None;
            for record in records {
                match record {
                    Skim::Ledger { sequence, sale_id } => {
                        if sequence != last_sequence + 1 {
                            return Err(JournalError::Corrupt(format!(
                                "{} at offset {offset}: sequence {sequence} where {} was expected",
                                segment.name(),
                                last_sequence + 1
                            )));
                        }
                        last_sequence = sequence;
                        events += 1;
                        first_in_batch.get_or_insert(sequence);
                        if let Some(sale_id) = sale_id {
                            sales.push((sale_index::hash(&sale_id), offset as u64));
                        }
                    }
                    Skim::Config(change) => config_changes.push(change),
                    Skim::Internal => {}
                }
            }
            if let Some(first) = first_in_batch {
                index.note(first, offset as u64);
            }
            offset += used;
        }
        if !newest && !sale_index::sidecar_checks_out(&segment.path) {
            sale_index::write(&segment.path, std::mem::take(&mut sales))?;
        }
        states.push(SegmentState { segment: segment.clone(), end: offset as u64, index: Some(Arc::new(index)) });
    }
    let recovery = Recovery { events, last_sequence, truncated, config_changes, segments: listed.len() };
    Ok((states, recovery, sales))
}

/// Cuts a torn tail off the newest segment, durably, and says so.
fn cut_tail(segment: &Segment, offset: u64, length: u64, reason: String) -> Result<Truncation, JournalError> {
    let file = files::options().write(true).open(&segment.path)?;
    file.set_len(offset)?;
    file.sync_all()?;
    let truncation = Truncation { file: segment.name(), offset, bytes: length - offset, reason };
    tracing::warn!(
        file = %truncation.file,
        offset = truncation.offset,
        bytes = truncation.bytes,
        reason = %truncation.reason,
        "journal tail was torn by a crash (never acknowledged): cut off"
    );
    Ok(truncation)
}

/// Moves a journal of the first format (`journal.log`) into the first segment. The segment
/// is written under a temporary name and renamed into place before the old file goes, so a
/// crash at any point leaves one complete copy.
fn migrate_legacy(dir: &Path) -> Result<(), JournalError> {
    let legacy = dir.join(LEGACY_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    if !segments::list(dir)?.is_empty() {
        // The segment was renamed into place before a crash; the old file is a leftover.
        std::fs::remove_file(&legacy)?;
        return Ok(files::sync_dir(dir)?);
    }
    let bytes = std::fs::read(&legacy)?;
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match frame::legacy::decode(&bytes[offset..]) {
            Ok((record, used)) => {
                records.push(record);
                offset += used;
            }
            Err(reason) => {
                tracing::warn!(offset, bytes = bytes.len() - offset, %reason, "old journal ends in a torn record: not migrated");
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8);
    for chunk in records.chunks(BATCH_MAX) {
        let mut batch = BatchBuilder::new(&mut out);
        for record in chunk {
            match record {
                Record::Ledger(event) => batch.push_ledger(event),
                Record::Internal(internal) => batch.push_internal(internal),
            }
            .map_err(|e| JournalError::Io(format!("re-encoding the old journal: {e}")))?;
        }
        batch.finish();
    }
    let segment = Segment::new(dir, 1, 1);
    files::write_atomic(&segment.path, &out)?;
    std::fs::remove_file(&legacy)?;
    files::sync_dir(dir)?;
    tracing::info!(records = records.len(), segment = %segment.name(), "journal moved into segments");
    Ok(())
}

/// The writer thread's state: the segment it appends to.
struct Writer {
    dir: PathBuf,
    options: JournalOptions,
    segment: Segment,
    file: File,
    length: u64,
    /// The sparse index of the segment being written.
    index: SparseIndex,
    last_sequence: u64,
    buffer: Vec<u8>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Batch, write, fsync, then acknowledge; until closed or a write fails.
    fn run(mut self, mut queue: mpsc::Receiver<Append>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX && !batch.last().is_some_and(|a| a.pending.is_barrier()) {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let barrier = if batch.last().is_some_and(|a| a.pending.is_barrier()) { batch.pop() } else { None };
            if !batch.is_empty() {
                if let Err(error) = self.write_batch(batch) {
                    self.fail(&error, queue);
                    return;
                }
            }
            let Some(barrier) = barrier else { continue };
            if matches!(barrier.pending, Pending::Close) {
                // Everything sent before the close is on disk; dropping the queue refuses the rest.
                let _ = barrier.done.send(Ok(Written { event: None, location: Location::default() }));
                return;
            }
            if self.length > 0 {
                if let Err(error) = self.roll() {
                    let error = format!("sealing {}: {error}", self.segment.name());
                    let _ = barrier.done.send(Err(JournalError::Failed(error.clone())));
                    self.fail(&error, queue);
                    return;
                }
            }
            let sealed = *self.shared.sealed.borrow();
            let _ = barrier.done.send(Ok(Written { event: None, location: Location { segment: sealed, offset: 0 } }));
        }
    }

    /// Writes and fsyncs one batch and answers its appenders; an error answers them too.
    fn write_batch(&mut self, batch: Vec<Append>) -> Result<(), String> {
        self.buffer.clear();
        let mut written: Vec<Option<LedgerEvent>> = Vec::with_capacity(batch.len());
        let mut sales = Vec::new();
        let mut sequence = self.last_sequence;
        let mut builder = BatchBuilder::new(&mut self.buffer);
        let mut encoded = Ok(());
        // The events move out of their appends (no copy): each goes back to its appender.
        let mut answers = Vec::with_capacity(batch.len());
        for append in batch {
            let Append { pending, done } = append;
            answers.push(done);
            if encoded.is_err() {
                continue;
            }
            let (result, event) = match pending {
                Pending::Ledger { event, at } => {
                    sequence += 1;
                    let event = LedgerEvent { sequence, at, event };
                    if let Event::SaleSettled(sale) = &event.event {
                        sales.push(sale_index::hash(&sale.sale_id));
                    }
                    (builder.push_ledger(&event), Some(event))
                }
                Pending::Internal(record) => (builder.push_internal(&record), None),
                Pending::Seal | Pending::Close => unreachable!("a seal or a close ends its batch"),
            };
            if let Err(error) = result {
                encoded = Err(format!("encoding a record: {error}"));
                continue;
            }
            written.push(event);
        }
        builder.finish();
        let outcome = encoded.and_then(|()| {
            self.file
                .write_all(&self.buffer)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| format!("{}: {e}", self.segment.name()))
        });
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = outcome {
            // Unready before anyone hears of the failure.
            self.shared.failure.send_replace(Some(error.clone()));
            for done in answers {
                let _ = done.send(Err(JournalError::Failed(error.clone())));
            }
            return Err(error);
        }
        let offset = self.length;
        self.length += self.buffer.len() as u64;
        let indexed = written.iter().flatten().next().is_some_and(|first| self.index.note(first.sequence, offset));
        self.last_sequence = sequence;
        self.shared.active_sales.lock().extend(sales.into_iter().map(|hash| (hash, offset)));
        self.publish(&written, indexed);
        let location = Location { segment: self.segment.number, offset };
        for (done, event) in answers.into_iter().zip(written) {
            let _ = done.send(Ok(Written { event, location }));
        }
        if self.length >= self.options.segment_bytes {
            self.roll().map_err(|e| format!("starting the next segment: {e}"))?;
        }
        Ok(())
    }

    /// Shows readers what was just made durable, then wakes them.
    fn publish(&self, written: &[Option<LedgerEvent>], indexed: bool) {
        if let Some(state) = self.shared.segments.write().last_mut() {
            state.end = self.length;
            if indexed || state.index.is_none() {
                state.index = Some(Arc::new(self.index.clone()));
            }
        }
        let mut recent = self.shared.recent.write();
        for event in written.iter().flatten() {
            if recent.len() == RECENT_MAX {
                recent.pop_front();
            }
            recent.push_back(Arc::new(event.clone()));
        }
        drop(recent);
        metrics::gauge!(crate::telemetry::LEDGER_SEQUENCE).set(self.last_sequence as f64);
        self.shared.last.send_replace(self.last_sequence);
    }

    /// Seals the segment (already fsynced) and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        let sales = self.shared.active_sales.lock().clone();
        if let Err(error) = sale_index::write(&self.segment.path, sales) {
            // The segment is the truth; a lookup rebuilds a missing sidecar.
            tracing::warn!(%error, segment = %self.segment.name(), "sale index of a sealed segment not written");
        }
        let next = Segment::new(&self.dir, self.segment.number + 1, self.last_sequence + 1);
        let file = files::options().read(true).write(true).create_new(true).open(&next.path)?;
        files::sync_dir(&self.dir)?;
        // Readers see the sealed segment's sales in its sidecar from the moment they stop
        // seeing them in memory.
        let mut states = self.shared.segments.write();
        states.push(SegmentState { segment: next.clone(), end: 0, index: None });
        self.shared.active_sales.lock().clear();
        drop(states);
        self.shared.sealed.send_replace(self.segment.number);
        self.segment = next;
        self.file = file;
        self.length = 0;
        self.index = SparseIndex::default();
        Ok(())
    }

    /// After a failed write: say why, and refuse everything still queued.
    fn fail(self, error: &str, mut queue: mpsc::Receiver<Append>) {
        tracing::error!(%error, "journal write failed: nothing more is appended; the node must restart into recovery");
        self.shared.failure.send_if_modified(|failure| {
            let first = failure.is_none();
            failure.get_or_insert_with(|| error.to_string());
            first
        });
        queue.close();
        while let Ok(append) = queue.try_recv() {
            let _ = append.done.send(Err(JournalError::Failed(error.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::BalanceToppedUp;
    use crate::domain::money::Money;
    use proptest::prelude::*;

    fn top_up(n: u64) -> Event {
        Event::BalanceToppedUp(BalanceToppedUp {
            buyer_id: format!("b{}", n % 7),
            amount: Money::cents(n as i64 + 1),
            reference: format!("ref-{n}"),
            balance_after: Money::cents(1_000 + n as i64),
            currency: crate::domain::money::Currency::EUR,
        })
    }

    fn small_segments() -> JournalOptions {
        JournalOptions { segment_bytes: 2_000 }
    }

    /// The only segment's path (tests that write few records).
    fn only_segment(dir: &Path) -> PathBuf {
        let listed = segments::list(dir).unwrap();
        assert_eq!(listed.len(), 1);
        listed[0].path.clone()
    }

    async fn fill(dir: &Path, options: JournalOptions, count: u64) {
        let (journal, _) = Journal::open_with(dir, options).unwrap();
        for n in 0..count {
            journal.append(top_up(n), Utc::now()).await.unwrap();
        }
        journal.close().await;
    }

    #[tokio::test]
    async fn appended_events_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!((recovery.events, recovery.last_sequence, recovery.truncated), (0, 0, None));
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
    async fn a_seal_closes_a_segment_with_records_and_leaves_an_empty_one_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.seal().await.unwrap(), 0, "an empty segment is not sealed");
        for n in 0..3 {
            journal.append(top_up(n), Utc::now()).await.unwrap();
        }
        assert_eq!(journal.seal().await.unwrap(), 1, "the first segment is sealed");
        assert_eq!(journal.seal().await.unwrap(), 1, "and the next, still empty, is not");
        assert_eq!(journal.segment_start(2), Some(4), "the next event starts segment 2");
        assert_eq!(journal.append(top_up(3), Utc::now()).await.unwrap().sequence, 4);
        journal.close().await;
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!((recovery.last_sequence, recovery.segments), (4, 2));
        let read: Vec<u64> = journal.read_after(0, 10).unwrap().iter().map(|e| e.sequence).collect();
        assert_eq!(read, [1, 2, 3, 4], "a seal loses and reorders nothing");
    }

    #[tokio::test]
    async fn segments_roll_and_every_sequence_reads_back_from_disk_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), small_segments(), 3_000).await;
        let listed = segments::list(dir.path()).unwrap();
        assert!(listed.len() > 50, "{} segments of ~2 KB", listed.len());
        let (journal, recovery) = Journal::open_with(dir.path(), small_segments()).unwrap();
        assert_eq!((recovery.last_sequence, recovery.segments), (3_000, listed.len()));
        assert!(journal.shared.recent.read().is_empty(), "nothing read back is held in memory");
        for after in [0, 1, 255, 256, 257, 1_234, 2_999] {
            let events = journal.read_after(after, 300).unwrap();
            let expected: Vec<u64> = (after + 1..=(after + 300).min(3_000)).collect();
            assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), expected, "after {after}");
            assert_eq!(events[0].event, top_up(after));
        }
        assert!(journal.read_after(3_000, 10).unwrap().is_empty());
        assert_eq!(journal.append(top_up(3_000), Utc::now()).await.unwrap().sequence, 3_001);
        assert_eq!(journal.read_after(2_990, 100).unwrap().len(), 11, "disk and memory meet");
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), JournalOptions::default(), 5).await;
        let path = only_segment(dir.path());
        let valid = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the sixth batch's write.
        let mut batch = Vec::new();
        let mut builder = BatchBuilder::new(&mut batch);
        builder.push_ledger(&LedgerEvent { sequence: 6, at: Utc::now(), event: top_up(5) }).unwrap();
        builder.finish();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&batch[..batch.len() / 2]).unwrap();
        drop(file);

        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.events, 5);
        let truncation = recovery.truncated.expect("the cut is reported");
        assert_eq!((truncation.offset, truncation.bytes), (valid, (batch.len() / 2) as u64));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), valid);
        assert_eq!(journal.append(top_up(5), Utc::now()).await.unwrap().sequence, 6, "appends continue gap-free");
    }

    #[tokio::test]
    async fn a_flipped_bit_before_valid_data_stops_the_start_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), JournalOptions::default(), 3).await;
        let path = only_segment(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let first_batch = frame::batch_len(&bytes).unwrap();
        bytes[first_batch / 2] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let error = Journal::open(dir.path()).err().expect("corruption is never silent");
        let message = error.to_string();
        assert!(message.contains("00000001-00000000000000000001.seg at offset 0"), "{message}");
        assert!(message.contains("valid data follows"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[tokio::test]
    async fn damage_in_a_sealed_segment_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), small_segments(), 100).await;
        let listed = segments::list(dir.path()).unwrap();
        let sealed = &listed[listed.len() - 2];
        let mut bytes = std::fs::read(&sealed.path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        std::fs::write(&sealed.path, &bytes).unwrap();
        let message = Journal::open_with(dir.path(), small_segments()).err().unwrap().to_string();
        assert!(message.contains(&sealed.name()) && message.contains("sealed"), "{message}");
    }

    #[tokio::test]
    async fn a_missing_segment_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), small_segments(), 100).await;
        let listed = segments::list(dir.path()).unwrap();
        std::fs::remove_file(&listed[1].path).unwrap();
        let message = Journal::open_with(dir.path(), small_segments()).err().unwrap().to_string();
        assert!(message.contains("segment 2 is missing"), "{message}");
    }

    #[tokio::test]
    async fn internal_records_take_no_ledger_sequence_and_come_back_in_a_scan() {
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
        let mut internal = Vec::new();
        journal
            .scan(Decode::All, |record| {
                if let Record::Internal(record) = record {
                    internal.push(record);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(internal, vec![claim]);
        assert_eq!(journal.read_after(0, 10).unwrap().len(), 2, "readers see ledger events only");
    }

    #[tokio::test]
    async fn balances_far_above_any_input_limit_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let huge = Money::from_decimal(rust_decimal::Decimal::from_str_exact("12345678901234567890.25").unwrap());
        let event = Event::BalanceToppedUp(BalanceToppedUp {
            buyer_id: "b1".into(),
            amount: Money::cents(1),
            reference: "r".into(),
            balance_after: huge,
            currency: crate::domain::money::Currency::EUR,
        });
        {
            let (journal, _) = Journal::open(dir.path()).unwrap();
            journal.append(event.clone(), Utc::now()).await.unwrap();
            journal.append(top_up(1), Utc::now()).await.unwrap();
        }
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!((recovery.last_sequence, recovery.truncated), (2, None));
        assert_eq!(journal.read_after(0, 1).unwrap()[0].event, event);
    }

    #[tokio::test]
    async fn an_old_single_file_journal_moves_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        for n in 0..5 {
            let event = LedgerEvent { sequence: n + 1, at: Utc::now(), event: top_up(n) };
            frame::legacy::encode(&Record::Ledger(event), &mut old);
        }
        frame::legacy::encode(
            &Record::Internal(InternalRecord::PullAcknowledged { buyer_id: "b".into(), through: 2 }),
            &mut old,
        );
        old.extend_from_slice(b"\x10\x00\x00");
        std::fs::write(dir.path().join(LEGACY_FILE), &old).unwrap();
        let (journal, recovery) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovery.last_sequence, 5);
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert_eq!(journal.read_after(2, 10).unwrap()[0].event, top_up(2));
        let mut internal = 0;
        journal
            .scan(Decode::All, |record| {
                internal += usize::from(matches!(record, Record::Internal(_)));
                Ok(())
            })
            .unwrap();
        assert_eq!(internal, 1);
        assert_eq!(journal.append(top_up(5), Utc::now()).await.unwrap().sequence, 6);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn journal_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        fill(&journal_dir, small_segments(), 50).await;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&journal_dir), 0o700);
        for segment in segments::list(&journal_dir).unwrap() {
            assert_eq!(mode(&segment.path), 0o600, "{}", segment.name());
        }
    }

    #[test]
    fn garbage_never_panics_recovery() {
        for garbage in [
            &b""[..],
            b"\x00\x00\x00\x00",
            b"LRJ2\xff\xff\xff\xff\x00\x00\x00\x00",
            b"LRJ2\x05\x00\x00\x00\x00\x00\x00\x00abc",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(Segment::new(dir.path(), 1, 1).path, garbage).unwrap();
            let (_, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!(recovery.events, 0);
        }
    }

    /// A valid journal of `batches` batches; answers its bytes and where each batch ends
    /// with the last sequence it holds.
    fn journal_bytes(batches: &[u8]) -> (Vec<u8>, Vec<(usize, u64)>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut sequence = 0;
        for &size in batches {
            let mut builder = BatchBuilder::new(&mut bytes);
            for _ in 0..size {
                sequence += 1;
                builder.push_ledger(&LedgerEvent { sequence, at: Utc::now(), event: top_up(sequence) }).unwrap();
            }
            builder.finish();
            ends.push((bytes.len(), sequence));
        }
        (bytes, ends)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any prefix of a valid journal plus any garbage tail recovers exactly the batches
        /// wholly inside the prefix: what was acknowledged, nothing more.
        #[test]
        fn any_prefix_plus_garbage_recovers_exactly_the_acknowledged_prefix(
            batches in proptest::collection::vec(1u8..6, 1..8),
            cut in 0.0f64..=1.0,
            magic_first in any::<bool>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (bytes, ends) = journal_bytes(&batches);
            let prefix = (bytes.len() as f64 * cut) as usize;
            let mut torn = bytes[..prefix].to_vec();
            if magic_first && !garbage.is_empty() {
                torn.extend_from_slice(&frame::MAGIC);
            }
            torn.extend_from_slice(&garbage);
            let (kept_bytes, kept_sequence) =
                ends.iter().take_while(|(end, _)| *end <= prefix).last().copied().unwrap_or((0, 0));
            let dir = tempfile::tempdir().unwrap();
            let path = Segment::new(dir.path(), 1, 1).path;
            std::fs::write(&path, &torn).unwrap();
            let (journal, recovery) = Journal::open(dir.path()).unwrap();
            prop_assert_eq!(recovery.last_sequence, kept_sequence);
            prop_assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, kept_bytes);
            let read = journal.read_after(0, usize::MAX).unwrap();
            prop_assert_eq!(read.len() as u64, kept_sequence);
        }
    }
}
