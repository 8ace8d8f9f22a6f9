//! The operator's console (DESIGN §15) at `/console/` on the ops listener: server-rendered
//! pages (maud), a stylesheet and a few lines of JavaScript embedded in the binary, and
//! sessions in `api::session`.
//!
//! Every page but sign-in needs a console session; every form post carries the session's
//! CSRF token (the sign-in form a token bound to a short-lived cookie of its own). Nothing
//! of a lead's PII goes into a URL or a log line.

mod changes;
mod config;
mod dashboard;
mod deliveries;
mod money;
mod test_send;
mod trace;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;

use super::session::{csrf_matches, Principal, Session};
use super::web::form::{
    checked_sign_in, client_address, field, over_tls, read_form, set_cookies, sign_in_token, sign_in_token_spent,
    Outcome,
};
use super::web::page;
use super::AppState;
use crate::telemetry::activity::activity;

type Shared = State<Arc<AppState>>;

/// The cookie that carries the sign-in form's token (before there is a session).
const SIGN_IN_COOKIE: &str = "lr_console_sign_in";
/// The returns queue shows this many, oldest first.
const RETURNS_SHOWN: usize = 200;
/// The deliveries page shows this many of each.
const DELIVERIES_SHOWN: usize = 200;

/// The operator's pages: the brand leads to the dashboard.
const FRAME: page::Frame = page::Frame {
    root: "/console",
    name: "leadrouter console",
    nav: &[
        ("/console", "Dashboard"),
        ("/console/returns", "Returns"),
        ("/console/buyers", "Buyers and top-ups"),
        ("/console/trace", "Decision traces"),
        ("/console/deliveries", "Deliveries"),
        ("/console/config/campaigns", "Configuration"),
        ("/console/test-send", "Test send"),
        ("/console/changes", "Admin changes"),
    ],
};

fn layout(title: &str, current: &str, session: Option<&Session>, body: maud::Markup) -> maud::Markup {
    page::layout(&FRAME, title, current, session, body)
}

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/console", get(dashboard_page))
        .route("/console/live/dashboard", get(dashboard_live))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/buyers", get(buyers_page))
        .route("/console/top-ups", post(top_up))
        .route("/console/returns", get(returns_page))
        .route("/console/trace", get(trace_page))
        .route("/console/changes", get(changes_page))
        .route("/console/test-send", get(test_send_page).post(test_send))
        .route("/console/config/{kind}", get(config_list))
        .route("/console/config/{kind}/{id}", get(config_edit).post(config_save))
        .route("/console/deliveries", get(deliveries_page))
        .route("/console/deliveries/{id}/retry", post(retry_delivery))
        .route("/console/returns/{id}/{decision}", post(resolve_return))
        .route(
            "/console/assets/console.css",
            get(|| async { page::asset("text/css; charset=utf-8", page::STYLESHEET) }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async { page::asset("text/javascript; charset=utf-8", page::SCRIPT) }),
        )
}

/// The signed-in session of this request, if any. An operator's session ends when the
/// operator is removed or its password is set again after it signed in.
fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = state.console_sessions.id_in(headers)?;
    let session = state.console_sessions.find(id, state.router.clock().now())?;
    if let Principal::Operator(name) = &session.principal {
        let current = state.router.accounts().operator(name);
        if current.is_none_or(|operator| operator.changed_at > session.started()) {
            state.console_sessions.end(id);
            return None;
        }
    }
    Some((id.to_string(), session))
}

async fn dashboard_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    let live = live_dashboard(&state);
    page::answer(StatusCode::OK, layout("Dashboard", "/console", Some(&session), dashboard::body(live)))
}

async fn dashboard_live(State(state): Shared, headers: HeaderMap) -> Response {
    if session_of(&state, &headers).is_none() {
        return page::answer(StatusCode::UNAUTHORIZED, html! { p { "Signed out." } });
    }
    page::answer(StatusCode::OK, live_dashboard(&state))
}

fn live_dashboard(state: &AppState) -> maud::Markup {
    let now = state.router.clock().now();
    let activity = activity();
    let samples = activity.samples_since(now - chrono::Duration::minutes(11));
    // The samples carry the router's clock; the tiles are as of the newest one.
    let as_of = samples.last().map_or(now, |sample| sample.at);
    dashboard::live(as_of, &samples, activity.totals())
}

async fn buyers_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    let body = money::buyers_page(&state.router, &session, &Outcome::default()).await;
    page::answer(StatusCode::OK, layout("Buyers and top-ups", "/console/buyers", Some(&session), body))
}

async fn top_up(State(state): Shared, request: Request) -> Response {
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    let Some(form) = form else { return forbidden(&session) };
    let outcome = money::top_up(&state.router, &form, &session.principal.actor()).await;
    let body = money::buyers_page(&state.router, &session, &outcome).await;
    page::answer(outcome.status(), layout("Buyers and top-ups", "/console/buyers", Some(&session), body))
}

async fn returns_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    returns_answer(&state, &session, StatusCode::OK, &Outcome::default())
}

