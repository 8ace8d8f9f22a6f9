//! Segment files and reading them back.
//!
//! The journal is a sequence of segment files `<number:08>-<first sequence:020>.seg`: the
//! number orders them, the first sequence is the ledger sequence the segment's first event
//! takes (or would take), so the segment holding any sequence is found from the names
//! alone. Only the newest segment is written; the others are sealed and never change.
//!
//! Readers find old events through a sparse index per segment: the offset of a batch at
//! least every `INDEX_EVERY` sequences, built by the writer as it writes and, for segments
//! written before the start, by one scan on first use.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::frame::{self, BatchError, Record};
use crate::domain::ledger::LedgerEvent;

/// One index entry per this many sequences at most: 10 million events take ~40,000
/// entries (640 KB).
pub const INDEX_EVERY: u64 = 256;
const SUFFIX: &str = ".seg";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub number: u64,
    pub first_sequence: u64,
    pub path: PathBuf,
}

impl Segment {
    pub fn new(dir: &Path, number: u64, first_sequence: u64) -> Segment {
        Segment { number, first_sequence, path: dir.join(format!("{number:08}-{first_sequence:020}{SUFFIX}")) }
    }

    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// The segments in `dir`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SUFFIX) else { continue };
        let Some((number, first)) = stem.split_once('-') else { continue };
        if let (Ok(number), Ok(first_sequence)) = (number.parse(), first.parse()) {
            segments.push(Segment { number, first_sequence, path: dir.join(name) });
        }
    }
    segments.sort_by_key(|segment| segment.number);
    Ok(segments)
}

/// Removes a sealed segment and its sale index (the index first: a sidecar without its
/// segment would be a stray file, a segment without its sidecar only gets it rebuilt).
/// Answers the bytes freed.
pub fn remove(segment: &Segment) -> std::io::Result<u64> {
    let sidecar = super::sale_index::sidecar_path(&segment.path);
    let mut bytes = 0;
    for path in [sidecar, segment.path.clone()] {
        match std::fs::metadata(&path).and_then(|meta| std::fs::remove_file(&path).map(|()| meta.len())) {
            Ok(len) => bytes += len,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(bytes)
}

/// Offsets of batches by the first sequence they hold, ascending.
#[derive(Debug, Clone, Default)]
pub struct SparseIndex {
    entries: Vec<(u64, u64)>,
}

impl SparseIndex {
    /// Notes a batch at `offset` whose first ledger event is `first_sequence`; answers
    /// whether the index took it (one entry per `INDEX_EVERY` sequences).
    pub fn note(&mut self, first_sequence: u64, offset: u64) -> bool {
        let due = self.entries.last().is_none_or(|(sequence, _)| first_sequence >= sequence + INDEX_EVERY);
        if due {
            self.entries.push((first_sequence, offset));
        }
        due
    }

    /// Where to start reading for `sequence`: the last noted batch at or before it.
    pub fn start_for(&self, sequence: u64) -> u64 {
        let after = self.entries.partition_point(|(first, _)| *first <= sequence);
        after.checked_sub(1).map_or(0, |i| self.entries[i].1)
    }

    /// Indexes a whole segment by reading it once.
    pub fn build(path: &Path, length: u64) -> Result<SparseIndex, ReadError> {
        let mut index = SparseIndex::default();
        let mut reader = BatchReader::open(path, 0, length)?;
        while let Some((offset, records)) = reader.next_batch(frame::Decode::Ledger)? {
            if let Some(Record::Ledger(event)) = records.first() {
                index.note(event.sequence, offset);
            }
        }
        Ok(index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(String),
    #[error("{file} at offset {offset}: {reason}")]
    Damaged { file: String, offset: u64, reason: String },
}

/// Reads whole batches of one segment in order, from an offset up to a length (the
/// acknowledged part of the segment being written).
pub struct BatchReader {
    file: File,
    name: String,
    offset: u64,
    end: u64,
    buffer: Vec<u8>,
}

impl BatchReader {
    pub fn open(path: &Path, offset: u64, end: u64) -> Result<BatchReader, ReadError> {
        let file = File::open(path).map_err(|e| ReadError::Io(format!("{}: {e}", path.display())))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(BatchReader { file, name, offset, end, buffer: Vec::new() })
    }

    /// The next batch: its offset and records, or None at the end.
    pub fn next_batch(&mut self, decode: frame::Decode) -> Result<Option<(u64, Vec<Record>)>, ReadError> {
        if self.offset >= self.end {
            return Ok(None);
        }
        let at = self.offset;
        let mut header = [0u8; frame::BATCH_HEADER_BYTES];
        self.read_at(&mut header, at)?;
        let len = frame::batch_len(&header).map_err(|e| self.damaged(at, e))?;
        if at + len as u64 > self.end {
            return Err(self.damaged(at, BatchError::CutShort));
        }
        self.buffer.resize(len, 0);
        let mut buffer = std::mem::take(&mut self.buffer);
        let read = self.read_at(&mut buffer, at);
        let decoded = read.and_then(|()| {
            let (body, _) = frame::check_batch(&buffer).map_err(|e| self.damaged(at, e))?;
            frame::decode_body(body, decode).map_err(|e| self.damaged(at, e))
        });
        self.buffer = buffer;
        self.offset = at + len as u64;
        Ok(Some((at, decoded?)))
    }

    fn read_at(&self, buffer: &mut [u8], at: u64) -> Result<(), ReadError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buffer, at).map_err(|e| ReadError::Io(format!("{}: {e}", self.name)))
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = &self.file;
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(buffer))
                .map_err(|e| ReadError::Io(e.to_string()))
        }
    }

    fn damaged(&self, offset: u64, error: BatchError) -> ReadError {
        ReadError::Damaged { file: self.name.clone(), offset, reason: error.to_string() }
    }
}

