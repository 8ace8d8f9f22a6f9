//! Calls in a buyer's own format (DESIGN §5.1): what the auction sends when a campaign
//! carries `request` / `answer` (for its ping in `pricing`, for its post in `delivery`),
//! and how the reply becomes a bid or a post answer. Requests are rendered by
//! `domain::integration` from the lead (a ping sees only its anonymous fields); replies are
//! read by the campaign's answer rules (without them: a 2xx accepts a post, and a ping is
//! read as the native `{"bid": …}`). An async delivery is rendered here too, once, when
//! the lead is sold (`queued`): the outbox keeps the rendered request and sends it
//! unchanged on every attempt.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::time::Instant;

use super::outbox::Payload;
use super::ports::buyers::{BidAnswer, Outbound, PostAnswer, Reply};
use super::ports::outbox::BuyerRequest;
use crate::domain::integration::request::{Auth, Format, Method, RenderContext, RenderedRequest, RequestSpec};
use crate::domain::integration::Integration;
use crate::domain::lead::{ValidLead, ValidPing};
use crate::domain::market::CompiledCampaign;
use crate::domain::money::Money;

/// The most of a buyer's reply to a lead that is read (as for native posts).
pub(super) const POST_REPLY_BYTES_MAX: usize = 64 * 1024;

/// The most of a buyer's reply to a ping that is read (as for native pings).
pub(super) const PING_REPLY_BYTES_MAX: usize = 16 * 1024;

/// One lead's sale to one campaign, as a buyer-format request is rendered from it.
pub(super) struct SaleFacts<'a> {
    pub lead: &'a ValidLead,
    pub lead_id: &'a str,
    pub ping_id: &'a str,
    /// What the buyer's ping answer said to carry to the post (`ping.token`).
    pub ping_token: Option<&'a str>,
    pub sale_id: &'a str,
    pub supplier_id: &'a str,
    pub price: Money,
    pub now: DateTime<Utc>,
    /// A test send (`test` in templates).
    pub test: bool,
}

/// One ping to one campaign, as a buyer-format ping is rendered from it.
pub(super) struct PingFacts<'a> {
    pub ping: &'a ValidPing,
    pub ping_id: &'a str,
    pub supplier_id: &'a str,
    pub now: DateTime<Utc>,
    /// A test send (`test` in templates).
    pub test: bool,
}

/// What a buyer-format ping's reply came to: the bid (or why none), the token to carry to
/// the post, and the buyer's own words on a no bid (trace only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PingOutcome {
    pub answer: BidAnswer,
    pub token: Option<String>,
    pub reason: Option<String>,
}

/// The request for `facts` to `campaign`'s buyer at `url`: rendered from the campaign's
/// `request`, or the native body (`native`) when only `answer` rules are given. `Err` names
/// the template that failed (never a lead value).
pub(super) fn post_request(
    integration: &Integration,
    campaign: &CompiledCampaign,
    facts: &SaleFacts<'_>,
    url: &str,
    native: Bytes,
) -> Result<Outbound, String> {
    let context = RenderContext {
        lead: lead_with_id(facts.lead, facts.lead_id),
        sale_id: Some(facts.sale_id.to_string()),
        ping_id: Some(facts.ping_id.to_string()).filter(|id| !id.is_empty()),
        ping_token: facts.ping_token.map(str::to_string),
        price: Some(facts.price.to_string()),
        currency: Some(campaign.currency.to_string()),
        test: facts.test,
        ..common_context(campaign, facts.supplier_id, facts.now, url)
    };
    outbound(integration, campaign, &context, native, POST_REPLY_BYTES_MAX)
}

/// The ping for `facts` to `campaign`'s buyer at `url` (its `ping_url`), rendered from the
/// campaign's `pricing.request`, or the native ping body when only `answer` rules are given.
pub(super) fn ping_request(
    integration: &Integration,
    campaign: &CompiledCampaign,
    facts: &PingFacts<'_>,
    url: &str,
    native: Bytes,
) -> Result<Outbound, String> {
    let context = RenderContext {
        // The template sees the anonymous fields only: the stage drops the rest.
        lead: serde_json::to_value(facts.ping).unwrap_or_default(),
        ping_id: Some(facts.ping_id.to_string()),
        test: facts.test,
        ..common_context(campaign, facts.supplier_id, facts.now, url)
    };
    outbound(integration, campaign, &context, native, PING_REPLY_BYTES_MAX)
}

/// The earlier of `deadline` and the campaign's own `request.timeout_ms` from now.
pub(super) fn call_deadline(integration: &Integration, deadline: Instant) -> Instant {
    match integration.request.as_ref().and_then(|request| request.timeout_ms()) {
        Some(ms) => deadline.min(Instant::now() + Duration::from_millis(ms)),
        None => deadline,
    }
}

/// What the buyer's reply comes to: an acceptance with the buyer's reference when the
/// rules read one (kept with the sale), or a rejection with the reason they read (for the
/// trace), else the status.
pub(super) fn post_answer(integration: &Integration, reply: Reply) -> PostAnswer {
    match reply {
        Reply::Answered { status, body, .. } => {
            let reading = integration.read_post(status, &body);
            if reading.accepted {
                PostAnswer::Accepted { buyer_reference: reading.reference }
            } else {
                PostAnswer::Rejected(reading.reason.unwrap_or_else(|| format!("http {status}")))
            }
        }
        Reply::Timeout => PostAnswer::Timeout,
        Reply::Error(reason) => PostAnswer::Error(reason),
        Reply::CircuitOpen => PostAnswer::CircuitOpen,
    }
}

