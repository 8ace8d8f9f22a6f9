//! Precise waits for the mock buyer: one OS thread keeps a min-heap of deadlines and
//! wakes each waiting request at its deadline, within the OS's high-resolution sleep
//! (tens of µs), never before it.
//!
//! Rationale: `tokio::time::sleep` rounds every deadline up to the runtime's 1 ms tick and
//! then wakes on the next turn of the driver, so a "5 ms" buyer answered in 5–7 ms, and a
//! benchmark that asks what leadrouter adds over 5 ms measured the tick instead. Spinning
//! would be precise but burns a core per waiting task; here one thread sleeps in
//! `Condvar::wait_timeout` until the earliest deadline (or until an earlier one is added),
//! fires every deadline that has passed through its oneshot channel, and sleeps again. It
//! costs one thread wake-up per distinct deadline and nothing while nothing waits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// One waiting request: its deadline, a sequence number that orders equal deadlines (and
/// spares the sender an `Ord`), and the channel that wakes it.
struct Entry {
    deadline: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct State {
    /// Earliest deadline on top.
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    /// Set when the `Timer` is dropped: the thread drops what waits and exits.
    closed: bool,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a heap that is still a heap.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle the mock buyer keeps; dropping it stops the thread.
pub struct Timer {
    inner: Arc<Inner>,
}

impl Timer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Timer> {
        let inner = Arc::new(Inner::default());
        let run = Arc::clone(&inner);
        std::thread::Builder::new().name("precise-timer".into()).spawn(move || fire(&run))?;
        Ok(Timer { inner })
    }

    /// Resolves at `deadline` or shortly after (the OS's wake-up latency), never before.
    pub async fn sleep_until(&self, deadline: Instant) {
        if Instant::now() >= deadline {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let mut state = self.inner.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            let earliest = state.heap.peek().is_none_or(|Reverse(top)| deadline < top.deadline);
            state.heap.push(Reverse(Entry { deadline, seq, wake }));
            if earliest {
                // The thread sleeps until a later deadline (or indefinitely): wake it to
                // sleep until this one instead.
                self.inner.changed.notify_one();
            }
        }
        // An error means the timer was dropped; there is nothing left to wait for.
        let _ = woken.await;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.changed.notify_one();
    }
}

/// The timer thread: sleeps until the earliest deadline, wakes everything due, repeats.
fn fire(inner: &Inner) {
    let mut due = Vec::new();
    let mut state = inner.lock();
    loop {
        if state.closed {
            return;
        }
        let now = Instant::now();
        while state.heap.peek().is_some_and(|Reverse(top)| top.deadline <= now) {
            if let Some(Reverse(entry)) = state.heap.pop() {
                due.push(entry.wake);
            }
        }
        if !due.is_empty() {
            // Wake outside the lock, so a woken task that queues its next wait at once
            // does not contend with this thread.
            drop(state);
            for wake in due.drain(..) {
                // The request may be gone (its connection closed): nothing to wake then.
                let _ = wake.send(());
            }
            state = inner.lock();
            continue;
        }
        state = match state.heap.peek().map(|Reverse(top)| top.deadline) {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                inner.changed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0
            }
            None => inner.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn median(mut values: Vec<Duration>) -> Duration {
        values.sort();
        values[values.len() / 2]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_never_early_and_the_median_within_a_fraction_of_a_millisecond() {
        let timer = Timer::start().expect("timer thread");
        let mut late = Vec::new();
        for _ in 0..50 {
            let deadline = Instant::now() + Duration::from_millis(5);
            timer.sleep_until(deadline).await;
            let woke = Instant::now();
            assert!(woke >= deadline, "woke {:?} early", deadline - woke);
            late.push(woke - deadline);
        }
        // tokio's sleep is 0.5–2 ms late on average here; the bound only catches gross
        // lateness, not the machine's noise (the precision is measured in BENCHMARKS.md).
        let median = median(late);
        assert!(median < Duration::from_micros(3_000), "median lateness {median:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waits_at_once_each_wake_at_their_own_deadline() {
        let timer = Arc::new(Timer::start().expect("timer thread"));
        let start = Instant::now();
        // Added in reverse order of deadline, so each is the new earliest: the thread must
        // shorten its sleep every time.
        let waits: Vec<_> = (0..40u64)
            .rev()
            .map(|i| {
                let timer = Arc::clone(&timer);
                let deadline = start + Duration::from_millis(2) + Duration::from_micros(250 * i);
                tokio::spawn(async move {
                    timer.sleep_until(deadline).await;
                    (deadline, Instant::now())
                })
            })
            .collect();
        for wait in waits {
            let (deadline, woke) = wait.await.expect("task");
            assert!(woke >= deadline, "woke {:?} early", deadline - woke);
        }
    }

    #[tokio::test]
    async fn a_passed_deadline_returns_at_once_and_dropping_the_timer_stops_its_thread() {
        let timer = Timer::start().expect("timer thread");
        let before = Instant::now();
        timer.sleep_until(before - Duration::from_millis(1)).await;
        timer.sleep_until(Instant::now()).await;
        assert!(timer.inner.lock().heap.is_empty(), "nothing was queued for a passed deadline");
        let inner = Arc::clone(&timer.inner);
        drop(timer);
        // The thread holds the other reference until it exits.
        let gone = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&inner) > 1 {
            assert!(Instant::now() < gone, "the timer thread did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
