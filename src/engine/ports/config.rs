//! The config log port: admin changes in one order for every node.

use async_trait::async_trait;

use super::Unavailable;
use crate::domain::changes::{AdminChange, ChangeSummary};

/// A position in the shared log of admin changes (a Redis Stream id, `ms-n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(pub u64, pub u64);

impl ChangeId {
    pub fn parse(text: &str) -> Option<ChangeId> {
        let (ms, n) = text.split_once('-')?;
        Some(ChangeId(ms.parse().ok()?, n.parse().ok()?))
    }
}

impl std::fmt::Display for ChangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Admin changes in one order for every node, each with who made it and when:
/// `redis_config` on several nodes, `config_log::JournaledConfig` on one.
#[async_trait]
pub trait ConfigLog: Send + Sync + 'static {
    /// Appends a change and announces it; answers its position.
    async fn publish(&self, change: &AdminChange) -> Result<ChangeId, Unavailable>;
    /// Every change after `after`, in order.
    async fn after(&self, after: ChangeId) -> Result<Vec<(ChangeId, AdminChange)>, Unavailable>;
    /// At most `limit` changes before `before` (from the newest when `None`), newest
    /// first, as the list of changes shows them: every change ever made, on any node.
    async fn history(
        &self,
        before: Option<ChangeId>,
        limit: usize,
    ) -> Result<Vec<(ChangeId, ChangeSummary)>, Unavailable>;
    /// This node has applied every change through `through`: a log that holds changes only
    /// until they are applied (one node's) may forget them.
    fn applied(&self, _through: ChangeId) {}
    /// Changes (counts up) whenever a change is announced or the subscription reconnects.
    fn announcements(&self) -> tokio::sync::watch::Receiver<u64>;
}
