//! What one supplier may send (DESIGN §5.2), computed from the market: the verticals open
//! to it, each with its model and deadline, and the lead fields it must and may send with
//! their types, an example value, and the values and rules of the buyers it can reach.
//!
//! A vertical is open to a supplier when at least one of its campaigns is active and lets
//! the supplier in (`allow_suppliers`, `deny_suppliers`: the checks `eligibility::check`
//! starts with). Only those campaigns shape `allowed` and `buyer_rules`; their buyers,
//! prices and ids are never shown. A value outside `allowed` is still a valid lead: no
//! campaign this supplier can reach would buy it.
//!
//! Also the example requests built from those fields (`request_examples`), which a test
//! runs through `validate_ping` and `validate_lead`.
//!
//! Pure: a function of the market and the postal table.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::geo::PostalTable;
use super::lead::{CONSENT_COLUMNS, LEAD_PROPERTIES};
use super::market::{CompiledCampaign, Market};
use super::model::{Campaign, Model, RuleOp, Vertical};
use super::money::Currency;

/// The fields a rule can read from the lead itself rather than from its custom fields
/// (`eligibility::Subject::field`).
const TOP_LEVEL_RULE_FIELDS: [&str; 3] = ["country", "zip", "state"];

/// What one supplier may send.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SupplierSpec {
    pub supplier_id: String,
    /// The verticals open to this supplier, by name.
    pub verticals: Vec<VerticalSpec>,
}

/// One vertical as this supplier sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VerticalSpec {
    #[schema(example = "solar")]
    pub name: String,
    pub model: Model,
    /// The deadline of a whole decision, in milliseconds.
    pub tmax_ms: u64,
    /// How long a ping's bid stands: post the lead within it.
    pub ping_ttl_s: u64,
    /// The currency payouts of this vertical are in.
    pub currency: Currency,
    /// Fields a lead must carry (its ping: those with `in_ping`).
    pub required: Vec<FieldSpec>,
    /// Fields a lead may carry.
    pub optional: Vec<FieldSpec>,
}

/// One lead field.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldSpec {
    /// Its path in a lead: `email`, `consent.tcpa`, `fields.roof_type` (also its bulk CSV
    /// column).
    #[schema(example = "fields.roof_type")]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Sent in a ping too (a ping never carries personal data).
    pub in_ping: bool,
    /// The values the reachable campaigns take, when every one of them names its values;
    /// absent when some campaign takes any value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Value>)]
    pub allowed: Option<Vec<Value>>,
    /// The conditions reachable campaigns put on this field, each with how many do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buyer_rules: Vec<BuyerRule>,
    /// A value the example requests use.
    #[schema(value_type = Value)]
    pub example: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub note: Option<String>,
}

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Email,
    /// Normalizable to E.164 for the lead's country.
    Phone,
    /// Known for the lead's country.
    PostalCode,
    /// ISO 3166-1 alpha-2.
    CountryCode,
    StateCode,
    Boolean,
    Number,
    Url,
    IpAddress,
    /// RFC 3339.
    DateTime,
    /// A custom field the buyers' rules say nothing typed about: a string, number, boolean
    /// or array of those.
    Any,
}

/// A condition campaigns put on a field: a field rule's `op` (`eq`, `in`, `gte`, ...), or
/// for postal codes `in` / `not_in` with codes and `prefix*` patterns and `within_km` of a
/// centre.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BuyerRule {
    #[schema(example = "in")]
    pub op: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub value: Option<Value>,
    /// How many reachable campaigns have this condition.
    pub campaigns: usize,
}

/// The supplier's spec; `None` for an unknown supplier.
pub fn supplier_spec(market: &Market, supplier_id: &str, postal: &PostalTable) -> Option<SupplierSpec> {
    market.supplier(supplier_id)?;
    let verticals = market
        .config()
        .verticals
        .iter()
        .filter_map(|vertical| {
            let reachable = reachable_campaigns(market, supplier_id, &vertical.name);
            vertical_spec(vertical, &reachable, postal)
        })
        .collect();
    Some(SupplierSpec { supplier_id: supplier_id.to_string(), verticals })
}

