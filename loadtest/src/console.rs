//! `loadtest dashboards`: operators with the console's dashboard open, as a browser has it
//! (assets/console/console.js): each signs in with the admin token (the sign-in form's
//! token from `GET /console/sign-in` and its cookie, then `POST /console/sign-in`), loads
//! `GET /console` once, then fetches `GET /console/live/dashboard` every `every` on its own
//! keep-alive connection (the browser's `setInterval`: a fixed beat, a late tick skipped,
//! not queued). Their starts are spread evenly over one interval, as operators who opened
//! the page at different moments. `--sequential N` instead has one operator fetch the page
//! N times back to back, then the fragment N times: the page time with nothing else asked.
//!
//! Every answer's latency (from sending the request to the last byte of the answer) goes
//! into an HDR histogram per page. An answer counts as an error when it is not a 200 or
//! not the page asked for (the whole page has the element its script refreshes, the
//! fragment has its tiles); a fragment answered 401 (the session ended) signs in again, as
//! the page's script reloads the page. The stylesheet and script a browser would fetch once
//! (cached an hour) are not fetched.
//!
//! Rationale: the console is served on the ops listener of the router being loaded, so its
//! pages compete with the posts for the same cores; this measures both what a dashboard
//! costs the posts (beside a `loadtest run`) and what the posts cost the dashboard.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::{HeaderValue, COOKIE, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Method, Uri};
use serde::Serialize;

use crate::client::{Call, Connection, Headers, Reply, SendError};
use crate::record::{LATENCY_US_MAX, LATENCY_US_MIN};
use crate::report::{format_ms, Latency};
use crate::target::Target;

pub const PATH_SIGN_IN: &str = "/console/sign-in";
pub const PATH_PAGE: &str = "/console";
pub const PATH_LIVE: &str = "/console/live/dashboard";
/// The cookie that binds the sign-in form's token, and the session's cookie.
const SIGN_IN_COOKIE: &str = "lr_console_sign_in";
const SESSION_COOKIE: &str = "lr_console";
/// What the whole page holds (the element its script refreshes) and what the fragment
/// holds (its first heading): a 200 without it is not the dashboard.
const PAGE_MARK: &str = "data-live=\"/console/live/dashboard\"";
const LIVE_MARK: &str = "Last 5 minutes";
/// A dashboard page is tens of KiB; anything past this is read no further (an error).
const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// Dashboards one run opens, and the bounds of their beat.
pub const DASHBOARDS_MAX: usize = 100;
pub const EVERY_MS_MIN: u64 = 100;
pub const EVERY_MS_MAX: u64 = 60_000;
/// Back-to-back fetches of each page in `--sequential`.
pub const SEQUENTIAL_MAX: u64 = 100_000;

/// What the operators do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `count` dashboards, each fetching the fragment every `every`, for `duration`.
    Dashboards { count: usize, every: Duration, duration: Duration },
    /// One operator: `count` fetches of the page, then `count` of the fragment.
    Sequential { count: u64 },
}

pub struct Plan {
    /// The router's ops listener.
    pub target: Arc<Target>,
    pub admin_token: String,
    pub mode: Mode,
}

/// The two pages measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// `GET /console`: the frame and the dashboard's live part rendered in it.
    Whole,
    /// `GET /console/live/dashboard`: the live part alone.
    Live,
}

impl Page {
    fn path(self) -> &'static str {
        match self {
            Page::Whole => PATH_PAGE,
            Page::Live => PATH_LIVE,
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Page::Whole => PAGE_MARK,
            Page::Live => LIVE_MARK,
        }
    }

    fn index(self) -> usize {
        match self {
            Page::Whole => 0,
            Page::Live => 1,
        }
    }
}

/// Why a fetch did not give the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchError {
    Transport,
    Timeout,
    Status(u16),
    /// A 200 that is not the page asked for.
    NotThePage,
}

impl From<SendError> for FetchError {
    fn from(error: SendError) -> FetchError {
        match error {
            SendError::Transport => FetchError::Transport,
            SendError::Timeout => FetchError::Timeout,
        }
    }
}

/// Errors of one page, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub status: u64,
    pub transport: u64,
    pub timeout: u64,
    pub not_the_page: u64,
}

