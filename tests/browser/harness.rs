//! The browser harness: Debian's `chromedriver` on a free port, a headless Chromium session
//! through it (WebDriver, by `fantoccini`), helpers that read like what a person does
//! (go to a page, type into the field with this label, click, read), and small pages served
//! by the test itself (`TestSite`). The router under test is the real binary
//! (`RouterProcess`, shared with the integration tests).
//!
//! Every wait has a generous deadline and polls: these tests run on a busy machine of two
//! cores, so nothing here asserts how fast anything happens.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub use crate::router_process::{free_port, RouterProcess};

/// How long any wait of the harness waits before it fails the test: long, because a page
/// of a router that shares two cores with a build may take seconds; a test that passes
/// never waits it out.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// What Chromium is started with. `--headless=new` is the real browser without a window;
/// `--no-sandbox` because tests run as root in a container; `--disable-dev-shm-usage`
/// because a container's /dev/shm is small. The proxy that does not exist keeps Chromium's
/// own calls home (updates, translations, safe browsing) on this machine: loopback, where
/// every page under test is, never goes through a proxy.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
    "--hide-scrollbars",
    "--lang=en-US",
    "--proxy-server=127.0.0.1:9",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
];

/// A viewport: CSS pixels, whether the page is shown as on a phone (a page without
/// `<meta name="viewport" content="width=device-width">` is then laid out 980 px wide and
/// zoomed out, as a phone does), and device pixels per CSS pixel (a screenshot is
/// `width * scale` pixels wide).
#[derive(Clone, Copy, Debug)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub mobile: bool,
    pub scale: f64,
}

impl Viewport {
    /// A laptop's browser window; every session starts with it.
    pub const DESKTOP: Viewport = Viewport { width: 1280, height: 800, mobile: false, scale: 1.0 };
    /// A phone (390×844 CSS pixels, an iPhone 12 to 15's): for DESIGN §15's "reads well on
    /// a phone", checked by `assert_fits_width`.
    pub const PHONE: Viewport = Viewport { width: 390, height: 844, mobile: true, scale: 1.0 };
}

/// Where an executable is on `PATH`, or a failed test saying how to get it: the browser
/// tests never skip silently.
pub fn installed(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file()).unwrap_or_else(
        || {
            panic!(
                "`{program}` is not on PATH: the browser tests need Debian's `chromium` and \
                 `chromium-driver` packages. scripts/test.sh installs them when they are missing \
                 (or: apt-get install chromium chromium-driver)"
            )
        },
    )
}

// ------------------------------------------------------------------------ chromedriver

/// `chromedriver --port=<free port>`, in a process group of its own: dropping it kills the
/// group, so the Chromium it started goes too, even when a test panics mid-session.
pub struct Chromedriver {
    child: Child,
    pub port: u16,
}