/// Appends to `out` the ledger events of one segment with `sequence > after`, reading from
/// `start` up to `end`, until `out` holds `max`.
pub fn events_after(
    path: &Path,
    start: u64,
    end: u64,
    after: u64,
    max: usize,
    out: &mut Vec<LedgerEvent>,
) -> Result<(), ReadError> {
    let mut reader = BatchReader::open(path, start, end)?;
    while out.len() < max {
        let Some((_, records)) = reader.next_batch(frame::Decode::Ledger)? else { break };
        for record in records {
            if let Record::Ledger(event) = record {
                if event.sequence > after && out.len() < max {
                    out.push(event);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_segments_and_carry_their_first_sequence() {
        let dir = tempfile::tempdir().unwrap();
        for (number, first) in [(2, 300), (10, 9_000), (1, 1)] {
            std::fs::write(Segment::new(dir.path(), number, first).path, b"").unwrap();
        }
        std::fs::write(dir.path().join("checkpoint"), b"").unwrap();
        let listed: Vec<_> = list(dir.path()).unwrap().into_iter().map(|s| (s.number, s.first_sequence)).collect();
        assert_eq!(listed, [(1, 1), (2, 300), (10, 9_000)]);
        assert_eq!(Segment::new(dir.path(), 3, 42).name(), "00000003-00000000000000000042.seg");
    }

    #[test]
    fn the_sparse_index_points_at_or_before_a_sequence() {
        let mut index = SparseIndex::default();
        for (sequence, offset) in [(1, 0), (100, 10), (257, 20), (600, 30)] {
            index.note(sequence, offset);
        }
        assert_eq!(index.entries, [(1, 0), (257, 20), (600, 30)]);
        assert_eq!(index.start_for(1), 0);
        assert_eq!(index.start_for(256), 0);
        assert_eq!(index.start_for(257), 20);
        assert_eq!(index.start_for(10_000), 30);
    }
}
