//! Who may receive a lead (DESIGN §3): the static checks of one campaign against one lead
//! or ping, each failure with a named, bounded reason code for traces and metrics.
//!
//! Money, caps and duplicates are not here: they depend on shared state and are checked
//! atomically when a hold is taken (`budget`) or a dedup key is claimed (`store`).

use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::geo::{distance_km, Point, UnitVector};
use super::lead::{ValidLead, ValidPing};
use super::market::{CompiledCampaign, Market};
use super::model::{FieldRule, Model, Pricing, RuleOp};
use super::money::Money;

/// What eligibility sees of a lead or ping: never a name, email, phone or street.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub supplier_id: &'a str,
    pub vertical: &'a str,
    pub country: &'a str,
    pub zip: &'a str,
    pub state: Option<&'a str>,
    pub location: Point,
    /// `location` as a unit vector, computed once per lead for the radius checks.
    pub unit: UnitVector,
    pub fields: &'a Map<String, Value>,
}

impl<'a> Subject<'a> {
    pub fn of_ping(supplier_id: &'a str, ping: &'a ValidPing) -> Subject<'a> {
        Subject {
            supplier_id,
            vertical: ping.vertical(),
            country: ping.country(),
            zip: ping.zip(),
            state: ping.state(),
            location: ping.location(),
            unit: ping.location().unit(),
            fields: ping.fields(),
        }
    }

    pub fn of_lead(supplier_id: &'a str, lead: &'a ValidLead) -> Subject<'a> {
        Subject {
            supplier_id,
            vertical: lead.vertical(),
            country: lead.country(),
            zip: lead.zip(),
            state: lead.state(),
            location: lead.location(),
            unit: lead.location().unit(),
            fields: lead.fields(),
        }
    }

    /// A custom field, or one of the lead's non-personal top-level fields.
    fn field(&self, name: &str) -> Option<Value> {
        if let Some(value) = self.fields.get(name) {
            return Some(value.clone());
        }
        match name {
            "country" => Some(Value::String(self.country.to_string())),
            "zip" => Some(Value::String(self.zip.to_string())),
            "state" => self.state.map(|s| Value::String(s.to_string())),
            _ => None,
        }
    }
}

/// Why a campaign was filtered: the code is a bounded label (metrics, traces); the detail
/// is kept as data and only turned into text when a trace is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Filtered<'a> {
    pub code: &'static str,
    pub detail: Option<Detail<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Detail<'a> {
    /// The lead lies outside the campaign's circle.
    Radius { center: Point, point: Point },
    /// The field rule on this field failed.
    Field(&'a str),
}

impl Filtered<'_> {
    fn new(code: &'static str) -> Filtered<'static> {
        Filtered { code, detail: None }
    }

    /// The great-circle distance behind a radius filter, for the trace.
    pub fn distance_km(&self) -> Option<f64> {
        match self.detail {
            Some(Detail::Radius { center, point }) => Some(distance_km(center, point)),
            _ => None,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self.detail {
            Some(Detail::Field(field)) => Some(field),
            _ => None,
        }
    }
}

/// What eligibility made of one candidate campaign.
#[derive(Debug)]
pub enum Verdict<'m> {
    Filtered(&'m Arc<CompiledCampaign>, Filtered<'m>),
    /// A fixed price: the campaign bids it without a call.
    Standing(&'m Arc<CompiledCampaign>, Money),
    /// Dynamic pricing: the buyer must be pinged for a bid.
    Live(&'m Arc<CompiledCampaign>),
}

/// Runs every candidate of the market's index through `check`, in index order, and sorts
/// the survivors into standing and live bidders for `model`. Candidates come from the
/// subject's vertical's own index, so `check` need not compare verticals.
pub fn evaluate<'m>(market: &'m Market, subject: &Subject<'_>, model: Model, now: DateTime<Utc>) -> Vec<Verdict<'m>> {
    market
        .candidates(subject)
        .into_iter()
        .map(|campaign| {
            debug_assert_eq!(campaign.campaign.vertical, subject.vertical);
            if let Err(filtered) = check(campaign, subject, now) {
                return Verdict::Filtered(campaign, filtered);
            }
            match &campaign.campaign.pricing {
                Pricing::Fixed { price } => Verdict::Standing(campaign, *price),
                Pricing::Dynamic { .. } if model == Model::Bidding => {
                    Verdict::Filtered(campaign, Filtered::new("no_standing_bid"))
                }
                Pricing::Dynamic { .. } => Verdict::Live(campaign),
            }
        })
        .collect()
}

/// Every static check of §3 in a fixed order; the first failure is the reason. The caller
/// brings campaigns of the subject's vertical (the index does).
pub fn check<'c>(
    campaign: &'c CompiledCampaign,
    subject: &Subject<'_>,
    now: DateTime<Utc>,
) -> Result<(), Filtered<'c>> {
    let config = &campaign.campaign;
    if !config.active {
        return Err(Filtered::new("inactive"));
    }
    let filters = &config.filters;
    if !filters.allow_suppliers.is_empty() && !filters.allow_suppliers.iter().any(|s| s == subject.supplier_id) {
        return Err(Filtered::new("supplier_not_allowed"));
    }
    if filters.deny_suppliers.iter().any(|s| s == subject.supplier_id) {
        return Err(Filtered::new("supplier_denied"));
    }
    if !filters.countries.is_empty() && !filters.countries.iter().any(|c| c == subject.country) {
        return Err(Filtered::new("country"));
    }
    if !filters.states.is_empty()
        && !subject.state.is_some_and(|s| filters.states.iter().any(|f| f.eq_ignore_ascii_case(s)))
    {
        return Err(Filtered::new("state"));
    }
    if !campaign.zips.is_empty() && !campaign.zips.contains(subject.zip) {
        return Err(Filtered::new("zip"));
    }
    if campaign.exclude_zips.contains(subject.zip) {
        return Err(Filtered::new("zip_excluded"));
    }
    if let Some(circle) = &campaign.circle {
        // The box test is a few comparisons; the great circle needs trigonometry.
        let point = subject.location;
        if !circle.bbox.contains(point) || subject.unit.dot(circle.center_unit) < circle.min_dot {
            return Err(Filtered { code: "radius", detail: Some(Detail::Radius { center: circle.center, point }) });
        }
    }
    for rule in &filters.rules {
        if !rule_holds(rule, subject) {
            return Err(Filtered { code: "field_rule", detail: Some(Detail::Field(&rule.field)) });
        }
    }
    if let Some(hours) = &campaign.open_hours {
        if !hours.is_open(now, campaign.tz) {
            return Err(Filtered::new("schedule_closed"));
        }
    }
    Ok(())
}

