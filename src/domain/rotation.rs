//! Smooth weighted round robin. (TEMPORARY local version)

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Rotation {
    current: HashMap<String, i64>,
}

impl Rotation {
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.current.retain(|k, _| live(k));
    }

    pub fn next_order(&mut self, eligible: &[(&str, u32)]) -> Vec<usize> {
        if eligible.is_empty() {
            return Vec::new();
        }
        let total: i64 = eligible.iter().map(|(_, w)| i64::from(*w)).sum();
        for (id, w) in eligible {
            *self.current.entry(id.to_string()).or_default() += i64::from(*w);
        }
        let mut order: Vec<usize> = (0..eligible.len()).collect();
        let value = |s: &Self, i: usize| s.current.get(eligible[i].0).copied().unwrap_or(0);
        order.sort_by(|&a, &b| value(self, b).cmp(&value(self, a)).then(a.cmp(&b)));
        if let Some(v) = self.current.get_mut(eligible[order[0]].0) {
            *v -= total;
        }
        order
    }
}
