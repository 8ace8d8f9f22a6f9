//! `POST /admin/v1/campaigns/{id}/test` (DESIGN §5.1): an operator sees what a campaign
//! sends its buyer and what the buyer's answer comes to, before real leads flow. The
//! request is rendered exactly as a live ping or post would be (with `test` = true and the
//! `X-Leadrouter-Test: 1` header), sent unless `send=false`, and read by the campaign's
//! answer rules. Nothing is held, sold, journaled or charged: this use case touches no
//! budget, ledger or store, only the market and the buyers port.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::buyer_format::{self, PingFacts, SaleFacts};
use super::core::Core;
use super::ports::buyers::{BidAnswer, Outbound, PostAnswer, Reply};
use super::EngineError;
use crate::domain::integration::request::REDACTED;
use crate::domain::integration::template::URL_COMPONENT;
use crate::domain::integration::Integration;
use crate::domain::lead::{validate_lead, LeadInput, ValidLead};
use crate::domain::market::CompiledCampaign;
use crate::domain::model::{DeliveryMode, FieldError, Pricing, Vertical};
use crate::domain::money::Money;
use crate::domain::supplier_spec;
use crate::ids;

/// The header that marks a test request for the buyer.
pub const TEST_HEADER: &str = "X-Leadrouter-Test";

/// The supplier a test request names: none sent it.
const TEST_SUPPLIER: &str = "test";

/// The price a dynamic campaign's test post names when it has no `min_price`.
const TEST_PRICE_DEFAULT_CENTS: i64 = 100;

/// Which call of the campaign to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestStage {
    Ping,
    Post,
}

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub stage: TestStage,
    /// The lead to render with; `None`: a sample lead of the campaign's vertical that its
    /// filters let in.
    pub lead: Option<Value>,
    /// `false`: render only.
    pub send: bool,
}