/// `{field, op, value}`: numbers compare exactly as decimals (also numeric strings), other
/// strings compare as text (so ISO dates order correctly). A missing field satisfies only
/// the negative ops `ne` and `not_in`.
pub fn rule_holds(rule: &FieldRule, subject: &Subject<'_>) -> bool {
    let Some(actual) = subject.field(&rule.field).filter(|v| !is_blank(v)) else {
        return matches!(rule.op, RuleOp::Ne | RuleOp::NotIn);
    };
    let expected = rule.value.as_ref().unwrap_or(&Value::Null);
    match rule.op {
        RuleOp::Exists => true,
        RuleOp::Eq => values_equal(&actual, expected),
        RuleOp::Ne => !values_equal(&actual, expected),
        RuleOp::In => list(expected).iter().any(|v| values_equal(&actual, v)),
        RuleOp::NotIn => !list(expected).iter().any(|v| values_equal(&actual, v)),
        RuleOp::Gt => compare(&actual, expected) == Some(Ordering::Greater),
        RuleOp::Gte => matches!(compare(&actual, expected), Some(Ordering::Greater | Ordering::Equal)),
        RuleOp::Lt => compare(&actual, expected) == Some(Ordering::Less),
        RuleOp::Lte => matches!(compare(&actual, expected), Some(Ordering::Less | Ordering::Equal)),
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn list(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => std::slice::from_ref(value),
    }
}

/// A JSON number or numeric string as an exact decimal (no float on the way).
fn as_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
        }
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        _ => None,
    }
}

fn values_equal(actual: &Value, expected: &Value) -> bool {
    match (as_decimal(actual), as_decimal(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => match (actual, expected) {
            (Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
            (Value::Array(items), _) => items.iter().any(|item| values_equal(item, expected)),
            _ => actual == expected,
        },
    }
}

fn compare(actual: &Value, expected: &Value) -> Option<Ordering> {
    match (as_decimal(actual), as_decimal(expected)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => match (actual, expected) {
            (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject(fields: &Map<String, Value>) -> Subject<'_> {
        Subject {
            supplier_id: "s1",
            vertical: "solar",
            country: "DE",
            zip: "80331",
            state: Some("BY"),
            location: Point { lat: 48.13, lon: 11.57 },
            unit: Point { lat: 48.13, lon: 11.57 }.unit(),
            fields,
        }
    }

    fn rule(field: &str, op: RuleOp, value: Value) -> FieldRule {
        FieldRule { field: field.into(), op, value: Some(value) }
    }

    #[test]
    fn field_rules_compare_numbers_exactly_and_strings_as_text() {
        let fields = json!({"roof_area": "42.5", "owner": true, "roof": "tile", "since": "2020-05-01"});
        let fields = fields.as_object().unwrap().clone();
        let s = subject(&fields);
        assert!(rule_holds(&rule("roof_area", RuleOp::Gte, json!(40)), &s));
        assert!(!rule_holds(&rule("roof_area", RuleOp::Gt, json!("42.5")), &s));
        assert!(rule_holds(&rule("roof_area", RuleOp::Eq, json!(42.50)), &s));
        assert!(rule_holds(&rule("owner", RuleOp::Eq, json!(true)), &s));
        assert!(rule_holds(&rule("roof", RuleOp::In, json!(["tile", "metal"])), &s));
        assert!(rule_holds(&rule("roof", RuleOp::NotIn, json!(["flat"])), &s));
        assert!(rule_holds(&rule("since", RuleOp::Lt, json!("2021-01-01")), &s));
        assert!(rule_holds(&rule("state", RuleOp::Eq, json!("by")), &s));
        assert!(rule_holds(&FieldRule { field: "roof".into(), op: RuleOp::Exists, value: None }, &s));
    }

    #[test]
    fn a_missing_field_only_satisfies_negative_rules() {
        let fields = Map::new();
        let s = subject(&fields);
        assert!(!rule_holds(&rule("roof", RuleOp::Eq, json!("tile")), &s));
        assert!(!rule_holds(&FieldRule { field: "roof".into(), op: RuleOp::Exists, value: None }, &s));
        assert!(rule_holds(&rule("roof", RuleOp::Ne, json!("tile")), &s));
        assert!(rule_holds(&rule("roof", RuleOp::NotIn, json!(["tile"])), &s));
        assert!(!rule_holds(&rule("roof", RuleOp::Lt, json!(3)), &s));
    }
}
