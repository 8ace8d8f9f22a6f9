//! Recent decision traces, kept for the admin API, bounded in count.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::domain::trace::Trace;

/// How many traces are kept: a day of a busy portal's pings at ~1 kB each stays well
/// under a few hundred MB; older traces are dropped first.
pub const TRACES_MAX: usize = 200_000;

#[derive(Default)]
pub struct Traces {
    by_id: DashMap<String, Arc<Trace>>,
    order: Mutex<VecDeque<String>>,
}

impl Traces {
    pub fn put(&self, trace: Trace) {
        let id = trace.id.clone();
        self.by_id.insert(id.clone(), Arc::new(trace));
        let mut order = self.order.lock();
        order.push_back(id);
        while order.len() > TRACES_MAX {
            if let Some(old) = order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    /// Adds entries to a stored trace (a post continues its ping's trace).
    pub fn get(&self, id: &str) -> Option<Arc<Trace>> {
        self.by_id.get(id).map(|t| Arc::clone(&t))
    }
}