/// An example lead of `vertical` that `campaign`'s filters and field rules let in, as far
/// as the spec can say them (the test send's lead when the operator gives none).
pub fn sample_lead(vertical: &Vertical, campaign: &CompiledCampaign, postal: &PostalTable) -> Option<Value> {
    let spec = vertical_spec(vertical, &[campaign], postal)?;
    Some(request_examples(&spec).lead)
}

/// The active campaigns of `vertical` that let `supplier_id` in, in id order.
fn reachable_campaigns<'m>(market: &'m Market, supplier_id: &str, vertical: &str) -> Vec<&'m CompiledCampaign> {
    market
        .config()
        .campaigns
        .iter()
        .filter(|c| c.vertical == vertical && c.active && lets_in(c, supplier_id))
        .filter_map(|c| market.campaign(&c.id).map(|compiled| &**compiled))
        .collect()
}

/// The supplier filters, as `eligibility::check` applies them.
fn lets_in(campaign: &Campaign, supplier_id: &str) -> bool {
    let filters = &campaign.filters;
    let allowed = filters.allow_suppliers.is_empty() || filters.allow_suppliers.iter().any(|s| s == supplier_id);
    allowed && !filters.deny_suppliers.iter().any(|s| s == supplier_id)
}

fn vertical_spec(vertical: &Vertical, reachable: &[&CompiledCampaign], postal: &PostalTable) -> Option<VerticalSpec> {
    let currency = reachable.first()?.currency;
    let demands = Demands::of(vertical, reachable);
    let (country, zip) = example_place(vertical, &demands, reachable, postal);
    let place =
        Place { state: postal.lookup(&country, &zip).and_then(|p| p.state_code()).map(str::to_string), country, zip };
    let (required, optional) =
        fields(vertical, &demands, &place, postal).into_iter().partition::<Vec<_>, _>(|(required, _)| *required);
    Some(VerticalSpec {
        name: vertical.name.clone(),
        model: vertical.model,
        tmax_ms: vertical.tmax_ms,
        ping_ttl_s: vertical.ping_ttl_s,
        currency,
        required: required.into_iter().map(|(_, field)| field).collect(),
        optional: optional.into_iter().map(|(_, field)| field).collect(),
    })
}

// ---------------------------------------------------------------------------------------
// What the reachable campaigns ask of each field

/// What the reachable campaigns say about one field.
#[derive(Debug, Default)]
struct Demand {
    /// Some campaign takes any value.
    takes_any: bool,
    /// The union of the values the others name, by their JSON text (a stable order).
    values: BTreeMap<String, Value>,
    /// Conditions by op and value text, each with the campaigns that have it.
    rules: BTreeMap<(String, String), BuyerRule>,
}

impl Demand {
    fn takes(&mut self, values: Option<Vec<Value>>) {
        match values {
            None => self.takes_any = true,
            Some(values) => self.values.extend(values.into_iter().map(|v| (v.to_string(), v))),
        }
    }

    fn rule(&mut self, op: &str, value: Option<&Value>) {
        let key = (op.to_string(), value.map(Value::to_string).unwrap_or_default());
        let rule = self.rules.entry(key).or_insert_with(|| BuyerRule {
            op: op.to_string(),
            value: value.cloned(),
            campaigns: 0,
        });
        rule.campaigns += 1;
    }

    fn allowed(&self) -> Option<Vec<Value>> {
        (!self.takes_any).then(|| self.values.values().cloned().collect())
    }

    fn rules(&self) -> Vec<BuyerRule> {
        self.rules.values().cloned().collect()
    }
}

/// Demands by field path (`country`, `zip`, `state`, `fields.<name>`).
#[derive(Debug, Default)]
struct Demands(BTreeMap<String, Demand>);

