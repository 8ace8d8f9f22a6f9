//! Private files: everything under the data dir holds API keys, webhook secrets and leads'
//! PII, so directories are 0700 and files 0600, whoever's umask started the process.
//!
//! `tighten` is the check at start: anything looser (a copy made with `cp -r`, a volume
//! mounted with other defaults) is narrowed and named in a warning.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// Options that create a file with mode 0600 (an existing file keeps its mode; `tighten`
/// narrows it).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsynced, renamed over
/// `path`, and the directory fsynced, so a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = options().write(true).create(true).truncate(true).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Narrows `dir` to 0700 and every file below it to 0600 (directories to 0700), naming
/// each that was looser. Answers how many were narrowed.
pub fn tighten(dir: &Path) -> io::Result<usize> {
    let mut narrowed = 0;
    narrowed += usize::from(narrow(dir, DIR_MODE)?);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            narrowed += tighten(&entry.path())?;
        } else if kind.is_file() {
            narrowed += usize::from(narrow(&entry.path(), FILE_MODE)?);
        }
    }
    Ok(narrowed)
}

#[cfg(unix)]
fn narrow(path: &Path, wanted: u32) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & !wanted == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & wanted))?;
    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), now = format!("{:o}", mode & wanted), "data file was readable by others: narrowed");
    Ok(true)
}

#[cfg(not(unix))]
fn narrow(_path: &Path, _wanted: u32) -> io::Result<bool> {
    Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_dirs_are_private_and_loose_ones_are_narrowed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        options().write(true).create(true).truncate(true).open(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        write_atomic(&dir.join("g"), b"x").unwrap();
        assert_eq!(mode(&dir.join("g")), 0o600);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(tighten(&root.path().join("a")).unwrap(), 2);
        assert_eq!((mode(&file), mode(&dir)), (0o600, 0o700));
        assert_eq!(tighten(&root.path().join("a")).unwrap(), 0, "nothing left to narrow");
    }
}
