//! `loadtest run`: drives the load (closed or open loop), records every request, and
//! returns the summary. Every run ends by itself: sending stops at the end of the window
//! (or after `--max-requests`), in-flight requests are bounded by the request timeout, and
//! the drain after the window is bounded again in case a task misbehaves.
//!
//! Several targets (`--target` repeated, e.g. the nodes of one cluster) share the load
//! round-robin per arrival: one counter for the whole run picks the target of each
//! arrival, so every target gets the same number of arrivals (±1) whatever its latency.
//! A closed-loop worker keeps one connection per target; open-loop arrivals take a
//! connection from their target's pool. A ping and its post stay on one target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::client::{Connection, Headers, Pool, SendError, REQUEST_TIMEOUT};
use crate::record::{Ending, Phase, Recorder};
use crate::report::{RunInfo, Summary};
use crate::schedule;
use crate::target::Target;
use crate::workload::{read_answer, LeadShape, Mix, Outcome, PATH_LEADS, PATH_PING, PATH_POST};

/// After a connection fails, a closed-loop worker waits this long before reconnecting, so
/// a dead target costs a few hundred attempts a second, not a spinning core.
const TRANSPORT_BACKOFF: Duration = Duration::from_millis(10);
/// Tasks still running this long after the window (two request timeouts: a ping and its
/// post, plus slack) are abandoned; the run reports what it has.
const DRAIN_MAX: Duration = Duration::from_secs(25);

#[derive(Debug, Clone, Copy)]
pub enum Load {
    Closed { concurrency: usize },
    Open { rate_per_s: u64, connections: usize, outstanding_max: usize },
}

/// One target and what its requests carry (its own `Host`).
#[derive(Clone)]
pub struct Endpoint {
    pub target: Arc<Target>,
    pub headers: Arc<Headers>,
}

impl Endpoint {
    fn connection(&self) -> Connection {
        Connection::new(Arc::clone(&self.target), Arc::clone(&self.headers))
    }
}

pub struct Plan {
    /// At least one; arrivals go to them in turn.
    pub endpoints: Vec<Endpoint>,
    pub mix: Mix,
    pub shape: LeadShape,
    pub load: Load,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub first_id: u64,
    pub threads: usize,
}

/// What every worker or arrival task reads and writes.
struct Shared {
    mix: Mix,
    shape: LeadShape,
    /// How many targets share the load, and the counter that deals arrivals to them.
    targets: usize,
    next_target: AtomicU64,
    /// The ping body is the same for every arrival in a postal code: built once per postal
    /// code, cloned by reference count.
    ping_bodies: Vec<Bytes>,
    /// The counter that deals the postal codes to the arrivals in turn.
    next_zip: AtomicU64,
    recorder: Mutex<Recorder>,
    next_id: AtomicU64,
    measured_started: AtomicU64,
    max_requests: Option<u64>,
    window_start: Instant,
    window_end: Instant,
    /// Set when `--max-requests` ran out before the window did.
    stopped_at: OnceLock<Instant>,
    /// When the last measured request finished, in µs after the window start: the
    /// measured duration runs to here when that is later than the end of sending, so a
    /// short `--max-requests` run or a backlog after the window does not inflate req/s.
    last_done_us: AtomicU64,
}

impl Shared {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // A panic while holding the lock leaves counts that are still counts.
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, phase: Phase, ending: Ending, origin: Instant, second: u64) {
        let now = Instant::now();
        let latency_us = micros(now.saturating_duration_since(origin));
        self.last_done_us.fetch_max(micros(now.saturating_duration_since(self.window_start)), Ordering::Relaxed);
        self.recorder().record(phase, ending, latency_us, second);
    }

    /// The index of the target the next arrival goes to: round-robin over the run.
    fn pick_target(&self) -> usize {
        if self.targets <= 1 {
            return 0;
        }
        let n = self.next_target.fetch_add(1, Ordering::Relaxed);
        // The remainder is below `targets`, a usize, so it converts back exactly.
        usize::try_from(n % self.targets as u64).unwrap_or(0)
    }

    fn stopped(&self) -> bool {
        self.stopped_at.get().is_some()
    }

    /// The postal code turn of the next arrival (every mix takes one per arrival).
    fn pick_zip(&self) -> u64 {
        self.next_zip.fetch_add(1, Ordering::Relaxed)
    }

    /// The ping body of postal code turn `zip`.
    fn ping_body(&self, zip: u64) -> Bytes {
        let index = usize::try_from(zip % self.ping_bodies.len() as u64).unwrap_or(0);
        self.ping_bodies[index].clone()
    }

    /// Takes the right to start one measured arrival; false once `--max-requests` is used.
    fn take_ticket(&self) -> bool {
        let Some(max) = self.max_requests else {
            return true;
        };
        let n = self.measured_started.fetch_add(1, Ordering::Relaxed);
        if n + 1 >= max {
            let _ = self.stopped_at.set(Instant::now());
        }
        n < max
    }
}