fn returns_answer(state: &AppState, session: &Session, status: StatusCode, outcome: &Outcome) -> Response {
    let pending: Vec<_> = state
        .router
        .returns()
        .returns_with_status(crate::domain::returns::ReturnStatus::Pending, 0, RETURNS_SHOWN)
        .into_iter()
        .map(|stored| stored.lead_return)
        .collect();
    let body = money::returns_page(&pending, session, outcome);
    page::answer(status, layout("Returns", "/console/returns", Some(session), body))
}

async fn resolve_return(
    State(state): Shared,
    Path((return_id, decision)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    let Some(form) = form else { return forbidden(&session) };
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return page::answer(
                StatusCode::NOT_FOUND,
                layout("Not found", "", Some(&session), html! { h1 { "Not found" } }),
            )
        }
    };
    let reason = field(&form, "reason").map(str::trim).filter(|reason| !reason.is_empty()).map(str::to_string);
    let outcome = money::resolve(&state.router, &return_id, approve, reason, &session.principal.actor()).await;
    returns_answer(&state, &session, outcome.status(), &outcome)
}

/// A form post of a signed-in session: the session, and the form when its CSRF token is
/// the session's (`None`: refuse it). `None` altogether: nobody is signed in.
async fn signed_form(state: &AppState, request: Request) -> Option<(Session, Option<Vec<(String, String)>>)> {
    let (_, session) = session_of(state, request.headers())?;
    let form = read_form(request).await.unwrap_or_default();
    let genuine = field(&form, "csrf").is_some_and(|given| csrf_matches(&session, given));
    Some((session, genuine.then_some(form)))
}

/// The history of admin changes shows this many a page.
const CHANGES_SHOWN: usize = 100;

async fn changes_page(State(state): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    // An unreadable query string reads as none: the page shows its form.
    let pairs = super::http::query_pairs(query.as_deref()).unwrap_or_default();
    let before = field(&pairs, "before").filter(|before| !before.is_empty());
    let (status, body) = match state.router.accounts().changes(before, CHANGES_SHOWN).await {
        Ok(changes) => {
            let next = changes.last().filter(|_| changes.len() == CHANGES_SHOWN).map(|change| change.id.as_str());
            (StatusCode::OK, changes::page(&changes, next))
        }
        Err(error) => {
            let error = super::error::ApiError::from(error);
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                html! { h1 { "Admin changes" } p.notice.bad role="alert" { (error.message) } },
            )
        }
    };
    page::answer(status, layout("Admin changes", "/console/changes", Some(&session), body))
}

async fn trace_page(State(state): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    // An unreadable query string reads as none: the page shows its form.
    let pairs = super::http::query_pairs(query.as_deref()).unwrap_or_default();
    let id = field(&pairs, "id").map(str::trim).unwrap_or_default();
    let trace = if id.is_empty() { None } else { state.router.auction().trace(id) };
    let status = if id.is_empty() || trace.is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND };
    page::answer(status, layout("Decision trace", "/console/trace", Some(&session), trace::page(id, trace.as_deref())))
}

async fn deliveries_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    deliveries_answer(&state, &session, &Outcome::default())
}

fn deliveries_answer(state: &AppState, session: &Session, outcome: &Outcome) -> Response {
    use crate::engine::ports::outbox::Status;
    let dead = state.router.deliveries().list(Status::DeadLetter, None, DELIVERIES_SHOWN);
    let pending = state.router.deliveries().list(Status::Pending, None, DELIVERIES_SHOWN);
    let body = deliveries::page(&dead, &pending, session, outcome);
    page::answer(outcome.status(), layout("Deliveries", "/console/deliveries", Some(session), body))
}

async fn retry_delivery(State(state): Shared, Path(id): Path<String>, request: Request) -> Response {
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    if form.is_none() {
        return forbidden(&session);
    }
    let outcome = match state.router.deliveries().retry(&id).await {
        Ok(delivery) => Outcome::done(format!("Message {} is queued again.", delivery.id)),
        Err(error) => Outcome::refused(super::error::ApiError::from(error), Vec::new()),
    };
    deliveries_answer(&state, &session, &outcome)
}

async fn config_list(State(state): Shared, Path(kind): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    let Some(kind) = config::kind_of(&kind) else { return not_found(&session) };
    let current = format!("/console/config/{}", config::slug_of(kind));
    let body = config::list_page(&state.router.market(), kind);
    page::answer(StatusCode::OK, layout("Configuration", &current, Some(&session), body))
}

