//! Checkpoints of the embedded node (DESIGN §14): a start loads the last checkpoint and
//! replays only the journal after it, so restart time does not grow with history.
//!
//! A checkpoint covers whole segments. Whenever the journal seals one, a router of its own
//! (it serves nothing) loads the previous checkpoint, replays the segments sealed since
//! through the same `Router::replay` and `restore` a start uses, and its state is written
//! as the next checkpoint: consistent by construction, taken without pausing the live
//! router, and never a second copy of the replay rules.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::changes::AdminChange;
use crate::domain::geo::PostalTable;
use crate::domain::market::Market;
use crate::engine::{AccountsSaid, Deployment, Router, RouterState};
use crate::retention::Retention;
use crate::store;
use crate::store::checkpoint::{self, CheckpointError};
use crate::store::journal::frame::{Decode, Record};
use crate::store::journal::retention::CheckpointFacts;
use crate::store::journal::{InternalRecord, Journal, JournalError, Location, Resume};
use crate::store::EventLog;

/// Ledger events replayed at a time (read from disk, never all at once).
const REPLAY_CHUNK: usize = 4_096;

#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first segment the checkpoint does not cover: a start replays from there.
    pub segment: u64,
    /// The last ledger sequence it covers.
    pub last_sequence: u64,
    pub written_at: DateTime<Utc>,
    /// Every admin change so far (to the market, and the acts recorded beside them),
    /// oldest first, with who made it and when.
    pub config_changes: Vec<AdminChange>,
    /// When the newest event of each covered segment still on disk was journaled (the
    /// checkpoint's time for a segment without events): what retention dates them by.
    #[serde(default)]
    pub segment_times: Vec<(u64, DateTime<Utc>)>,
    /// The longest return window any campaign has had: sales in segments younger than it
    /// may still be returned.
    #[serde(default)]
    pub longest_return_window_days: u32,
    pub state: RouterState,
}

impl Checkpoint {
    pub fn resume(&self) -> Resume {
        Resume { segment: self.segment, last_sequence: self.last_sequence }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Engine(String),
}

/// Where a replay starts and ends.
pub struct Span {
    /// Events with a sequence above this are replayed...
    pub after_sequence: u64,
    /// ...up to this one (None: to the end).
    pub through_sequence: Option<u64>,
    /// Internal records of the segments numbered `from_segment..to_segment` are restored.
    pub from_segment: u64,
    pub to_segment: u64,
}

/// Replays a span of the journal over `router`: ledger events first, then the internal
/// records (after `awaiting`, carried from before the span). Notes accounts and admin
/// changes on the way; answers the records still waiting for their fact.
pub async fn replay_span(
    router: &Router,
    journal: &Journal,
    span: &Span,
    said: &mut AccountsSaid,
    awaiting: Vec<(Location, InternalRecord)>,
    config_changes: &mut Vec<AdminChange>,
) -> Result<Vec<(Location, InternalRecord)>, ReplayError> {
    let through = span.through_sequence.unwrap_or(u64::MAX);
    let mut after = span.after_sequence;
    let mut sold = std::collections::HashSet::new();
    while after < through {
        let mut chunk = journal.read_after(after, REPLAY_CHUNK).map_err(|e| ReplayError::Engine(e.to_string()))?;
        chunk.retain(|event| event.sequence <= through);
        let Some(last) = chunk.last() else { break };
        after = last.sequence;
        for event in &chunk {
            said.note(event);
            if let crate::domain::ledger::Event::SaleSettled(sale) = &event.event {
                sold.insert(sale.sale_id.clone());
            }
        }
        router.replay(&chunk).await.map_err(|e| ReplayError::Engine(e.to_string()))?;
        // A long replay must not hold a runtime worker for its whole length.
        tokio::task::yield_now().await;
    }
    let mut restoring = router.restoring().knowing_sales(sold);
    for (location, record) in awaiting {
        restoring.take_at(location, record);
    }
    journal.scan_segments(span.from_segment, span.to_segment, Decode::InternalLean, |location, record| {
        if let Record::Internal(record) = record {
            config_changes.extend(record.admin_change());
            restoring.take_at(location, record);
        }
        Ok(())
    })?;
    Ok(restoring.finish())
}

/// The checkpoint in the journal's dir, if any.
pub fn load(journal_dir: &std::path::Path) -> Result<Option<Checkpoint>, CheckpointError> {
    checkpoint::read(journal_dir)
}

/// Writes a checkpoint after sealed segments until `stopped`, at most one per `every`
/// (its cost is the size of the state; a busy node seals a segment every few seconds).
///
/// Runs on a thread and runtime of its own: loading, replaying and encoding a checkpoint
/// takes seconds of CPU that must not hold the serving runtime's workers.
pub fn spawn(
    journal: Arc<Journal>,
    live: Arc<Router>,
    postal: &'static PostalTable,
    clock: Arc<dyn Clock>,
    every: std::time::Duration,
    retention: Arc<Retention>,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return tracing::error!(%error, "no runtime for checkpoints; none are written"),
        };
        runtime.block_on(run(journal, live, postal, clock, every, retention, stopped));
    })
}

/// How often retention looks again when no segment is sealed (segments age by themselves).
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);