impl Demands {
    fn of(vertical: &Vertical, reachable: &[&CompiledCampaign]) -> Demands {
        let mut demands = Demands::default();
        let customs = custom_fields(vertical, reachable);
        for campaign in reachable {
            let config = &campaign.campaign;
            let filters = &config.filters;
            demands.field("country").takes(listed(&filters.countries).or_else(|| rule_values(config, "country")));
            demands.field("state").takes(listed(&filters.states).or_else(|| rule_values(config, "state")));
            for name in &customs {
                demands.field(&format!("fields.{name}")).takes(rule_values(config, name));
            }
            for rule in &filters.rules {
                demands.field(&rule_path(&rule.field)).rule(rule.op.as_str(), rule.value.as_ref());
            }
            demands.postal_rules(config);
        }
        demands
    }

    fn field(&mut self, path: &str) -> &mut Demand {
        self.0.entry(path.to_string()).or_default()
    }

    fn get(&self, path: &str) -> Option<&Demand> {
        self.0.get(path)
    }

    /// A campaign's postal filters as conditions on `zip`.
    fn postal_rules(&mut self, campaign: &Campaign) {
        let filters = &campaign.filters;
        let zip = self.field("zip");
        if !filters.zips.is_empty() {
            zip.rule("in", Some(&json!(filters.zips)));
        }
        if !filters.exclude_zips.is_empty() {
            zip.rule("not_in", Some(&json!(filters.exclude_zips)));
        }
        if let Some(radius) = &filters.radius {
            let centre = match (&radius.zip, radius.lat, radius.lon) {
                (Some(zip), _, _) => {
                    let country = radius.country.as_ref().or(filters.countries.first());
                    json!({"zip": zip, "country": country, "km": radius.km})
                }
                (None, lat, lon) => json!({"lat": lat, "lon": lon, "km": radius.km}),
            };
            zip.rule("within_km", Some(&centre));
        }
    }
}

/// The custom fields the vertical requires or a reachable campaign's rules read, by name.
fn custom_fields(vertical: &Vertical, reachable: &[&CompiledCampaign]) -> Vec<String> {
    let required = vertical.required_fields.iter().filter_map(|name| custom_name(name));
    let ruled = reachable
        .iter()
        .flat_map(|c| &c.campaign.filters.rules)
        .filter(|rule| !TOP_LEVEL_RULE_FIELDS.contains(&rule.field.as_str()))
        .map(|rule| rule.field.clone());
    let mut names: Vec<String> = required.chain(ruled).collect();
    names.sort();
    names.dedup();
    names
}

/// A required field's custom name, or None for a lead property (`email`, `consent.tcpa`).
fn custom_name(required: &str) -> Option<String> {
    if let Some(name) = required.strip_prefix("fields.") {
        return Some(name.to_string());
    }
    let top_level = required == "consent" || required.starts_with("consent.") || LEAD_PROPERTIES.contains(&required);
    (!top_level).then(|| required.to_string())
}

/// Where a rule's field is in a lead.
fn rule_path(field: &str) -> String {
    if TOP_LEVEL_RULE_FIELDS.contains(&field) {
        field.to_string()
    } else {
        format!("fields.{field}")
    }
}

fn listed(values: &[String]) -> Option<Vec<Value>> {
    (!values.is_empty()).then(|| values.iter().map(|v| Value::String(v.clone())).collect())
}

/// The values a campaign's first `eq` or `in` rule on `field` names.
fn rule_values(campaign: &Campaign, field: &str) -> Option<Vec<Value>> {
    let rule = campaign.filters.rules.iter().find(|r| r.field == field && matches!(r.op, RuleOp::Eq | RuleOp::In))?;
    match (rule.op, &rule.value) {
        (RuleOp::In, Some(Value::Array(values))) => Some(values.clone()),
        (_, Some(value)) => Some(vec![value.clone()]),
        (_, None) => None,
    }
}

