//! The configuration objects of DESIGN §6: suppliers, buyers, campaigns, verticals.
//!
//! They arrive as JSON (admin API) or TOML (`--config`) with the same shape. Serde checks
//! types (a wrong type is a 400); `validate` checks meaning (a 422 with field paths), so a
//! `Market` is only ever built from objects that passed both.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::integration::answer::AnswerSpec;
use super::integration::request::{RequestSpec, REDACTED};
use super::money::{Currency, Money};

/// One problem with one input field: `field` is a dotted path (`filters.radius.km`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    #[schema(example = "email")]
    pub field: String,
    #[schema(example = "not a valid email address")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------
// Supplier

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supplier {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    pub api_key: String,
    pub payout: Payout,
    #[serde(default)]
    pub billing: AccountBilling,
    #[serde(default = "default_true")]
    pub active: bool,
    /// Requests per second this supplier may send (token bucket, burst = 2 s worth);
    /// `None` = unlimited. Beyond it the API answers 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payout {
    /// The supplier earns `percent` of the sale price (rounded to cents).
    Revshare { percent: rust_decimal::Decimal },
    /// The supplier earns a fixed amount per sold lead.
    Fixed { amount: Money },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBilling {
    #[serde(default)]
    pub interval: BillingInterval,
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl Default for AccountBilling {
    fn default() -> Self {
        AccountBilling { interval: BillingInterval::Monthly, timezone: default_timezone() }
    }
}

fn default_timezone() -> String {
    "UTC".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingInterval {
    Weekly,
    SemiMonthly,
    #[default]
    Monthly,
}

// ---------------------------------------------------------------------------------------
// Buyer

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buyer {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub api_key: String,
    pub webhook_secret: String,
    pub currency: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub billing: BuyerBilling,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerBilling {
    pub mode: BillingMode,
    #[serde(default)]
    pub interval: BillingInterval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_limit: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_terms_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// Pays in advance: a sale needs balance − holds ≥ price.
    Prepaid,
    /// Pays after an invoice: a sale needs outstanding + holds + price ≤ `credit_limit` if set.
    Invoice,
    /// The operator's own brand: sales are recorded, never charged.
    Internal,
}

// ---------------------------------------------------------------------------------------
// Campaign

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub id: String,
    pub buyer_id: String,
    pub vertical: String,
    #[serde(default = "default_true")]
    pub active: bool,
    /// 1 is the first tier of a ping tree and wins ties in auctions.
    #[serde(default = "default_tier")]
    pub tier: u32,
    #[serde(default = "default_weight")]
    pub weight: u32,
    pub pricing: Pricing,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub caps: Caps,
    pub delivery: Delivery,
    #[serde(default = "default_return_window_days")]
    pub return_window_days: u32,
    #[serde(default)]
    pub returns_require_approval: bool,
    #[serde(default = "default_dedup_days")]
    pub dedup_days: u32,
    /// Time zone of schedule and cap windows; the buyer's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

fn default_tier() -> u32 {
    1
}
fn default_weight() -> u32 {
    1
}
fn default_return_window_days() -> u32 {
    7
}
fn default_dedup_days() -> u32 {
    30
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pricing {
    Fixed {
        price: Money,
    },
    Dynamic {
        ping_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_price: Option<Money>,
        /// The buyer's own ping format (DESIGN §5.1); none: the native ping (§5). Boxed:
        /// most campaigns have none, and a fixed price should not carry its size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Box<RequestSpec>>,
        /// How the ping's reply is read (bid, no bid, token); none: the native answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<Box<AnswerSpec>>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// ISO 3166-1 alpha-2 codes; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Include list: exact codes, or a prefix ending in `*` ("80*"); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_zips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius: Option<Radius>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_suppliers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_suppliers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FieldRule>,
}

/// A circle around a postal code's centroid or an explicit point. Geometry, not money:
/// floats are right here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Radius {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country of `zip`; the first of `filters.countries` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    pub km: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    pub field: String,
    pub op: RuleOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOp {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
}

impl RuleOp {
    /// The op as configured (`not_in`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleOp::Eq => "eq",
            RuleOp::Ne => "ne",
            RuleOp::In => "in",
            RuleOp::NotIn => "not_in",
            RuleOp::Gt => "gt",
            RuleOp::Gte => "gte",
            RuleOp::Lt => "lt",
            RuleOp::Lte => "lte",
            RuleOp::Exists => "exists",
        }
    }
}

/// Open hours per weekday (`mon` … `sun`), each a list of `"HH:MM-HH:MM"` ranges in the
/// campaign's time zone; a day that is absent is closed. `"24:00"` may end a range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mon: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tue: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thu: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fri: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sat: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sun: Vec<String>,
}

impl Schedule {
    /// The ranges of each weekday, Monday first.
    pub fn days(&self) -> [(&'static str, &[String]); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_spend: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_spend: Option<Money>,
}

impl Caps {
    pub fn is_empty(&self) -> bool {
        self == &Caps::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    #[serde(default)]
    pub mode: DeliveryMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The buyer's own request format (DESIGN §5.1); none: the native protocol (§5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSpec>,
    /// How the buyer's reply is read; none: the native answer, or 2xx with a `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// POST the lead to `url` while the supplier waits; sold only on `accepted: true`.
    #[default]
    #[serde(alias = "webhook_sync")]
    Webhook,
    /// Sold on assignment, delivered from the durable outbox with retries.
    WebhookAsync,
    /// Sold on assignment, fetched by the buyer from `GET /v1/buyer/leads`.
    Pull,
}

// ---------------------------------------------------------------------------------------
// Vertical

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vertical {
    pub name: String,
    pub model: Model,
    #[serde(default = "default_tmax_ms")]
    pub tmax_ms: u64,
    #[serde(default)]
    pub price_rule: PriceRule,
    #[serde(default)]
    pub reserve_price: Money,
    #[serde(default = "default_max_winners")]
    pub max_winners: u32,
    #[serde(default = "default_ping_ttl_s")]
    pub ping_ttl_s: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_reasons: Option<Vec<String>>,
    /// Country assumed for a lead or ping that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_country: Option<String>,
    /// Ping tree: the lowest price a tier's offer may have (tier number → floor); tiers not
    /// listed use `reserve_price`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_floors: BTreeMap<String, Money>,
}

fn default_tmax_ms() -> u64 {
    300
}
fn default_max_winners() -> u32 {
    1
}
fn default_ping_ttl_s() -> u64 {
    60
}

pub const DEFAULT_RETURN_REASONS: [&str; 6] =
    ["invalid_phone", "invalid_email", "duplicate", "out_of_area", "no_intent", "other"];

/// A plan's deadline must leave room for a network round trip and not hold a supplier
/// for long; 10 s is far above any portal's own timeout.
pub const TMAX_MS_MIN: u64 = 20;
pub const TMAX_MS_MAX: u64 = 10_000;
/// A ping's offer may be held for a day at most: holds block a buyer's balance.
pub const PING_TTL_S_MAX: u64 = 86_400;
/// Shared leads: a lead sold to more than ten buyers is not a lead any more.
pub const MAX_WINNERS_MAX: u32 = 10;

/// How a vertical sells: defined with the types the billing worker shares.
pub use leadrouter_types::Model;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceRule {
    #[default]
    FirstPrice,
    SecondPrice,
}

// ---------------------------------------------------------------------------------------
// Validation: meaning, after serde has checked types.

fn check_id(errors: &mut Vec<FieldError>, field: &str, id: &str) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        errors.push(FieldError::new(field, "1 to 64 characters of [A-Za-z0-9_.-]"));
    }
}

fn check_url(errors: &mut Vec<FieldError>, field: &str, url: &str) {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<http::Uri>().map(|u| u.host().is_some()).unwrap_or(false);
    if !ok {
        errors.push(FieldError::new(field, "an absolute http(s) URL"));
    }
}

fn check_timezone(errors: &mut Vec<FieldError>, field: &str, tz: &str) {
    if tz.parse::<Tz>().is_err() {
        errors.push(FieldError::new(field, "an IANA time zone such as Europe/Berlin"));
    }
}

fn check_country(errors: &mut Vec<FieldError>, field: &str, country: &str) {
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(FieldError::new(field, "an ISO 3166-1 alpha-2 code such as DE"));
    }
}

fn check_secret(errors: &mut Vec<FieldError>, field: &str, secret: &str) {
    if secret.len() < 16 {
        errors.push(FieldError::new(field, "at least 16 characters"));
    }
}

fn check_amount(errors: &mut Vec<FieldError>, field: &str, amount: Money) {
    if amount.is_negative() {
        errors.push(FieldError::new(field, "must not be negative"));
    } else if !amount.is_input_range() {
        errors.push(FieldError::new(field, "at most 1000000000.00"));
    }
}

fn finish(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Supplier {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&mut errors, "id", &self.id);
        check_secret(&mut errors, "api_key", &self.api_key);
        if let Some(url) = &self.notify_url {
            check_url(&mut errors, "notify_url", url);
            if self.webhook_secret.is_none() {
                errors.push(FieldError::new("webhook_secret", "required with notify_url: notifications are signed"));
            }
        }
        if let Some(secret) = &self.webhook_secret {
            check_secret(&mut errors, "webhook_secret", secret);
        }
        check_timezone(&mut errors, "billing.timezone", &self.billing.timezone);
        match &self.payout {
            Payout::Revshare { percent } => {
                if percent.is_sign_negative() || *percent > rust_decimal::Decimal::ONE_HUNDRED {
                    errors.push(FieldError::new("payout.percent", "between 0 and 100"));
                }
            }
            Payout::Fixed { amount } => check_amount(&mut errors, "payout.amount", *amount),
        }
        if self.rate_limit_per_s == Some(0) {
            errors.push(FieldError::new("rate_limit_per_s", "at least 1 (omit for unlimited)"));
        }
        finish(errors)
    }
}

impl Buyer {
    /// This buyer as admin answers show it: the webhook secret as `***` (DESIGN §5.1).
    pub fn redacted(&self) -> Buyer {
        Buyer { webhook_secret: REDACTED.to_string(), ..self.clone() }
    }

    /// Keeps `stored`'s webhook secret when this one is sent back as `***`.
    pub fn keep_secrets_of(&mut self, stored: &Buyer) {
        if self.webhook_secret == REDACTED {
            self.webhook_secret.clone_from(&stored.webhook_secret);
        }
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&mut errors, "id", &self.id);
        check_secret(&mut errors, "api_key", &self.api_key);
        check_secret(&mut errors, "webhook_secret", &self.webhook_secret);
        if let Some(url) = &self.notify_url {
            check_url(&mut errors, "notify_url", url);
        }
        if self.currency.parse::<Currency>().is_err() {
            errors.push(FieldError::new("currency", "an ISO 4217 code such as EUR"));
        }
        check_timezone(&mut errors, "timezone", &self.timezone);
        if let Some(limit) = self.billing.credit_limit {
            check_amount(&mut errors, "billing.credit_limit", limit);
            if self.billing.mode != BillingMode::Invoice {
                errors.push(FieldError::new("billing.credit_limit", "only for invoice buyers"));
            }
        }
        finish(errors)
    }
}

impl Campaign {
    /// This campaign as admin answers show it: every request secret as `***`.
    pub fn redacted(&self) -> Campaign {
        let mut shown = self.clone();
        for request in shown.requests_mut() {
            *request = request.redacted();
        }
        shown
    }

    /// Keeps `stored`'s request secrets where this campaign sends them back as `***`.
    pub fn keep_secrets_of(&mut self, stored: &Campaign) {
        let stored_requests: Vec<RequestSpec> = stored.clone().requests_mut().into_iter().map(|r| r.clone()).collect();
        let mine = self.requests_mut();
        if mine.len() == stored_requests.len() {
            for (request, kept) in mine.into_iter().zip(&stored_requests) {
                request.keep_secrets_of(kept);
            }
        }
    }

    /// The buyer-format requests this campaign sends: its ping's, then its delivery's.
    fn requests_mut(&mut self) -> Vec<&mut RequestSpec> {
        let ping = match &mut self.pricing {
            Pricing::Dynamic { request: Some(request), .. } => Some(&mut **request),
            _ => None,
        };
        ping.into_iter().chain(self.delivery.request.as_mut()).collect()
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&mut errors, "id", &self.id);
        check_id(&mut errors, "buyer_id", &self.buyer_id);
        check_id(&mut errors, "vertical", &self.vertical);
        if self.tier == 0 {
            errors.push(FieldError::new("tier", "at least 1"));
        }
        if self.weight == 0 || self.weight > 1_000 {
            errors.push(FieldError::new("weight", "between 1 and 1000"));
        }
        match &self.pricing {
            Pricing::Fixed { price } => check_amount(&mut errors, "pricing.price", *price),
            Pricing::Dynamic { ping_url, min_price, .. } => {
                check_url(&mut errors, "pricing.ping_url", ping_url);
                if let Some(min) = min_price {
                    check_amount(&mut errors, "pricing.min_price", *min);
                }
            }
        }
        self.validate_filters(&mut errors);
        if let Some(schedule) = &self.schedule {
            for (day, ranges) in schedule.days() {
                for (i, range) in ranges.iter().enumerate() {
                    if super::schedule::parse_range(range).is_err() {
                        errors.push(FieldError::new(
                            format!("schedule.{day}[{i}]"),
                            "a range \"HH:MM-HH:MM\" with start before end",
                        ));
                    }
                }
            }
        }
        for (field, spend) in
            [("caps.daily_spend", self.caps.daily_spend), ("caps.monthly_spend", self.caps.monthly_spend)]
        {
            if let Some(spend) = spend {
                check_amount(&mut errors, field, spend);
            }
        }
        match self.delivery.mode {
            DeliveryMode::Webhook | DeliveryMode::WebhookAsync => match &self.delivery.url {
                Some(url) => check_url(&mut errors, "delivery.url", url),
                None => errors.push(FieldError::new("delivery.url", "required for webhook delivery")),
            },
            DeliveryMode::Pull => {}
        }
        if let Some(timeout) = self.delivery.timeout_ms {
            if timeout == 0 || timeout > TMAX_MS_MAX {
                errors.push(FieldError::new("delivery.timeout_ms", format!("between 1 and {TMAX_MS_MAX}")));
            }
        }
        if let Some(tz) = &self.timezone {
            check_timezone(&mut errors, "timezone", tz);
        }
        if self.dedup_days > 3_650 {
            errors.push(FieldError::new("dedup_days", "at most 3650"));
        }
        finish(errors)
    }

    fn validate_filters(&self, errors: &mut Vec<FieldError>) {
        let filters = &self.filters;
        for (i, country) in filters.countries.iter().enumerate() {
            check_country(errors, &format!("filters.countries[{i}]"), country);
        }
        if let Some(radius) = &filters.radius {
            let has_zip = radius.zip.is_some();
            let has_point = radius.lat.is_some() || radius.lon.is_some();
            if has_zip == has_point {
                errors.push(FieldError::new("filters.radius", "either zip or lat and lon"));
            }
            if has_point {
                let lat_ok = radius.lat.is_some_and(|lat| (-90.0..=90.0).contains(&lat));
                let lon_ok = radius.lon.is_some_and(|lon| (-180.0..=180.0).contains(&lon));
                if !lat_ok {
                    errors.push(FieldError::new("filters.radius.lat", "between -90 and 90"));
                }
                if !lon_ok {
                    errors.push(FieldError::new("filters.radius.lon", "between -180 and 180"));
                }
            }
            if has_zip && radius.country.is_none() && filters.countries.is_empty() {
                errors.push(FieldError::new("filters.radius.country", "required when filters.countries is empty"));
            }
            if !(radius.km > 0.0 && radius.km <= 20_000.0) {
                errors.push(FieldError::new("filters.radius.km", "between 0 (exclusive) and 20000"));
            }
        }
        for (i, rule) in filters.rules.iter().enumerate() {
            let field = format!("filters.rules[{i}].value");
            match (rule.op, &rule.value) {
                (RuleOp::Exists, _) => {}
                (_, None) => errors.push(FieldError::new(field, "required for this op")),
                (RuleOp::In | RuleOp::NotIn, Some(v)) if !v.is_array() => {
                    errors.push(FieldError::new(field, "a list for in/not_in"))
                }
                (RuleOp::Gt | RuleOp::Gte | RuleOp::Lt | RuleOp::Lte, Some(v)) if !(v.is_number() || v.is_string()) => {
                    errors.push(FieldError::new(field, "a number or string to compare with"))
                }
                _ => {}
            }
        }
    }

    /// The campaign's fixed price, if it has one.
    pub fn fixed_price(&self) -> Option<Money> {
        match self.pricing {
            Pricing::Fixed { price } => Some(price),
            Pricing::Dynamic { .. } => None,
        }
    }
}