pub async fn run(plan: Plan) -> anyhow::Result<Summary> {
    if plan.endpoints.is_empty() {
        anyhow::bail!("a run needs at least one target");
    }
    let start = Instant::now();
    let window_start = start + plan.warmup;
    let window_end = window_start + plan.duration;
    let shared = Arc::new(Shared {
        mix: plan.mix,
        ping_bodies: plan.shape.ping_bodies(),
        next_zip: AtomicU64::new(0),
        shape: plan.shape.clone(),
        targets: plan.endpoints.len(),
        next_target: AtomicU64::new(0),
        recorder: Mutex::new(Recorder::new(plan.mix)),
        next_id: AtomicU64::new(plan.first_id),
        measured_started: AtomicU64::new(0),
        max_requests: plan.max_requests,
        window_start,
        window_end,
        stopped_at: OnceLock::new(),
        last_done_us: AtomicU64::new(0),
    });
    let (concurrency, rate_per_s, connections) = match plan.load {
        Load::Closed { concurrency } => {
            closed_loop(&shared, &plan, concurrency).await;
            (Some(concurrency), None, concurrency * plan.endpoints.len())
        }
        Load::Open { rate_per_s, connections, outstanding_max } => {
            open_loop(&shared, &plan, start, rate_per_s, connections, outstanding_max).await;
            (None, Some(rate_per_s), connections * plan.endpoints.len())
        }
    };
    let sending_stopped = shared.stopped_at.get().copied().unwrap_or(window_end).min(window_end);
    let last_done = window_start + Duration::from_micros(shared.last_done_us.load(Ordering::Relaxed));
    let stopped = sending_stopped.max(last_done);
    let info = RunInfo {
        target: display(&plan.endpoints),
        mix: plan.mix.as_str(),
        mode: if concurrency.is_some() { "closed" } else { "open" },
        concurrency,
        rate_per_s,
        connections,
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: stopped.saturating_duration_since(window_start).as_secs_f64(),
        threads: plan.threads,
    };
    let recorder = shared.recorder();
    Ok(Summary::new(info, &recorder, rate_per_s.is_some()))
}

async fn closed_loop(shared: &Arc<Shared>, plan: &Plan, concurrency: usize) {
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let shared = Arc::clone(shared);
            let connections = plan.endpoints.iter().map(Endpoint::connection).collect();
            tokio::spawn(closed_worker(shared, connections))
        })
        .collect();
    let deadline = tokio::time::Instant::from_std(shared.window_end + DRAIN_MAX);
    for worker in workers {
        let abort = worker.abort_handle();
        if tokio::time::timeout_at(deadline, worker).await.is_err() {
            abort.abort();
        }
    }
}

/// One closed-loop worker: the next request goes out when the previous one is answered,
/// on its connection to the target whose turn it is (one connection per target).
async fn closed_worker(shared: Arc<Shared>, mut connections: Vec<Connection>) {
    loop {
        let now = Instant::now();
        if now >= shared.window_end || shared.stopped() {
            break;
        }
        let measured = now >= shared.window_start;
        if measured && !shared.take_ticket() {
            break;
        }
        let connection = &mut connections[shared.pick_target()];
        if arrival(&shared, connection, now, measured).await == Some(SendError::Transport) {
            tokio::time::sleep(TRANSPORT_BACKOFF).await;
        }
    }
}

