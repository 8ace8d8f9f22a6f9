//! The checkpoint reader (`store::checkpoint::read`), as a start reads the file
//! (`checkpoints::Checkpoint`) and as `journal verify` reads it (any JSON value).
//!
//! The first input byte picks what the rest is: the checkpoint file's bytes (even), or the
//! JSON payload given a valid header and checksum (odd: libfuzzer cannot forge a CRC-32,
//! and the payload decoder is behind it). The file is written to a scratch directory and
//! read from there.
//!
//! Laws: never panics; reading changes nothing in the directory, whether the checkpoint
//! is refused or not (a refused checkpoint is reported, never half-used or repaired); a
//! file that reads as a `Checkpoint` reads as JSON too; an accepted checkpoint written
//! again with `checkpoint::write` reads back the same.

#![no_main]

use std::sync::OnceLock;

use leadrouter::checkpoints::Checkpoint;
use leadrouter::store::checkpoint;
use leadrouter_fuzz::{dir_contents, scratch_dir};
use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

/// Where the input is read from, and where an accepted checkpoint is written again.
fn dirs() -> &'static (TempDir, TempDir) {
    static DIRS: OnceLock<(TempDir, TempDir)> = OnceLock::new();
    DIRS.get_or_init(|| (scratch_dir(), scratch_dir()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut file = Vec::with_capacity(16 + rest.len());
        file.extend_from_slice(b"LRC1");
        file.extend_from_slice(&(rest.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
        file.extend_from_slice(rest);
        file
    };
    let (input, output) = dirs();
    std::fs::write(checkpoint::path(input.path()), &file).expect("the scratch file writes");
    let before = dir_contents(input.path());

    let read = checkpoint::read::<Checkpoint>(input.path());
    let as_json = checkpoint::read::<serde_json::Value>(input.path());
    assert_eq!(dir_contents(input.path()), before, "reading a checkpoint changed its directory");

    match read {
        Ok(Some(read)) => {
            assert!(matches!(as_json, Ok(Some(_))), "a checkpoint that reads is JSON");
            let written = serde_json::to_value(&read).expect("a checkpoint serializes");
            checkpoint::write(output.path(), &read).expect("a checkpoint writes");
            let again = checkpoint::read::<Checkpoint>(output.path())
                .expect("a written checkpoint reads")
                .expect("a written checkpoint is there");
            assert_eq!(serde_json::to_value(&again).expect("a checkpoint serializes"), written);
        }
        Ok(None) => panic!("a checkpoint file was there"),
        Err(_) => {}
    }
});
