//! Who may receive a lead (DESIGN §3): the static checks of one campaign against one lead
//! or ping, each failure with a named, bounded reason code for traces and metrics.
//!
//! Money, caps and duplicates are not here: they depend on shared state and are checked
//! atomically when a hold is taken (`budget`) or a dedup key is claimed (`store`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::auction::cents_of;
use super::geo::{distance_km, Point, UnitVector};
use super::lead::{ValidLead, ValidPing};
use super::market::{CompiledCampaign, Market};
use super::model::{FieldRule, Model, RuleOp};
use super::money::Money;
use super::schedule::local_minute;

mod evaluation;

pub use evaluation::{screen, Evaluation};

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

/// What eligibility made of one candidate campaign, as a trace shows it.
#[derive(Debug)]
pub enum Verdict<'m> {
    Filtered(&'m Arc<CompiledCampaign>, Filtered<'m>),
    /// A fixed price: the campaign bids it without a call.
    Standing(&'m Arc<CompiledCampaign>, Money),
    /// Dynamic pricing: the buyer must be pinged for a bid.
    Live(&'m Arc<CompiledCampaign>),
}

/// Every candidate's verdict, in index order: `screen` with each verdict spelled out, for
/// traces and tests. A decision uses `screen` and asks its `Evaluation` for what it needs.
pub fn evaluate<'m>(market: &'m Market, subject: &Subject<'_>, model: Model, now: DateTime<Utc>) -> Vec<Verdict<'m>> {
    screen(market, subject, model, now).verdicts().collect()
}

/// Why the screens filtered a campaign: `Filtered` without its borrowed detail, 8 bytes,
/// so a decision keeps one per candidate and spells out only what a trace shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Inactive,
    SupplierNotAllowed,
    SupplierDenied,
    State,
    Zip,
    ZipExcluded,
    Radius,
    /// The campaign's field rule number `n` failed.
    FieldRule(u32),
    ScheduleClosed,
    NoStandingBid,
}

impl Reason {
    /// The `Filtered` that `check` answers for `campaign` and a subject at `point`.
    fn filtered(self, campaign: &CompiledCampaign, point: Point) -> Filtered<'_> {
        let code = match self {
            Reason::Inactive => "inactive",
            Reason::SupplierNotAllowed => "supplier_not_allowed",
            Reason::SupplierDenied => "supplier_denied",
            Reason::State => "state",
            Reason::Zip => "zip",
            Reason::ZipExcluded => "zip_excluded",
            Reason::Radius => {
                let center = campaign.circle.map_or(point, |circle| circle.center);
                return Filtered { code: "radius", detail: Some(Detail::Radius { center, point }) };
            }
            Reason::FieldRule(n) => {
                let rule = campaign.campaign.filters.rules.get(n as usize);
                return Filtered { code: "field_rule", detail: rule.map(|rule| Detail::Field(rule.field.as_str())) };
            }
            Reason::ScheduleClosed => "schedule_closed",
            Reason::NoStandingBid => "no_standing_bid",
        };
        Filtered::new(code)
    }
}

// Which of a campaign's static filters are set (`Screens::flags`).
const ACTIVE: u16 = 1;
const ALLOW: u16 = 1 << 1;
const DENY: u16 = 1 << 2;
const COUNTRIES: u16 = 1 << 3;
const STATES: u16 = 1 << 4;
/// A state filter naming a state beyond the bitset: checked on the configuration.
const STATES_SLOW: u16 = 1 << 5;
const ZIPS: u16 = 1 << 6;
const EXCLUDE_ZIPS: u16 = 1 << 7;
const CIRCLE: u16 = 1 << 8;
const RULES: u16 = 1 << 9;
const HOURS: u16 = 1 << 10;

/// The filters of `check` of one vertical's campaigns, compiled when the market is built
/// and laid out by index slot (struct of arrays): a decision's checks read a flag word, a
/// 64-byte circle, a state bitset and supplier bitsets, and touch a campaign's own
/// configuration only for what is rare (postal sets, field rules, schedules). Countries
/// need nothing: the index finds a campaign only under a country it lists, or when it
/// lists none.
#[derive(Debug, Default)]
pub struct Screens {
    flags: Vec<u16>,
    circles: Vec<CircleScreen>,
    /// Bit `i`: the state of `state_ids` number `i` (upper case).
    states: Vec<u64>,
    state_ids: HashMap<Box<str>, u32>,
    /// Offsets into `supplier_bits` of each slot's allow and deny sets (`NO_SET`: none).
    allow: Vec<u32>,
    deny: Vec<u32>,
    supplier_bits: Vec<u64>,
    supplier_words: usize,
    supplier_ids: HashMap<Box<str>, u32>,
    /// A fixed price with what the auction orders it by; None for dynamic pricing.
    prices: Vec<Option<Price>>,
}

/// A campaign's fixed price, its whole cents (`auction::cents_of`) and the campaign's tier,
/// side by side: a standing bid reads one record and no campaign (issue 17).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Price {
    pub amount: Money,
    pub cents: i64,
    pub tier: u32,
}

