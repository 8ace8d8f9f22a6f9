//! What a run observed: a latency histogram per phase (HDR, µs, 1 µs..60 s, 3 significant
//! figures), counts of HTTP status classes, transport errors and business outcomes, and a
//! coarser per-second histogram of the main phase for the latency-over-time plot.
//!
//! Rationale: one recorder behind one lock. A record is a few hundred nanoseconds against
//! a request of tens of microseconds or more, so the lock is not what a run measures, and
//! the report needs no merge step.

use hdrhistogram::Histogram;

use crate::client::SendError;
use crate::workload::{Mix, Outcome};

/// Histogram bounds: 1 µs resolution, up to a minute (past any request timeout).
pub const LATENCY_US_MIN: u64 = 1;
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Three significant figures: p99 of 12.345 ms is reported as 12.34x ms, not 12 ms.
const SIGNIFICANT_FIGURES: u8 = 3;
/// The plot needs two figures; it keeps one histogram per second, so this keeps a
/// 600-second run's timeline to a few MiB.
const TIMELINE_SIGNIFICANT_FIGURES: u8 = 2;
/// One timeline bucket per second of the longest run, plus the drain after it.
pub const TIMELINE_SECONDS_MAX: usize = 700;

/// One measured leg of an arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `POST /v1/leads` (direct).
    Lead,
    Ping,
    Post,
    /// A ping that bid and its post, from the ping's start to the post's answer.
    Pair,
    /// A fan-out: one ping to every buyer at once, until the last one answered.
    Fanout,
    /// One buyer's ping within a fan-out, from the same start (the arrival's).
    Call,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Lead => "direct",
            Phase::Ping => "ping",
            Phase::Post => "post",
            Phase::Pair => "ping+post",
            Phase::Fanout => "fanout",
            Phase::Call => "call",
        }
    }

    /// The phases a mix records. The first is the arrival as a whole but for ping+post,
    /// whose ping comes first (scripts read `phases[0]`).
    pub fn of(mix: Mix) -> &'static [Phase] {
        match mix {
            Mix::Direct => &[Phase::Lead],
            Mix::Ping => &[Phase::Ping],
            Mix::PingPost => &[Phase::Ping, Phase::Post, Phase::Pair],
            Mix::Fanout => &[Phase::Fanout, Phase::Call],
        }
    }

    /// The phase plotted over time: the arrival as a whole.
    pub fn plotted(mix: Mix) -> Phase {
        match mix {
            Mix::Direct => Phase::Lead,
            Mix::Ping => Phase::Ping,
            Mix::PingPost => Phase::Pair,
            Mix::Fanout => Phase::Fanout,
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Http { status: u16, outcome: Outcome },
    Failed(SendError),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// 1xx/3xx: never expected, counted so nothing vanishes.
    pub other: u64,
    pub transport: u64,
    pub timeout: u64,
}

impl StatusCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.client_error + self.server_error + self.other + self.transport + self.timeout
    }

    pub fn errors(&self) -> u64 {
        self.total() - self.ok
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    pub sold: u64,
    pub rejected: u64,
    pub bid: u64,
    pub no_bid: u64,
    pub other: u64,
    pub none: u64,
}

pub struct PhaseStats {
    pub phase: Phase,
    pub latency_us: Histogram<u64>,
    pub statuses: StatusCounts,
    pub outcomes: OutcomeCounts,
}

pub struct Recorder {
    pub phases: Vec<PhaseStats>,
    /// The phase whose latency `timeline` follows.
    plotted: Phase,
    /// Per second of the measured window, the latency of the plotted phase.
    pub timeline: Vec<Histogram<u64>>,
    /// Open loop only: how late each arrival left against its schedule (the generator's
    /// own lag, already inside every open-loop latency).
    pub send_lag_us: Histogram<u64>,
    /// Open loop only: arrivals not sent because the outstanding bound was reached.
    pub dropped: u64,
}

pub fn latency_histogram(figures: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, figures) {
        Ok(histogram) => histogram,
        // Constant, valid bounds: this cannot fail, and a test builds one.
        Err(error) => unreachable!("histogram bounds are constant and valid: {error}"),
    }
}

impl Recorder {
    pub fn new(mix: Mix) -> Recorder {
        let phases = Phase::of(mix)
            .iter()
            .map(|&phase| PhaseStats {
                phase,
                latency_us: latency_histogram(SIGNIFICANT_FIGURES),
                statuses: StatusCounts::default(),
                outcomes: OutcomeCounts::default(),
            })
            .collect();
        Recorder {
            phases,
            plotted: Phase::plotted(mix),
            timeline: Vec::new(),
            send_lag_us: latency_histogram(SIGNIFICANT_FIGURES),
            dropped: 0,
        }
    }