impl Vertical {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&mut errors, "name", &self.name);
        if !(TMAX_MS_MIN..=TMAX_MS_MAX).contains(&self.tmax_ms) {
            errors.push(FieldError::new("tmax_ms", format!("between {TMAX_MS_MIN} and {TMAX_MS_MAX}")));
        }
        check_amount(&mut errors, "reserve_price", self.reserve_price);
        if !(1..=MAX_WINNERS_MAX).contains(&self.max_winners) {
            errors.push(FieldError::new("max_winners", format!("between 1 and {MAX_WINNERS_MAX}")));
        }
        if !(1..=PING_TTL_S_MAX).contains(&self.ping_ttl_s) {
            errors.push(FieldError::new("ping_ttl_s", format!("between 1 and {PING_TTL_S_MAX}")));
        }
        if let Some(reasons) = &self.return_reasons {
            if reasons.is_empty() {
                errors.push(FieldError::new("return_reasons", "at least one reason (omit for the defaults)"));
            }
        }
        if let Some(country) = &self.default_country {
            check_country(&mut errors, "default_country", country);
        }
        for (tier, floor) in &self.tier_floors {
            if tier.parse::<u32>().map_or(true, |t| t == 0) {
                errors.push(FieldError::new(format!("tier_floors.{tier}"), "keys are tier numbers from 1"));
            }
            check_amount(&mut errors, &format!("tier_floors.{tier}"), *floor);
        }
        finish(errors)
    }

    /// The reason codes a buyer may give when returning a lead of this vertical.
    pub fn return_reasons(&self) -> Vec<String> {
        match &self.return_reasons {
            Some(reasons) => reasons.clone(),
            None => DEFAULT_RETURN_REASONS.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The lowest acceptable offer for a ping-tree tier.
    pub fn tier_floor(&self, tier: u32) -> Money {
        self.tier_floors.get(&tier.to_string()).copied().unwrap_or(self.reserve_price)
    }
}
