//! The worker's own SQLite database (WAL): the ledger facts it has applied with the cursor,
//! the accounts, issued documents, payments, dunning and the notification outbox.
//!
//! Issued documents and their lines are immutable: triggers refuse any update or delete,
//! so not even a bug in this crate can edit an issued document.

pub mod documents;
pub mod ledger;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger event {got} does not follow the applied sequence {applied}")]
    Gap { applied: u64, got: u64 },
    #[error("corrupt value in the database: {0}")]
    Corrupt(String),
}

/// The database, shared by the consumer, the API and the notification sender. One
/// connection behind a mutex: SQLite has one writer anyway, and every use is short except
/// runs, which callers move off the async threads.
///
/// Writing transactions begin IMMEDIATE: another process on the same file (the CLI's `run`
/// beside a serving worker) then waits for the write lock up front (busy timeout 10 s)
/// instead of failing when a deferred transaction tries to upgrade.
#[derive(Clone)]
pub struct Db {
    connection: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied INTEGER NOT NULL
);
INSERT OR IGNORE INTO cursor (id, applied) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS accounts (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    currency TEXT,
    timezone TEXT NOT NULL,
    mode TEXT,
    interval TEXT NOT NULL,
    payment_terms_days INTEGER,
    credit_limit TEXT,
    billed_through TEXT,
    balance TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (kind, id)
);

CREATE TABLE IF NOT EXISTS sales (
    sale_id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    lead_id TEXT NOT NULL,
    ping_id TEXT NOT NULL,
    supplier_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    vertical TEXT NOT NULL,
    country TEXT NOT NULL,
    model TEXT NOT NULL,
    price TEXT NOT NULL,
    payout TEXT NOT NULL,
    currency TEXT NOT NULL,
    sold_at TEXT NOT NULL,
    internal INTEGER NOT NULL,
    buyer_doc TEXT,
    supplier_doc TEXT
);
CREATE INDEX IF NOT EXISTS sales_buyer_open ON sales (buyer_id) WHERE buyer_doc IS NULL;
CREATE INDEX IF NOT EXISTS sales_supplier_open ON sales (supplier_id) WHERE supplier_doc IS NULL;

CREATE TABLE IF NOT EXISTS returns (
    return_id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    sale_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    supplier_id TEXT NOT NULL,
    approved INTEGER NOT NULL,
    credit TEXT NOT NULL,
    payout_reversed TEXT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    note TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    resolved_at TEXT NOT NULL,
    sold_at TEXT NOT NULL,
    buyer_doc TEXT,
    supplier_doc TEXT
);
CREATE INDEX IF NOT EXISTS returns_sale ON returns (sale_id);

CREATE TABLE IF NOT EXISTS topups (
    sequence INTEGER PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    reference TEXT NOT NULL,
    balance_after TEXT NOT NULL,
    currency TEXT NOT NULL,
    at TEXT NOT NULL,
    doc TEXT
);