// ---------------------------------------------------------------------------------------
// Fields

/// The example lead's place: a country the buyers take and a postal code known there.
struct Place {
    country: String,
    zip: String,
    state: Option<String>,
}

/// Every field of a lead of `vertical`, with whether it is required, in a fixed order: the
/// lead's properties, its consent, then custom fields by name.
fn fields(vertical: &Vertical, demands: &Demands, place: &Place, postal: &PostalTable) -> Vec<(bool, FieldSpec)> {
    let required = |name: &str| vertical.required_fields.iter().any(|f| f == name);
    let consent_required = required("consent") || required("consent.tcpa");
    let mut fields = Vec::new();
    for name in LEAD_PROPERTIES {
        let spec = lead_property(name, vertical, demands, place, postal);
        let always = matches!(name, "vertical" | "first_name" | "last_name" | "email" | "phone" | "zip");
        let country_needed = name == "country" && vertical.default_country.is_none();
        fields.push((always || country_needed || required(name), spec));
    }
    for column in CONSENT_COLUMNS {
        let is_tcpa = column == "consent.tcpa";
        fields.push((is_tcpa && consent_required, consent_field(column, required("consent.tcpa"))));
    }
    for (path, demand) in demands.0.iter().filter(|(path, _)| path.starts_with("fields.")) {
        let name = path.trim_start_matches("fields.");
        fields.push((required(name) || required(path), custom_field(path, demand)));
    }
    fields
}

fn field(name: &str, kind: FieldKind, in_ping: bool, example: Value) -> FieldSpec {
    FieldSpec { name: name.to_string(), kind, in_ping, allowed: None, buyer_rules: Vec::new(), example, note: None }
}

fn lead_property(name: &str, vertical: &Vertical, demands: &Demands, place: &Place, postal: &PostalTable) -> FieldSpec {
    let rules = |path: &str| demands.get(path).map(Demand::rules).unwrap_or_default();
    match name {
        "vertical" => FieldSpec {
            allowed: Some(vec![Value::String(vertical.name.clone())]),
            ..field(name, FieldKind::Text, true, json!(vertical.name))
        },
        "first_name" => field(name, FieldKind::Text, false, json!("Anna")),
        "last_name" => field(name, FieldKind::Text, false, json!("Muster")),
        "email" => field(name, FieldKind::Email, false, json!("anna.muster@example.com")),
        "phone" => field(name, FieldKind::Phone, false, json!(example_phone(&place.country))),
        "zip" => FieldSpec { buyer_rules: rules("zip"), ..field(name, FieldKind::PostalCode, true, json!(place.zip)) },
        "country" => FieldSpec {
            allowed: Some(countries(demands, postal)),
            buyer_rules: rules("country"),
            note: vertical.default_country.as_ref().map(|c| format!("{c} when left out")),
            ..field(name, FieldKind::CountryCode, true, json!(place.country))
        },
        "state" => FieldSpec {
            allowed: demands.get("state").and_then(Demand::allowed),
            buyer_rules: rules("state"),
            note: Some("taken from the postal code when left out; must agree with it".into()),
            ..field(name, FieldKind::StateCode, true, json!(place.state))
        },
        "city" => field(name, FieldKind::Text, false, json!("Musterstadt")),
        "street" => field(name, FieldKind::Text, false, json!("Musterstrasse 1")),
        _ => FieldSpec {
            note: Some("your own reference, unique per supplier".into()),
            ..field(name, FieldKind::Text, false, json!("portal-000123"))
        },
    }
}

/// The countries a lead may name: those the buyers take (all when one takes any) that the
/// postal table covers, since a postal code must be known for its country.
fn countries(demands: &Demands, postal: &PostalTable) -> Vec<Value> {
    let known = postal.countries();
    let taken = demands.get("country").and_then(Demand::allowed);
    known
        .into_iter()
        .filter(|c| taken.as_ref().is_none_or(|taken| taken.iter().any(|t| t.as_str() == Some(c))))
        .map(Value::String)
        .collect()
}