    /// Records one request. `latency_us` is ignored for transport errors (there was no
    /// answer to time); a timeout is recorded at the time waited, so it shows in the tail.
    /// `second` is the measured-window second the arrival belongs to, for the plot.
    pub fn record(&mut self, phase: Phase, ending: Ending, latency_us: u64, second: u64) {
        let plotted = self.plotted == phase;
        let Some(stats) = self.phases.iter_mut().find(|p| p.phase == phase) else {
            debug_assert!(false, "phase {phase:?} not recorded by this mix");
            return;
        };
        let timed = match ending {
            Ending::Http { status, outcome } => {
                count_status(&mut stats.statuses, status);
                count_outcome(&mut stats.outcomes, outcome);
                true
            }
            Ending::Failed(SendError::Timeout) => {
                stats.statuses.timeout += 1;
                true
            }
            Ending::Failed(SendError::Transport) => {
                stats.statuses.transport += 1;
                false
            }
        };
        if !timed {
            return;
        }
        let latency_us = latency_us.max(LATENCY_US_MIN);
        stats.latency_us.saturating_record(latency_us);
        if plotted {
            let index = usize::try_from(second).unwrap_or(usize::MAX).min(TIMELINE_SECONDS_MAX - 1);
            while self.timeline.len() <= index {
                self.timeline.push(latency_histogram(TIMELINE_SIGNIFICANT_FIGURES));
            }
            self.timeline[index].saturating_record(latency_us);
        }
    }
}

fn count_status(counts: &mut StatusCounts, status: u16) {
    match status {
        200..=299 => counts.ok += 1,
        400..=499 => counts.client_error += 1,
        500..=599 => counts.server_error += 1,
        _ => counts.other += 1,
    }
}

fn count_outcome(counts: &mut OutcomeCounts, outcome: Outcome) {
    match outcome {
        Outcome::Sold => counts.sold += 1,
        Outcome::Rejected => counts.rejected += 1,
        Outcome::Bid => counts.bid += 1,
        Outcome::NoBid => counts.no_bid += 1,
        Outcome::Other => counts.other += 1,
        Outcome::None => counts.none += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, outcome: Outcome) -> Ending {
        Ending::Http { status, outcome }
    }

    #[test]
    fn statuses_and_outcomes_are_counted_per_phase() {
        let mut r = Recorder::new(Mix::PingPost);
        r.record(Phase::Ping, http(200, Outcome::Bid), 100, 0);
        r.record(Phase::Ping, http(200, Outcome::NoBid), 100, 0);
        r.record(Phase::Post, http(200, Outcome::Sold), 200, 0);
        r.record(Phase::Post, http(422, Outcome::None), 50, 0);
        r.record(Phase::Post, http(503, Outcome::None), 50, 0);
        r.record(Phase::Post, Ending::Failed(SendError::Transport), 0, 0);
        r.record(Phase::Pair, http(200, Outcome::Sold), 300, 0);
        let ping = &r.phases[0];
        assert_eq!(ping.statuses.ok, 2);
        assert_eq!((ping.outcomes.bid, ping.outcomes.no_bid), (1, 1));
        let post = &r.phases[1];
        assert_eq!(
            post.statuses,
            StatusCounts { ok: 1, client_error: 1, server_error: 1, transport: 1, ..Default::default() }
        );
        assert_eq!(post.statuses.errors(), 3);
        assert_eq!(post.latency_us.len(), 3, "the transport error has no latency");
        assert_eq!(r.timeline.len(), 1, "only the pair is plotted");
        assert_eq!(r.timeline[0].len(), 1);
    }

    #[test]
    fn a_fanout_reports_itself_first_and_plots_itself() {
        let mut r = Recorder::new(Mix::Fanout);
        assert_eq!(r.phases.iter().map(|p| p.phase.name()).collect::<Vec<_>>(), ["fanout", "call"]);
        r.record(Phase::Call, http(200, Outcome::Bid), 5_100, 0);
        r.record(Phase::Call, http(200, Outcome::Bid), 5_300, 0);
        assert!(r.timeline.is_empty(), "the calls are not plotted");
        r.record(Phase::Fanout, http(200, Outcome::Bid), 5_300, 0);
        assert_eq!((r.phases[0].latency_us.len(), r.phases[1].latency_us.len()), (1, 2));
        assert_eq!(r.timeline.len(), 1);
    }

    #[test]
    fn timeouts_count_as_errors_and_show_in_the_tail() {
        let mut r = Recorder::new(Mix::Direct);
        r.record(Phase::Lead, http(200, Outcome::Sold), 1_000, 0);
        r.record(Phase::Lead, Ending::Failed(SendError::Timeout), 10_000_000, 3);
        let lead = &r.phases[0];
        assert_eq!(lead.statuses.timeout, 1);
        assert!(lead.latency_us.max() >= 9_990_000);
        assert_eq!(r.timeline.len(), 4, "a bucket per second up to the last one used");
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut r = Recorder::new(Mix::Ping);
        r.record(Phase::Ping, http(200, Outcome::Bid), 0, 0);
        r.record(Phase::Ping, http(200, Outcome::Bid), 3_600_000_000, 10_000);
        assert_eq!(r.phases[0].latency_us.len(), 2);
        assert_eq!(r.timeline.len(), TIMELINE_SECONDS_MAX);
    }
}
