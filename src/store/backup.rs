//! `leadrouter backup --to DIR`: a copy of an embedded node's data dir, taken while it
//! serves, that `leadrouter --data-dir DIR` starts from.
//!
//! Consistent without stopping the writer: the checkpoint is read first (one atomic file),
//! then every segment from the one it goes on at. Sealed segments never change; the newest
//! is copied up to its length at that moment, and a batch it cuts in half is the torn tail
//! a start cuts off. Segments before the checkpoint's are copied too (the gRPC stream
//! replays history from them), with their sale indexes.

use std::path::Path;

use super::{checkpoint, files};
use crate::store::journal::{consumers, sale_index, segments};

/// What a backup copied.
#[derive(Debug, Default, serde::Serialize)]
pub struct Copied {
    pub segments: usize,
    pub bytes: u64,
    pub checkpoint: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists and is not empty; name a new directory")]
    NotEmpty(String),
    #[error("no journal under {0}")]
    NoJournal(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// Copies the data dir `from` into the new directory `to`.
pub fn backup(from: &Path, to: &Path) -> Result<Copied, BackupError> {
    let journal = from.join("journal");
    if !journal.is_dir() {
        return Err(BackupError::NoJournal(from.display().to_string()));
    }
    if to.exists() && std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(BackupError::NotEmpty(to.display().to_string()));
    }
    let target = to.join("journal");
    files::create_dir_all(&target).map_err(io(&target))?;
    let mut copied = Copied::default();
    // The checkpoint first: every segment it needs is still there when they are copied.
    let checkpoint = checkpoint::path(&journal);
    match std::fs::read(&checkpoint) {
        Ok(bytes) => {
            files::write_atomic(&checkpoint::path(&target), &bytes).map_err(io(&target))?;
            copied.checkpoint = true;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(&checkpoint)(error)),
    }
    let listed = segments::list(&journal).map_err(io(&journal))?;
    for (n, segment) in listed.iter().enumerate() {
        let bytes = match std::fs::read(&segment.path) {
            Ok(bytes) => bytes,
            // Retention removed it since the listing (the checkpoint copied covers it).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && copied.segments == 0 => continue,
            Err(error) => return Err(io(&segment.path)(error)),
        };
        let name = segment.path.file_name().unwrap_or_default();
        files::write_atomic(&target.join(name), &bytes).map_err(io(&target))?;
        copied.segments += 1;
        copied.bytes += bytes.len() as u64;
        let sidecar = sale_index::sidecar_path(&segment.path);
        if n + 1 < listed.len() {
            if let Ok(index) = std::fs::read(&sidecar) {
                let name = sidecar.file_name().unwrap_or_default();
                files::write_atomic(&target.join(name), &index).map_err(io(&target))?;
            }
        }
    }
    // Who has read how far, so that the copy's retention holds for them too. (Not the
    // retention facts: they may be of a checkpoint newer than the one copied; the copy's
    // compaction reads its checkpoint instead.)
    if let Ok(bytes) = std::fs::read(journal.join(consumers::FILE_NAME)) {
        files::write_atomic(&target.join(consumers::FILE_NAME), &bytes).map_err(io(&target))?;
    }
    // The admin token, and the dedup secret every dedup key in the copy is made under.
    for name in ["admin-token", super::dedup_secret::FILE_NAME] {
        if let Ok(bytes) = std::fs::read(from.join(name)) {
            files::write_atomic(&to.join(name), &bytes).map_err(io(to))?;
        }
    }
    files::sync_dir(to).map_err(io(to))?;
    Ok(copied)
}