impl ErrorCounts {
    fn add(&mut self, error: FetchError) {
        match error {
            FetchError::Transport => self.transport += 1,
            FetchError::Timeout => self.timeout += 1,
            FetchError::Status(_) => self.status += 1,
            FetchError::NotThePage => self.not_the_page += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.status + self.transport + self.timeout + self.not_the_page
    }
}

/// What one page observed.
struct PageRecord {
    latency_us: Histogram<u64>,
    bytes: u64,
    errors: ErrorCounts,
}

impl PageRecord {
    fn new() -> PageRecord {
        PageRecord {
            // The bounds are constants that hdrhistogram accepts.
            latency_us: Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, 3)
                .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
            bytes: 0,
            errors: ErrorCounts::default(),
        }
    }
}

/// Everything observed, behind one lock (a few records a second).
struct Records {
    pages: [PageRecord; 2],
    sign_ins: u64,
    sign_in_errors: u64,
}

struct Shared {
    records: Mutex<Records>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            records: Mutex::new(Records {
                pages: [PageRecord::new(), PageRecord::new()],
                sign_ins: 0,
                sign_in_errors: 0,
            }),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, page: Page, latency: Duration, outcome: Result<u64, FetchError>) {
        let mut records = self.records();
        let record = &mut records.pages[page.index()];
        match outcome {
            Ok(bytes) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(LATENCY_US_MIN, LATENCY_US_MAX);
                // Clamped into the histogram's bounds, so it records.
                let _ = record.latency_us.record(us);
                record.bytes += bytes;
            }
            Err(error) => record.errors.add(error),
        }
    }

    fn signed_in(&self, ok: bool) {
        let mut records = self.records();
        if ok {
            records.sign_ins += 1;
        } else {
            records.sign_in_errors += 1;
        }
    }
}

/// One page's figures in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PageSummary {
    pub name: &'static str,
    pub path: &'static str,
    /// Answered with the page (errors not included).
    pub requests: u64,
    pub latency: Latency,
    pub bytes_mean: u64,
    pub errors: u64,
    pub error_kinds: ErrorCounts,
}

/// The report, printed as a table and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub mode: &'static str,
    pub dashboards: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// From the first sign-in to the end (dashboards), or of the whole sequence.
    pub elapsed_s: f64,
    pub sign_ins: u64,
    pub sign_in_errors: u64,
    pub pages: Vec<PageSummary>,
}

impl Report {
    fn new(plan: &Plan, elapsed: Duration, records: &Records) -> Report {
        let (mode, dashboards, every_ms) = match plan.mode {
            Mode::Dashboards { count, every, .. } => {
                ("dashboards", count, Some(u64::try_from(every.as_millis()).unwrap_or(u64::MAX)))
            }
            Mode::Sequential { .. } => ("sequential", 1, None),
        };
        let pages = [Page::Whole, Page::Live]
            .into_iter()
            .map(|page| {
                let record = &records.pages[page.index()];
                let requests = record.latency_us.len();
                PageSummary {
                    name: match page {
                        Page::Whole => "page",
                        Page::Live => "live",
                    },
                    path: page.path(),
                    requests,
                    latency: Latency::of(&record.latency_us),
                    bytes_mean: record.bytes.checked_div(requests).unwrap_or(0),
                    errors: record.errors.total(),
                    error_kinds: record.errors,
                }
            })
            .collect();
        Report {
            target: plan.target.display.clone(),
            mode,
            dashboards,
            every_ms,
            elapsed_s: (elapsed.as_secs_f64() * 1_000.0).round() / 1_000.0,
            sign_ins: records.sign_ins,
            sign_in_errors: records.sign_in_errors,
            pages,
        }
    }

    /// Answers that were not the page, and sign-ins that failed.
    pub fn errors(&self) -> u64 {
        self.sign_in_errors + self.pages.iter().map(|page| page.errors).sum::<u64>()
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let what = match self.every_ms {
            Some(every) => format!("{} dashboards, the fragment every {every} ms", self.dashboards),
            None => "one operator, each page back to back".to_string(),
        };
        let _ = writeln!(
            out,
            "target {}  {what}  {:.3} s  sign-ins {} (failed {})",
            self.target, self.elapsed_s, self.sign_ins, self.sign_in_errors
        );
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "page", "answers", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "bytes", "errors"
        );
        for page in &self.pages {
            let [p50, p90, p99, _, max] = page.latency.us.map(format_ms);
            let _ = writeln!(
                out,
                "{:<24} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9.3} {:>9} {:>7}",
                page.path, page.requests, p50, p90, p99, max, page.latency.mean_ms, page.bytes_mean, page.errors
            );
        }
        for page in self.pages.iter().filter(|page| page.errors > 0) {
            let e = &page.error_kinds;
            let _ = writeln!(
                out,
                "{} errors: status {} transport {} timeout {} not the page {}",
                page.path, e.status, e.transport, e.timeout, e.not_the_page
            );
        }
        out
    }
}

