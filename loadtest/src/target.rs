//! What may be loaded: only this machine. Parses `--target`, refuses anything that is not
//! loopback (127.0.0.0/8, ::1, `localhost` resolving only to loopback), and parses the
//! human durations the command line takes (`20s`, `500ms`, `2m`).
//!
//! Rationale: a load generator pointed at someone else's server is an attack; the check
//! runs on the name as written *and* on every address it resolves to, so `/etc/hosts`
//! tricks cannot widen it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use hyper::Uri;

/// A checked target: where to connect and what to send as `Host`.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written, for the `Host` header (HTTP/1.1 requires it).
    pub authority: String,
    pub display: String,
}

/// True when `host` (as written in a URL, brackets allowed) names this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Parses and checks `--target` (`http://127.0.0.1:8080`, path ignored).
pub fn parse_target_uri(text: &str) -> anyhow::Result<(String, u16)> {
    let uri: Uri = text.parse().with_context(|| format!("--target {text:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--target must be http:// (plain HTTP on this machine), got {text:?}");
    }
    let host = uri.host().context("--target has no host")?.to_string();
    if !is_loopback_host(&host) {
        bail!("--target {host} is not loopback: this tool only loads this machine (127.0.0.0/8, ::1, localhost)");
    }
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// Parses, checks, and resolves `--target`; every resolved address must be loopback.
pub async fn resolve(text: &str) -> anyhow::Result<Target> {
    let (host, port) = parse_target_uri(text)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((bare.as_str(), port)).await.with_context(|| format!("resolving {host}"))?.collect();
    if let Some(outside) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!("{host} resolves to {outside}, which is not loopback");
    }
    let addr = *addrs.first().with_context(|| format!("{host} resolves to nothing"))?;
    Ok(Target { addr, authority: format!("{host}:{port}"), display: format!("http://{host}:{port}") })
}

/// Parses `20s`, `1.5s`, `500ms`, `2m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1_000.0)
    };
    let value: f64 = number.parse().with_context(|| format!("not a duration: {text:?} (try 20s, 500ms, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        bail!("not a duration: {text:?}");
    }
    let ms = value * unit_ms;
    if ms > 86_400_000.0 {
        bail!("duration too long: {text:?}");
    }
    // Bounded above and non-negative, so the cast is exact to the millisecond.
    Ok(Duration::from_millis(ms.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_pass() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "[::1]", "::1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["10.0.0.1", "0.0.0.0", "192.168.1.1", "example.com", "[::]", "128.0.0.1", "localhost.evil.com"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn targets_must_be_plain_http_on_loopback() {
        assert_eq!(parse_target_uri("http://127.0.0.1:8080").ok(), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(parse_target_uri("http://localhost").ok(), Some(("localhost".into(), 80)));
        assert_eq!(parse_target_uri("http://[::1]:9/x").ok(), Some(("[::1]".into(), 9)));
        assert!(parse_target_uri("https://127.0.0.1:8080").is_err());
        assert!(parse_target_uri("http://10.1.1.1:8080").is_err());
        assert!(parse_target_uri("http://example.com").is_err());
        assert!(parse_target_uri("127.0.0.1:8080").is_err());
    }

    #[tokio::test]
    async fn resolution_yields_a_loopback_address() {
        let target = resolve("http://127.0.0.1:18080").await.expect("loopback resolves");
        assert!(target.addr.ip().is_loopback());
        assert_eq!(target.authority, "127.0.0.1:18080");
    }

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("20s").ok(), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s").ok(), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("15").ok(), Some(Duration::from_secs(15)));
        for bad in ["", "s", "-1s", "fast", "1h", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
