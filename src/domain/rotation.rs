//! Smooth weighted round robin. (STUB: helper fills in.)

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Rotation {
    current: HashMap<String, i64>,
}

impl Rotation {
    /// Orders `eligible` (campaign id, weight) for the next lead: the first index is the
    /// smooth-WRR pick (its state updated), the rest are fallbacks in the order they would
    /// be picked next (state not updated for them).
    pub fn retain(&mut self, _live: impl Fn(&str) -> bool) {
        todo!()
    }

    pub fn next_order(&mut self, _eligible: &[(&str, u32)]) -> Vec<usize> {
        let _ = &self.current;
        todo!()
    }
}
