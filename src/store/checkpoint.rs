//! The checkpoint file: one value, checksummed and written atomically, that lets a start
//! skip the journal it covers (`<journal dir>/checkpoint`).
//!
//! Format: `[magic "LRC1"][length: u64 LE][crc32 of the payload: u32 LE][payload]`, the
//! payload being JSON. It is written to a temporary file, fsynced, renamed over the old one
//! and the directory fsynced, so a crash leaves the old checkpoint or the new one, never a
//! mix. A checkpoint that does not check out is reported, never half-used.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::files;

const MAGIC: [u8; 4] = *b"LRC1";
const HEADER_BYTES: usize = 16;
pub const FILE_NAME: &str = "checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {reason}")]
    Damaged { path: String, reason: String },
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes `value` as the checkpoint in `dir`; answers the file's size.
pub fn write<T: Serialize>(dir: &Path, value: &T) -> Result<u64, CheckpointError> {
    let payload = serde_json::to_vec(value).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    files::write_atomic(&path(dir), &bytes)?;
    Ok(bytes.len() as u64)
}

/// The checkpoint in `dir`, None when there is none.
pub fn read<T: DeserializeOwned>(dir: &Path) -> Result<Option<T>, CheckpointError> {
    let path = path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let damaged = |reason: &str| CheckpointError::Damaged { path: path.display().to_string(), reason: reason.into() };
    if bytes.len() < HEADER_BYTES || bytes[..4] != MAGIC {
        return Err(damaged("not a checkpoint"));
    }
    let length = u64::from_le_bytes(bytes[4..12].try_into().map_err(|_| damaged("header"))?);
    let crc = u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| damaged("header"))?);
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != length {
        return Err(damaged(&format!("{} bytes where {length} were written", payload.len())));
    }
    if crc32fast::hash(payload) != crc {
        return Err(damaged("checksum mismatch"));
    }
    // JSON is UTF-8 throughout: `from_slice` alone would not check the strings of fields it
    // skips, so a start could take a checkpoint that `journal verify` (reading any JSON
    // value) calls damaged.
    let text = std::str::from_utf8(payload).map_err(|_| damaged("not UTF-8"))?;
    serde_json::from_str(text).map(Some).map_err(|e| damaged(&format!("does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read::<Vec<u64>>(dir.path()).unwrap().is_none());
        write(dir.path(), &vec![1u64, 2, 3]).unwrap();
        assert_eq!(read::<Vec<u64>>(dir.path()).unwrap(), Some(vec![1, 2, 3]));
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        let error = read::<Vec<u64>>(dir.path()).unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
        std::fs::write(path(dir.path()), &bytes[..10]).unwrap();
        assert!(read::<Vec<u64>>(dir.path()).is_err());
    }

    #[test]
    fn every_reader_refuses_what_is_not_utf8_even_in_a_skipped_field() {
        // Found by fuzzing (fuzz/fuzz_targets/checkpoint.rs): a struct read skipped the
        // field unchecked while a read as any JSON value refused the file.
        #[derive(serde::Deserialize)]
        struct Known {
            #[allow(dead_code)]
            segment: u64,
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &serde_json::json!({"segment": 3, "other": "x"})).unwrap();
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        let at = bytes.iter().rposition(|b| *b == b'x').unwrap();
        bytes[at] = 0xff;
        let payload = bytes[HEADER_BYTES..].to_vec();
        bytes[12..16].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        std::fs::write(path(dir.path()), &bytes).unwrap();
        let error = read::<Known>(dir.path()).err().expect("refused").to_string();
        assert!(error.contains("not UTF-8"), "{error}");
        assert!(read::<serde_json::Value>(dir.path()).is_err());
    }
}
