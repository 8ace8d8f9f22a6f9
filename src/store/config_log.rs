//! The `ConfigLog` port on one node: an admin change is journaled (a start rebuilds the
//! market from the config file and these records), then held here until the router has
//! applied it. `redis_config` is the adapter for several nodes.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::journal::InternalRecord;
use super::{ChangeId, ConfigLog, Ledger, Unavailable};
use crate::clock::Clock;
use crate::domain::market::ConfigChange;

pub struct JournaledConfig {
    journal: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    /// Changes published and not yet applied: the router, the only reader, applies each
    /// right after publishing it, so this holds one or two changes at most.
    unapplied: Mutex<Vec<(ChangeId, ConfigChange)>>,
    announce: watch::Sender<u64>,
}

impl JournaledConfig {
    pub fn new(journal: Arc<dyn Ledger>, clock: Arc<dyn Clock>) -> JournaledConfig {
        JournaledConfig { journal, clock, unapplied: Mutex::new(Vec::new()), announce: watch::channel(0).0 }
    }
}

#[async_trait]
impl ConfigLog for JournaledConfig {
    async fn publish(&self, change: &ConfigChange) -> Result<ChangeId, Unavailable> {
        let record = InternalRecord::ConfigChanged { change: change.clone(), at: self.clock.now() };
        self.journal.append_internal(record).await.map_err(|error| Unavailable(error.to_string()))?;
        let mut unapplied = self.unapplied.lock();
        let mut number = 0;
        self.announce.send_modify(|count| {
            *count += 1;
            number = *count;
        });
        let id = ChangeId(0, number);
        unapplied.push((id, change.clone()));
        Ok(id)
    }

    async fn after(&self, after: ChangeId) -> Result<Vec<(ChangeId, ConfigChange)>, Unavailable> {
        Ok(self.unapplied.lock().iter().filter(|(id, _)| *id > after).cloned().collect())
    }

    /// What the router has applied is in its market (and in the journal): forgotten here.
    fn applied(&self, through: ChangeId) {
        self.unapplied.lock().retain(|(id, _)| *id > through);
    }

    fn announcements(&self) -> watch::Receiver<u64> {
        self.announce.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::journal::frame::{Decode, Record};
    use crate::store::journal::Journal;

    fn change(id: &str) -> ConfigChange {
        ConfigChange::DeleteBuyer(id.to_string())
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
                if let Record::Internal(InternalRecord::ConfigChanged { change, .. }) = record {
                    journaled.push(change);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(journaled, vec![change("b1"), change("b2")]);
    }
}