async fn open_loop(
    shared: &Arc<Shared>,
    plan: &Plan,
    start: Instant,
    rate_per_s: u64,
    connections: usize,
    outstanding_max: usize,
) {
    // `connections` per target: each pool serves its target's share of the arrivals.
    let pools: Vec<Arc<Pool>> = plan
        .endpoints
        .iter()
        .map(|e| Arc::new(Pool::new(Arc::clone(&e.target), Arc::clone(&e.headers), connections)))
        .collect();
    let outstanding = Arc::new(Semaphore::new(outstanding_max));
    let arrivals = schedule::arrivals_within(shared.window_end - start, rate_per_s);
    // The arrivals are paced by a thread of their own (the OS's high-resolution sleep,
    // not tokio's 1 ms timer) and handed to the runtime as tasks; each latency still counts
    // from its arrival's scheduled time.
    let runtime = tokio::runtime::Handle::current();
    let pacing = {
        let shared = Arc::clone(shared);
        let outstanding = Arc::clone(&outstanding);
        tokio::task::spawn_blocking(move || {
            schedule::pace(start, rate_per_s, arrivals, |scheduled| {
                if shared.stopped() {
                    return false;
                }
                let measured = scheduled >= shared.window_start;
                if measured && !shared.take_ticket() {
                    return false;
                }
                let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
                    if measured {
                        shared.recorder().dropped += 1;
                    }
                    return true;
                };
                let pool = Arc::clone(&pools[shared.pick_target()]);
                let shared = Arc::clone(&shared);
                runtime.spawn(async move {
                    // The send lag: from the scheduled time to this task starting its
                    // request, the pacing thread's wake-up and the hand-over included.
                    if measured {
                        shared.recorder().send_lag_us.saturating_record(micros(scheduled.elapsed()).max(1));
                    }
                    let mut lease = pool.take().await;
                    arrival(&shared, &mut lease.connection, scheduled, measured).await;
                    pool.give_back(lease);
                    drop(permit);
                });
                true
            });
        })
    };
    // The thread ends by itself at the end of the window (or of `--max-requests`); it
    // cannot panic but for a bug, which the run then reports as it stands.
    let _ = pacing.await;
    let all = u32::try_from(outstanding_max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_MAX, outstanding.acquire_many(all)).await;
}

/// One arrival of the mix, timed from `origin` (closed loop: when it was sent; open loop:
/// when it was scheduled). Returns the transport failure, if any, so a worker can back off.
async fn arrival(shared: &Shared, connection: &mut Connection, origin: Instant, measured: bool) -> Option<SendError> {
    let second = origin.saturating_duration_since(shared.window_start).as_secs();
    let zip = shared.pick_zip();
    match shared.mix {
        Mix::Direct => {
            let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (ending, _) = request(connection, PATH_LEADS, shared.shape.lead_body(n, zip)).await;
            if measured {
                shared.record(Phase::Lead, ending, origin, second);
            }
            failure(ending)
        }
        Mix::Ping => {
            let (ending, _) = request(connection, PATH_PING, shared.ping_body(zip)).await;
            if measured {
                shared.record(Phase::Ping, ending, origin, second);
            }
            failure(ending)
        }
        Mix::PingPost => {
            let (ending, ping_id) = request(connection, PATH_PING, shared.ping_body(zip)).await;
            if measured {
                shared.record(Phase::Ping, ending, origin, second);
            }
            let (Ending::Http { outcome: Outcome::Bid, .. }, Some(ping_id)) = (ending, ping_id) else {
                return failure(ending);
            };
            let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let post_start = Instant::now();
            let (post_ending, _) = request(connection, PATH_POST, shared.shape.post_body(&ping_id, n, zip)).await;
            if measured {
                shared.record(Phase::Post, post_ending, post_start, second);
                shared.record(Phase::Pair, post_ending, origin, second);
            }
            failure(post_ending)
        }
    }
}

