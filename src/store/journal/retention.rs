//! Which segments retention may remove (DESIGN §14): the rule, with no I/O.
//!
//! A segment goes only when all of these hold: a checkpoint covers it (a start never needs
//! it), its newest event is older than the retention period and than the longest return
//! window (no return can ask for its sales), no waiting pull lead or pending record points
//! into it, and every registered consumer has acknowledged its last event. Only the oldest
//! segments go, in order: the journal never has a hole, so the stream stays gap-free from
//! its first retained sequence on.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::store::files;

pub const FILE_NAME: &str = "retention";

/// What the last checkpoint says retention needs, written beside it (`<journal
/// dir>/retention`) so that a compaction reads a few kilobytes instead of the checkpoint.
/// It is derived: when it is missing or stale, the checkpoint still holds the truth, and a
/// stale one only holds more back (an older checkpoint covers less and references more).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFacts {
    /// The first segment the checkpoint does not cover.
    pub checkpoint_segment: u64,
    pub segment_times: Vec<(u64, DateTime<Utc>)>,
    /// The oldest segment a waiting pull lead or a pending record points into.
    pub referenced_from: Option<u64>,
    pub longest_return_window_days: u32,
}

impl CheckpointFacts {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| std::io::Error::other(e.to_string()))?;
        files::write_atomic(&dir.join(FILE_NAME), &bytes)
    }

    /// The facts in `dir`; None when missing or unreadable (the caller falls back to the
    /// checkpoint).
    pub fn read(dir: &Path) -> Option<CheckpointFacts> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE_NAME)).ok()?).ok()
    }

    /// The rule's view of the journal's segments (number, first sequence), oldest first.
    pub fn segments(&self, starts: &[(u64, u64)]) -> Vec<SegmentFacts> {
        starts
            .iter()
            .map(|&(number, first_sequence)| SegmentFacts {
                number,
                first_sequence,
                newest_at: self.segment_times.iter().find(|(n, _)| *n == number).map(|(_, at)| *at),
            })
            .collect()
    }
}

/// What the rule needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub number: u64,
    pub first_sequence: u64,
    /// When its newest event was journaled (None: not known yet, so it stays).
    pub newest_at: Option<DateTime<Utc>>,
}

/// What holds segments back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holds {
    /// The first segment the checkpoint does not cover (0: no checkpoint).
    pub checkpoint_segment: u64,
    /// The oldest segment a waiting pull lead or a pending record points into.
    pub referenced_from: Option<u64>,
    /// Registered consumers and the sequence each has acknowledged.
    pub consumers: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub retain: Duration,
    /// The longest return window of any campaign (and any the checkpoint remembers).
    pub return_window: Duration,
}

/// Why the oldest segment that stays, stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Kept {
    /// The segment being written always stays.
    Active {
        segment: u64,
    },
    NotCheckpointed {
        segment: u64,
    },
    TooRecent {
        segment: u64,
        newest_at: Option<DateTime<Utc>>,
        removable_after: Option<DateTime<Utc>>,
    },
    PullLeadsWaiting {
        segment: u64,
    },
    ConsumerBehind {
        segment: u64,
        consumer: String,
        acknowledged: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Segment numbers to remove, oldest first (a prefix of the journal).
    pub remove: Vec<u64>,
    /// The first sequence the journal still holds afterwards.
    pub first_retained_sequence: u64,
    pub kept: Option<Kept>,
}

