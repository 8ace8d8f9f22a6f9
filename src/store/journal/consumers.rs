//! Registered ledger consumers and how far each has read (DESIGN §14): retention never
//! removes a segment holding an event a registered consumer has not acknowledged.
//!
//! Kept in `<journal dir>/consumers`, JSON written atomically, outside the journal: the
//! offline `journal compact` reads it without replaying anything, and a position lost in a
//! crash only makes retention keep more. A file that does not parse stops the start (and
//! compaction): guessing "no consumers" could remove what the billing worker has not read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::store::files;

pub const FILE_NAME: &str = "consumers";
const NAME_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Every event up to this sequence is applied by the consumer.
    pub sequence: u64,
    /// When the consumer last said so.
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer names are 1-64 of A-Z a-z 0-9 . _ -")]
    BadName,
    #[error("{path}: {reason}")]
    Damaged { path: String, reason: String },
    #[error("consumers file: {0}")]
    Io(#[from] std::io::Error),
}

pub fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The positions in `dir` (none when the file is missing).
pub fn read(dir: &Path) -> Result<BTreeMap<String, Position>, ConsumerError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ConsumerError::Damaged { path: path.display().to_string(), reason: e.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(error.into()),
    }
}

/// The positions of one journal, in memory and on disk.
pub struct Consumers {
    path: PathBuf,
    /// Held while the file is written, so that writes land in the order they were made.
    positions: Mutex<BTreeMap<String, Position>>,
}

impl Consumers {
    pub fn open(dir: &Path) -> Result<Consumers, ConsumerError> {
        Ok(Consumers { path: dir.join(FILE_NAME), positions: Mutex::new(read(dir)?) })
    }

    /// Notes that `name` has applied everything up to `sequence` (it may go back: a
    /// consumer restored from an older backup must be able to say so).
    pub fn register(&self, name: &str, sequence: u64, at: DateTime<Utc>) -> Result<(), ConsumerError> {
        if !valid_name(name) {
            return Err(ConsumerError::BadName);
        }
        let mut positions = self.positions.lock();
        if positions.get(name).is_some_and(|p| p.sequence == sequence && at - p.at < chrono::Duration::minutes(1)) {
            return Ok(());
        }
        let before = positions.insert(name.to_string(), Position { sequence, at });
        if let Err(error) = self.write(&positions) {
            match before {
                Some(before) => positions.insert(name.to_string(), before),
                None => positions.remove(name),
            };
            return Err(error);
        }
        Ok(())
    }

    /// Stops holding retention for `name`; answers whether it was registered.
    pub fn forget(&self, name: &str) -> Result<bool, ConsumerError> {
        let mut positions = self.positions.lock();
        let Some(before) = positions.remove(name) else { return Ok(false) };
        if let Err(error) = self.write(&positions) {
            positions.insert(name.to_string(), before);
            return Err(error);
        }
        Ok(true)
    }

    pub fn list(&self) -> BTreeMap<String, Position> {
        self.positions.lock().clone()
    }

    fn write(&self, positions: &BTreeMap<String, Position>) -> Result<(), ConsumerError> {
        let bytes = serde_json::to_vec_pretty(positions).map_err(|e| std::io::Error::other(e.to_string()))?;
        files::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_reopen_and_forgetting_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc::now();
        let consumers = Consumers::open(dir.path()).unwrap();
        consumers.register("billing", 10, at).unwrap();
        consumers.register("warehouse.v2", 3, at).unwrap();
        consumers.register("billing", 12, at).unwrap();
        assert!(matches!(consumers.register("bad name", 1, at), Err(ConsumerError::BadName)));
        assert!(matches!(consumers.register("", 1, at), Err(ConsumerError::BadName)));
        let reopened = Consumers::open(dir.path()).unwrap().list();
        assert_eq!(reopened.get("billing").map(|p| p.sequence), Some(12));
        assert_eq!(reopened.len(), 2);
        assert!(consumers.forget("warehouse.v2").unwrap());
        assert!(!consumers.forget("warehouse.v2").unwrap());
        assert_eq!(read(dir.path()).unwrap().keys().collect::<Vec<_>>(), ["billing"]);
    }

    #[test]
    fn a_damaged_file_is_an_error_never_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"billing\": {\"seq").unwrap();
        assert!(matches!(Consumers::open(dir.path()), Err(ConsumerError::Damaged { .. })));
    }
}