const NO_SET: u32 = u32::MAX;

/// A radius filter as the check reads it: the box test, then the dot product.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct CircleScreen {
    lat_min: f64,
    lat_max: f64,
    lon_min: f64,
    lon_max: f64,
    center_unit: [f64; 3],
    min_dot: f64,
}

/// What the screens need of one lead, looked up once per decision.
pub(crate) struct LeadKeys<'s> {
    subject: &'s Subject<'s>,
    supplier: Option<u32>,
    state: Option<u32>,
    unit: [f64; 3],
}

/// The local time of the decision per time zone, looked up once per zone.
struct Clocks {
    now: DateTime<Utc>,
    zones: Vec<(Tz, Option<(Weekday, u16)>)>,
}

impl Clocks {
    fn local(&mut self, tz: Tz) -> Option<(Weekday, u16)> {
        if let Some(&(_, local)) = self.zones.iter().find(|(zone, _)| *zone == tz) {
            return local;
        }
        let local = local_minute(self.now, tz);
        self.zones.push((tz, local));
        local
    }
}

impl Screens {
    /// Compiles the filters of a vertical's campaigns, in slot order.
    pub(crate) fn build(campaigns: &[Arc<CompiledCampaign>]) -> Screens {
        let mut screens = Screens::default();
        for compiled in campaigns {
            let filters = &compiled.campaign.filters;
            for name in filters.allow_suppliers.iter().chain(&filters.deny_suppliers) {
                let next = screens.supplier_ids.len() as u32;
                screens.supplier_ids.entry(name.as_str().into()).or_insert(next);
            }
            for state in &filters.states {
                let next = screens.state_ids.len() as u32;
                screens.state_ids.entry(state.to_ascii_uppercase().into()).or_insert(next);
            }
        }
        screens.supplier_words = screens.supplier_ids.len().div_ceil(64);
        for compiled in campaigns {
            let config = &compiled.campaign;
            let filters = &config.filters;
            let mut flags = 0;
            let mut set = |on: bool, flag: u16| {
                if on {
                    flags |= flag;
                }
            };
            set(config.active, ACTIVE);
            set(!filters.allow_suppliers.is_empty(), ALLOW);
            set(!filters.deny_suppliers.is_empty(), DENY);
            set(!filters.countries.is_empty(), COUNTRIES);
            set(!filters.states.is_empty(), STATES);
            set(!compiled.zips.is_empty(), ZIPS);
            set(!compiled.exclude_zips.is_empty(), EXCLUDE_ZIPS);
            set(compiled.circle.is_some(), CIRCLE);
            set(!filters.rules.is_empty(), RULES);
            set(compiled.open_hours.is_some(), HOURS);
            let mut states = 0u64;
            for state in &filters.states {
                match screens.state_ids[state.to_ascii_uppercase().as_str()] {
                    id @ 0..64 => states |= 1 << id,
                    _ => flags |= STATES_SLOW,
                }
            }
            let allow = screens.supplier_set(&filters.allow_suppliers);
            let deny = screens.supplier_set(&filters.deny_suppliers);
            screens.flags.push(flags);
            screens.states.push(states);
            screens.allow.push(allow);
            screens.deny.push(deny);
            screens.circles.push(compiled.circle.map_or_else(CircleScreen::default, |c| CircleScreen {
                lat_min: c.bbox.lat_min,
                lat_max: c.bbox.lat_max,
                lon_min: c.bbox.lon_min,
                lon_max: c.bbox.lon_max,
                center_unit: c.center_unit.components(),
                min_dot: c.min_dot,
            }));
            screens.prices.push(config.fixed_price().map(|amount| Price {
                amount,
                cents: cents_of(amount),
                tier: config.tier,
            }));
        }
        screens
    }

    fn supplier_set(&mut self, names: &[String]) -> u32 {
        if names.is_empty() {
            return NO_SET;
        }
        let offset = self.supplier_bits.len();
        self.supplier_bits.resize(offset + self.supplier_words, 0);
        for name in names {
            let id = self.supplier_ids[name.as_str()] as usize;
            self.supplier_bits[offset + id / 64] |= 1 << (id % 64);
        }
        offset as u32
    }

    /// The lead's supplier and state as ids of this vertical's bitsets.
    pub(crate) fn lead<'s>(&self, subject: &'s Subject<'s>) -> LeadKeys<'s> {
        let state = subject.state.and_then(|state| {
            let mut upper = [0u8; 16];
            let bytes = state.as_bytes();
            let upper = upper.get_mut(..bytes.len())?;
            upper.copy_from_slice(bytes);
            upper.make_ascii_uppercase();
            self.state_ids.get(std::str::from_utf8(upper).ok()?).copied()
        });
        let state = state.or_else(|| {
            // A state name longer than the buffer: the slow way.
            let upper = subject.state.filter(|s| s.len() > 16)?.to_ascii_uppercase();
            self.state_ids.get(upper.as_str()).copied()
        });
        LeadKeys {
            subject,
            supplier: self.supplier_ids.get(subject.supplier_id).copied(),
            state,
            unit: subject.unit.components(),
        }
    }

