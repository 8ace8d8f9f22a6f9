//! The buyer and supplier portal (DESIGN §15) at `/portal/` on the public listener:
//! server-rendered pages (the console's frame, stylesheet and script, served here too as
//! this listener is another origin), signed in with the party's API key.
//!
//! Who may see what: a page reads only the signed-in party's own data, by the id in its
//! session, never by an id from the URL; a buyer's pages are not found for a supplier and
//! the other way round. A session ends when its party's key changes. Every form post
//! carries the session's CSRF token. Nothing of a lead's PII is shown, put in a URL or
//! logged: leads are named by their ids.

mod buyer;
mod supplier;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{html, Markup};
use sha2::{Digest, Sha256};

use super::session::{csrf_matches, Principal, Session};
use super::web::form::{
    checked_sign_in, client_address, field, over_tls, read_form, set_cookies, sign_in_token, sign_in_token_spent,
};
use super::web::page;
use super::AppState;
use crate::domain::market::Party;

type Shared = State<Arc<AppState>>;

/// The cookie that carries the sign-in form's token (before there is a session).
const SIGN_IN_COOKIE: &str = "lr_portal_sign_in";

const BUYER_FRAME: page::Frame = page::Frame {
    root: "/portal",
    name: "leadrouter buyer portal",
    nav: &[
        ("/portal", "Balance"),
        ("/portal/leads", "Leads bought"),
        ("/portal/returns", "Returns"),
        ("/portal/campaigns", "Campaigns"),
    ],
};

const SUPPLIER_FRAME: page::Frame = page::Frame {
    root: "/portal",
    name: "leadrouter supplier portal",
    nav: &[
        ("/portal", "Leads sent"),
        ("/portal/payouts", "Payouts"),
        ("/portal/returns", "Returns"),
        ("/portal/spec", "Spec"),
    ],
};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/portal", get(home))
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .route("/portal/sign-out", post(sign_out))
        .route("/portal/leads", get(leads))
        .route("/portal/leads.csv", get(leads_csv))
        .route("/portal/returns", get(returns_page).post(request_return))
        .route("/portal/campaigns", get(campaigns_page))
        .route("/portal/campaigns/{id}/{action}", post(set_campaign))
        .route("/portal/payouts", get(payouts_page))
        .route("/portal/spec", get(spec_page))
        .route("/portal/assets/console.css", get(|| async { page::asset("text/css; charset=utf-8", page::STYLESHEET) }))
        .route(
            "/portal/assets/console.js",
            get(|| async { page::asset("text/javascript; charset=utf-8", page::SCRIPT) }),
        )
}

/// Who signed in, with the party's kind.
enum Signed {
    Buyer(String, Session),
    Supplier(String, Session),
}

/// The signed-in session of this request, if any, while its party still has the key it
/// signed in with.
fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Signed> {
    let sessions = &state.portal_sessions;
    let id = sessions.id_in(headers)?;
    let session = sessions.find(id, state.router.clock().now())?;
    let market = state.router.market();
    let key = match &session.principal {
        Principal::Buyer(buyer_id) => market.buyer(buyer_id).map(|buyer| buyer.api_key.as_str()),
        Principal::Supplier(supplier_id) => market.supplier(supplier_id).map(|supplier| supplier.api_key.as_str()),
        Principal::AdminToken | Principal::Operator(_) => None,
    };
    if key.map(fingerprint) != session.credential {
        sessions.end(id);
        return None;
    }
    match session.principal.clone() {
        Principal::Buyer(buyer_id) => Some(Signed::Buyer(buyer_id, session)),
        Principal::Supplier(supplier_id) => Some(Signed::Supplier(supplier_id, session)),
        Principal::AdminToken | Principal::Operator(_) => None,
    }
}

