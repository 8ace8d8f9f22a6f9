//! The `ConfigLog` port on one node: an admin change is journaled (a start rebuilds the
//! market from the config file and these records), then held here until the router has
//! applied it. The list of changes is kept here too, as summaries, from the start's
//! (the checkpoint's and the journal's) on; a change's id is its place in that history
//! (`0-<n>`, n from 1), the same after a restart. `redis_config` is the adapter for
//! several nodes.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::journal::InternalRecord;
use super::{ChangeId, ConfigLog, Ledger, Unavailable};
use crate::clock::Clock;
use crate::domain::changes::{AdminChange, ChangeSummary};

pub struct JournaledConfig {
    journal: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    log: Mutex<Log>,
    announce: watch::Sender<u64>,
}

#[derive(Default)]
struct Log {
    /// Changes published and not yet applied: the router, the only reader, applies each
    /// right after publishing it, so this holds one or two changes at most.
    unapplied: Vec<(ChangeId, AdminChange)>,
    /// Every change, oldest first, as the list shows it (the id of entry i is `0-(i+1)`).
    history: Vec<ChangeSummary>,
}

impl JournaledConfig {
    pub fn new(journal: Arc<dyn Ledger>, clock: Arc<dyn Clock>) -> JournaledConfig {
        JournaledConfig { journal, clock, log: Mutex::new(Log::default()), announce: watch::channel(0).0 }
    }

    /// With the changes made before this start (the checkpoint's, then the journal's),
    /// already applied to the market the router starts with: listed, not applied again.
    pub fn with_history(self, changes: &[AdminChange]) -> JournaledConfig {
        self.log.lock().history = changes.iter().map(AdminChange::summary).collect();
        self
    }
}

#[async_trait]
impl ConfigLog for JournaledConfig {
    async fn publish(&self, change: &AdminChange) -> Result<ChangeId, Unavailable> {
        let at = change.at.unwrap_or_else(|| self.clock.now());
        let record = InternalRecord::ConfigChanged { change: change.change.clone(), at, by: change.by.clone() };
        self.journal.append_internal(record).await.map_err(|error| Unavailable(error.to_string()))?;
        let id = {
            let mut log = self.log.lock();
            log.history.push(AdminChange { at: Some(at), ..change.clone() }.summary());
            let id = ChangeId(0, log.history.len() as u64);
            log.unapplied.push((id, change.clone()));
            id
        };
        self.announce.send_modify(|count| *count += 1);
        Ok(id)
    }

    async fn after(&self, after: ChangeId) -> Result<Vec<(ChangeId, AdminChange)>, Unavailable> {
        Ok(self.log.lock().unapplied.iter().filter(|(id, _)| *id > after).cloned().collect())
    }

    async fn history(
        &self,
        before: Option<ChangeId>,
        limit: usize,
    ) -> Result<Vec<(ChangeId, ChangeSummary)>, Unavailable> {
        let log = self.log.lock();
        // Ids are places: `0-n` is entry n - 1, and an id of another form is before none.
        let end = match before {
            None => log.history.len(),
            Some(ChangeId(0, n)) => usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX).min(log.history.len()),
            Some(_) => 0,
        };
        let start = end.saturating_sub(limit);
        Ok((start..end).rev().map(|i| (ChangeId(0, i as u64 + 1), log.history[i].clone())).collect())
    }

    /// What the router has applied is in its market (and in the journal): forgotten here.
    fn applied(&self, through: ChangeId) {
        self.log.lock().unapplied.retain(|(id, _)| *id > through);
    }

    fn announcements(&self) -> watch::Receiver<u64> {
        self.announce.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::market::ConfigChange;
    use crate::domain::operator::Actor;
    use crate::store::journal::frame::{Decode, Record};
    use crate::store::journal::Journal;

    fn change(id: &str) -> AdminChange {
        let at = "2026-11-25T10:00:00Z".parse().unwrap();
        AdminChange::new(ConfigChange::DeleteBuyer(id.to_string()), Actor::AdminToken, at)
    }

    #[tokio::test]
    async fn a_change_is_journaled_before_it_is_published_and_read_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<dyn Ledger> = Arc::new(Journal::open(dir.path()).unwrap().0);
        let log = JournaledConfig::new(Arc::clone(&journal), Arc::new(SystemClock));
        let mut announced = log.announcements();
        let first = log.publish(&change("b1")).await.unwrap();
        let second = log.publish(&change("b2")).await.unwrap();
        assert!(first < second);
        assert!(announced.has_changed().unwrap());
        announced.borrow_and_update();

        let read = log.after(ChangeId::default()).await.unwrap();
        assert_eq!(read, vec![(first, change("b1")), (second, change("b2"))]);
        assert_eq!(log.after(first).await.unwrap(), vec![(second, change("b2"))]);
        assert_eq!(log.after(ChangeId::default()).await.unwrap().len(), 2, "reading forgets nothing");
        log.applied(first);
        let held = log.after(ChangeId::default()).await.unwrap();
        assert_eq!(held, vec![(second, change("b2"))], "applied changes are not held");
        log.applied(second);
        assert!(log.after(ChangeId::default()).await.unwrap().is_empty());

        journal.close().await;
        let mut journaled = Vec::new();
        let (reopened, _) = Journal::open(dir.path()).unwrap();
        reopened
            .scan(Decode::All, |record| {
                if let Record::Internal(internal) = record {
                    journaled.extend(internal.admin_change());
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(journaled, vec![change("b1"), change("b2")], "with who and when");
    }

    #[tokio::test]
    async fn the_history_lists_earlier_and_new_changes_newest_first_by_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<dyn Ledger> = Arc::new(Journal::open(dir.path()).unwrap().0);
        let earlier = [change("b1"), change("b2")];
        let log = JournaledConfig::new(Arc::clone(&journal), Arc::new(SystemClock)).with_history(&earlier);
        assert!(log.after(ChangeId::default()).await.unwrap().is_empty(), "earlier changes are applied already");
        let third = log.publish(&change("b3")).await.unwrap();
        assert_eq!(third, ChangeId(0, 3));
        let objects = |page: Vec<(ChangeId, ChangeSummary)>| {
            page.into_iter().map(|(id, shown)| format!("{id} {}", shown.object)).collect::<Vec<_>>()
        };
        assert_eq!(objects(log.history(None, 10).await.unwrap()), ["0-3 buyer b3", "0-2 buyer b2", "0-1 buyer b1"]);
        assert_eq!(objects(log.history(None, 1).await.unwrap()), ["0-3 buyer b3"]);
        assert_eq!(objects(log.history(Some(ChangeId(0, 3)), 1).await.unwrap()), ["0-2 buyer b2"]);
        assert_eq!(objects(log.history(Some(ChangeId(0, 2)), 5).await.unwrap()), ["0-1 buyer b1"]);
        assert!(log.history(Some(ChangeId(0, 1)), 5).await.unwrap().is_empty());
        assert!(log.history(Some(ChangeId(9, 1)), 5).await.unwrap().is_empty());
        assert_eq!(log.history(Some(ChangeId(0, 99)), 1).await.unwrap()[0].0, ChangeId(0, 3));
        assert_eq!(log.history(None, 1).await.unwrap()[0].1.by, Actor::AdminToken);
        journal.close().await;
    }
}
