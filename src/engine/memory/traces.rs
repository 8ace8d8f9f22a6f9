//! Recent decision traces, kept for the admin API, bounded by their total size.
//!
//! Rationale for bounding entries rather than traces: a lead in a market of 10,000
//! campaigns can have hundreds of entries, one with a single campaign one; a count of
//! traces would bound memory only loosely. Oldest traces go first.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::domain::trace::Trace;

/// Entries kept across all traces: at ~160 bytes an entry, about 320 MB at most; at a few
/// dozen entries a decision, the last several hundred thousand decisions.
pub const TRACE_ENTRIES_MAX: usize = 2_000_000;

#[derive(Default)]
pub struct Traces {
    by_id: DashMap<String, Arc<Trace>>,
    /// Trace ids oldest first, with their entry counts, and the sum of those counts.
    order: Mutex<(VecDeque<(String, usize)>, usize)>,
}

impl Traces {
    pub fn put(&self, trace: Trace) {
        let id = trace.id.clone();
        let size = trace.entries.len().max(1);
        self.by_id.insert(id.clone(), Arc::new(trace));
        let mut order = self.order.lock();
        order.0.push_back((id, size));
        order.1 += size;
        while order.1 > TRACE_ENTRIES_MAX {
            let Some((old, old_size)) = order.0.pop_front() else { break };
            order.1 -= old_size;
            self.by_id.remove(&old);
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Trace>> {
        self.by_id.get(id).map(|t| Arc::clone(&t))
    }
}