/// What was (or would be) sent, what came back, and what the answer rules made of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub request: SentRequest,
    /// `None` when nothing was sent (`send=false`) or no answer came.
    pub response: Option<TestResponse>,
    /// `None` when nothing was sent.
    pub outcome: Option<TestOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentRequest {
    pub method: &'static str,
    pub url: String,
    /// In the order sent; secrets as `"***"`.
    #[serde(serialize_with = "header_object")]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResponse {
    pub status: u16,
    #[serde(serialize_with = "header_object")]
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    /// `accepted`, `rejected`, `bid`, `no_bid` or `error`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Test sends of campaigns' buyer calls.
pub struct TestSends {
    core: Arc<Core>,
}

impl TestSends {
    pub(super) fn new(core: Arc<Core>) -> TestSends {
        TestSends { core }
    }

    /// Renders (and unless `send` is false, sends) `request.stage`'s call of campaign
    /// `campaign_id`. A 422 names what cannot be tried (`stage`, `lead.*`).
    pub async fn run(&self, campaign_id: &str, request: TestRequest) -> Result<TestReport, EngineError> {
        let market = self.core.market();
        let campaign = Arc::clone(market.campaign(campaign_id).ok_or(EngineError::NotFound("campaign"))?);
        let vertical =
            Arc::clone(market.vertical(&campaign.campaign.vertical).ok_or(EngineError::NotFound("campaign"))?);
        let lead_value = match request.lead {
            Some(lead) => lead,
            None => supplier_spec::sample_lead(&vertical, &campaign, self.core.postal)
                .ok_or_else(|| invalid("lead", "no sample lead can be made for this campaign; send one"))?,
        };
        let lead = self.valid_lead(lead_value, &vertical)?;
        let (outbound, integration, timeout_ms) = match request.stage {
            TestStage::Ping => self.ping_call(&campaign, &vertical, &lead)?,
            TestStage::Post => self.post_call(&campaign, &vertical, &lead)?,
        };
        let shown = shown_request(&outbound, &secrets_of(&campaign));
        if !request.send {
            return Ok(TestReport { request: shown, response: None, outcome: None });
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let deadline = match &integration {
            Some(integration) => buyer_format::call_deadline(integration, deadline),
            None => deadline,
        };
        let (reply, latency) = self.core.buyers.exchange(outbound, deadline).await;
        let response = match &reply {
            Reply::Answered { status, headers, body } => Some(TestResponse {
                status: *status,
                headers: headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                    .collect(),
                body: String::from_utf8_lossy(body).into_owned(),
                duration_ms: latency.as_millis() as u64,
            }),
            _ => None,
        };
        let outcome = match request.stage {
            TestStage::Ping => ping_outcome(integration.as_ref(), reply),
            TestStage::Post => post_outcome(integration.as_ref(), reply),
        };
        Ok(TestReport { request: shown, response, outcome: Some(outcome) })
    }

    fn valid_lead(&self, lead: Value, vertical: &Vertical) -> Result<ValidLead, EngineError> {
        let input: LeadInput = serde_json::from_value(lead).map_err(|error| invalid("lead", &error.to_string()))?;
        validate_lead(input, vertical, self.core.postal).map_err(|errors| {
            EngineError::Invalid(
                errors.into_iter().map(|e| FieldError::new(format!("lead.{}", e.field), &e.message)).collect(),
            )
        })
    }

    /// The campaign's ping as the fan-out would send it.
    fn ping_call(
        &self,
        campaign: &CompiledCampaign,
        vertical: &Vertical,
        lead: &ValidLead,
    ) -> Result<(Outbound, Option<Integration>, u64), EngineError> {
        let Pricing::Dynamic { ping_url, .. } = &campaign.campaign.pricing else {
            return Err(invalid("stage", "a campaign with a fixed price is never pinged"));
        };
        let ping_id = ids::ping_id();
        let ping = lead.anonymized();
        let native = Bytes::from(
            json!({
                "ping_id": ping_id, "vertical": ping.vertical(), "zip": ping.zip(), "country": ping.country(),
                "state": ping.state(), "fields": ping.fields(), "tmax_ms": vertical.tmax_ms, "test": true,
            })
            .to_string(),
        );
        let facts = PingFacts {
            ping: &ping,
            ping_id: &ping_id,
            supplier_id: TEST_SUPPLIER,
            now: self.core.clock.now(),
            test: true,
        };
        let outbound = match &campaign.ping_integration {
            Some(integration) => buyer_format::ping_request(integration, campaign, &facts, ping_url, native),
            None => Ok(buyer_format::native_outbound(campaign, ping_url, native, buyer_format::PING_REPLY_BYTES_MAX)),
        }
        .map_err(|reason| invalid("stage", &reason))?;
        Ok((marked(outbound), campaign.ping_integration.clone(), vertical.tmax_ms))
    }

    /// The campaign's post (or async delivery) as a sale would send it.
    fn post_call(
        &self,
        campaign: &CompiledCampaign,
        vertical: &Vertical,
        lead: &ValidLead,
    ) -> Result<(Outbound, Option<Integration>, u64), EngineError> {
        let delivery = &campaign.campaign.delivery;
        let url = match (delivery.mode, &delivery.url) {
            (DeliveryMode::Pull, _) => {
                return Err(invalid("stage", "a pull campaign's buyer fetches its leads; nothing is sent"))
            }
            (_, Some(url)) => url,
            (_, None) => return Err(invalid("stage", "the campaign has no delivery url")),
        };
        let price = match &campaign.campaign.pricing {
            Pricing::Fixed { price } => *price,
            Pricing::Dynamic { min_price, .. } => min_price.unwrap_or(Money::cents(TEST_PRICE_DEFAULT_CENTS)),
        };
        let (lead_id, sale_id) = (ids::lead_id(), ids::sale_id());
        let native = Bytes::from(
            json!({
                "sale_id": sale_id, "lead_id": lead_id, "ping_id": "", "vertical": vertical.name,
                "price": price, "currency": campaign.currency, "lead": lead, "test": true,
            })
            .to_string(),
        );
        let facts = SaleFacts {
            lead,
            lead_id: &lead_id,
            ping_id: "",
            ping_token: None,
            sale_id: &sale_id,
            supplier_id: TEST_SUPPLIER,
            price,
            now: self.core.clock.now(),
            test: true,
        };
        let outbound = match &campaign.post_integration {
            Some(integration) => buyer_format::post_request(integration, campaign, &facts, url, native),
            None => Ok(buyer_format::native_outbound(campaign, url, native, buyer_format::POST_REPLY_BYTES_MAX)),
        }
        .map_err(|reason| invalid("stage", &reason))?;
        let timeout_ms = delivery.timeout_ms.unwrap_or(vertical.tmax_ms);
        Ok((marked(outbound), campaign.post_integration.clone(), timeout_ms))
    }
}

/// Headers as a JSON object of name to value, in their order.
fn header_object<S: serde::Serializer>(headers: &[(String, String)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(headers.iter().map(|(name, value)| (name, value)))
}

fn invalid(field: &str, message: &str) -> EngineError {
    EngineError::Invalid(vec![FieldError::new(field, message)])
}

fn marked(mut outbound: Outbound) -> Outbound {
    outbound.headers.push((TEST_HEADER.into(), "1".into()));
    outbound
}

/// Every secret the campaign's calls may carry: auth passwords, tokens and values, and
/// the buyer's webhook secret.
fn secrets_of(campaign: &CompiledCampaign) -> Vec<String> {
    let mut secrets = vec![campaign.webhook_secret.to_string()];
    if let Pricing::Dynamic { request: Some(request), .. } = &campaign.campaign.pricing {
        secrets.extend(request.secrets());
    }
    if let Some(request) = &campaign.campaign.delivery.request {
        secrets.extend(request.secrets());
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

/// The request as the operator sees it: `Authorization` and every value that carries a
/// secret (in the clear or percent-encoded, as a query auth puts it) as `"***"`.
fn shown_request(outbound: &Outbound, secrets: &[String]) -> SentRequest {
    let hide = |text: &str| {
        secrets.iter().fold(text.to_string(), |text, secret| {
            let encoded = percent_encoding::utf8_percent_encode(secret, URL_COMPONENT).to_string();
            text.replace(secret.as_str(), REDACTED).replace(&encoded, REDACTED)
        })
    };
    let headers = outbound
        .headers
        .iter()
        .map(|(name, value)| {
            // Basic auth's header is the password in base64: no substring finds it.
            let secret = name.eq_ignore_ascii_case("authorization") || hide(value) != *value;
            (name.clone(), if secret { REDACTED.to_string() } else { value.clone() })
        })
        .collect();
    SentRequest {
        method: outbound.method.as_str(),
        url: hide(&outbound.url),
        headers,
        body: hide(&String::from_utf8_lossy(&outbound.body)),
    }
}

fn post_outcome(integration: Option<&Integration>, reply: Reply) -> TestOutcome {
    let answer = match integration {
        Some(integration) => buyer_format::post_answer(integration, reply),
        None => native_post_answer(reply),
    };
    let outcome =
        |result, reason: Option<String>, reference| TestOutcome { result, price: None, reason, reference, token: None };
    match answer {
        PostAnswer::Accepted { buyer_reference } => outcome("accepted", None, buyer_reference),
        PostAnswer::Rejected(reason) => outcome("rejected", Some(reason), None),
        PostAnswer::Timeout => outcome("error", Some("timeout".into()), None),
        PostAnswer::Error(reason) => outcome("error", Some(reason), None),
        PostAnswer::CircuitOpen => outcome("error", Some("circuit_open".into()), None),
    }
}

fn ping_outcome(integration: Option<&Integration>, reply: Reply) -> TestOutcome {
    let read = match integration {
        Some(integration) => buyer_format::ping_answer(integration, reply),
        None => native_ping_answer(reply),
    };
    let outcome = |result, price, reason| TestOutcome { result, price, reason, reference: None, token: None };
    match read.answer {
        BidAnswer::Bid(price) => TestOutcome { token: read.token, ..outcome("bid", Some(price), None) },
        BidAnswer::NoBid => outcome("no_bid", None, read.reason),
        BidAnswer::Timeout => outcome("error", None, Some("timeout".into())),
        BidAnswer::Error(reason) => outcome("error", None, Some(reason)),
        BidAnswer::CircuitOpen => outcome("error", None, Some("circuit_open".into())),
    }
}

/// A native post's reply read as §5 says: a 2xx with `{"accepted":true}` sells.
fn native_post_answer(reply: Reply) -> PostAnswer {
    match reply {
        Reply::Answered { status, body, .. } => PostAnswer::of_native(status, &body).0,
        Reply::Timeout => PostAnswer::Timeout,
        Reply::Error(reason) => PostAnswer::Error(reason),
        Reply::CircuitOpen => PostAnswer::CircuitOpen,
    }
}

/// A native ping's reply read as §5 says.
fn native_ping_answer(reply: Reply) -> buyer_format::PingOutcome {
    let answer = match reply {
        Reply::Answered { status, body, .. } => BidAnswer::of_native(status, &body),
        Reply::Timeout => BidAnswer::Timeout,
        Reply::Error(reason) => BidAnswer::Error(reason),
        Reply::CircuitOpen => BidAnswer::CircuitOpen,
    };
    buyer_format::PingOutcome { answer, token: None, reason: None }
}
