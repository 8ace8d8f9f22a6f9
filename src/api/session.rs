//! Browser sessions of the console and the portal (DESIGN §15): who signed in, until when,
//! and the CSRF token their forms carry; the cookies that name them; and the sign-in rate
//! limit per client address.
//!
//! Rationale: sessions live in this process's memory, looked up by an unguessable id, so a
//! sign-out or an expiry ends them at once (a signed stateless cookie could not be taken
//! back). On several nodes a browser keeps to the node it signed in on (a sticky load
//! balancer), or signs in again. Times come from the router's clock.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;

use crate::domain::operator::Actor;

/// Who a session speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Signed in with the admin token.
    AdminToken,
    /// An operator account (`leadrouter operator add`).
    Operator(String),
    Buyer(String),
    Supplier(String),
}

impl Principal {
    /// Who the audit trail says made a change in this session.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::AdminToken => Actor::AdminToken,
            Principal::Operator(name) => Actor::parse(&format!("operator:{name}")),
            Principal::Buyer(id) => Actor::Buyer(id.clone()),
            // Suppliers change no admin state.
            Principal::Supplier(_) => Actor::Unknown,
        }
    }
}

/// Who is signed in, as the page header shows it.
impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::AdminToken => f.write_str("admin-token"),
            Principal::Operator(name) => write!(f, "operator:{name}"),
            Principal::Buyer(id) => write!(f, "buyer:{id}"),
            Principal::Supplier(id) => write!(f, "supplier:{id}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    /// A fingerprint of the credential a buyer or supplier signed in with (its API key),
    /// checked on each request: a rotated key ends the sessions it opened.
    pub credential: Option<String>,
    started: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl Session {
    /// When its principal signed in.
    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }
}

/// A session ends after this long without a request...
const IDLE: Duration = Duration::minutes(30);
/// ...and this long after sign-in in any case.
const ABSOLUTE: Duration = Duration::hours(12);

/// Failed sign-ins one client address may make per window before it must wait.
const SIGN_IN_FAILURES_MAX: u32 = 5;
const SIGN_IN_WINDOW: Duration = Duration::minutes(1);

/// The sessions of one surface (console or portal), named by their cookie.
pub struct Sessions {
    cookie: &'static str,
    sessions: DashMap<String, Session>,
    failures: DashMap<IpAddr, (DateTime<Utc>, u32)>,
}

impl Sessions {
    pub fn new(cookie: &'static str) -> Sessions {
        Sessions { cookie, sessions: DashMap::new(), failures: DashMap::new() }
    }