async fn config_edit(State(state): Shared, Path((kind, id)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    let Some(kind) = config::kind_of(&kind) else { return not_found(&session) };
    let id = if id == "new" { String::new() } else { id };
    let Some(text) = config::text_of(&state.router.market(), kind, &id) else { return not_found(&session) };
    let current = format!("/console/config/{}", config::slug_of(kind));
    let body = config::edit_page(kind, &id, &text, &session, &Outcome::default());
    page::answer(StatusCode::OK, layout("Configuration", &current, Some(&session), body))
}

async fn config_save(State(state): Shared, Path((kind, id)): Path<(String, String)>, request: Request) -> Response {
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    let Some(form) = form else { return forbidden(&session) };
    let Some(kind) = config::kind_of(&kind) else { return not_found(&session) };
    let id = if id == "new" { String::new() } else { id };
    let (outcome, saved_id) = config::save(&state.router, kind, &id, &form, &session.principal.actor()).await;
    let text = match outcome.notice {
        Some((true, _)) => config::text_of(&state.router.market(), kind, &saved_id).unwrap_or_default(),
        _ => outcome.value("object").to_string(),
    };
    let editing = if matches!(outcome.notice, Some((true, _))) { saved_id } else { id };
    let current = format!("/console/config/{}", config::slug_of(kind));
    let body = config::edit_page(kind, &editing, &text, &session, &outcome);
    page::answer(outcome.status(), layout("Configuration", &current, Some(&session), body))
}

fn not_found(session: &Session) -> Response {
    page::answer(StatusCode::NOT_FOUND, layout("Not found", "", Some(session), html! { h1 { "Not found" } }))
}

fn campaign_ids(state: &AppState) -> Vec<String> {
    state.router.market().config().campaigns.iter().map(|campaign| campaign.id.clone()).collect()
}

async fn test_send_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&state, &headers) else { return page::see_other("/console/sign-in") };
    let body = test_send::page(&campaign_ids(&state), &session, &Outcome::default(), None);
    page::answer(StatusCode::OK, layout("Test send", "/console/test-send", Some(&session), body))
}

async fn test_send(State(state): Shared, request: Request) -> Response {
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    let Some(form) = form else { return forbidden(&session) };
    let (outcome, report) = test_send::run(&state.router, &form).await;
    let body = test_send::page(&campaign_ids(&state), &session, &outcome, report.as_ref());
    page::answer(outcome.status(), layout("Test send", "/console/test-send", Some(&session), body))
}

async fn sign_in_page(headers: HeaderMap) -> Response {
    sign_in_form(StatusCode::OK, None, over_tls(&headers))
}

/// The sign-in form with a fresh token, bound to a cookie that lives ten minutes.
fn sign_in_form(status: StatusCode, error: Option<&str>, secure: bool) -> Response {
    let (token, cookie) = sign_in_token(SIGN_IN_COOKIE, "/console", secure);
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            p.notice.bad role="alert" { (error) }
        }
        form.stacked method="post" action="/console/sign-in" {
            input type="hidden" name="csrf" value=(token);
            label for="name" { "Operator name (leave empty to sign in with the admin token)" }
            input id="name" name="name" type="text" autocomplete="username" autocapitalize="none" autofocus;
            label for="token" { "Password or admin token" }
            input id="token" name="token" type="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign in" } }
        }
    };
    let mut response = page::answer(status, layout("Sign in", "", None, body));
    set_cookies(&mut response, [cookie]);
    response
}

async fn sign_in(State(state): Shared, request: Request) -> Response {
    let address = client_address(&request);
    let headers = request.headers().clone();
    let secure = over_tls(&headers);
    let now = state.router.clock().now();
    let sessions = &state.console_sessions;
    let form = match checked_sign_in(sessions, SIGN_IN_COOKIE, request, now).await {
        Ok(form) => form,
        Err(refusal) => return sign_in_form(refusal.status(), Some(refusal.message()), secure),
    };
    let secret = field(&form, "token").unwrap_or_default();
    let principal = match field(&form, "name").map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => state
            .router
            .accounts()
            .verify_operator(name, secret)
            .await
            .map(|name| Principal::Operator(name.to_string())),
        None => leadrouter_http::auth::token_matches(secret, &state.admin_token).then_some(Principal::AdminToken),
    };
    let principal = match principal {
        Some(principal) => principal,
        None => {
            sessions.failed(address, now);
            tracing::info!(%address, "a console sign-in failed");
            return sign_in_form(StatusCode::UNAUTHORIZED, Some("That did not match."), secure);
        }
    };
    let (id, _) = sessions.start(principal, now);
    let mut response = page::see_other("/console");
    set_cookies(
        &mut response,
        [sessions.cookie(&id, "/console", secure), sign_in_token_spent(SIGN_IN_COOKIE, "/console")],
    );
    response
}

async fn sign_out(State(state): Shared, request: Request) -> Response {
    let secure = over_tls(request.headers());
    let id = state.console_sessions.id_in(request.headers()).map(str::to_string);
    let Some((session, form)) = signed_form(&state, request).await else { return page::see_other("/console/sign-in") };
    if form.is_none() {
        return forbidden(&session);
    }
    if let Some(id) = id {
        state.console_sessions.end(&id);
    }
    let mut response = page::see_other("/console/sign-in");
    set_cookies(&mut response, [state.console_sessions.removal("/console", secure)]);
    response
}

/// A form post without its session's CSRF token: refused, nothing done.
fn forbidden(session: &Session) -> Response {
    let body = html! {
        h1 { "Refused" }
        p.notice.bad role="alert" { "This form was not sent from this console session. Nothing was changed." }
    };
    page::answer(StatusCode::FORBIDDEN, layout("Refused", "", Some(session), body))
}
