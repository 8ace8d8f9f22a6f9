//! The report of a run: one summary value, printed as a table, written as JSON, and
//! plotted. Milliseconds are printed from integer microseconds (`12.345`), so the table
//! never shows float noise.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::record::{OutcomeCounts, Recorder, StatusCounts};

/// Quantiles in the table, in order.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)];

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    #[serde(rename = "p99.9_ms")]
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// The same quantiles in integer µs, as recorded: what the table prints.
    #[serde(skip)]
    pub us: [u64; 5],
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let mut us = [0u64; 5];
        if !histogram.is_empty() {
            for (slot, (_, q)) in us.iter_mut().zip(QUANTILES) {
                *slot = histogram.value_at_quantile(q);
            }
            us[4] = histogram.max();
        }
        let ms = |v: u64| v as f64 / 1_000.0;
        Latency {
            p50_ms: ms(us[0]),
            p90_ms: ms(us[1]),
            p99_ms: ms(us[2]),
            p999_ms: ms(us[3]),
            max_ms: ms(us[4]),
            mean_ms: histogram.mean().round() / 1_000.0,
            us,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub name: &'static str,
    pub requests: u64,
    pub throughput_per_s: f64,
    pub latency: Latency,
    pub errors: u64,
    pub statuses: StatusCounts,
    pub outcomes: OutcomeCounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    pub second: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// How the run was driven, as the user asked for it.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub target: String,
    pub mix: &'static str,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<u64>,
    pub connections: usize,
    pub warmup_s: f64,
    /// The measured window: from the end of the warmup until sending stopped or the last
    /// measured answer came, whichever is later.
    pub duration_s: f64,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: RunInfo,
    pub phases: Vec<PhaseSummary>,
    /// Open loop: arrivals not sent because too many were outstanding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Open loop: how late arrivals left against their schedule (included in latencies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Latency>,
    pub timeline: Vec<TimelinePoint>,
}

impl Summary {
    pub fn new(run: RunInfo, recorder: &Recorder, open_loop: bool) -> Summary {
        let seconds = run.duration_s.max(f64::MIN_POSITIVE);
        let phases = recorder
            .phases
            .iter()
            .map(|p| {
                let requests = p.statuses.total();
                PhaseSummary {
                    name: p.phase.name(),
                    requests,
                    throughput_per_s: (requests as f64 / seconds * 10.0).round() / 10.0,
                    latency: Latency::of(&p.latency_us),
                    errors: p.statuses.errors(),
                    statuses: p.statuses,
                    outcomes: p.outcomes,
                }
            })
            .collect();
        let timeline = recorder
            .timeline
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(second, h)| {
                let latency = Latency::of(h);
                TimelinePoint {
                    second: second as u64,
                    requests: h.len(),
                    p50_ms: latency.p50_ms,
                    p99_ms: latency.p99_ms,
                }
            })
            .collect();
        Summary {
            run,
            phases,
            dropped: open_loop.then_some(recorder.dropped),
            send_lag: open_loop.then(|| Latency::of(&recorder.send_lag_us)),
            timeline,
        }
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let run = &self.run;
        let mut out = String::new();
        let load = match (run.concurrency, run.rate_per_s) {
            (Some(c), _) => format!("closed loop, concurrency {c}"),
            (_, Some(r)) => format!("open loop, {r} req/s, up to {} connections", run.connections),
            _ => String::new(),
        };
        let _ = writeln!(out, "target {}  mix {}  {load}  threads {}", run.target, run.mix, run.threads);
        let _ = writeln!(out, "measured {:.3} s after {:.3} s warmup", run.duration_s, run.warmup_s);
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "phase", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        for p in &self.phases {
            let [p50, p90, p99, p999, max] = p.latency.us.map(format_ms);
            let _ = writeln!(
                out,
                "{:<10} {:>9} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                p.name, p.requests, p.throughput_per_s, p50, p90, p99, p999, max, p.errors
            );
        }
        for p in &self.phases {
            let s = &p.statuses;
            let o = &p.outcomes;
            let _ = writeln!(
                out,
                "{:<10} status 2xx {} 4xx {} 5xx {} other {} transport {} timeout {} | outcome sold {} rejected {} bid {} no_bid {} other {} none {}",
                p.name, s.ok, s.client_error, s.server_error, s.other, s.transport, s.timeout,
                o.sold, o.rejected, o.bid, o.no_bid, o.other, o.none
            );
        }
        if let (Some(dropped), Some(lag)) = (self.dropped, &self.send_lag) {
            let _ = writeln!(
                out,
                "open loop: dropped {dropped} (outstanding bound), send lag p50 {} p99 {} max {} ms (inside the latencies)",
                format_ms(lag.us[0]),
                format_ms(lag.us[2]),
                format_ms(lag.us[4])
            );
        }
        out
    }
}