fn consent_field(column: &str, tcpa_must_be_true: bool) -> FieldSpec {
    match column {
        "consent.tcpa" => FieldSpec {
            allowed: tcpa_must_be_true.then(|| vec![Value::Bool(true)]),
            ..field(column, FieldKind::Boolean, false, json!(true))
        },
        "consent.certificate_url" => {
            field(column, FieldKind::Url, false, json!("https://cert.example.com/certificates/0123456789"))
        }
        "consent.ip" => field(column, FieldKind::IpAddress, false, json!("203.0.113.7")),
        _ => field(column, FieldKind::DateTime, false, json!("2026-05-01T12:00:00Z")),
    }
}

fn custom_field(path: &str, demand: &Demand) -> FieldSpec {
    let allowed = demand.allowed().filter(|values| !values.is_empty());
    let rules = demand.rules();
    let named: Vec<&Value> = allowed.iter().flatten().chain(rules.iter().filter_map(|r| r.value.as_ref())).collect();
    let kind = custom_kind(&named);
    let example = custom_example(kind, allowed.as_deref(), &rules);
    FieldSpec { allowed, buyer_rules: rules, ..field(path, kind, true, example) }
}

/// A custom field's type, as the values the buyers name agree on.
fn custom_kind(values: &[&Value]) -> FieldKind {
    let scalars: Vec<&Value> = values
        .iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![*other],
        })
        .collect();
    let all = |test: fn(&Value) -> bool| !scalars.is_empty() && scalars.iter().all(|v| test(v));
    if all(Value::is_boolean) {
        FieldKind::Boolean
    } else if all(Value::is_number) {
        FieldKind::Number
    } else if all(Value::is_string) {
        FieldKind::Text
    } else {
        FieldKind::Any
    }
}

/// A value the buyers take: the first allowed one, else one meeting the first comparison.
fn custom_example(kind: FieldKind, allowed: Option<&[Value]>, rules: &[BuyerRule]) -> Value {
    if let Some(first) = allowed.and_then(<[Value]>::first) {
        return first.clone();
    }
    let compared = rules.iter().find_map(|rule| match (rule.op.as_str(), &rule.value) {
        ("gte" | "lte" | "eq", Some(value)) => Some(value.clone()),
        ("gt", Some(Value::Number(n))) => n.as_i64().map(|n| json!(n.saturating_add(1))),
        ("lt", Some(Value::Number(n))) => n.as_i64().map(|n| json!(n.saturating_sub(1))),
        _ => None,
    });
    compared.unwrap_or_else(|| match kind {
        FieldKind::Boolean => json!(true),
        FieldKind::Number => json!(1),
        _ => json!("example"),
    })
}

// ---------------------------------------------------------------------------------------
// The example place

/// Postal codes known to be in the bundled table, for a country no campaign names one of.
const FALLBACK_ZIPS: [(&str, &str); 2] = [("DE", "80331"), ("US", "10001")];

/// A country the buyers take and a postal code there that a reachable campaign names
/// (an exact code of its include list or a radius centre) when one does.
fn example_place(
    vertical: &Vertical,
    demands: &Demands,
    reachable: &[&CompiledCampaign],
    postal: &PostalTable,
) -> (String, String) {
    let countries: Vec<String> =
        countries(demands, postal).into_iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
    let country = vertical
        .default_country
        .clone()
        .filter(|c| countries.contains(c))
        .or_else(|| countries.first().cloned())
        .unwrap_or_else(|| "DE".to_string());
    let named = reachable.iter().flat_map(|c| {
        let filters = &c.campaign.filters;
        let centre = filters.radius.as_ref().and_then(|r| r.zip.clone());
        filters.zips.iter().filter(|z| !z.ends_with('*')).cloned().chain(centre)
    });
    let fallback = FALLBACK_ZIPS.iter().filter(|(c, _)| *c == country).map(|(_, zip)| zip.to_string());
    let zip = named
        .chain(fallback)
        .find(|zip| PostalTable::normalize(&country, zip).is_some_and(|z| postal.lookup(&country, &z).is_some()))
        .unwrap_or_default();
    (country, zip)
}