/// Plans a compaction of `segments` (the journal's, oldest first) at `now`.
pub fn plan(segments: &[SegmentFacts], now: DateTime<Utc>, policy: Policy, holds: &Holds) -> Plan {
    let horizon = now - policy.retain.max(policy.return_window);
    let mut remove = Vec::new();
    let mut kept = None;
    for (n, segment) in segments.iter().enumerate() {
        let Some(next) = segments.get(n + 1) else {
            kept = Some(Kept::Active { segment: segment.number });
            break;
        };
        let last_sequence = next.first_sequence.saturating_sub(1);
        if segment.number >= holds.checkpoint_segment {
            kept = Some(Kept::NotCheckpointed { segment: segment.number });
            break;
        }
        if segment.newest_at.is_none_or(|at| at >= horizon) {
            let removable_after = segment.newest_at.map(|at| at + (now - horizon));
            kept = Some(Kept::TooRecent { segment: segment.number, newest_at: segment.newest_at, removable_after });
            break;
        }
        if holds.referenced_from.is_some_and(|from| from <= segment.number) {
            kept = Some(Kept::PullLeadsWaiting { segment: segment.number });
            break;
        }
        if let Some((consumer, acknowledged)) = holds.consumers.iter().find(|(_, at)| *at < last_sequence) {
            kept = Some(Kept::ConsumerBehind {
                segment: segment.number,
                consumer: consumer.clone(),
                acknowledged: *acknowledged,
            });
            break;
        }
        remove.push(segment.number);
    }
    let first_retained_sequence = segments.get(remove.len()).map_or(1, |s| s.first_sequence);
    Plan { remove, first_retained_sequence, kept }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(n)
    }

    /// Segment n (from 1) starts at sequence 100 * (n - 1) + 1 and was last written on day n.
    fn segments(count: u64) -> Vec<SegmentFacts> {
        (1..=count)
            .map(|n| SegmentFacts { number: n, first_sequence: 100 * (n - 1) + 1, newest_at: Some(day(n as i64)) })
            .collect()
    }

    fn policy(days: i64) -> Policy {
        Policy { retain: Duration::days(days), return_window: Duration::days(7) }
    }

    fn holds(checkpoint_segment: u64) -> Holds {
        Holds { checkpoint_segment, referenced_from: None, consumers: Vec::new() }
    }

    #[test]
    fn old_covered_segments_go_and_the_first_young_one_says_why_it_stays() {
        let plan = plan(&segments(10), day(15), policy(10), &holds(9));
        assert_eq!(plan.remove, [1, 2, 3, 4]);
        assert_eq!(plan.first_retained_sequence, 401);
        assert_eq!(
            plan.kept,
            Some(Kept::TooRecent { segment: 5, newest_at: Some(day(5)), removable_after: Some(day(15)) })
        );
    }

    #[test]
    fn the_checkpoint_the_pull_queues_and_each_consumer_hold_segments() {
        let all = segments(10);
        let at = day(100);
        assert_eq!(plan(&all, at, policy(10), &holds(3)).kept, Some(Kept::NotCheckpointed { segment: 3 }));
        let pulled = Holds { referenced_from: Some(2), ..holds(9) };
        assert_eq!(plan(&all, at, policy(10), &pulled).remove, [1]);
        assert_eq!(plan(&all, at, policy(10), &pulled).kept, Some(Kept::PullLeadsWaiting { segment: 2 }));
        // Segment 3 ends at 300: a consumer at 299 holds it, one at 300 does not.
        let behind = Holds { consumers: vec![("billing".into(), 500), ("warehouse".into(), 299)], ..holds(9) };
        assert_eq!(plan(&all, at, policy(10), &behind).remove, [1, 2]);
        let caught_up = Holds { consumers: vec![("warehouse".into(), 300)], ..holds(9) };
        assert_eq!(plan(&all, at, policy(10), &caught_up).remove, [1, 2, 3]);
        // The active segment never goes, even with a checkpoint past it.
        assert_eq!(plan(&all, at, policy(10), &holds(u64::MAX)).kept, Some(Kept::Active { segment: 10 }));
    }

    #[test]
    fn a_long_return_window_outlasts_a_short_retention() {
        let long = Policy { retain: Duration::days(1), return_window: Duration::days(30) };
        assert_eq!(plan(&segments(10), day(35), long, &holds(9)).remove, [1, 2, 3, 4]);
    }

    proptest! {
        /// Whatever the facts, only a prefix goes, never the active segment, and nothing
        /// any hold protects.
        #[test]
        fn nothing_protected_is_ever_removed(
            ages in proptest::collection::vec(proptest::option::of(0i64..60), 1..30),
            now in 0i64..80,
            retain in 0i64..40,
            checkpoint_segment in 0u64..35,
            referenced_from in proptest::option::of(1u64..35),
            consumer in proptest::option::of(0u64..4_000),
        ) {
            let segments: Vec<SegmentFacts> = ages.iter().enumerate().map(|(i, age)| SegmentFacts {
                number: i as u64 + 1,
                first_sequence: 100 * i as u64 + 1,
                newest_at: age.map(day),
            }).collect();
            let holds = Holds {
                checkpoint_segment,
                referenced_from,
                consumers: consumer.map(|at| ("billing".to_string(), at)).into_iter().collect(),
            };
            let policy = policy(retain);
            let plan = plan(&segments, day(now), policy, &holds);
            prop_assert!(plan.remove.len() < segments.len());
            for (n, number) in plan.remove.iter().enumerate() {
                let segment = segments[n];
                prop_assert_eq!(*number, segment.number);
                prop_assert!(segment.number < checkpoint_segment);
                prop_assert!(segment.newest_at.is_some_and(|at| at < day(now) - Duration::days(retain.max(7))));
                prop_assert!(referenced_from.is_none_or(|from| from > segment.number));
                let last_sequence = segments[n + 1].first_sequence - 1;
                prop_assert!(consumer.is_none_or(|at| at >= last_sequence));
            }
            prop_assert_eq!(plan.first_retained_sequence, segments[plan.remove.len()].first_sequence);
            prop_assert_eq!(plan.kept.is_some(), true);
        }
    }
}