/// `12_345` µs → `"12.345"` (ms, three decimals, integer arithmetic).
pub fn format_ms(us: u64) -> String {
    format!("{}.{:03}", us / 1_000, us % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Ending, Phase};
    use crate::workload::{Mix, Outcome};

    #[test]
    fn milliseconds_print_with_three_exact_decimals() {
        assert_eq!(format_ms(0), "0.000");
        assert_eq!(format_ms(7), "0.007");
        assert_eq!(format_ms(12_345), "12.345");
        assert_eq!(format_ms(60_000_000), "60000.000");
    }

    fn run_info() -> RunInfo {
        RunInfo {
            target: "http://127.0.0.1:1".into(),
            mix: "direct",
            mode: "closed",
            concurrency: Some(2),
            rate_per_s: None,
            connections: 2,
            warmup_s: 0.0,
            duration_s: 2.0,
            threads: 1,
        }
    }

    #[test]
    fn the_summary_reports_quantiles_throughput_and_errors() {
        let mut recorder = Recorder::new(Mix::Direct);
        for us in 1..=1_000 {
            recorder.record(Phase::Lead, Ending::Http { status: 200, outcome: Outcome::Sold }, us, us / 600);
        }
        recorder.record(Phase::Lead, Ending::Http { status: 503, outcome: Outcome::None }, 5, 0);
        let summary = Summary::new(run_info(), &recorder, false);
        let lead = &summary.phases[0];
        assert_eq!(lead.requests, 1_001);
        assert_eq!(lead.errors, 1);
        assert_eq!(lead.throughput_per_s, 500.5);
        assert_eq!(lead.outcomes.sold, 1_000);
        assert_eq!(lead.latency.us[4], 1_000, "max is exact");
        assert!((495..=505).contains(&lead.latency.us[0]), "p50 {}", lead.latency.us[0]);
        assert!((989..=991).contains(&lead.latency.us[2]), "p99 {}", lead.latency.us[2]);
        assert_eq!(summary.timeline.len(), 2);
        assert_eq!(summary.timeline.iter().map(|p| p.requests).sum::<u64>(), 1_001);

        let table = summary.table();
        assert!(table.contains("phase"), "{table}");
        let row = table.lines().find(|l| l.starts_with("direct ")).expect("a row for the phase");
        assert!(row.contains(" 1001 ") && row.contains(" 500.5 ") && row.contains(" 1.000 "), "{row}");
        assert!(row.trim_end().ends_with(" 1"), "errors column: {row}");
        assert!(!table.contains("open loop"), "closed loop has no drop line");

        let json = serde_json::to_value(&summary).expect("serializable");
        assert_eq!(json["phases"][0]["requests"], 1_001);
        assert_eq!(json["phases"][0]["latency"]["max_ms"], 1.0);
        assert_eq!(json["phases"][0]["statuses"]["5xx"], 1);
        assert!(json.get("dropped").is_none());
    }

    #[test]
    fn an_empty_run_reports_zeros_without_panicking() {
        let recorder = Recorder::new(Mix::PingPost);
        let summary = Summary::new(run_info(), &recorder, true);
        assert_eq!(summary.phases.len(), 3);
        assert!(summary.phases.iter().all(|p| p.requests == 0 && p.latency.us == [0; 5]));
        assert!(summary.table().contains("dropped 0"));
    }
}
