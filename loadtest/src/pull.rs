//! `loadtest pull`: pull buyers fetching their leads (`GET /v1/buyer/leads`), so a node
//! whose campaigns deliver by `pull` can be measured with buyers that keep up.
//!
//! One task and one keep-alive connection per buyer key. A buyer asks for the page after
//! its cursor (which acknowledges everything up to it), again and again while pages come
//! back with leads, and sleeps `interval` once a page is empty. A failed request (no
//! answer, a status other than 200, an answer that is not a page) counts as an error and
//! is retried after `interval` from the same cursor. The buyers run until SIGTERM or
//! SIGINT; the totals are then printed as one JSON line.
//!
//! Rationale: the counters are shared atomics bumped only once a page has been read whole,
//! so stopping the tasks mid-request (abort) loses nothing already counted. A cursor comes
//! from the network, so it is parsed as a number before it goes into a URL.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::client::{Connection, Headers};
use crate::target::Target;

pub const PATH_BUYER_LEADS: &str = "/v1/buyer/leads";
/// The router's largest page (`limit` is 1..=1000).
pub const LIMIT_MAX: usize = 1_000;
/// A pulled lead is the webhook body of a sale, well under a KiB for the load tester's
/// leads; a page may hold up to this much per lead before it counts as an error. Bounds a
/// buyer's memory to `limit` times this.
const LEAD_BYTES_MAX: usize = 16 * 1024;
/// Headroom for the page's envelope (`{"leads":[],"next":"…"}`) and an error answer.
const PAGE_ENVELOPE_BYTES: usize = 64 * 1024;

/// What the buyers do.
pub struct Plan {
    pub target: Arc<Target>,
    /// One buyer per key.
    pub keys: Vec<String>,
    /// Sleep after an empty page or an error.
    pub interval: Duration,
    /// Leads asked for per page, 1..=`LIMIT_MAX`.
    pub limit: usize,
}

/// The totals over every buyer, printed as one JSON line at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub buyers: usize,
    pub fetched: u64,
    pub pages: u64,
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counts {
    fetched: AtomicU64,
    pages: AtomicU64,
    errors: AtomicU64,
}

