//! `leadrouter operator add NAME` and `leadrouter operator remove NAME`: operator accounts
//! on a running node, through its admin API (`PUT` / `DELETE /admin/v1/operators/{name}`).
//!
//! The password is read here (from the terminal without echo, twice, or from the first
//! line of standard input when that is not a terminal, so scripts can pipe it), hashed
//! here with Argon2id, and only the hash is sent: the password never leaves this process.
//!
//! Exit codes (sysexits.h): 0 done; 64 no admin token or a bad `--ops-url`; 65 a name,
//! password or hash refused (here, or by the node: 422); 67 no such operator (remove);
//! 69 the node cannot be reached; 75 the node cannot record now (503; retry); 77 the node
//! refused the admin token (401); 1 anything else.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use leadrouter::domain::operator::{check_password, OperatorName, PasswordHash};
use serde_json::{json, Value};

const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_NOUSER: i32 = 67;
const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;
const EX_NOPERM: i32 = 77;

/// How long the node has to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What to do, and where.
pub struct OperatorCommand<'a> {
    pub add: bool,
    pub name: &'a str,
    /// `--ops-url`, or None for the one `--ops-listen` names.
    pub ops_url: Option<&'a str>,
    pub ops_listen: SocketAddr,
    /// `--admin-token` / `LEADROUTER_ADMIN_TOKEN`, or None to read `<data-dir>/admin-token`.
    pub admin_token: Option<&'a str>,
    pub data_dir: &'a Path,
}

/// A failure: what to print, and the exit code.
struct Failed(i32, String);

/// Runs the command; answers the process's exit code (having printed what happened).
pub fn run(command: &OperatorCommand<'_>) -> i32 {
    match run_inner(command) {
        Ok(done) => {
            println!("{done}");
            0
        }
        Err(Failed(code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

fn run_inner(command: &OperatorCommand<'_>) -> Result<String, Failed> {
    let name = OperatorName::parse(command.name, "name")
        .map_err(|e| Failed(EX_DATAERR, format!("operator name {:?}: {}", command.name, e.message)))?;
    let base = ops_url(command.ops_url, command.ops_listen)?;
    let token = admin_token(command.admin_token, command.data_dir)?;
    let url = format!("{base}/admin/v1/operators/{name}");
    if !command.add {
        let answer = send("DELETE", &url, &token, None)?;
        return match answer.status {
            204 => Ok(format!("operator {name} removed")),
            404 => Err(Failed(EX_NOUSER, format!("there is no operator {name}"))),
            _ => Err(refused(&answer)),
        };
    }
    let password = read_password(name.as_str())?;
    check_password(&password).map_err(|message| Failed(EX_DATAERR, message))?;
    let hash = PasswordHash::create(&password, rand::random())
        .map_err(|e| Failed(1, format!("the password could not be hashed: {e}")))?;
    drop(password);
    let body = json!({"password_hash": hash.as_stored()});
    let answer = send("PUT", &url, &token, Some(body))?;
    match answer.status {
        201 => Ok(format!("operator {name} added")),
        200 => Ok(format!("operator {name}: password replaced")),
        _ => Err(refused(&answer)),
    }
}

/// `--ops-url`, or `http://` and the ops listener's address (loopback for an unspecified
/// one), without a trailing slash. Only `http://`: the ops listener speaks plain HTTP.
fn ops_url(given: Option<&str>, ops_listen: SocketAddr) -> Result<String, Failed> {
    let url = match given {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut addr = ops_listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
            }
            format!("http://{addr}")
        }
    };
    let valid = url.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
    if !valid || url.parse::<hyper::Uri>().is_err() {
        return Err(Failed(EX_USAGE, format!("--ops-url {url:?}: an http:// URL of the node's ops listener")));
    }
    Ok(url)
}

/// The admin token: given, or the one the node wrote into its data dir.
fn admin_token(given: Option<&str>, data_dir: &Path) -> Result<String, Failed> {
    if let Some(token) = given {
        return Ok(token.to_string());
    }
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        _ => Err(Failed(
            EX_USAGE,
            format!(
                "no admin token: give --admin-token (or LEADROUTER_ADMIN_TOKEN), or the node's --data-dir \
                 ({} holds none)",
                path.display()
            ),
        )),
    }
}

/// From the terminal without echo (asked twice), or the first line of standard input.
fn read_password(name: &str) -> Result<String, Failed> {
    let unreadable = |e: std::io::Error| Failed(1, format!("the password could not be read: {e}"));
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for operator {name}: ")).map_err(unreadable)?;
        check_password(&first).map_err(|message| Failed(EX_DATAERR, message))?;
        let again = rpassword::prompt_password("The same password again: ").map_err(unreadable)?;
        if first != again {
            return Err(Failed(EX_DATAERR, "the two passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line).map_err(unreadable)?;
    if read == 0 {
        return Err(Failed(EX_DATAERR, "no password on standard input (its first line is the password)".into()));
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

/// The node's answer.
struct Answer {
    status: u16,
    json: Value,
}

fn send(method: &str, url: &str, token: &str, body: Option<Value>) -> Result<Answer, Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed(1, format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let mut request =
            hyper::Request::builder().method(method).uri(url).header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map(|json| Bytes::from(json.to_string())).unwrap_or_default();
        let request = request.body(Full::new(body)).map_err(|e| Failed(EX_USAGE, format!("{url}: {e}")))?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let unreachable = |e: &dyn std::fmt::Display| {
            Failed(EX_UNAVAILABLE, format!("cannot reach the node at {url}: {e} (is it running? --ops-url)"))
        };
        let exchange = async {
            let response = client.request(request).await.map_err(|e| unreachable(&e))?;
            let status = response.status().as_u16();
            let raw = response.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes();
            Ok(Answer { status, json: serde_json::from_slice(&raw).unwrap_or(Value::Null) })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| unreachable(&"no answer in time"))?
    })
}

/// A refusal, named and with the exit code it maps to.
fn refused(answer: &Answer) -> Failed {
    let error = &answer.json["error"];
    let message = error["message"].as_str().unwrap_or("no message");
    match answer.status {
        401 => Failed(EX_NOPERM, "the node refused the admin token (401): check --admin-token".into()),
        422 => {
            let details: Vec<String> = error["details"]
                .as_array()
                .map(|details| {
                    details
                        .iter()
                        .map(|d| {
                            format!("{}: {}", d["field"].as_str().unwrap_or(""), d["message"].as_str().unwrap_or(""))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Failed(EX_DATAERR, format!("the node refused it (422): {message}; {}", details.join("; ")))
        }
        503 => Failed(EX_TEMPFAIL, format!("the node cannot record it now (503): {message}; retry")),
        status => Failed(1, format!("the node answered {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ops_url_defaults_to_the_ops_listener_on_loopback_and_must_be_http() {
        let listen: SocketAddr = "0.0.0.0:9191".parse().unwrap();
        assert_eq!(ops_url(None, listen).ok().unwrap(), "http://127.0.0.1:9191");
        let local: SocketAddr = "127.0.0.2:9090".parse().unwrap();
        assert_eq!(ops_url(None, local).ok().unwrap(), "http://127.0.0.2:9090");
        assert_eq!(ops_url(Some("http://node-1:9090/"), local).ok().unwrap(), "http://node-1:9090");
        for bad in ["https://node-1:9090", "node-1:9090", "http://", "http://a b"] {
            assert!(matches!(ops_url(Some(bad), local), Err(Failed(EX_USAGE, _))), "{bad}");
        }
    }
}