impl Chromedriver {
    /// Starts chromedriver and waits (at most `DEADLINE`) until `/status` says it is ready.
    pub async fn start() -> Chromedriver {
        let binary = installed("chromedriver");
        let port = free_port();
        let mut command = Command::new(binary);
        command.arg(format!("--port={port}")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = Chromedriver { child: command.spawn().expect("chromedriver starts"), port };
        let started = Instant::now();
        while !driver.ready().await {
            if let Some(status) = driver.child.try_wait().expect("chromedriver's status") {
                panic!("chromedriver exited before it was ready: {status}");
            }
            assert!(started.elapsed() < DEADLINE, "chromedriver was not ready within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// The WebDriver endpoint (with its trailing slash, which commands are joined to).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    async fn ready(&self) -> bool {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = hyper::Request::get(format!("{}status", self.url())).body(Full::new(Bytes::new())).unwrap();
        let Ok(response) = client.request(request).await else { return false };
        let Ok(body) = response.into_body().collect().await else { return false };
        let status: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
        status["value"]["ready"] == true
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // The group's id is chromedriver's pid (`process_group(0)`).
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------ the browser

/// A cookie as the browser keeps it, with the flags DESIGN §15 asks of a session cookie.
#[derive(Clone, Debug)]
pub struct CookieFlags {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it (absent when it says nothing).
    pub same_site: Option<String>,
    pub path: Option<String>,
}

/// One headless Chromium session on a chromedriver of its own. Every helper fails the test
/// with what it was looking for and where, rather than answering an error.
pub struct Browser {
    client: Client,
    viewport: Viewport,
    // Dropped after the client: the session's Chromium dies with the driver's group.
    _driver: Chromedriver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium through it, with the `DESKTOP` viewport.
    pub async fn start() -> Browser {
        let driver = Chromedriver::start().await;
        let chromium = installed("chromium");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": CHROMIUM_ARGS },
            "timeouts": { "pageLoad": DEADLINE.as_millis() as u64, "script": DEADLINE.as_millis() as u64, "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(Capabilities::from_iter(capabilities));
        let url = driver.url();
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(2 * DEADLINE, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => panic!("chromedriver could not start Chromium: {error}"),
            Err(_) => panic!("Chromium did not start within {:?}", 2 * DEADLINE),
        };
        let mut browser = Browser { client, viewport: Viewport::DESKTOP, _driver: driver };
        browser.set_viewport(Viewport::DESKTOP).await;
        browser
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the session (Chromium exits); dropping the browser also ends it, less politely.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver (its
    /// `goog/cdp/execute`) and answers its result.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        let cdp = Cdp { command: command.to_string(), params };
        self.client.issue_cmd(cdp).await.unwrap_or_else(|error| panic!("DevTools {command} failed: {error}"))
    }

    /// Shows pages at `viewport` from now on (this tab, across navigations), exactly: the
    /// window's own size no longer matters.
    pub async fn set_viewport(&mut self, viewport: Viewport) {
        let metrics = json!({
            "width": viewport.width, "height": viewport.height,
            "deviceScaleFactor": viewport.scale, "mobile": viewport.mobile,
        });
        self.cdp("Emulation.setDeviceMetricsOverride", metrics).await;
        self.viewport = viewport;
    }

    /// Sends these headers with every request the page makes from now on (e.g. an API key
    /// on a page that needs one: a person's browser could not, a test's can).
    pub async fn send_headers(&self, headers: &[(&str, &str)]) {
        let headers: serde_json::Map<String, Value> =
            headers.iter().map(|(name, value)| (name.to_string(), Value::from(*value))).collect();
        self.cdp("Network.enable", json!({})).await;
        self.cdp("Network.setExtraHTTPHeaders", json!({ "headers": headers })).await;
    }

    /// Goes to `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|error| panic!("could not load {url}: {error}"));
    }

    /// The URL the browser shows.
    pub async fn url(&self) -> String {
        self.client.current_url().await.expect("the current URL").to_string()
    }

    /// The HTTP status the page shown was answered with (its navigation's
    /// `responseStatus`, so a form post's too; 0 when the browser does not know it). Read
    /// it after waiting for something of the page: a click may still be loading it.
    pub async fn status(&self) -> u16 {
        let read = "const [page] = performance.getEntriesByType('navigation'); \
                    return page ? page.responseStatus : 0;";
        self.script(read).await.as_u64().and_then(|status| u16::try_from(status).ok()).unwrap_or(0)
    }

    /// Does `action` (a click that loads a page: a link, a form's button) and waits (at most
    /// `DEADLINE`) until the page it loads is shown. The page before is marked first, so a
    /// page that looks alike (the same form shown again with an error) is not taken for the
    /// next one: `browser.loads(browser.click_button("Save")).await`.
    pub async fn loads(&self, action: impl Future<Output = ()>) {
        self.script("window.harnessPageBefore = true; return null;").await;
        action.await;
        let probe = "return window.harnessPageBefore === undefined && document.readyState === 'complete';";
        self.until("the next page has loaded", || async move {
            // While the next page loads, a script may fail: then it has not loaded yet.
            (self.client.execute(probe, Vec::new()).await.ok()? == Value::Bool(true)).then_some(())
        })
        .await;
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client.title().await.expect("the title")
    }

    /// The page shown, read as JSON (Chromium shows a JSON answer as text), waiting (at most
    /// `DEADLINE`) until it is JSON: a click may still be loading the next page.
    pub async fn json(&self) -> Value {
        let read = "const pre = document.querySelector('body > pre'); \
                    return (pre || document.body || document.documentElement).textContent;";
        self.until("the page is JSON", || async move {
            let text = self.script(read).await;
            serde_json::from_str(text.as_str()?).ok()
        })
        .await
    }

    /// The first element matching `css`, waiting (at most `DEADLINE`) until there is one.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(Locator::Css(css), css).await
    }

    /// Every element matching `css` now (no waiting: an empty list is an answer).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap_or_else(|error| panic!("find_all({css}): {error}"))
    }

    /// The visible text of the first element matching `css` (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_else(|error| panic!("the text of {css}: {error}"))
    }

    /// Waits (at most `DEADLINE`) until the first element matching `css` shows text
    /// containing `wanted`, and answers its whole text.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        self.until(&format!("{css} shows {wanted:?}"), || async move {
            let elements = self.find_all(css).await;
            let text = elements.first()?.text().await.ok()?;
            text.contains(wanted).then_some(text)
        })
        .await
    }

