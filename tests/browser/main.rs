//! Browser tests: a real headless Chromium, driven through chromedriver (WebDriver), on
//! the real router binary and on small pages the tests serve themselves. One test binary
//! of its own (`cargo test --test browser`); scripts/test.sh installs Debian's `chromium`
//! and `chromium-driver` and runs it with the rest. ARCHITECTURE.md "Browser tests" tells
//! how the harness works.

mod harness;
/// The real binary as a child process (shared with the integration tests).
#[path = "../support/router_process.rs"]
mod router_process;

mod console;
mod console_operator;
mod portal;
mod router_pages;
mod screenshots;
mod test_site;
