//! Retention of the embedded journal (DESIGN §14): `--retain-days`, run after every
//! checkpoint and hourly by a serving node, on demand by `POST /admin/v1/journal/compact`,
//! and by `leadrouter journal compact` on a data dir no node is serving.
//!
//! The rule is `store::journal::retention::plan`; this module gathers its facts (the
//! segments, what the last checkpoint covers and references, the registered consumers)
//! and removes what it allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::checkpoints::{self, Checkpoint};
use crate::clock::Clock;
use crate::store::files;
use crate::store::journal::consumers::{self, ConsumerError, Consumers, Position};
use crate::store::journal::retention::{self, CheckpointFacts, Holds, Kept, Policy};
use crate::store::journal::{segments, Journal};

pub const DEFAULT_RETAIN_DAYS: u32 = 400;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("journal {path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Checkpoint(String),
    #[error(transparent)]
    Consumers(#[from] ConsumerError),
}

/// What one compaction did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// None: retention is off (`--retain-days 0`).
    pub retain_days: Option<u32>,
    pub dry_run: bool,
    pub removed_segments: Vec<u64>,
    pub removed_bytes: u64,
    pub first_retained_sequence: u64,
    /// Why the oldest remaining segment stays.
    pub kept: Option<Kept>,
}

/// A serving node's retention: its journal, its consumers, its clock.
pub struct Retention {
    journal: Arc<Journal>,
    consumers: Arc<Consumers>,
    clock: Arc<dyn Clock>,
    retain_days: Option<u32>,
}

impl Retention {
    pub fn new(
        journal: Arc<Journal>,
        consumers: Arc<Consumers>,
        clock: Arc<dyn Clock>,
        retain_days: Option<u32>,
    ) -> Retention {
        Retention { journal, consumers, clock, retain_days }
    }

    pub fn consumers(&self) -> &Arc<Consumers> {
        &self.consumers
    }

    /// Removes what retention allows now. Blocking file I/O: call it off the runtime.
    pub fn compact(&self, dry_run: bool) -> Result<Report, RetentionError> {
        let dir = self.journal.dir();
        let starts = self.journal.segment_starts();
        let positions = self.consumers.list();
        let mut report = plan(dir, &starts, &positions, self.clock.now(), self.retain_days, dry_run)?;
        if !dry_run {
            if let Some(&last) = report.removed_segments.last() {
                let (_, bytes) = self.journal.remove_before(last + 1).map_err(|e| io(dir, e))?;
                report.removed_bytes = bytes;
                log(&report);
            }
        }
        Ok(report)
    }
}

/// Compacts the journal of a data dir no node is serving.
pub fn compact_offline(
    data_dir: &Path,
    now: DateTime<Utc>,
    retain_days: Option<u32>,
    dry_run: bool,
) -> Result<Report, RetentionError> {
    let dir = data_dir.join("journal");
    let listed = segments::list(&dir).map_err(|e| io(&dir, e))?;
    let starts: Vec<(u64, u64)> = listed.iter().map(|s| (s.number, s.first_sequence)).collect();
    let positions = consumers::read(&dir)?;
    let mut report = plan(&dir, &starts, &positions, now, retain_days, dry_run)?;
    if !dry_run && !report.removed_segments.is_empty() {
        let mut bytes = 0;
        for segment in listed.iter().take(report.removed_segments.len()) {
            bytes += segments::remove(segment).map_err(|e| io(&dir, e))?;
        }
        files::sync_dir(&dir).map_err(|e| io(&dir, e))?;
        report.removed_bytes = bytes;
        log(&report);
    }
    Ok(report)
}

fn plan(
    dir: &Path,
    starts: &[(u64, u64)],
    positions: &BTreeMap<String, Position>,
    now: DateTime<Utc>,
    retain_days: Option<u32>,
    dry_run: bool,
) -> Result<Report, RetentionError> {
    let first_retained_sequence = starts.first().map_or(1, |(_, first)| *first);
    let Some(days) = retain_days else {
        return Ok(Report {
            retain_days,
            dry_run,
            removed_segments: Vec::new(),
            removed_bytes: 0,
            first_retained_sequence,
            kept: None,
        });
    };
    let facts = match CheckpointFacts::read(dir) {
        Some(facts) => facts,
        None => facts_of_checkpoint(dir)?,
    };
    let holds = Holds {
        checkpoint_segment: facts.checkpoint_segment,
        referenced_from: facts.referenced_from,
        consumers: positions.iter().map(|(name, at)| (name.clone(), at.sequence)).collect(),
    };
    let policy = Policy {
        retain: Duration::days(i64::from(days)),
        // A day past the window: the router keeps sales an hour past it, and clocks drift.
        return_window: Duration::days(i64::from(facts.longest_return_window_days) + 1),
    };
    let plan = retention::plan(&facts.segments(starts), now, policy, &holds);
    Ok(Report {
        retain_days,
        dry_run,
        removed_segments: plan.remove,
        removed_bytes: 0,
        first_retained_sequence: plan.first_retained_sequence,
        kept: plan.kept,
    })
}

/// The facts from the checkpoint itself (its small summary is missing): slow for a big
/// checkpoint, and only needed after a crash between the two writes.
fn facts_of_checkpoint(dir: &Path) -> Result<CheckpointFacts, RetentionError> {
    let checkpoint: Option<Checkpoint> =
        checkpoints::load(dir).map_err(|e| RetentionError::Checkpoint(e.to_string()))?;
    Ok(match checkpoint {
        Some(checkpoint) => CheckpointFacts {
            checkpoint_segment: checkpoint.segment,
            referenced_from: checkpoint.state.oldest_segment_referenced(),
            longest_return_window_days: checkpoint.longest_return_window_days,
            segment_times: checkpoint.segment_times,
        },
        None => CheckpointFacts::default(),
    })
}

fn log(report: &Report) {
    tracing::info!(
        segments = report.removed_segments.len(),
        bytes = report.removed_bytes,
        first_retained_sequence = report.first_retained_sequence,
        "retention removed old journal segments"
    );
}

fn io(dir: &Path, error: std::io::Error) -> RetentionError {
    RetentionError::Io { path: dir.display().to_string(), message: error.to_string() }
}