    /// Clicks the first element matching `css` (waiting for it).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element.click().await.unwrap_or_else(|error| panic!("click {css}: {error}"));
    }

    /// Clicks the button (`<button>`, or an `<input>` of type submit or button) whose text
    /// is `label`, as a person picks a button by what it says.
    pub async fn click_button(&self, label: &str) {
        let text = xpath_literal(label);
        let xpath = format!(
            "//button[normalize-space(.)={text}] | //input[(@type='submit' or @type='button') and @value={text}]"
        );
        let button = self.wait_for(Locator::XPath(&xpath), &format!("the button {label:?}")).await;
        button.click().await.unwrap_or_else(|error| panic!("click the button {label:?}: {error}"));
    }

    /// Types `value` into the form field labelled `label` (after clearing it): the field a
    /// `<label>` with exactly that text names by `for`, or holds, or the one whose
    /// `aria-label` is `label`. A field without a label cannot be typed into, which keeps
    /// the pages usable with a screen reader (DESIGN §15).
    pub async fn fill(&self, label: &str, value: &str) {
        let field = self.labelled(label).await;
        field.clear().await.unwrap_or_else(|error| panic!("clear the field {label:?}: {error}"));
        field.send_keys(value).await.unwrap_or_else(|error| panic!("type into the field {label:?}: {error}"));
    }

    /// The form field labelled `label` (see `fill`), waiting for it.
    pub async fn labelled(&self, label: &str) -> Element {
        let text = xpath_literal(label);
        let field = "self::input or self::select or self::textarea";
        let xpath = format!(
            "//*[({field}) and (@id = //label[normalize-space(.)={text}]/@for or @aria-label={text})] \
             | //label[normalize-space(.)={text}]//*[{field}]"
        );
        self.wait_for(Locator::XPath(&xpath), &format!("the field labelled {label:?}")).await
    }

    /// Picks the option showing `option` in the list labelled `label` (see `fill`).
    pub async fn select(&self, label: &str, option: &str) {
        let list = self.labelled(label).await;
        list.select_by_label(option).await.unwrap_or_else(|error| panic!("pick {option:?} in {label:?}: {error}"));
    }

    /// Every cookie the browser keeps for the page it shows, with its flags (through
    /// WebDriver's cookie API, so HttpOnly cookies too).
    pub async fn cookies(&self) -> Vec<CookieFlags> {
        let cookies = self.client.get_all_cookies().await.expect("the cookies");
        cookies
            .iter()
            .map(|cookie| CookieFlags {
                name: cookie.name().to_string(),
                value: cookie.value().to_string(),
                http_only: cookie.http_only().unwrap_or(false),
                secure: cookie.secure().unwrap_or(false),
                same_site: cookie.same_site().map(|same_site| same_site.to_string()),
                path: cookie.path().map(str::to_string),
            })
            .collect()
    }

    /// The cookie named `name`; fails the test, listing the others, when there is none.
    pub async fn cookie(&self, name: &str) -> CookieFlags {
        let cookies = self.cookies().await;
        let names: Vec<String> = cookies.iter().map(|cookie| cookie.name.clone()).collect();
        cookies.into_iter().find(|cookie| cookie.name == name).unwrap_or_else(|| panic!("no cookie {name}: {names:?}"))
    }

    /// Runs `script` (a function body; `return` answers) in the page.
    pub async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|error| panic!("script failed: {error}"))
    }

    /// The page's width as laid out and the viewport's: (`scrollWidth` of the document,
    /// `innerWidth` of the window). Wider content scrolls sideways.
    pub async fn widths(&self) -> (u64, u64) {
        let widths = self.script("return [document.documentElement.scrollWidth, window.innerWidth];").await;
        (widths[0].as_u64().expect("scrollWidth"), widths[1].as_u64().expect("innerWidth"))
    }

    /// Whether the page shown fits the viewport's width: it does not scroll sideways
    /// (`scrollWidth <= innerWidth`) and is laid out at the viewport's width. On a phone
    /// viewport both matter: a phone widens the layout to content wider than the screen
    /// (then `innerWidth` grows with `scrollWidth`) and lays out a page without
    /// `<meta name="viewport" content="width=device-width">` 980 px wide. The error says
    /// which, for a failure message.
    pub async fn fits_width(&self) -> Result<(), String> {
        let (scroll, inner) = self.widths().await;
        let wanted = u64::from(self.viewport.width);
        if scroll <= inner && inner == wanted {
            return Ok(());
        }
        let url = self.url().await;
        let meta = self.script("return !!document.querySelector('meta[name=viewport]');").await;
        if self.viewport.mobile && meta == false {
            return Err(format!(
                "{url} has no <meta name=\"viewport\" content=\"width=device-width\">: a phone lays it \
                 out {inner} px wide and shrinks it to {wanted} px"
            ));
        }
        Err(format!(
            "{url} scrolls sideways on a {wanted} px wide screen: its content is {} px wide",
            scroll.max(inner)
        ))
    }

    /// Fails the test, saying why, when the page shown does not fit the viewport's width
    /// (`fits_width`): at `Viewport::PHONE`, DESIGN §15's "reads well on a phone".
    pub async fn assert_fits_width(&self) {
        if let Err(problem) = self.fits_width().await {
            panic!("{problem}");
        }
    }

    /// Writes a PNG of the viewport to `path` (its folders made as needed) and answers it.
    pub async fn screenshot(&self, path: &Path) -> Vec<u8> {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
        }
        std::fs::write(path, &png).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        png
    }

    /// Polls `probe` (every 50 ms, at most `DEADLINE`) until it answers `Some`, and answers
    /// that; the failure names `what` was awaited. Write the probe as
    /// `|| async move { ... }` over `&Browser` and other references.
    pub async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if started.elapsed() > DEADLINE {
                panic!("waited {DEADLINE:?} until {what}, on {}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, locator: Locator<'_>, what: &str) -> Element {
        match self.client.wait().at_most(DEADLINE).every(Duration::from_millis(50)).for_element(locator).await {
            Ok(element) => element,
            Err(error) => panic!("no {what} within {DEADLINE:?} on {}: {error}", self.url().await),
        }
    }
}