    fn in_set(&self, set: u32, supplier: Option<u32>) -> bool {
        match supplier {
            Some(id) => self.supplier_bits[set as usize + id as usize / 64] >> (id % 64) & 1 == 1,
            None => false,
        }
    }

    /// `check` for the campaign in `slot`, on the compiled filters: the same checks in the
    /// same order, so the same first failure (`Reason::filtered` spells it out).
    ///
    /// Rationale (issue 17): most campaigns of a dense market are an active circle and
    /// nothing else, so that case is decided here, inlined into the caller's loop: a flag
    /// compare and the circle. Every other campaign takes `check_all`, the whole list.
    #[inline(always)]
    fn check(
        &self,
        slot: usize,
        campaign: &CompiledCampaign,
        lead: &LeadKeys<'_>,
        clocks: &mut Clocks,
    ) -> Result<(), Reason> {
        // A country filter needs no check (see `Screens`): ACTIVE and CIRCLE are the only
        // checks such a campaign has, in that order.
        if self.flags[slot] & !COUNTRIES == (ACTIVE | CIRCLE) {
            return if self.in_circle(slot, lead) { Ok(()) } else { Err(Reason::Radius) };
        }
        self.check_all(slot, campaign, lead, clocks)
    }

    /// Whether the lead lies in the circle of the campaign in `slot`: `check`'s box test,
    /// then its dot product.
    #[inline(always)]
    fn in_circle(&self, slot: usize, lead: &LeadKeys<'_>) -> bool {
        // Every comparison is made and combined without short-circuits: whether a lead is
        // in a circle is a coin toss per candidate, and one mispredicted branch costs more
        // than the dot product it would skip (issue 17). Same tests, same result.
        let c = &self.circles[slot];
        let point = lead.subject.location;
        let lon_in = |lon: f64| (c.lon_min <= lon) & (lon <= c.lon_max);
        let in_box = (c.lat_min <= point.lat)
            & (point.lat <= c.lat_max)
            & (lon_in(point.lon) | lon_in(point.lon - 360.0) | lon_in(point.lon + 360.0));
        let u = &lead.unit;
        let dot = u[0] * c.center_unit[0] + u[1] * c.center_unit[1] + u[2] * c.center_unit[2];
        // `check` filters on `dot < min_dot`: negated here, so a NaN answers as it does there.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let in_circle = in_box & !(dot < c.min_dot);
        in_circle
    }

    /// `check` for any campaign: every compiled filter in `check`'s order.
    #[inline(never)]
    fn check_all(
        &self,
        slot: usize,
        campaign: &CompiledCampaign,
        lead: &LeadKeys<'_>,
        clocks: &mut Clocks,
    ) -> Result<(), Reason> {
        let flags = self.flags[slot];
        if flags & ACTIVE == 0 {
            return Err(Reason::Inactive);
        }
        if flags & ALLOW != 0 && !self.in_set(self.allow[slot], lead.supplier) {
            return Err(Reason::SupplierNotAllowed);
        }
        if flags & DENY != 0 && self.in_set(self.deny[slot], lead.supplier) {
            return Err(Reason::SupplierDenied);
        }
        debug_assert!(
            flags & COUNTRIES == 0 || campaign.campaign.filters.countries.iter().any(|c| c == lead.subject.country),
            "the index found a campaign outside its countries"
        );
        if flags & STATES != 0 {
            let listed = match lead.state {
                Some(id) if id < 64 => self.states[slot] >> id & 1 == 1,
                _ => false,
            };
            let slow = || {
                let states = &campaign.campaign.filters.states;
                lead.subject.state.is_some_and(|s| states.iter().any(|f| f.eq_ignore_ascii_case(s)))
            };
            if !listed && (flags & STATES_SLOW == 0 || !slow()) {
                return Err(Reason::State);
            }
        }
        let subject = lead.subject;
        if flags & ZIPS != 0 && !campaign.zips.contains(subject.zip) {
            return Err(Reason::Zip);
        }
        if flags & EXCLUDE_ZIPS != 0 && campaign.exclude_zips.contains(subject.zip) {
            return Err(Reason::ZipExcluded);
        }
        if flags & CIRCLE != 0 && !self.in_circle(slot, lead) {
            return Err(Reason::Radius);
        }
        if flags & RULES != 0 {
            for (n, rule) in campaign.campaign.filters.rules.iter().enumerate() {
                if !rule_holds(rule, subject) {
                    return Err(Reason::FieldRule(n as u32));
                }
            }
        }
        if flags & HOURS != 0 {
            let open = match &campaign.open_hours {
                Some(hours) => clocks.local(campaign.tz).is_some_and(|local| hours.is_open_at(local)),
                None => true,
            };
            if !open {
                return Err(Reason::ScheduleClosed);
            }
        }
        Ok(())
    }
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
