//! Where each sale is on disk, so sales past their return window need no memory.
//!
//! Each sealed segment has a sidecar `<segment>.sales`: the batches holding its sales,
//! sorted by a 64-bit hash of the sale id, `[magic "LRS1"][count: u64 LE][(hash, offset):
//! u64 LE pairs][crc32 of all before: u32 LE]`. A lookup binary-searches each sidecar with
//! a few positioned reads and reads the one batch it names; the segment being written keeps
//! its pairs in memory. A sidecar that is missing or damaged is rebuilt from its segment,
//! which stays the truth.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame::Record;
use super::segments::{BatchReader, ReadError};
use crate::domain::ledger::{Event, SaleSettled};
use crate::store::files;

const MAGIC: [u8; 4] = *b"LRS1";
const HEADER_BYTES: u64 = 12;
const ENTRY_BYTES: u64 = 16;

/// FNV-1a: stable across versions and platforms, as a hash written to disk must be.
pub fn hash(sale_id: &str) -> u64 {
    sale_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

pub fn sidecar_path(segment: &Path) -> PathBuf {
    segment.with_extension("sales")
}

/// Writes the sidecar of a sealed segment from its (hash, batch offset) pairs.
pub fn write(segment: &Path, mut entries: Vec<(u64, u64)>) -> std::io::Result<()> {
    entries.sort_unstable();
    let mut bytes = Vec::with_capacity(HEADER_BYTES as usize + entries.len() * ENTRY_BYTES as usize + 4);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (hash, offset) in entries {
        bytes.extend_from_slice(&hash.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    files::write_atomic(&sidecar_path(segment), &bytes)
}

/// The (hash, batch offset) pairs of a segment's sales, read from the segment itself.
pub fn entries_of(segment: &Path, end: u64) -> Result<Vec<(u64, u64)>, ReadError> {
    let mut entries = Vec::new();
    let mut reader = BatchReader::open(segment, 0, end)?;
    while let Some((offset, records)) = reader.next_batch(super::frame::Decode::Ledger)? {
        for record in records {
            if let Record::Ledger(event) = record {
                if let Event::SaleSettled(sale) = &event.event {
                    entries.push((hash(&sale.sale_id), offset));
                }
            }
        }
    }
    Ok(entries)
}

/// The batch offsets a sealed segment's sidecar gives for `hash`; None when the sidecar
/// is missing or does not check out (the caller rebuilds it).
pub fn offsets_in_sidecar(segment: &Path, hash: u64) -> Option<Vec<u64>> {
    let file = File::open(sidecar_path(segment)).ok()?;
    let length = file.metadata().ok()?.len();
    let mut header = [0u8; HEADER_BYTES as usize];
    read_at(&file, &mut header, 0)?;
    let count = u64::from_le_bytes(header[4..12].try_into().ok()?);
    if header[..4] != MAGIC || HEADER_BYTES + count.checked_mul(ENTRY_BYTES)? + 4 != length {
        return None;
    }
    let entry = |i: u64| -> Option<(u64, u64)> {
        let mut bytes = [0u8; ENTRY_BYTES as usize];
        read_at(&file, &mut bytes, HEADER_BYTES + i * ENTRY_BYTES)?;
        Some((u64::from_le_bytes(bytes[..8].try_into().ok()?), u64::from_le_bytes(bytes[8..].try_into().ok()?)))
    };
    // The first entry whose hash is not below `hash`.
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        if entry(middle)?.0 < hash {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let mut offsets = Vec::new();
    while low < count {
        let (found, offset) = entry(low)?;
        if found != hash {
            break;
        }
        offsets.push(offset);
        low += 1;
    }
    Some(offsets)
}

/// Whether the sidecar is whole (its checksum holds): `journal verify` asks.
pub fn sidecar_checks_out(segment: &Path) -> bool {
    let Ok(bytes) = std::fs::read(sidecar_path(segment)) else { return false };
    let Some(split) = bytes.len().checked_sub(4) else { return false };
    let (body, crc) = bytes.split_at(split);
    body.starts_with(&MAGIC) && crc32fast::hash(body).to_le_bytes() == crc
}

/// The sale `sale_id` in the batch at `offset` of `segment`, if it is there.
pub fn sale_in_batch(segment: &Path, offset: u64, end: u64, sale_id: &str) -> Result<Option<SaleSettled>, ReadError> {
    let mut reader = BatchReader::open(segment, offset, end)?;
    let Some((_, records)) = reader.next_batch(super::frame::Decode::Ledger)? else { return Ok(None) };
    Ok(records.into_iter().find_map(|record| match record {
        Record::Ledger(event) => match event.event {
            Event::SaleSettled(sale) if sale.sale_id == sale_id => Some(Arc::unwrap_or_clone(sale)),
            _ => None,
        },
        Record::Internal(_) => None,
    }))
}

fn read_at(file: &File, buffer: &mut [u8], at: u64) -> Option<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buffer, at).ok()
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(at)).ok()?;
        file.read_exact(buffer).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_finds_every_offset_of_a_hash_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("00000001-00000000000000000001.seg");
        let entries: Vec<(u64, u64)> = (0..1_000u64).map(|n| (n * 7 % 500, n)).collect();
        write(&segment, entries.clone()).unwrap();
        assert!(sidecar_checks_out(&segment));
        for probe in [0, 1, 6, 7, 499, 500, 9_999] {
            let mut expected: Vec<u64> = entries.iter().filter(|(h, _)| *h == probe).map(|(_, o)| *o).collect();
            expected.sort_unstable();
            let mut found = offsets_in_sidecar(&segment, probe).unwrap();
            found.sort_unstable();
            assert_eq!(found, expected, "hash {probe}");
        }
        std::fs::write(sidecar_path(&segment), b"LRS1\x05").unwrap();
        assert_eq!(offsets_in_sidecar(&segment, 7), None, "a damaged sidecar is not trusted");
        assert!(!sidecar_checks_out(&segment));
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("sal_abc"), hash("sal_abc"));
        assert_ne!(hash("sal_abc"), hash("sal_abd"));
    }
}
