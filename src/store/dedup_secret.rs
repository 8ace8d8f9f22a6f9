//! The dedup secret of a data dir: `<data-dir>/dedup-secret` (mode 0600, JSON), made once
//! like the admin token and kept for good, since every dedup window of past sales is keyed
//! under it. Rotating API keys or the admin token leaves it alone.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files;
use crate::domain::dedup::{DedupKeying, DedupSecret};

pub const FILE_NAME: &str = "dedup-secret";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is damaged ({reason}); restore it from a backup (a new secret would let past sales be sold again as new)")]
    Damaged { path: String, reason: String },
    #[error(
        "--dedup-secret differs from the one in {path}: the dedup windows of past sales would no longer match. \
         Give the stored one, or remove the file to change secrets on purpose"
    )]
    Differs { path: String },
}

#[derive(Serialize, Deserialize)]
struct SecretFile {
    secret: String,
    created_at: DateTime<Utc>,
    /// Set when the secret came to a store that already held sales with plain keys.
    #[serde(default)]
    plain_keys_until: Option<DateTime<Utc>>,
}

/// The data dir's keying: read from its file, or made now (from `given`, else random) and
/// written before any key is made under it. `had_sales` says whether this store may
/// already hold plain keys (an upgrade), which are then looked up for one window more.
pub fn load_or_create(
    data_dir: &Path,
    given: Option<&DedupSecret>,
    had_sales: bool,
    now: DateTime<Utc>,
) -> Result<DedupKeying, SecretError> {
    if let Some(stored) = read(data_dir, given)? {
        return Ok(stored);
    }
    let secret = given.cloned().unwrap_or_else(|| DedupSecret::from_bytes(rand::random()));
    let keying = DedupKeying { secret, plain_until_then: had_sales.then_some(now) };
    write(data_dir, &keying, now)?;
    Ok(keying)
}

/// The keying stored in the data dir, if any; an error when `given` differs from it.
pub fn read(data_dir: &Path, given: Option<&DedupSecret>) -> Result<Option<DedupKeying>, SecretError> {
    let path = data_dir.join(FILE_NAME);
    let shown = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SecretError::Io { path: shown, source }),
    };
    let damaged = |reason: String| SecretError::Damaged { path: shown.clone(), reason };
    let stored: SecretFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    let secret = DedupSecret::from_hex(&stored.secret).ok_or_else(|| damaged("not 64 hex digits".into()))?;
    if given.is_some_and(|given| *given != secret) {
        return Err(SecretError::Differs { path: shown });
    }
    Ok(Some(DedupKeying { secret, plain_until_then: stored.plain_keys_until }))
}

/// Stores `keying` in the data dir (mode 0600, atomically).
pub fn write(data_dir: &Path, keying: &DedupKeying, now: DateTime<Utc>) -> Result<(), SecretError> {
    let path = data_dir.join(FILE_NAME);
    let shown = path.display().to_string();
    let file =
        SecretFile { secret: keying.secret.to_hex(), created_at: now, plain_keys_until: keying.plain_until_then };
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| SecretError::Damaged { path: shown.clone(), reason: e.to_string() })?;
    files::write_atomic(&path, &bytes).map_err(|source| SecretError::Io { path: shown, source })?;
    tracing::info!(path = %path.display(), "dedup secret stored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_secret_is_made_once_kept_and_checked_against_a_given_one() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap();
        let made = load_or_create(dir.path(), None, false, now).unwrap();
        assert_eq!(made.plain_until_then, None, "a new store has no plain keys");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let later = load_or_create(dir.path(), None, true, now + chrono::Duration::days(9)).unwrap();
        assert_eq!(later, made, "read back, not made again");
        assert!(load_or_create(dir.path(), Some(&made.secret), true, now).is_ok());
        let other = DedupSecret::from_bytes([5; 32]);
        assert!(matches!(load_or_create(dir.path(), Some(&other), true, now), Err(SecretError::Differs { .. })));
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(matches!(load_or_create(dir.path(), None, true, now), Err(SecretError::Damaged { .. })));
    }

    #[test]
    fn an_upgraded_store_looks_up_plain_keys_from_the_change_on() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap();
        let given = DedupSecret::from_bytes([3; 32]);
        let made = load_or_create(dir.path(), Some(&given), true, now).unwrap();
        assert_eq!((made.secret, made.plain_until_then), (given, Some(now)));
    }
}
