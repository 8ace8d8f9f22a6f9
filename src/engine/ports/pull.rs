//! The pull log port: leads sold to pull buyers, waiting for their fetch; how many one
//! fetch may take; the queues as a checkpoint keeps them.

use async_trait::async_trait;

use super::ledger::Location;
use super::Unavailable;

/// At most this many leads per fetch: a page a buyer's CRM can take in one request.
pub const PULL_LIMIT_MAX: usize = 1_000;

/// Leads sold to pull buyers, waiting for their fetch: positions are per buyer, and a
/// fetch's cursor acknowledges everything up to it. `pull::JournaledPull` on one node (the
/// journal holds the leads), `redis_pull` on several (positions global per buyer).
#[async_trait]
pub trait PullLog: Send + Sync + 'static {
    /// Appends a sold lead, durably; answers its position.
    async fn push(&self, buyer_id: &str, sale_id: &str, lead: serde_json::Value) -> Result<u64, Unavailable>;
    /// Forgets everything up to `after` (the buyer has taken it) and answers what follows.
    async fn fetch(
        &self,
        buyer_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, Unavailable>;
    /// The newest position handed out to the buyer (0: none yet): no cursor goes past it.
    async fn last_position(&self, buyer_id: &str) -> Result<u64, Unavailable>;
    /// A lead journaled with its sale at `at`, read back at start (embedded only).
    fn restore_lead(&self, _buyer_id: &str, _position: u64, _at: Location) {}
    /// A cursor a fetch journaled, read back at start (embedded only).
    fn restore_acknowledged(&self, _buyer_id: &str, _through: u64) {}
    /// The queues, for a checkpoint (embedded only: Redis keeps its own).
    fn export(&self) -> Vec<QueueState> {
        Vec::new()
    }
    fn import(&self, _states: Vec<QueueState>) {}
}

/// One buyer's queue as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    pub buyer_id: String,
    pub next: u64,
    pub acknowledged: u64,
    pub waiting: Places,
}

/// Waiting leads' positions and places as one hex string of 24-byte entries (position,
/// segment, offset; little endian): millions of them when a buyer does not fetch, read
/// back without a JSON object each.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Places(String);

const PLACE_BYTES: usize = 24;

impl Places {
    pub fn pack<'a>(places: impl IntoIterator<Item = (&'a u64, &'a Location)>) -> Places {
        let mut bytes = Vec::new();
        for (position, location) in places {
            bytes.extend_from_slice(&position.to_le_bytes());
            bytes.extend_from_slice(&location.segment.to_le_bytes());
            bytes.extend_from_slice(&location.offset.to_le_bytes());
        }
        Places(hex::encode(bytes))
    }

    pub fn unpack(&self) -> Vec<(u64, Location)> {
        let bytes = hex::decode(&self.0).unwrap_or_default();
        let word = |entry: &[u8], at: usize| {
            let mut le = [0u8; 8];
            le.copy_from_slice(&entry[at..at + 8]);
            u64::from_le_bytes(le)
        };
        bytes
            .chunks_exact(PLACE_BYTES)
            .map(|entry| (word(entry, 0), Location { segment: word(entry, 8), offset: word(entry, 16) }))
            .collect()
    }
}