    pub fn cookie_name(&self) -> &'static str {
        self.cookie
    }

    /// Starts a session; answers its id (the cookie's value).
    pub fn start(&self, principal: Principal, now: DateTime<Utc>) -> (String, Session) {
        self.start_with(principal, None, now)
    }

    /// Starts a session bound to a credential's fingerprint (see `Session::credential`).
    pub fn start_with(
        &self,
        principal: Principal,
        credential: Option<String>,
        now: DateTime<Utc>,
    ) -> (String, Session) {
        self.forget_expired(now);
        let id = random_token();
        let session = Session { principal, csrf: random_token(), credential, started: now, last_seen: now };
        self.sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id` names, touched; `None` when unknown or expired (then gone).
    pub fn find(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut entry = self.sessions.get_mut(id)?;
        if now - entry.last_seen >= IDLE || now - entry.started >= ABSOLUTE {
            drop(entry);
            self.sessions.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(entry.clone())
    }

    /// Ends a session (sign-out).
    pub fn end(&self, id: &str) {
        self.sessions.remove(id);
    }

    /// Ends every session of `principal` (an operator removed, a key rotated).
    pub fn end_all_of(&self, principal: &Principal) {
        self.sessions.retain(|_, session| &session.principal != principal);
    }

    fn forget_expired(&self, now: DateTime<Utc>) {
        self.sessions.retain(|_, session| now - session.last_seen < IDLE && now - session.started < ABSOLUTE);
        self.failures.retain(|_, (since, _)| now - *since < SIGN_IN_WINDOW);
    }

    /// Whether `address` may try to sign in now (too many failures lately: not yet).
    pub fn may_try(&self, address: IpAddr, now: DateTime<Utc>) -> bool {
        match self.failures.get(&address) {
            Some(entry) => {
                let (since, count) = *entry;
                now - since >= SIGN_IN_WINDOW || count < SIGN_IN_FAILURES_MAX
            }
            None => true,
        }
    }

    /// Counts a failed sign-in of `address`.
    pub fn failed(&self, address: IpAddr, now: DateTime<Utc>) {
        let mut entry = self.failures.entry(address).or_insert((now, 0));
        if now - entry.0 >= SIGN_IN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// The `Set-Cookie` value that names session `id`: HttpOnly, SameSite=Strict, for the
    /// surface's path, Secure when the browser reached us over TLS (`secure`).
    pub fn cookie(&self, id: &str, path: &str, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!("{}={id}; Path={path}; HttpOnly; SameSite=Strict{secure}", self.cookie)
    }

    /// The `Set-Cookie` value that removes the cookie (sign-out).
    pub fn removal(&self, path: &str, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!("{}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict{secure}", self.cookie)
    }

    /// The session id in a request's `Cookie` headers, if any.
    pub fn id_in<'a>(&self, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
        cookie_value(headers, self.cookie)
    }
}

/// The value of cookie `name` in a request's `Cookie` headers, if any.
pub fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// 32 random bytes, hex: a session id or a CSRF token.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether a form's CSRF token is the session's (constant time).
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    leadrouter_http::auth::token_matches(given, &session.csrf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_session_lives_while_used_and_ends_idle_after_thirty_minutes_or_after_twelve_hours() {
        let sessions = Sessions::new("lr_console");
        let (id, session) = sessions.start(Principal::AdminToken, noon());
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        let mut now = noon();
        for _ in 0..24 {
            now += Duration::minutes(29);
            assert!(sessions.find(&id, now).is_some(), "used every 29 minutes at {now}");
        }
        now += Duration::minutes(29);
        assert!(sessions.find(&id, now).is_none(), "twelve hours after sign-in");
        let (id, _) = sessions.start(Principal::AdminToken, noon());
        assert!(sessions.find(&id, noon() + Duration::minutes(30)).is_none(), "idle thirty minutes");
        assert!(sessions.find(&id, noon()).is_none(), "an ended session stays ended");
    }

    #[test]
    fn sign_out_and_removal_end_sessions_at_once() {
        let sessions = Sessions::new("lr_portal");
        let (a, _) = sessions.start(Principal::Buyer("b1".into()), noon());
        let (b, _) = sessions.start(Principal::Buyer("b1".into()), noon());
        let (c, _) = sessions.start(Principal::Buyer("b2".into()), noon());
        sessions.end(&a);
        assert!(sessions.find(&a, noon()).is_none());
        sessions.end_all_of(&Principal::Buyer("b1".into()));
        assert!(sessions.find(&b, noon()).is_none());
        assert!(sessions.find(&c, noon()).is_some());
    }

    #[test]
    fn five_failed_sign_ins_a_minute_make_an_address_wait() {
        let sessions = Sessions::new("lr_console");
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            assert!(sessions.may_try(address, noon()));
            sessions.failed(address, noon());
        }
        assert!(!sessions.may_try(address, noon() + Duration::seconds(59)));
        assert!(sessions.may_try("192.0.2.8".parse().unwrap(), noon()), "another address may");
        assert!(sessions.may_try(address, noon() + Duration::seconds(60)));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls_and_found_among_others() {
        let sessions = Sessions::new("lr_console");
        assert_eq!(
            sessions.cookie("abc", "/console", false),
            "lr_console=abc; Path=/console; HttpOnly; SameSite=Strict"
        );
        assert!(sessions.cookie("abc", "/console", true).ends_with("; Secure"));
        assert!(sessions.removal("/console", false).contains("Max-Age=0"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, "lr_portal=xyz; lr_console=abc".parse().unwrap());
        assert_eq!(sessions.id_in(&headers), Some("abc"));
        let (_, session) = sessions.start(Principal::AdminToken, noon());
        assert!(csrf_matches(&session, &session.csrf.clone()));
        assert!(!csrf_matches(&session, "0"));
    }
}