/// A DevTools command through chromedriver's `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    command: String,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "cmd": self.command, "params": self.params }).to_string()))
    }
}

/// `text` as an XPath 1.0 string literal (which has no escapes: quotes are spliced in with
/// `concat`).
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|part| format!("'{part}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

// ------------------------------------------------------------------------ HTTP

/// An answer to `http_request`, read whole.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// The body read as JSON (`Null` when it is not JSON).
    pub json: Value,
}

/// Sends one request outside the browser, as an API client or a script does: `method` to
/// `url` with `headers` and `body` (empty: none). For what a test checks behind the pages
/// (the admin API, a buyer's or a supplier's calls) and for requests a browser would not
/// send (an old cookie sent again).
pub async fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpAnswer {
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = Full::new(Bytes::from(body.to_string()));
    let request = request.body(body).unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await.unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap_or_else(|error| panic!("{method} {url}'s body: {error}")).to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    HttpAnswer { status: parts.status.as_u16(), headers: parts.headers, json }
}

// ------------------------------------------------------------------------ test pages

/// A small site served by the test on a free loopback port (an axum `Router`), for pages
/// the router does not have; stopped on drop.
pub struct TestSite {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl TestSite {
    pub async fn start(app: axum::Router) -> TestSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the test site serves");
        });
        TestSite { url, task }
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------------ PNG

/// The width and height of a PNG, or `None` when `bytes` is not one.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || &bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    Some((number(16), number(20)))
}

#[test]
fn xpath_literals_quote_any_text() {
    assert_eq!(xpath_literal("Name"), "'Name'");
    assert_eq!(xpath_literal("Buyer's key"), "\"Buyer's key\"");
    assert_eq!(xpath_literal("a'b\"c"), "concat('a', \"'\", 'b\"c')");
}
