//! Placeholder until the sender lands (replaced by the helper's module).

use rusqlite::Connection;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, Serialize)]
pub struct Notification {
    pub id: i64,
}

pub fn list(
    _connection: &Connection,
    _status: Option<&str>,
    _after: i64,
    _limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    Ok(Vec::new())
}

pub struct Backoff {
    pub base: std::time::Duration,
    pub cap: std::time::Duration,
}

pub struct SmtpConfig;

pub fn parse_smtp_url(_url: &str, _from: &str) -> Result<SmtpConfig, StoreError> {
    Ok(SmtpConfig)
}

pub async fn run_sender(
    _db: crate::store::Db,
    _smtp: SmtpConfig,
    _backoff: Backoff,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) {
}