/// What a session remembers of the key it signed in with: never the key itself.
fn fingerprint(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn buyer_page(title: &str, current: &str, session: &Session, status: StatusCode, body: Markup) -> Response {
    page::answer(status, page::layout(&BUYER_FRAME, title, current, Some(session), body))
}

fn supplier_page(title: &str, current: &str, session: &Session, status: StatusCode, body: Markup) -> Response {
    page::answer(status, page::layout(&SUPPLIER_FRAME, title, current, Some(session), body))
}

/// A page the signed-in party has no business with (the other kind's, or another party's
/// object): as unknown as a page that does not exist.
fn not_found(signed: &Signed) -> Response {
    let body = html! { h1 { "Not found" } p { "There is no such page for you." } };
    match signed {
        Signed::Buyer(_, session) => buyer_page("Not found", "", session, StatusCode::NOT_FOUND, body),
        Signed::Supplier(_, session) => supplier_page("Not found", "", session, StatusCode::NOT_FOUND, body),
    }
}

fn to_sign_in() -> Response {
    page::see_other("/portal/sign-in")
}

async fn home(State(state): Shared, headers: HeaderMap) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Buyer(buyer_id, session)) => buyer::balance_page(&state, &buyer_id, &session).await,
        Some(Signed::Supplier(supplier_id, session)) => supplier::leads_page(&state, &supplier_id, &session, None),
        None => to_sign_in(),
    }
}

async fn leads(State(state): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Buyer(buyer_id, session)) => buyer::leads_page(&state, &buyer_id, &session, query).await,
        Some(Signed::Supplier(supplier_id, session)) => {
            supplier::leads_page(&state, &supplier_id, &session, query.as_deref())
        }
        None => to_sign_in(),
    }
}

async fn leads_csv(State(state): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Buyer(buyer_id, session)) => buyer::leads_csv(&state, &buyer_id, &session, query).await,
        Some(signed) => not_found(&signed),
        None => to_sign_in(),
    }
}

async fn returns_page(State(state): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Buyer(buyer_id, session)) => buyer::returns_page(&state, &buyer_id, &session, query.as_deref()),
        Some(Signed::Supplier(supplier_id, session)) => supplier::returns_page(&state, &supplier_id, &session),
        None => to_sign_in(),
    }
}

async fn request_return(State(state): Shared, request: Request) -> Response {
    let Some((signed, form)) = signed_form(&state, request).await else { return to_sign_in() };
    match (signed, form) {
        (Signed::Buyer(buyer_id, session), Some(form)) => {
            buyer::request_return(&state, &buyer_id, &session, &form).await
        }
        (signed @ Signed::Supplier(..), _) => not_found(&signed),
        (signed, None) => forbidden(&signed),
    }
}

async fn campaigns_page(State(state): Shared, headers: HeaderMap) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Buyer(buyer_id, session)) => buyer::campaigns_page(&state, &buyer_id, &session, None).await,
        Some(signed) => not_found(&signed),
        None => to_sign_in(),
    }
}

async fn set_campaign(
    State(state): Shared,
    Path((campaign_id, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some((signed, form)) = signed_form(&state, request).await else { return to_sign_in() };
    let active = match action.as_str() {
        "pause" => false,
        "resume" => true,
        _ => return not_found(&signed),
    };
    match (signed, form) {
        (Signed::Buyer(buyer_id, session), Some(_)) => {
            buyer::set_campaign(&state, &buyer_id, &session, &campaign_id, active).await
        }
        (signed @ Signed::Supplier(..), _) => not_found(&signed),
        (signed, None) => forbidden(&signed),
    }
}

async fn payouts_page(State(state): Shared, headers: HeaderMap) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Supplier(supplier_id, session)) => supplier::payouts_page(&state, &supplier_id, &session).await,
        Some(signed) => not_found(&signed),
        None => to_sign_in(),
    }
}

async fn spec_page(State(state): Shared, headers: HeaderMap) -> Response {
    match session_of(&state, &headers) {
        Some(Signed::Supplier(supplier_id, session)) => supplier::spec_page(&state, &supplier_id, &session),
        Some(signed) => not_found(&signed),
        None => to_sign_in(),
    }
}