/// A phone number valid for `country` (DE and US are the countries the postal table covers).
fn example_phone(country: &str) -> &'static str {
    match country {
        "US" => "+1 212 555 0123",
        _ => "+49 89 1234567",
    }
}

// ---------------------------------------------------------------------------------------
// Example requests

/// The example requests of a vertical: a ping, the lead its post (or a direct post)
/// carries, and a bulk CSV of that lead with every column the vertical knows.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestExamples {
    pub ping: Value,
    pub lead: Value,
    pub bulk_csv: String,
}

pub fn request_examples(vertical: &VerticalSpec) -> RequestExamples {
    let all = || vertical.required.iter().chain(&vertical.optional);
    let wanted = |f: &&FieldSpec| vertical.required.contains(f) || f.name.starts_with("fields.");
    let mut lead = Map::new();
    let mut ping = Map::new();
    for spec in all().filter(wanted).filter(|f| !f.example.is_null()) {
        put(&mut lead, &spec.name, spec.example.clone());
        if spec.in_ping {
            put(&mut ping, &spec.name, spec.example.clone());
        }
    }
    let mut columns: Vec<&FieldSpec> = all().collect();
    columns.sort_by_key(|f| column_rank(&f.name));
    let header: Vec<&str> = columns.iter().map(|f| f.name.as_str()).collect();
    let row: Vec<String> =
        columns.iter().map(|f| if wanted(f) { csv_cell(&f.example) } else { String::new() }).collect();
    RequestExamples {
        ping: Value::Object(ping),
        lead: Value::Object(lead),
        bulk_csv: format!("{}\n{}\n", header.join(","), row.join(",")),
    }
}

/// A bulk column's place: the lead's properties, its consent, then custom fields by name.
fn column_rank(name: &str) -> (usize, &str) {
    let known = LEAD_PROPERTIES.iter().chain(&CONSENT_COLUMNS).position(|column| *column == name);
    (known.unwrap_or(usize::MAX), name)
}

/// Sets `path` (`email`, `consent.tcpa`, `fields.roof_type`) in a JSON object.
fn put(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        Some((outer, inner)) => {
            let nested = object.entry(outer).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(nested) = nested {
                nested.insert(inner.to_string(), value);
            }
        }
        None => {
            object.insert(path.to_string(), value);
        }
    }
}

