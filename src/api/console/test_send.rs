//! The test send of DESIGN §5.1 in the console: pick a campaign, its ping or post, send it
//! or only render it, optionally with a lead of one's own; the page shows the rendered
//! request (secrets as `***`), the buyer's answer and what the campaign's answer rules
//! made of it. Nothing is held, sold, journaled or charged (`engine::test_send`).

use maud::{html, Markup};

use crate::api::error::ApiError;
use crate::api::session::Session;
use crate::api::web::form::Outcome;
use crate::domain::model::FieldError;
use crate::engine::test_send::{TestReport, TestRequest, TestStage};
use crate::engine::Router;

pub fn page(campaigns: &[String], session: &Session, outcome: &Outcome, report: Option<&TestReport>) -> Markup {
    let chosen = |name: &str| outcome.value(name);
    html! {
        h1 { "Test send" }
        p.muted { "Renders a campaign's ping or post as a live call would (with \"test\": true), sends it unless you only render it, and reads the answer. Nothing is held, sold, journaled or charged." }
        @if let Some((good, message)) = &outcome.notice {
            @if !*good { p.notice.bad role="alert" { (message) } }
        }
        form.stacked method="post" action="/console/test-send" {
            input type="hidden" name="csrf" value=(session.csrf);
            label for="campaign-test" { "Campaign" }
            select id="campaign-test" name="campaign" {
                @for id in campaigns {
                    option value=(id) selected[chosen("campaign") == id.as_str()] { (id) }
                }
            }
            label for="stage-test" { "Call" }
            select id="stage-test" name="stage" {
                option value="post" selected[chosen("stage") != "ping"] { "post (the delivery)" }
                option value="ping" selected[chosen("stage") == "ping"] { "ping (the bid request)" }
            }
            label for="send-test" { "Send it" }
            select id="send-test" name="send" {
                option value="true" selected[chosen("send") != "false"] { "yes, send it to the buyer" }
                option value="false" selected[chosen("send") == "false"] { "no, only render it" }
            }
            label for="lead-test" { "Lead (JSON, optional: a sample lead when empty)" }
            textarea id="lead-test" name="lead" aria-describedby=[outcome.error("lead").map(|_| "lead-test-error")] { (chosen("lead")) }
            @if let Some(error) = outcome.error("lead") {
                p.field-error id="lead-test-error" { (error) }
            }
            p { button type="submit" { "Run the test" } }
        }
        @if let Some(report) = report {
            h2 { "Request" }
            pre.table-box { (serde_json::to_string_pretty(&report.request).unwrap_or_default()) }
            h2 { "Answer" }
            @match &report.response {
                Some(response) => pre.table-box { (serde_json::to_string_pretty(response).unwrap_or_default()) },
                None => p { "Nothing was sent, or no answer came." },
            }
            h2 { "What the answer rules read" }
            @match &report.outcome {
                Some(read) => pre.table-box { (serde_json::to_string_pretty(read).unwrap_or_default()) },
                None => p { "Nothing to read." },
            }
        }
    }
}

/// Runs the test the form asks for; answers what to show again and the report.
pub async fn run(router: &Router, form: &[(String, String)]) -> (Outcome, Option<TestReport>) {
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str());
    let values: Vec<(String, String)> =
        ["campaign", "stage", "send", "lead"].iter().map(|name| (name.to_string(), field(name).to_string())).collect();
    let stage = match field("stage") {
        "ping" => TestStage::Ping,
        _ => TestStage::Post,
    };
    let lead = match field("lead").trim() {
        "" => None,
        text => match serde_json::from_str(text) {
            Ok(lead) => Some(lead),
            Err(error) => {
                let error = ApiError::invalid(vec![FieldError::new("lead", format!("not JSON: {error}"))]);
                return (Outcome::refused(error, values), None);
            }
        },
    };
    let request = TestRequest { stage, lead, send: field("send") != "false" };
    match router.test_sends().run(field("campaign"), request).await {
        Ok(report) => (Outcome { values, ..Outcome::default() }, Some(report)),
        Err(error) => (Outcome::refused(ApiError::from(error), values), None),
    }
}