async fn request(connection: &mut Connection, path: &'static str, body: Bytes) -> (Ending, Option<String>) {
    match connection.post(path, body).await {
        Ok(reply) => {
            let (outcome, ping_id) = read_answer(&reply.body);
            (Ending::Http { status: reply.status, outcome }, ping_id)
        }
        Err(error) => (Ending::Failed(error), None),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn failure(ending: Ending) -> Option<SendError> {
    match ending {
        Ending::Failed(error) => Some(error),
        Ending::Http { .. } => None,
    }
}

/// The targets as the report names them: the base URLs, comma-separated.
pub fn display(endpoints: &[Endpoint]) -> String {
    endpoints.iter().map(|e| e.target.display.as_str()).collect::<Vec<_>>().join(", ")
}

/// The longest a run can take: warmup, window and the bounded drain.
pub fn longest(warmup: Duration, duration: Duration) -> Duration {
    warmup + duration + DRAIN_MAX + REQUEST_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo;
    use crate::record::StatusCounts;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// An echo server on an ephemeral port, stopped when the sender is dropped.
    async fn echo_server() -> (Arc<Target>, oneshot::Sender<()>) {
        let (target, _counts, stop) = counted_echo_server().await;
        (target, stop)
    }

    /// The same, with the counts of what it answered.
    async fn counted_echo_server() -> (Arc<Target>, Arc<echo::Counts>, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let counts = Arc::new(echo::Counts::default());
        let served = Arc::clone(&counts);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(crate::serve::serve_on(listener, move |r| echo::answer(Arc::clone(&served), r), async {
            let _ = stopped.await;
        }));
        let target =
            Target { addr, authority: format!("127.0.0.1:{}", addr.port()), display: format!("http://{addr}") };
        (Arc::new(target), counts, stop)
    }

    fn endpoint(target: Arc<Target>) -> Endpoint {
        let headers = Arc::new(Headers::new(&target, Some("test-key")).expect("headers"));
        Endpoint { target, headers }
    }

    fn plan(target: Arc<Target>, mix: Mix, load: Load, duration: Duration, max_requests: Option<u64>) -> Plan {
        Plan {
            endpoints: vec![endpoint(target)],
            mix,
            shape: LeadShape::new("solar", "80331", "DE").expect("shape"),
            load,
            warmup: Duration::ZERO,
            duration,
            max_requests,
            first_id: 0,
            threads: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_loop_stops_after_max_requests() {
        let (target, _stop) = echo_server().await;
        let plan = plan(target, Mix::Direct, Load::Closed { concurrency: 4 }, Duration::from_secs(10), Some(200));
        let summary = run(plan).await.expect("run");
        let phase = &summary.phases[0];
        assert_eq!(phase.requests, 200);
        assert_eq!(phase.statuses, StatusCounts { ok: 200, ..Default::default() });
        assert_eq!(phase.outcomes.other, 200, "the echo answers status ok");
        assert!(summary.run.duration_s < 10.0, "stopped before the window ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_sends_rate_times_duration() {
        let (target, _stop) = echo_server().await;
        let load = Load::Open { rate_per_s: 1_000, connections: 8, outstanding_max: 1_000 };
        let summary = run(plan(target, Mix::Ping, load, Duration::from_millis(300), None)).await.expect("run");
        let phase = &summary.phases[0];
        assert_eq!(phase.requests + summary.dropped.unwrap_or(0), 300);
        assert_eq!(phase.errors, 0);
        // Paced by the OS's sleep, arrivals leave tens of µs late; on tokio's 1 ms timer
        // the median was 0.9-1.5 ms. The bound only catches gross lateness (a busy 2-core
        // machine must not fail it); the precision is measured in BENCHMARKS.md.
        let lag = summary.send_lag.as_ref().expect("open loop reports its send lag");
        assert!(lag.p50_ms < 3.0, "send lag p50 {} ms", lag.p50_ms);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_target_counts_transport_errors_and_still_ends() {
        let (target, stop) = echo_server().await;
        drop(stop);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let summary =
            run(plan(target, Mix::PingPost, Load::Closed { concurrency: 2 }, Duration::from_millis(200), None))
                .await
                .expect("run");
        let ping = &summary.phases[0];
        assert!(ping.statuses.transport > 0);
        assert_eq!(ping.statuses.ok, 0);
        assert_eq!(summary.phases[1].requests, 0, "no post without a bid");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_targets_share_the_load_round_robin() {
        let servers = [counted_echo_server().await, counted_echo_server().await, counted_echo_server().await];
        let endpoints: Vec<Endpoint> = servers.iter().map(|(target, _, _)| endpoint(Arc::clone(target))).collect();
        let names: Vec<String> = endpoints.iter().map(|e| e.target.display.clone()).collect();

        let mut closed = plan(
            Arc::clone(&servers[0].0),
            Mix::Direct,
            Load::Closed { concurrency: 4 },
            Duration::from_secs(10),
            Some(300),
        );
        closed.endpoints = endpoints.clone();
        let summary = run(closed).await.expect("closed run");
        assert_eq!(summary.phases[0].requests, 300);
        assert_eq!(summary.phases[0].statuses.ok, 300);
        assert_eq!(summary.run.target, names.join(", "));
        assert_eq!(summary.run.connections, 12, "one connection per worker and target");
        for (_, counts, _) in &servers {
            assert_eq!(counts.answered.load(Ordering::Relaxed), 100, "each target gets a third");
        }

        let load = Load::Open { rate_per_s: 1_000, connections: 4, outstanding_max: 1_000 };
        let mut open = plan(Arc::clone(&servers[0].0), Mix::Direct, load, Duration::from_secs(10), Some(150));
        open.endpoints = endpoints;
        let summary = run(open).await.expect("open run");
        assert_eq!(summary.phases[0].requests + summary.dropped.unwrap_or(0), 150);
        assert_eq!(summary.phases[0].errors, 0);
        for (_, counts, _) in &servers {
            assert_eq!(counts.answered.load(Ordering::Relaxed), 150, "and a third of the open-loop arrivals");
        }
    }
}