/// A value as a CSV cell: text as it is, quoted when it holds a comma, quote or line break.
fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lead::{validate_lead, validate_ping, LeadInput, PingInput};

    fn market(verticals: Value, campaigns: Value) -> Market {
        let config = json!({
            "verticals": verticals,
            "suppliers": [supplier("s1"), supplier("s2")],
            "buyers": [{"id": "b1", "name": "B", "api_key": "buyer-key-b1-xxxxxxxx", "webhook_secret": "secret-secret-secret",
                        "currency": "EUR", "billing": {"mode": "prepaid"}}],
            "campaigns": campaigns,
        });
        Market::build(serde_json::from_value(config).unwrap(), PostalTable::bundled()).unwrap()
    }

    fn supplier(id: &str) -> Value {
        json!({"id": id, "name": id, "api_key": format!("supplier-key-{id}-xxxxxxxx"), "payout": {"type": "revshare", "percent": "50"}})
    }

    fn campaign(id: &str, vertical: &str, extra: Value) -> Value {
        let mut campaign = json!({"id": id, "buyer_id": "b1", "vertical": vertical,
            "pricing": {"type": "fixed", "price": "10.00"}, "delivery": {"mode": "pull"}});
        if let (Some(campaign), Value::Object(extra)) = (campaign.as_object_mut(), extra) {
            campaign.extend(extra);
        }
        campaign
    }

    fn spec(market: &Market, supplier: &str) -> SupplierSpec {
        supplier_spec(market, supplier, PostalTable::bundled()).unwrap()
    }

    fn names(spec: &SupplierSpec) -> Vec<&str> {
        spec.verticals.iter().map(|v| v.name.as_str()).collect()
    }

    fn find<'a>(fields: &'a [FieldSpec], name: &str) -> &'a FieldSpec {
        fields.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
    }

    #[test]
    fn a_vertical_is_open_only_through_an_active_campaign_that_lets_the_supplier_in() {
        let verticals = json!(["solar", "heat_pump", "insurance", "roofing", "windows"]
            .map(|name| json!({"name": name, "model": "ping_post"})));
        let market = market(
            verticals,
            json!([
                campaign("c1", "solar", json!({})),
                campaign("c2", "heat_pump", json!({"filters": {"deny_suppliers": ["s1"]}})),
                campaign("c3", "insurance", json!({"active": false})),
                campaign("c4", "roofing", json!({"filters": {"allow_suppliers": ["s2"]}})),
            ]),
        );
        assert_eq!(names(&spec(&market, "s1")), ["solar"]);
        assert_eq!(names(&spec(&market, "s2")), ["heat_pump", "roofing", "solar"]);
        assert!(supplier_spec(&market, "nobody", PostalTable::bundled()).is_none());
    }

    #[test]
    fn fields_carry_the_vertical_requirements_and_the_values_of_the_reachable_campaigns() {
        let vertical = json!([{"name": "solar", "model": "bidding", "tmax_ms": 800,
            "required_fields": ["fields.roof_type", "consent.tcpa", "city"]}]);
        let market = market(
            vertical,
            json!([
                campaign(
                    "c1",
                    "solar",
                    json!({"filters": {"countries": ["DE"], "zips": ["80*", "10115"],
                    "rules": [{"field": "roof_type", "op": "in", "value": ["tile", "metal"]},
                              {"field": "kwh", "op": "gte", "value": 3000}]}})
                ),
                campaign(
                    "c2",
                    "solar",
                    json!({"filters": {"countries": ["DE"],
                    "rules": [{"field": "roof_type", "op": "eq", "value": "slate"}]}})
                ),
                // Not reachable by s1: its rules must not show.
                campaign(
                    "c3",
                    "solar",
                    json!({"filters": {"deny_suppliers": ["s1"], "countries": ["US"],
                    "rules": [{"field": "secret_rule", "op": "exists"}]}})
                ),
            ]),
        );
        let spec = spec(&market, "s1");
        let solar = &spec.verticals[0];
        assert_eq!((solar.model, solar.tmax_ms, solar.currency), (Model::Bidding, 800, Currency::EUR));
        let required: Vec<&str> = solar.required.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            required,
            [
                "vertical",
                "first_name",
                "last_name",
                "email",
                "phone",
                "zip",
                "country",
                "city",
                "consent.tcpa",
                "fields.roof_type"
            ]
        );
        let roof = find(&solar.required, "fields.roof_type");
        assert_eq!((roof.kind, roof.in_ping), (FieldKind::Text, true));
        assert_eq!(roof.allowed, Some(vec![json!("metal"), json!("slate"), json!("tile")]));
        assert_eq!(find(&solar.required, "consent.tcpa").allowed, Some(vec![json!(true)]));
        assert_eq!(find(&solar.required, "country").allowed, Some(vec![json!("DE")]));
        assert!(!find(&solar.required, "email").in_ping);

        let kwh = find(&solar.optional, "fields.kwh");
        assert_eq!((kwh.kind, kwh.allowed.as_ref()), (FieldKind::Number, None), "c2 takes any kwh");
        assert_eq!(kwh.buyer_rules, [BuyerRule { op: "gte".into(), value: Some(json!(3000)), campaigns: 1 }]);
        assert_eq!(kwh.example, json!(3000));
        let zip = find(&solar.required, "zip");
        assert_eq!(
            zip.buyer_rules,
            [BuyerRule { op: "in".into(), value: Some(json!(["80*", "10115"])), campaigns: 1 }]
        );
        assert_eq!(zip.example, json!("10115"), "a code a campaign names");
        assert!(solar.optional.iter().chain(&solar.required).all(|f| f.name != "fields.secret_rule"));
    }

    #[test]
    fn a_campaign_without_a_country_filter_opens_every_country_with_postal_data() {
        let vertical = json!([{"name": "solar", "model": "round_robin", "default_country": "US"}]);
        let market = market(vertical, json!([campaign("c1", "solar", json!({}))]));
        let spec = spec(&market, "s1");
        let country = find(&spec.verticals[0].optional, "country");
        assert_eq!(country.allowed, Some(vec![json!("DE"), json!("US")]));
        assert_eq!((country.example.as_str(), country.note.as_deref()), (Some("US"), Some("US when left out")));
    }

    /// The example requests are what the validators accept, in both covered countries.
    #[test]
    fn the_example_requests_pass_validation() {
        for country in ["DE", "US"] {
            let vertical = json!([{"name": "solar", "model": "ping_post",
                "required_fields": ["fields.roof_type", "consent", "state", "external_id"]}]);
            let market = market(
                vertical,
                json!([campaign(
                    "c1",
                    "solar",
                    json!({"filters": {"countries": [country],
                    "rules": [{"field": "roof_type", "op": "in", "value": ["tile"]}, {"field": "owner", "op": "eq", "value": true}]}})
                )]),
            );
            let spec = spec(&market, "s1");
            let vertical_spec = &spec.verticals[0];
            let examples = request_examples(vertical_spec);
            let vertical = market.vertical("solar").unwrap();
            let ping: PingInput = serde_json::from_value(examples.ping.clone()).unwrap();
            let ping = validate_ping(ping, vertical, PostalTable::bundled());
            assert!(ping.is_ok(), "{country}: {:?} for {}", ping.err(), examples.ping);
            let lead: LeadInput = serde_json::from_value(examples.lead.clone()).unwrap();
            let lead = validate_lead(lead, vertical, PostalTable::bundled());
            assert!(lead.is_ok(), "{country}: {:?} for {}", lead.err(), examples.lead);
            assert_eq!(examples.lead["fields"], json!({"roof_type": "tile", "owner": true}));
            assert!(examples.ping.get("email").is_none() && examples.ping.get("consent").is_none());

            let (header, row) = examples.bulk_csv.trim_end().split_once('\n').unwrap();
            let columns: Vec<&str> = header.split(',').collect();
            assert_eq!(&columns[..LEAD_PROPERTIES.len()], LEAD_PROPERTIES);
            assert!(columns.contains(&"consent.ip") && columns.contains(&"fields.owner"), "{header}");
            assert_eq!(row.split(',').count(), columns.len());
        }
    }

    #[test]
    fn radius_and_excluded_codes_are_conditions_on_the_postal_code() {
        let vertical = json!([{"name": "solar", "model": "ping_post"}]);
        let market = market(
            vertical,
            json!([campaign(
                "c1",
                "solar",
                json!({"filters": {"countries": ["DE"], "exclude_zips": ["80331"],
                "radius": {"zip": "10115", "km": 30.0}}})
            )]),
        );
        let spec = spec(&market, "s1");
        let zip = find(&spec.verticals[0].required, "zip");
        let ops: Vec<&str> = zip.buyer_rules.iter().map(|r| r.op.as_str()).collect();
        assert_eq!(ops, ["not_in", "within_km"]);
        assert_eq!(zip.buyer_rules[1].value, Some(json!({"zip": "10115", "country": "DE", "km": 30.0})));
        assert_eq!(zip.example, json!("10115"), "the radius centre");
    }
}
