//! The worker's own SQLite database (WAL): the ledger facts it has applied with the cursor,
//! the accounts, issued documents, payments, dunning and the notification outbox.
//!
//! Issued documents and their lines are immutable: triggers refuse any update or delete,
//! so not even a bug in this crate can edit an issued document.
//!
//! The schema is `SCHEMA` (the first form, created if missing, as every database before
//! versioning has it) followed by `MIGRATIONS`, each applied once, in order, and counted in
//! `PRAGMA user_version`. A new database takes the same steps as an old one, so both end
//! with the same columns; a change is a new migration, never an edit of `SCHEMA`'s tables.

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
    #[error("the database has schema version {found}, newer than this worker's {known}: run a newer worker")]
    Newer { found: i64, known: usize },
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
    -- buyer_reference: MIGRATIONS[0]
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
    -- buyer_reference: MIGRATIONS[0]
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

/// Changes after `SCHEMA`, oldest first; `PRAGMA user_version` is how many are applied.
/// Only append: a database in the field has applied a prefix of this list.
const MIGRATIONS: &[&str] = &[
    // 1: the buyer's own lead id (DESIGN §5.1), on its sales and on the lines that bill
    // them. NULL in rows from before: those sales had none. Adding a column rewrites no
    // row, so the triggers that keep issued lines immutable do not fire.
    "ALTER TABLE sales ADD COLUMN buyer_reference TEXT;
     ALTER TABLE lines ADD COLUMN buyer_reference TEXT;",
];

/// Creates what is missing of the schema and applies the migrations not yet applied.
pub(crate) fn prepare_schema(connection: &mut Connection) -> Result<(), StoreError> {
    connection.execute_batch(SCHEMA)?;
    migrate(connection)
}

/// Brings the schema up to date. IMMEDIATE, so a second process opening the same file (the
/// CLI beside a serving worker) waits and then finds the steps applied, instead of applying
/// them twice; a failing step leaves the database as it was.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(found).map_err(|_| StoreError::Corrupt(format!("schema version {found}")))?;
    if applied > MIGRATIONS.len() {
        // Its columns mean something this worker does not know to fill; writing rows
        // without them would lose data quietly.
        return Err(StoreError::Newer { found, known: MIGRATIONS.len() });
    }
    for step in &MIGRATIONS[applied..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()?;
    Ok(())
}

impl Db {
    /// Opens (or creates) the database in WAL mode with full fsync on commit.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed transaction survives a power cut, not only a killed process;
        // issued document numbers and sent notices must never be issued twice.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        prepare_schema(&mut connection)?;
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

    /// A database as workers before schema versioning left it: `SCHEMA` only, with an
    /// applied sale and an issued invoice billing it.
    fn database_before_buyer_references(path: &Path) {
        let connection = Connection::open(path).unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        connection
            .execute_batch(
                "UPDATE cursor SET applied = 1;
                 INSERT INTO sales (sale_id, sequence, lead_id, ping_id, supplier_id, buyer_id, campaign_id, vertical,
                    country, model, price, payout, currency, sold_at, internal, buyer_doc)
                 VALUES ('sal_1', 1, 'led_1', '', 'sup', 'inv', 'c1', 'solar', 'DE', 'bidding', '40.00', '20.00',
                    'EUR', '2026-11-03T09:00:00+00:00', 0, 'INV-2026-000001');
                 INSERT INTO documents (number, kind, account_kind, account_id, currency, period_from, period_to,
                    issue_date, due_date, total, run_id)
                 VALUES ('INV-2026-000001', 'invoice', 'buyer', 'inv', 'EUR', '2026-11-02', '2026-11-08',
                    '2026-11-09', '2026-11-23', '40.00', 1);
                 INSERT INTO lines (number, position, kind, sale_id, lead_id, vertical, campaign_id, sold_at,
                    description, amount)
                 VALUES ('INV-2026-000001', 0, 'sale', 'sal_1', 'led_1', 'solar', 'c1', '2026-11-03T09:00:00+00:00',
                    'Lead led_1 (solar)', '40.00');",
            )
            .unwrap();
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, 0);
    }

    #[test]
    fn an_existing_database_without_buyer_references_is_migrated_once_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("billing.db");
        database_before_buyer_references(&path);

        let db = Db::open(&path).unwrap();
        assert_eq!(db.applied().unwrap(), 1, "the cursor is kept");
        let (version, sale): (i64, (String, String, Option<String>, Option<String>)) = db.with(|connection| {
            let version = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
            let sale = connection
                .query_row("SELECT sale_id, price, buyer_doc, buyer_reference FROM sales", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .unwrap();
            (version, sale)
        });
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(sale, ("sal_1".into(), "40.00".into(), Some("INV-2026-000001".into()), None));
        // The issued invoice reads back as it was issued, and stays immutable.
        let invoice = db.with(|connection| documents::load(connection, "INV-2026-000001")).unwrap().unwrap();
        assert_eq!(invoice.lines.len(), 1);
        assert_eq!(
            (invoice.lines[0].sale_id.as_deref(), invoice.lines[0].buyer_reference.as_deref()),
            (Some("sal_1"), None)
        );
        let edit = db.with(|connection| connection.execute("UPDATE lines SET buyer_reference = 'x'", []));
        assert!(edit.unwrap_err().to_string().contains("immutable"));

        // New sales keep their reference; opening again applies nothing twice.
        let sale = crate::domain::facts::Entry {
            sequence: 2,
            at: "2026-11-10T09:00:00Z".parse().unwrap(),
            fact: crate::domain::facts::Fact::Sale(crate::domain::facts::Sale {
                sale_id: "sal_2".into(),
                lead_id: "led_2".into(),
                ping_id: None,
                supplier_id: "sup".into(),
                buyer_id: "inv".into(),
                campaign_id: "c1".into(),
                vertical: "solar".into(),
                country: "DE".into(),
                model: leadrouter_types::Model::Bidding,
                price: rust_decimal::Decimal::new(4000, 2),
                payout: rust_decimal::Decimal::new(2000, 2),
                currency: leadrouter_types::Currency::EUR,
                sold_at: "2026-11-10T09:00:00Z".parse().unwrap(),
                internal: false,
                buyer_reference: Some("CRM-2".into()),
            }),
        };
        assert_eq!(db.with(|connection| ledger::apply(connection, &[sale])).unwrap(), 2);
        drop(db);
        let db = Db::open(&path).unwrap();
        let references: Vec<(String, Option<String>)> = db
            .with(|connection| rows(connection, "SELECT sale_id, buyer_reference FROM sales ORDER BY sequence", []))
            .unwrap();
        assert_eq!(references, [("sal_1".into(), None), ("sal_2".into(), Some("CRM-2".into()))]);
    }

    #[test]
    fn a_database_of_a_newer_worker_is_refused_rather_than_written_without_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("billing.db");
        drop(Db::open(&path).unwrap());
        let newer = MIGRATIONS.len() as i64 + 1;
        Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();
        match Db::open(&path) {
            Err(StoreError::Newer { found, known }) => assert_eq!((found, known), (newer, MIGRATIONS.len())),
            Err(other) => panic!("refused as newer, got {other}"),
            Ok(_) => panic!("a newer database opened"),
        }
    }

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
