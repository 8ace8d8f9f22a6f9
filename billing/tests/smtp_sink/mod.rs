//! A small real SMTP server for tests: it listens on 127.0.0.1, speaks enough SMTP for
//! lettre's client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS, no AUTH),
//! keeps every message it accepts, and can refuse the next `MAIL FROM`s with a transient
//! error. Connections are served concurrently; dropping the sink closes the listener and
//! every connection.
#![allow(dead_code)] // each test binary uses its own part of it

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The envelope sender (`MAIL FROM`), without the angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without the angle brackets.
    pub recipients: Vec<String>,
    /// The DATA as received (CRLF line ends, dots unstuffed, without the final `.`).
    pub data: String,
}

#[derive(Default)]
struct State {
    mails: Vec<Mail>,
    reject: usize,
    rejected: usize,
}

pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> SmtpSink {
        SmtpSink::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind the SMTP sink")
    }

    /// Listens on `addr` (a given port, for a server that comes up late).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(SmtpSink { addr, state, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<Mail> {
        lock(&self.state).mails.clone()
    }

    /// Answers `451 4.3.0 try again later` to the next `n` `MAIL FROM`s.
    pub fn reject_next(&self, n: usize) {
        lock(&self.state).reject = n;
    }

    /// How many `MAIL FROM`s were refused by `reject_next`.
    pub fn rejected(&self) -> usize {
        lock(&self.state).rejected
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(session(stream, Arc::clone(&state)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One SMTP session; ends on QUIT, EOF or an I/O error.
async fn session(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut recipients: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let argument = command.get(verb.len()..).unwrap_or_default().trim();
        let reply: String = match verb.as_str() {
            "EHLO" => format!("250-sink.test greets {argument}\r\n250-8BITMIME\r\n250 HELP\r\n"),
            "HELO" => format!("250 sink.test greets {argument}\r\n"),
            "MAIL" => match path_after(argument, "FROM:") {
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
                Some(sender) => {
                    let mut state = lock(&state);
                    if state.reject > 0 {
                        state.reject -= 1;
                        state.rejected += 1;
                        "451 4.3.0 try again later\r\n".into()
                    } else {
                        from = Some(sender);
                        recipients.clear();
                        "250 2.1.0 OK\r\n".into()
                    }
                }
            },
            "RCPT" => match (path_after(argument, "TO:"), &from) {
                (_, None) => "503 5.5.1 MAIL first\r\n".into(),
                (None, _) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
                (Some(recipient), Some(_)) => {
                    recipients.push(recipient);
                    "250 2.1.5 OK\r\n".into()
                }
            },
            "DATA" => match &from {
                Some(sender) if !recipients.is_empty() => {
                    write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                    let Some(data) = read_data(&mut read).await? else { return Ok(()) };
                    let mail = Mail { from: sender.clone(), recipients: std::mem::take(&mut recipients), data };
                    lock(&state).mails.push(mail);
                    from = None;
                    "250 2.0.0 OK queued\r\n".into()
                }
                _ => "503 5.5.1 MAIL and RCPT first\r\n".into(),
            },
            "RSET" => {
                from = None;
                recipients.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return write.shutdown().await;
            }
            _ => "502 5.5.2 command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// `FROM:<a@b> BODY=8BITMIME` → `a@b` (also without brackets, and with a space after `:`).
fn path_after(argument: &str, keyword: &str) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start();
    let path = match rest.strip_prefix('<') {
        Some(inside) => inside.split_once('>')?.0,
        None => rest.split_whitespace().next()?,
    };
    Some(path.to_string())
}

/// Reads DATA lines up to the lone `.`; `None` if the client hung up before it.
async fn read_data<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Option<String>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        let unstuffed = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
    }
}

impl Mail {
    /// The first top-level header named `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split_entity(&self.data);
        header(&headers, name)
    }

    /// The decoded content (7bit, 8bit, quoted-printable or base64) of the first part whose
    /// Content-Type is `content_type` (e.g. `text/plain`), looking into nested multiparts.
    pub fn part(&self, content_type: &str) -> Option<String> {
        find_part(&self.data, content_type)
    }
}

/// Splits an entity into its unfolded headers and its body.
fn split_entity(entity: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match entity.find("\r\n\r\n") {
        Some(end) => (&entity[..end], &entity[end + 4..]),
        None => (entity, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    (headers, body)
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
}

fn find_part(entity: &str, wanted: &str) -> Option<String> {
    let (headers, body) = split_entity(entity);
    let content_type = header(&headers, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let boundary = parameter(&content_type, "boundary")?;
        let delimiter = format!("--{boundary}");
        let mut sections = body.split(delimiter.as_str());
        sections.next(); // the preamble
        for section in sections {
            if section.starts_with("--") {
                break; // the closing delimiter
            }
            let section = section.strip_prefix("\r\n").unwrap_or(section);
            let section = section.strip_suffix("\r\n").unwrap_or(section);
            if let Some(found) = find_part(section, wanted) {
                return Some(found);
            }
        }
        return None;
    }
    if mime != wanted.to_ascii_lowercase() {
        return None;
    }
    let encoding = header(&headers, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => decode_base64(body)?,
        _ => body.as_bytes().to_vec(),
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn parameter(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().trim_matches('"').to_string())
    })
}

fn decode_quoted_printable(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3; // soft line break
                continue;
            }
            let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                decoded.push(byte);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    decoded
}

fn decode_base64(body: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in body.bytes().filter(|byte| !byte.is_ascii_whitespace() && *byte != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            decoded.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(decoded)
}