/// A form post of a signed-in session: the party, and the form when its CSRF token is the
/// session's (`None`: refuse it). `None` altogether: nobody is signed in.
async fn signed_form(state: &AppState, request: Request) -> Option<(Signed, Option<Vec<(String, String)>>)> {
    let signed = session_of(state, request.headers())?;
    let form = read_form(request).await.unwrap_or_default();
    let session = match &signed {
        Signed::Buyer(_, session) | Signed::Supplier(_, session) => session,
    };
    let genuine = field(&form, "csrf").is_some_and(|given| csrf_matches(session, given));
    Some((signed, genuine.then_some(form)))
}

/// A form post without its session's CSRF token: refused, nothing done.
fn forbidden(signed: &Signed) -> Response {
    let body = html! {
        h1 { "Refused" }
        p.notice.bad role="alert" { "This form was not sent from this portal session. Nothing was changed." }
    };
    match signed {
        Signed::Buyer(_, session) => buyer_page("Refused", "", session, StatusCode::FORBIDDEN, body),
        Signed::Supplier(_, session) => supplier_page("Refused", "", session, StatusCode::FORBIDDEN, body),
    }
}

async fn sign_in_page(headers: HeaderMap) -> Response {
    sign_in_form(StatusCode::OK, None, over_tls(&headers))
}

/// The sign-in form with a fresh token, bound to a cookie that lives ten minutes.
fn sign_in_form(status: StatusCode, error: Option<&str>, secure: bool) -> Response {
    let (token, cookie) = sign_in_token(SIGN_IN_COOKIE, "/portal", secure);
    let body = html! {
        h1 { "Sign in" }
        p { "Buyers and suppliers sign in with the API key they were given." }
        @if let Some(error) = error {
            p.notice.bad role="alert" { (error) }
        }
        form.stacked method="post" action="/portal/sign-in" {
            input type="hidden" name="csrf" value=(token);
            label for="api_key" { "API key" }
            input id="api_key" name="api_key" type="password" autocomplete="current-password" required autofocus;
            p { button type="submit" { "Sign in" } }
        }
    };
    let frame = page::Frame { root: "/portal", name: "leadrouter portal", nav: &[] };
    let mut response = page::answer(status, page::layout(&frame, "Sign in", "", None, body));
    set_cookies(&mut response, [cookie]);
    response
}

async fn sign_in(State(state): Shared, request: Request) -> Response {
    let address = client_address(&request);
    let headers = request.headers().clone();
    let secure = over_tls(&headers);
    let now = state.router.clock().now();
    let sessions = &state.portal_sessions;
    let form = match checked_sign_in(sessions, SIGN_IN_COOKIE, request, now).await {
        Ok(form) => form,
        Err(refusal) => return sign_in_form(refusal.status(), Some(refusal.message()), secure),
    };
    let key = field(&form, "api_key").unwrap_or_default().trim();
    let principal = match state.router.market().party(key) {
        Some(Party::Buyer(buyer_id)) => Principal::Buyer(buyer_id.clone()),
        Some(Party::Supplier(supplier_id)) => Principal::Supplier(supplier_id.clone()),
        None => {
            sessions.failed(address, now);
            tracing::info!(%address, "a portal sign-in failed");
            return sign_in_form(StatusCode::UNAUTHORIZED, Some("That key did not match."), secure);
        }
    };
    let (id, _) = sessions.start_with(principal, Some(fingerprint(key)), now);
    let mut response = page::see_other("/portal");
    set_cookies(
        &mut response,
        [sessions.cookie(&id, "/portal", secure), sign_in_token_spent(SIGN_IN_COOKIE, "/portal")],
    );
    response
}

async fn sign_out(State(state): Shared, request: Request) -> Response {
    let secure = over_tls(request.headers());
    let id = state.portal_sessions.id_in(request.headers()).map(str::to_string);
    let Some((signed, form)) = signed_form(&state, request).await else { return to_sign_in() };
    if form.is_none() {
        return forbidden(&signed);
    }
    if let Some(id) = id {
        state.portal_sessions.end(&id);
    }
    let mut response = page::see_other("/portal/sign-in");
    set_cookies(&mut response, [state.portal_sessions.removal("/portal", secure)]);
    response
}