/// Runs the plan until it is done or `stop` resolves, and reports.
pub async fn run(plan: Plan, stop: impl Future<Output = ()>) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared::new());
    let headers = Arc::new(Headers::new(&plan.target, None)?);
    let started = Instant::now();
    match plan.mode {
        Mode::Dashboards { count, every, duration } => {
            let end = started + duration;
            let mut tasks = Vec::with_capacity(count);
            for n in 0..count {
                // Spread over one beat: dashboard n starts n/count of the way through it.
                let offset = every.mul_f64(n as f64 / count as f64);
                let operator = Operator::new(&plan, Arc::clone(&headers), Arc::clone(&shared));
                tasks.push(tokio::spawn(operator.dashboard(started + offset, every, end)));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => {}
                _ = stop => {}
            }
            for task in &tasks {
                task.abort();
            }
            for task in tasks {
                // Aborted (the normal end) or finished: both are fine.
                let _ = task.await;
            }
        }
        Mode::Sequential { count } => {
            let operator = Operator::new(&plan, headers, Arc::clone(&shared));
            tokio::select! {
                () = operator.sequential(count) => {}
                _ = stop => {}
            }
        }
    }
    let elapsed = started.elapsed();
    let records = shared.records();
    Ok(Report::new(&plan, elapsed, &records))
}

/// One operator: a connection, the admin token, and the session once signed in.
struct Operator {
    connection: Connection,
    admin_token: String,
    /// `lr_console=<id>`, sent as `Cookie`.
    session: Option<HeaderValue>,
    shared: Arc<Shared>,
}

impl Operator {
    fn new(plan: &Plan, headers: Arc<Headers>, shared: Arc<Shared>) -> Operator {
        Operator {
            connection: Connection::new(Arc::clone(&plan.target), headers),
            admin_token: plan.admin_token.clone(),
            session: None,
            shared,
        }
    }

    /// Signs in when there is no session; false when that failed (counted).
    async fn ensure_session(&mut self) -> bool {
        if self.session.is_some() {
            return true;
        }
        let signed = sign_in(&mut self.connection, &self.admin_token).await;
        self.shared.signed_in(signed.is_some());
        self.session = signed;
        self.session.is_some()
    }

    /// Fetches `page` with the session and records it; a 401 ends the session here too.
    async fn fetch(&mut self, page: Page) {
        if !self.ensure_session().await {
            return;
        }
        let cookie = self.session.clone();
        let sent = Instant::now();
        let outcome = fetch_page(&mut self.connection, cookie, page).await;
        self.shared.record(page, sent.elapsed(), outcome);
        if outcome == Err(FetchError::Status(401)) {
            self.session = None;
        }
    }

    /// From `start`: sign in, load the page, then the fragment on every beat until `end`.
    async fn dashboard(mut self, start: Instant, every: Duration, end: Instant) {
        tokio::time::sleep_until(start.into()).await;
        self.fetch(Page::Whole).await;
        let mut beat = tokio::time::interval_at((start + every).into(), every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            beat.tick().await;
            if Instant::now() >= end {
                return;
            }
            self.fetch(Page::Live).await;
        }
    }

    async fn sequential(mut self, count: u64) {
        for page in [Page::Whole, Page::Live] {
            for _ in 0..count {
                self.fetch(page).await;
            }
        }
    }
}

async fn fetch_page(connection: &mut Connection, cookie: Option<HeaderValue>, page: Page) -> Result<u64, FetchError> {
    let call = Call {
        method: Method::GET,
        uri: Uri::from_static(page.path()),
        headers: cookie.into_iter().map(|cookie| (COOKIE, cookie)).collect(),
        body: Bytes::new(),
        content_type: None,
    };
    let reply = connection.call(call, ANSWER_BYTES_MAX).await?;
    if reply.status != 200 {
        return Err(FetchError::Status(reply.status));
    }
    if !contains(&reply.body, page.mark().as_bytes()) {
        return Err(FetchError::NotThePage);
    }
    Ok(reply.body.len() as u64)
}