/// Runs one task per buyer until `stop` resolves, then stops them and returns the totals.
pub async fn run(plan: Plan, stop: impl Future<Output = ()>) -> anyhow::Result<Totals> {
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::with_capacity(plan.keys.len());
    for key in &plan.keys {
        let headers = Arc::new(Headers::new(&plan.target, Some(key))?);
        let connection = Connection::new(Arc::clone(&plan.target), headers);
        tasks.push(tokio::spawn(buyer(connection, plan.interval, plan.limit, Arc::clone(&counts))));
    }
    stop.await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        // Aborted (the normal end) or, impossibly, finished: both are fine here.
        let _ = task.await;
    }
    Ok(Totals {
        buyers: plan.keys.len(),
        fetched: counts.fetched.load(Ordering::Relaxed),
        pages: counts.pages.load(Ordering::Relaxed),
        errors: counts.errors.load(Ordering::Relaxed),
    })
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed by this call (not
/// when the future is first polled), so a signal that comes before the buyers start is
/// not lost.
#[cfg(unix)]
pub fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// One buyer: pages back to back while they hold leads, then a sleep; forever.
async fn buyer(mut connection: Connection, interval: Duration, limit: usize, counts: Arc<Counts>) {
    let mut cursor = 0u64;
    loop {
        loop {
            match fetch_page(&mut connection, cursor, limit).await {
                Ok(Page { leads, next }) => {
                    counts.pages.fetch_add(1, Ordering::Relaxed);
                    counts.fetched.fetch_add(leads, Ordering::Relaxed);
                    if leads == 0 {
                        break;
                    }
                    cursor = next;
                }
                Err(_) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// A page as the buyer uses it: how many leads, and the cursor to ask after next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    leads: u64,
    next: u64,
}

/// Why a fetch did not give a page.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FetchError {
    /// No answer (connection failed, timed out, or the answer was too large).
    Transport,
    Status(u16),
    /// A 200 that is not a page the buyer can go on from.
    Answer(&'static str),
}

async fn fetch_page(connection: &mut Connection, cursor: u64, limit: usize) -> Result<Page, FetchError> {
    let uri = format!("{PATH_BUYER_LEADS}?after={cursor}&limit={limit}")
        .parse()
        .map_err(|_| FetchError::Answer("request URI"))?;
    let answer_max = limit.saturating_mul(LEAD_BYTES_MAX).saturating_add(PAGE_ENVELOPE_BYTES);
    let reply = connection.get(uri, answer_max).await.map_err(|_| FetchError::Transport)?;
    if reply.status != 200 {
        return Err(FetchError::Status(reply.status));
    }
    read_page(&reply.body, cursor)
}

/// The router's answer: `{"leads": [...], "next": "<cursor>"}`. The leads are counted,
/// not kept.
#[derive(Deserialize)]
struct PageAnswer {
    leads: Vec<IgnoredAny>,
    #[serde(default)]
    next: Option<String>,
}

/// Reads a page fetched after `cursor`. An empty page leaves the cursor where it was
/// (`next` may be absent or equal to it); a page with leads must move it forward, or the
/// buyer would fetch the same page again and again.
fn read_page(body: &[u8], cursor: u64) -> Result<Page, FetchError> {
    let answer: PageAnswer = serde_json::from_slice(body).map_err(|_| FetchError::Answer("not a page of leads"))?;
    let leads = u64::try_from(answer.leads.len()).map_err(|_| FetchError::Answer("too many leads"))?;
    if leads == 0 {
        return Ok(Page { leads, next: cursor });
    }
    let next = answer.next.as_deref().ok_or(FetchError::Answer("leads without `next`"))?;
    let next: u64 = next.parse().map_err(|_| FetchError::Answer("`next` is not a cursor"))?;
    if next <= cursor {
        return Err(FetchError::Answer("`next` does not move past the cursor"));
    }
    Ok(Page { leads, next })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use hyper::body::Incoming;
    use hyper::{Request, StatusCode};
    use tokio::net::TcpListener;

    use super::*;
    use crate::serve::{self, json, Answer};

    #[test]
    fn pages_move_the_cursor_and_empty_pages_keep_it() {
        let page = br#"{"leads":[{"cursor":"8"},{"cursor":"9"}],"next":"9"}"#;
        assert_eq!(read_page(page, 7), Ok(Page { leads: 2, next: 9 }));
        assert_eq!(read_page(br#"{"leads":[],"next":"7"}"#, 7), Ok(Page { leads: 0, next: 7 }));
        assert_eq!(read_page(br#"{"leads":[]}"#, 7), Ok(Page { leads: 0, next: 7 }));
        assert_eq!(read_page(br#"{"leads":[],"next":null}"#, 7), Ok(Page { leads: 0, next: 7 }));
    }

    #[test]
    fn answers_a_buyer_cannot_go_on_from_are_errors() {
        for bad in [
            &br#"{"leads":[{}]}"#[..],
            br#"{"leads":[{}],"next":"x"}"#,
            br#"{"leads":[{}],"next":"-1"}"#,
            br#"{"leads":[{}],"next":"7"}"#,
            br#"{"leads":[{}],"next":"3"}"#,
            br#"{"next":"9"}"#,
            br#"{"leads":{},"next":"9"}"#,
            b"not json",
            b"",
        ] {
            assert!(read_page(bad, 7).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// A pull API like the router's: each key has `waiting` leads at positions 1..=n;
    /// `after` acknowledges, a page holds up to `limit` leads after it. The key `broken`
    /// gets 500s.
    struct Queues {
        waiting: u64,
        acknowledged: Mutex<HashMap<String, u64>>,
    }

    async fn answer(queues: Arc<Queues>, request: Request<Incoming>) -> Answer {
        let key = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let Some(key) = key else { return json(StatusCode::UNAUTHORIZED, "{}") };
        if key == "broken" || request.uri().path() != PATH_BUYER_LEADS {
            return json(StatusCode::INTERNAL_SERVER_ERROR, "{}");
        }
        let (mut after, mut limit) = (0u64, 100u64);
        for pair in request.uri().query().unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("after", v)) => after = v.parse().unwrap_or(0),
                Some(("limit", v)) => limit = v.parse().unwrap_or(0),
                _ => return json(StatusCode::BAD_REQUEST, "{}"),
            }
        }
        let mut acknowledged = queues.acknowledged.lock().expect("lock");
        let says_next_when_empty = key == "a";
        let seen = acknowledged.entry(key).or_default();
        *seen = (*seen).max(after);
        let first = *seen + 1;
        let last = (*seen + limit).min(queues.waiting);
        let leads: Vec<serde_json::Value> =
            (first..=last).map(|p| serde_json::json!({"cursor": p.to_string(), "email": "x"})).collect();
        // Like the router: `next` is the last lead's cursor, or `after` on an empty page
        // (for key `a`; key `b` gets no `next` on an empty page).
        let body = if !leads.is_empty() {
            serde_json::json!({"leads": leads, "next": last.to_string()})
        } else if says_next_when_empty {
            serde_json::json!({"leads": leads, "next": after.to_string()})
        } else {
            serde_json::json!({"leads": leads})
        };
        json(StatusCode::OK, body.to_string())
    }

    #[tokio::test]
    async fn buyers_fetch_everything_and_count_failures() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let queues = Arc::new(Queues { waiting: 2_345, acknowledged: Mutex::new(HashMap::new()) });
        let served = Arc::clone(&queues);
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve::serve_on(listener, move |r| answer(Arc::clone(&served), r), async {
            let _ = server_stopped.await;
        }));
        let target = Arc::new(Target { addr, authority: addr.to_string(), display: format!("http://{addr}") });
        let plan = Plan {
            target,
            keys: vec!["a".into(), "b".into(), "broken".into()],
            interval: Duration::from_millis(20),
            limit: 1_000,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run(plan, async {
            let _ = stopped.await;
        }));
        // Both working buyers have everything: acknowledged through the last lead.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let done = {
                let acknowledged = queues.acknowledged.lock().expect("lock");
                ["a", "b"].iter().all(|k| acknowledged.get(*k) == Some(&2_345))
            };
            if done {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "buyers did not catch up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let totals = running.await.expect("joined").expect("ran");
        assert_eq!(totals.buyers, 3);
        assert_eq!(totals.fetched, 2 * 2_345);
        // Three pages with leads each, then at least one empty page (and more each 20 ms).
        assert!(totals.pages >= 2 * 4, "{totals:?}");
        assert!(totals.errors >= 1, "{totals:?}");
        drop(stop_server);
    }
}