CREATE TABLE IF NOT EXISTS documents (
    number TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    issue_date TEXT NOT NULL,
    due_date TEXT,
    total TEXT NOT NULL,
    opening_balance TEXT,
    closing_balance TEXT,
    refers_to TEXT,
    run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_account ON documents (account_id, issue_date);
CREATE INDEX IF NOT EXISTS documents_refers ON documents (refers_to);

CREATE TABLE IF NOT EXISTS lines (
    number TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sale_id TEXT,
    lead_id TEXT,
    return_id TEXT,
    topup_sequence INTEGER,
    vertical TEXT,
    campaign_id TEXT,
    sold_at TEXT,
    description TEXT NOT NULL,
    amount TEXT NOT NULL,
    refers_to TEXT,
    PRIMARY KEY (number, position)
);
CREATE INDEX IF NOT EXISTS lines_sale ON lines (sale_id);
CREATE INDEX IF NOT EXISTS lines_return ON lines (return_id);

CREATE TRIGGER IF NOT EXISTS documents_immutable BEFORE UPDATE ON documents
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable'); END;
CREATE TRIGGER IF NOT EXISTS documents_kept BEFORE DELETE ON documents
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable'); END;
CREATE TRIGGER IF NOT EXISTS lines_immutable BEFORE UPDATE ON lines
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable'); END;
CREATE TRIGGER IF NOT EXISTS lines_kept BEFORE DELETE ON lines
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable'); END;

CREATE TABLE IF NOT EXISTS series (
    prefix TEXT NOT NULL,
    year INTEGER NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (prefix, year)
);

CREATE TABLE IF NOT EXISTS payments (
    number TEXT NOT NULL,
    position INTEGER NOT NULL,
    amount TEXT NOT NULL,
    paid_at TEXT NOT NULL,
    reference TEXT NOT NULL,
    PRIMARY KEY (number, position)
);

CREATE TABLE IF NOT EXISTS dunning (
    number TEXT NOT NULL,
    tier INTEGER NOT NULL,
    date TEXT NOT NULL,
    PRIMARY KEY (number, tier)
);

CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    as_of TEXT NOT NULL,
    through_sequence INTEGER NOT NULL,
    issued INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    number TEXT NOT NULL,
    account_kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    recipient TEXT,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
"#;

impl Db {
    /// Opens (or creates) the database in WAL mode with full fsync on commit.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed transaction survives a power cut, not only a killed process;
        // issued document numbers and sent notices must never be issued twice.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Db { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `work` with the connection; keep it short on async threads.
    pub fn with<T>(&self, work: impl FnOnce(&mut Connection) -> T) -> T {
        work(&mut self.connection.lock())
    }

    /// Runs `work` on a blocking thread (runs, reports, reconciliation).
    pub async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&mut Connection) -> T + Send + 'static) -> T {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || db.with(work)).await {
            Ok(value) => value,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// The last applied ledger sequence.
    pub fn applied(&self) -> Result<u64, StoreError> {
        self.with(|connection| ledger::applied(connection))
    }
}

/// Copies the database at `from` to a new file `to` with SQLite's online backup: a
/// consistent copy, also while a worker writes to it (pages changed during the copy are
/// copied again). `to` must not exist; it is created with mode 0600 (documents hold account
/// data) and answers its last applied ledger sequence.
pub fn backup(from: &Path, to: &Path) -> Result<u64, StoreError> {
    if to.exists() {
        return Err(StoreError::Corrupt(format!("{} exists; name a new file", to.display())));
    }
    let source = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(Duration::from_secs(10))?;
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(to).map_err(|e| StoreError::Corrupt(format!("{}: {e}", to.display())))?;
    }
    let mut target = Connection::open(to)?;
    rusqlite::backup::Backup::new(&source, &mut target)?.run_to_completion(256, Duration::from_millis(2), None)?;
    let check: String = target.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("the copy fails its integrity check: {check}")));
    }
    ledger::applied(&target)
}

/// Every row of `sql` as a tuple of its columns (`(String, Option<String>, i64)`, ...).
pub fn rows<T>(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<T>, StoreError>
where
    T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>,
{
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| T::try_from(row))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_online_backup_is_a_consistent_private_copy_taken_while_the_database_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("billing.db");
        let db = Db::open(&path).unwrap();
        db.with(|connection| connection.execute("UPDATE cursor SET applied = 42", [])).unwrap();
        // A write in progress on the serving connection while the copy is taken.
        db.with(|connection| connection.execute_batch("BEGIN; UPDATE cursor SET applied = 43;")).unwrap();
        let copy = dir.path().join("copy.db");
        assert_eq!(backup(&path, &copy).unwrap(), 42, "the copy holds what was committed");
        db.with(|connection| connection.execute_batch("COMMIT;")).unwrap();
        assert_eq!(Db::open(&copy).unwrap().applied().unwrap(), 42);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(backup(&path, &copy).is_err(), "never over an existing file");
        let second = dir.path().join("second.db");
        assert_eq!(backup(&path, &second).unwrap(), 43);
    }
}