/// Signs in with the admin token as the sign-in form does; the session's `Cookie` value.
async fn sign_in(connection: &mut Connection, admin_token: &str) -> Option<HeaderValue> {
    let form = Call {
        method: Method::GET,
        uri: Uri::from_static(PATH_SIGN_IN),
        headers: Vec::new(),
        body: Bytes::new(),
        content_type: None,
    };
    let reply = connection.call(form, ANSWER_BYTES_MAX).await.ok().filter(|reply| reply.status == 200)?;
    let token = set_cookie(&reply.headers, SIGN_IN_COOKIE)?;
    let body = form_body(&[("csrf", &token), ("name", ""), ("token", admin_token)]);
    let post = Call {
        method: Method::POST,
        uri: Uri::from_static(PATH_SIGN_IN),
        headers: vec![(COOKIE, HeaderValue::from_str(&format!("{SIGN_IN_COOKIE}={token}")).ok()?)],
        body: Bytes::from(body),
        content_type: Some(HeaderValue::from_static("application/x-www-form-urlencoded")),
    };
    let reply: Reply = connection.call(post, ANSWER_BYTES_MAX).await.ok()?;
    let to_console = reply.headers.get(LOCATION).is_some_and(|location| location.as_bytes() == PATH_PAGE.as_bytes());
    if reply.status != 303 || !to_console {
        return None;
    }
    let session = set_cookie(&reply.headers, SESSION_COOKIE)?;
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={session}")).ok()
}