async fn run(
    journal: Arc<Journal>,
    live: Arc<Router>,
    postal: &'static PostalTable,
    clock: Arc<dyn Clock>,
    every: std::time::Duration,
    retention: Arc<Retention>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut sealed = journal.sealed();
    let mut hourly = tokio::time::interval(RETENTION_EVERY);
    hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let started = tokio::select! {
            changed = sealed.changed() => {
                if changed.is_err() {
                    return;
                }
                let started = std::time::Instant::now();
                let through = *sealed.borrow_and_update() + 1;
                match write_through(&journal, &live, postal, &clock, through).await {
                    Ok(Some(bytes)) => {
                        tracing::info!(
                            segment = through,
                            bytes,
                            ms = started.elapsed().as_millis() as u64,
                            "checkpoint written"
                        )
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "checkpoint not written; the next sealed segment tries again"),
                }
                started
            }
            _ = hourly.tick() => std::time::Instant::now(),
            _ = stopped.changed() => return,
        };
        if let Err(error) = retention.compact(false) {
            tracing::error!(%error, "retention could not compact the journal");
        }
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(started.elapsed())) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Writes a checkpoint covering every segment before `segment`; None when the last one
/// already does.
pub async fn write_through(
    journal: &Arc<Journal>,
    live: &Router,
    postal: &'static PostalTable,
    clock: &Arc<dyn Clock>,
    segment: u64,
) -> Result<Option<u64>, String> {
    let dir = journal.dir().to_path_buf();
    let previous = match load(&dir) {
        Ok(previous) => previous,
        // Start over from the first segment (it checks that the history is all there).
        Err(error) => {
            tracing::warn!(%error, "the last checkpoint does not check out; building one from the whole journal");
            None
        }
    };
    if previous.as_ref().is_some_and(|p| p.segment >= segment) {
        return Ok(None);
    }
    let through = journal.segment_start(segment).ok_or(format!("segment {segment} is not in the journal"))? - 1;
    let market = Market::build(live.market().config().clone(), postal).map_err(|e| e.to_string())?;
    let shadow = Router::new(
        market,
        postal,
        Arc::clone(clock),
        store::embedded(Arc::clone(journal) as _, Arc::clone(clock)),
        // It only replays: it never calls a buyer (and builds no HTTP client every 10 s).
        Deployment::alone(Arc::new(crate::engine::ports::buyers::NoBuyerCalls)),
    );
    let previous_times = previous.as_ref().map(|p| p.segment_times.clone()).unwrap_or_default();
    let previous_window = previous.as_ref().map_or(0, |p| p.longest_return_window_days);
    let (mut said, awaiting, mut changes, span) = match previous {
        Some(previous) => {
            let span = Span {
                after_sequence: previous.last_sequence,
                through_sequence: Some(through),
                from_segment: previous.segment,
                to_segment: segment,
            };
            let (said, awaiting) = shadow.import_state(previous.state);
            (said, awaiting, previous.config_changes, span)
        }
        None => {
            if journal.segment_start(1) != Some(1) {
                return Err("no checkpoint covers the segments retention removed".into());
            }
            let span =
                Span { after_sequence: 0, through_sequence: Some(through), from_segment: 0, to_segment: segment };
            (AccountsSaid::default(), Vec::new(), Vec::new(), span)
        }
    };
    let awaiting =
        replay_span(&shadow, journal, &span, &mut said, awaiting, &mut changes).await.map_err(|e| e.to_string())?;
    shadow.sweep_records();
    let written_at = clock.now();
    let window = live.market().campaigns().map(|c| c.campaign.return_window_days).max().unwrap_or(0);
    let next = Checkpoint {
        segment,
        last_sequence: through,
        written_at,
        config_changes: changes,
        segment_times: segment_times(journal, previous_times, span.from_segment, segment, written_at),
        longest_return_window_days: window.max(previous_window),
        state: shadow.export_state(said, awaiting),
    };
    let facts = CheckpointFacts {
        checkpoint_segment: next.segment,
        segment_times: next.segment_times.clone(),
        referenced_from: next.state.oldest_segment_referenced(),
        longest_return_window_days: next.longest_return_window_days,
    };
    let write = move || {
        let bytes = checkpoint::write(&dir, &next).map_err(|e| e.to_string())?;
        if let Err(error) = facts.write(&dir) {
            tracing::warn!(%error, "retention facts not written; compaction reads the checkpoint instead");
        }
        Ok(Some(bytes))
    };
    tokio::task::spawn_blocking(write).await.map_err(|e| e.to_string())?
}

/// The times of the segments numbered `from..to` (newly covered), after those of the
/// previous checkpoint still on disk.
fn segment_times(
    journal: &Journal,
    mut times: Vec<(u64, DateTime<Utc>)>,
    from: u64,
    to: u64,
    written_at: DateTime<Utc>,
) -> Vec<(u64, DateTime<Utc>)> {
    let starts = journal.segment_starts();
    let oldest = starts.first().map_or(0, |(number, _)| *number);
    times.retain(|(number, _)| *number >= oldest && *number < from);
    for pair in starts.windows(2) {
        let ((number, first), (_, next_first)) = (pair[0], pair[1]);
        if !(from..to).contains(&number) {
            continue;
        }
        let newest = if next_first > first {
            journal.read_after(next_first - 2, 1).ok().and_then(|events| events.first().map(|e| e.at))
        } else {
            None
        };
        times.push((number, newest.unwrap_or(written_at)));
    }
    times
}
