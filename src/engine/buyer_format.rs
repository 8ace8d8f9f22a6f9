//! Deliveries in a buyer's own format (DESIGN §5.1): what the auction sends when a
//! campaign carries `delivery.request` / `delivery.answer`, and how the reply becomes a
//! post answer. The request is rendered by `domain::integration` from the lead and the
//! sale; the reply is read by the campaign's answer rules (any 2xx accepts without them).
//! An async delivery is rendered here too, once, when the lead is sold (`queued`): the
//! outbox keeps the rendered request and sends it unchanged on every attempt.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use super::outbox::Payload;
use super::ports::buyers::{Outbound, PostAnswer, Reply};
use super::ports::outbox::BuyerRequest;
use crate::domain::integration::request::{Auth, Method, RenderContext, RequestSpec};
use crate::domain::integration::Integration;
use crate::domain::lead::ValidLead;
use crate::domain::market::CompiledCampaign;
use crate::domain::money::Money;

/// The most of a buyer's reply to a lead that is read (as for native posts).
const POST_REPLY_BYTES_MAX: usize = 64 * 1024;

/// One lead's sale to one campaign, as a buyer-format request is rendered from it.
pub(super) struct SaleFacts<'a> {
    pub lead: &'a ValidLead,
    pub lead_id: &'a str,
    pub ping_id: &'a str,
    pub sale_id: &'a str,
    pub supplier_id: &'a str,
    pub price: Money,
    pub now: DateTime<Utc>,
}

/// The request for `facts` to `campaign`'s buyer at `url`: rendered from the campaign's
/// `request`, or the native body (`native`) when only `answer` rules are given. `Err` names
/// the template that failed (never a lead value).
pub(super) fn post_request(
    integration: &Integration,
    campaign: &CompiledCampaign,
    facts: &SaleFacts<'_>,
    url: &str,
    native: &serde_json::Value,
) -> Result<Outbound, String> {
    let secret = campaign.webhook_secret.to_string();
    let Some(request) = &integration.request else {
        return Ok(Outbound {
            method: Method::Post,
            url: url.to_string(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(native.to_string()),
            signing_secret: Some(secret),
            token: None,
            answer_bytes_max: POST_REPLY_BYTES_MAX,
        });
    };
    let rendered = request.render(&context(campaign, facts, url)).map_err(|error| format!("render {}", error.field))?;
    Ok(Outbound {
        method: rendered.method,
        url: rendered.url,
        headers: rendered.headers,
        body: Bytes::from(rendered.body),
        signing_secret: rendered.sign.then_some(secret),
        token: rendered.token_fetch,
        answer_bytes_max: POST_REPLY_BYTES_MAX,
    })
}

/// What the buyer's reply comes to: an acceptance with the buyer's reference when the
/// rules read one (kept with the sale), or a rejection with the reason they read (for the
/// trace), else the status.
pub(super) fn post_answer(integration: &Integration, reply: Reply) -> PostAnswer {
    match reply {
        Reply::Answered { status, body } => {
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

fn context(campaign: &CompiledCampaign, facts: &SaleFacts<'_>, url: &str) -> RenderContext {
    let mut lead = serde_json::to_value(facts.lead).unwrap_or_default();
    if let Some(object) = lead.as_object_mut() {
        object.insert("id".into(), facts.lead_id.into());
    }
    RenderContext {
        lead,
        sale_id: Some(facts.sale_id.to_string()),
        ping_id: Some(facts.ping_id.to_string()).filter(|id| !id.is_empty()),
        ping_token: None,
        price: Some(facts.price.to_string()),
        currency: Some(campaign.currency.to_string()),
        campaign_id: campaign.id.to_string(),
        buyer_id: campaign.buyer_id.to_string(),
        supplier_id: facts.supplier_id.to_string(),
        now: facts.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        test: false,
        endpoint_url: Some(url.to_string()),
    }
}