/// The value a `Set-Cookie` of `headers` gives cookie `name` (the last one, not empty).
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.trim().split_once('='))
        .filter(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_string())
        .next_back()
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, the rest as %XX.
fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        out
    };
    fields.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Request, Response, StatusCode};
    use tokio::net::TcpListener;

    use super::*;
    use crate::serve::{self, Answer};

    const ADMIN_TOKEN: &str = "secret token/1";

    /// A console like the router's: the sign-in form's token bound to a cookie, the admin
    /// token checked, sessions by cookie. The first session ends at its first live fetch
    /// (answered 401), as an expired one would.
    #[derive(Default)]
    struct Console {
        issued: Mutex<u64>,
        sessions: Mutex<HashSet<String>>,
    }

    fn answer(status: StatusCode, body: &str, headers: &[(&str, String)]) -> Answer {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        for (name, value) in headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("name");
            response.headers_mut().append(name, HeaderValue::from_str(value).expect("value"));
        }
        response
    }

    fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        let all = headers.get(COOKIE)?.to_str().ok()?;
        all.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(key, _)| *key == name).map(|(_, v)| v)
    }

    async fn serve_console(console: Arc<Console>, request: Request<Incoming>) -> Answer {
        let (parts, body) = serve::read_body(request).await.expect("a body");
        let next = || {
            let mut issued = console.issued.lock().expect("lock");
            *issued += 1;
            *issued
        };
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|id| console.sessions.lock().expect("lock").contains(*id))
            .map(str::to_string);
        match (parts.method.as_str(), parts.uri.path()) {
            ("GET", PATH_SIGN_IN) => {
                let token = format!("form{}", next());
                answer(StatusCode::OK, "<form>", &[("set-cookie", format!("{SIGN_IN_COOKIE}={token}; Path=/console"))])
            }
            ("POST", PATH_SIGN_IN) => {
                let bound = cookie(&parts.headers, SIGN_IN_COOKIE).unwrap_or("none");
                let expected = form_body(&[("csrf", bound), ("name", ""), ("token", ADMIN_TOKEN)]);
                if body != expected.as_bytes() {
                    return answer(StatusCode::UNAUTHORIZED, "<p>That did not match.</p>", &[]);
                }
                let id = format!("s{}", next());
                console.sessions.lock().expect("lock").insert(id.clone());
                answer(
                    StatusCode::SEE_OTHER,
                    "",
                    &[
                        ("location", PATH_PAGE.to_string()),
                        ("set-cookie", format!("{SESSION_COOKIE}={id}; Path=/console; HttpOnly")),
                        ("set-cookie", format!("{SIGN_IN_COOKIE}=; Path=/console; Max-Age=0")),
                    ],
                )
            }
            ("GET", PATH_PAGE) => match session {
                Some(_) => answer(StatusCode::OK, &format!("<div {PAGE_MARK}><h2>{LIVE_MARK}</h2></div>"), &[]),
                None => answer(StatusCode::SEE_OTHER, "", &[("location", PATH_SIGN_IN.to_string())]),
            },
            ("GET", PATH_LIVE) => match session {
                Some(id) if id == "s2" => {
                    console.sessions.lock().expect("lock").remove(&id);
                    answer(StatusCode::UNAUTHORIZED, "<p>Signed out.</p>", &[])
                }
                Some(_) => answer(StatusCode::OK, &format!("<h2>{LIVE_MARK}</h2>"), &[]),
                None => answer(StatusCode::UNAUTHORIZED, "<p>Signed out.</p>", &[]),
            },
            _ => answer(StatusCode::NOT_FOUND, "", &[]),
        }
    }

    async fn console_target() -> (Arc<Target>, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let console = Arc::new(Console::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve::serve_on(listener, move |r| serve_console(Arc::clone(&console), r), async {
            let _ = stopped.await;
        }));
        (Arc::new(Target { addr, authority: addr.to_string(), display: format!("http://{addr}") }), stop)
    }

    #[tokio::test]
    async fn dashboards_sign_in_load_the_page_and_poll_the_live_part() {
        let (target, _stop) = console_target().await;
        let every = Duration::from_millis(50);
        let mode = Mode::Dashboards { count: 3, every, duration: Duration::from_millis(525) };
        let plan = Plan { target, admin_token: ADMIN_TOKEN.into(), mode };
        let report = run(plan, std::future::pending()).await.expect("ran");
        let [page, live] = [&report.pages[0], &report.pages[1]];
        assert_eq!((page.path, page.requests, page.errors), (PATH_PAGE, 3, 0), "{report:?}");
        // Each polls on beats 50, 100, ... ms after its own start (0, 17 and 33 ms), up to
        // 525 ms: 10, 9 and 9 beats, give or take one at the edges; one of them is the 401
        // that ended a session, which signs in again.
        assert_eq!(live.path, PATH_LIVE);
        assert!((24..=30).contains(&(live.requests + live.errors)), "{report:?}");
        assert_eq!((live.errors, live.error_kinds.status), (1, 1), "{report:?}");
        assert_eq!((report.sign_ins, report.sign_in_errors), (4, 0), "{report:?}");
        assert!(page.bytes_mean > 0 && page.latency.us[4] > 0, "{report:?}");
        assert_eq!(report.errors(), 1);
        let table = report.table();
        assert!(table.contains("3 dashboards, the fragment every 50 ms"), "{table}");
        assert!(table.contains("/console/live/dashboard errors: status 1"), "{table}");
    }

    #[tokio::test]
    async fn one_operator_fetches_each_page_back_to_back_and_a_wrong_token_fails() {
        let (target, _stop) = console_target().await;
        let plan =
            Plan { target: Arc::clone(&target), admin_token: ADMIN_TOKEN.into(), mode: Mode::Sequential { count: 5 } };
        let report = run(plan, std::future::pending()).await.expect("ran");
        assert_eq!(report.mode, "sequential");
        assert_eq!((report.pages[0].requests, report.pages[0].errors), (5, 0), "{report:?}");
        // Session s2 ends at its first live fetch: 401, sign in again, four more.
        assert_eq!((report.pages[1].requests, report.pages[1].errors), (4, 1), "{report:?}");
        assert_eq!(report.sign_ins, 2);

        let plan = Plan { target, admin_token: "wrong".into(), mode: Mode::Sequential { count: 2 } };
        let report = run(plan, std::future::pending()).await.expect("ran");
        assert_eq!(report.pages.iter().map(|page| page.requests).sum::<u64>(), 0);
        assert_eq!((report.sign_ins, report.sign_in_errors), (0, 4), "{report:?}");
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(json["pages"][1]["path"], PATH_LIVE);
        assert!(json.get("every_ms").is_none());
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_body(&[("csrf", "ab12"), ("name", ""), ("token", "a b&c=d/é")]),
            "csrf=ab12&name=&token=a%20b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn set_cookie_values_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("lr_console=abc123; Path=/console; HttpOnly"));
        headers.append(SET_COOKIE, HeaderValue::from_static("lr_console_sign_in=; Path=/console; Max-Age=0"));
        assert_eq!(set_cookie(&headers, "lr_console").as_deref(), Some("abc123"));
        assert_eq!(set_cookie(&headers, "lr_console_sign_in"), None, "a removal is no value");
        assert_eq!(set_cookie(&headers, "other"), None);
    }
}