/// What the buyer's reply to a ping comes to, by the campaign's answer rules: a bid with
/// its token, or no bid with the buyer's words.
pub(super) fn ping_answer(integration: &Integration, reply: Reply) -> PingOutcome {
    let answer = match reply {
        Reply::Answered { status, body, .. } => {
            let reading = integration.read_ping(status, &body);
            let bid = reading.bid.and_then(|price| Money::checked(price).ok());
            return match bid {
                Some(amount) => PingOutcome { answer: BidAnswer::Bid(amount), token: reading.token, reason: None },
                None => PingOutcome { answer: BidAnswer::NoBid, token: None, reason: reading.reason },
            };
        }
        Reply::Timeout => BidAnswer::Timeout,
        Reply::Error(reason) => BidAnswer::Error(reason),
        Reply::CircuitOpen => BidAnswer::CircuitOpen,
    };
    PingOutcome { answer, token: None, reason: None }
}

/// What the outbox keeps of a request rendered when the lead was sold (async delivery): it
/// sends these bytes on every attempt and never renders again. The signing secret is not
/// kept, only whether to sign: the attempt signs with the buyer's secret of its moment.
pub(super) fn queued(campaign: &CompiledCampaign, outbound: Outbound) -> Result<Payload, String> {
    // Templates render text; a body that is not would not survive the journal unchanged.
    let body = String::from_utf8(outbound.body.to_vec()).map_err(|_| "render body: not UTF-8".to_string())?;
    let request = BuyerRequest {
        campaign_id: campaign.id.to_string(),
        method: outbound.method,
        headers: outbound.headers,
        sign: outbound.signing_secret.is_some(),
        token: outbound.token,
        unshown_headers: unshown_headers(campaign.campaign.delivery.request.as_ref()),
    };
    Ok(Payload { url: outbound.url, body, request: Some(Box::new(request)) })
}

/// The headers of `spec` an operator is not shown rendered: those its auth sets (secrets)
/// and those whose template has placeholders (they may carry the lead's data, which the
/// admin views leave out). A literal header shows what the campaign's own view shows.
fn unshown_headers(spec: Option<&RequestSpec>) -> Vec<String> {
    let Some(spec) = spec else { return Vec::new() };
    let templated = |template: &str| template.contains("{{") || template.contains("{%");
    let mut names: Vec<String> =
        spec.headers.0.iter().filter(|(_, template)| templated(template)).map(|(name, _)| name.clone()).collect();
    match &spec.auth {
        Some(Auth::Bearer { .. } | Auth::Basic { .. }) => names.push("Authorization".into()),
        Some(Auth::Header { name, .. }) => names.push(name.clone()),
        Some(Auth::Query { .. } | Auth::Token { .. }) | None => {}
    }
    names
}

/// A request rendered from `context` (or the native body, signed, when the campaign gives
/// only answer rules or format `native`).
fn outbound(
    integration: &Integration,
    campaign: &CompiledCampaign,
    context: &RenderContext,
    native: Bytes,
    answer_bytes_max: usize,
) -> Result<Outbound, String> {
    let secret = campaign.webhook_secret.to_string();
    let Some(request) = &integration.request else {
        let url = context.endpoint_url.as_deref().unwrap_or_default();
        return Ok(native_outbound(campaign, url, native, answer_bytes_max));
    };
    let rendered = request.render(context).map_err(|error| format!("render {}", error.field))?;
    Ok(into_outbound(rendered, native, secret, answer_bytes_max))
}

/// A call in §5's own protocol: the JSON body, signed with the buyer's secret.
pub(super) fn native_outbound(
    campaign: &CompiledCampaign,
    url: &str,
    body: Bytes,
    answer_bytes_max: usize,
) -> Outbound {
    Outbound {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        signing_secret: Some(campaign.webhook_secret.to_string()),
        token: None,
        answer_bytes_max,
    }
}

fn into_outbound(rendered: RenderedRequest, native: Bytes, secret: String, answer_bytes_max: usize) -> Outbound {
    let RenderedRequest { method, url, mut headers, body, format, sign, token_fetch, .. } = rendered;
    // §5: a native body is always signed; its content type is ours unless a header says.
    let (body, sign) = if format == Format::Native {
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            headers.insert(0, ("content-type".into(), "application/json".into()));
        }
        (native, true)
    } else {
        (Bytes::from(body), sign)
    };
    Outbound {
        method,
        url,
        headers,
        body,
        signing_secret: sign.then_some(secret),
        token: token_fetch,
        answer_bytes_max,
    }
}

fn lead_with_id(lead: &ValidLead, lead_id: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(lead).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), lead_id.into());
    }
    value
}

fn common_context(campaign: &CompiledCampaign, supplier_id: &str, now: DateTime<Utc>, url: &str) -> RenderContext {
    RenderContext {
        campaign_id: campaign.id.to_string(),
        buyer_id: campaign.buyer_id.to_string(),
        supplier_id: supplier_id.to_string(),
        now: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        endpoint_url: Some(url.to_string()),
        ..RenderContext::default()
    }
}
