//! The market: one immutable snapshot of every supplier, buyer, campaign and vertical, with
//! the per-vertical eligibility index built from it.
//!
//! Rationale: the hot path reads a snapshot through one atomic pointer load and never
//! locks; an admin change builds a whole new `Market` and swaps it in, so an auction that
//! started on the old snapshot finishes on it undisturbed (DESIGN §6).
//!
//! The index narrows a lead to the campaigns that could match its vertical, country and
//! postal area (exact postal codes, postal prefixes, a 0.5° grid for radius campaigns,
//! states, and the rest of the country), so matching does not scan every campaign.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::auction::Bid;
use super::budget::Funding;
use super::caps::{caps_of, Cap};
use super::changes::{ReturnDecisionNote, TopUpNote};
use super::eligibility::{Screens, Subject};
use super::geo::{bounding_box, min_dot_within, BoundingBox, Point, PostalTable, UnitVector};
use super::integration::request::Stage;
use super::integration::Integration;
use super::model::{Buyer, Campaign, DeliveryMode, FieldError, Pricing, Supplier, Vertical};
use super::money::{Currency, Money};
use super::operator::{Operator, OperatorName, OperatorPut};
use super::schedule::OpenHours;

/// Grid cell edge for radius campaigns: 0.25° is ~28 km north–south, so a typical 25–50 km
/// service area touches a few dozen cells and a lead probes exactly one; finer cells would
/// cost memory for little: candidates are then mostly the circle's own bounding box.
const GRID_DEGREES: f64 = 0.25;
/// A radius covering more cells than this is indexed with the country's rest instead
/// (checked for every lead of that country); the grid would cost more than it saves.
const GRID_CELLS_MAX: usize = 16_384;

/// Everything an operator configures, as loaded from TOML or built by admin calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    #[serde(default)]
    pub verticals: Vec<Vertical>,
    #[serde(default)]
    pub suppliers: Vec<Supplier>,
    #[serde(default)]
    pub buyers: Vec<Buyer>,
    #[serde(default)]
    pub campaigns: Vec<Campaign>,
    /// Operator accounts (console sign-in): made only by admin changes, never by a config
    /// file (a password hash has no place in one), so neither read from nor written to it.
    #[serde(skip)]
    pub operators: Vec<Operator>,
}

/// Who owns an API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Party {
    Supplier(String),
    Buyer(String),
}

/// Postal codes a campaign includes or excludes: exact codes and `prefix*` patterns.
#[derive(Debug, Clone, Default)]
pub struct ZipSet {
    exact: HashSet<Box<str>>,
    prefixes: Vec<Box<str>>,
}

impl ZipSet {
    fn new(patterns: &[String]) -> ZipSet {
        let mut set = ZipSet::default();
        for pattern in patterns {
            match pattern.strip_suffix('*') {
                Some(prefix) => set.prefixes.push(prefix.into()),
                None => {
                    set.exact.insert(pattern.as_str().into());
                }
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn contains(&self, zip: &str) -> bool {
        self.exact.contains(zip) || self.prefixes.iter().any(|p| zip.starts_with(&**p))
    }
}

/// A radius filter, compiled: its centre, radius and the lat/lon box around it.
#[derive(Debug, Clone, Copy)]
pub struct Circle {
    pub center: Point,
    pub center_unit: UnitVector,
    /// `min_dot_within(km)`: a lead is inside when its unit vector's dot product with the
    /// centre's is at least this.
    pub min_dot: f64,
    pub km: f64,
    pub bbox: BoundingBox,
}

/// A campaign with everything the hot path needs already parsed and joined.
#[derive(Debug)]
pub struct CompiledCampaign {
    pub campaign: Campaign,
    pub id: Arc<str>,
    pub buyer_id: Arc<str>,
    pub tz: Tz,
    pub open_hours: Option<OpenHours>,
    pub caps: Vec<Cap>,
    pub circle: Option<Circle>,
    pub zips: ZipSet,
    pub exclude_zips: ZipSet,
    pub funding: Funding,
    pub currency: Currency,
    pub webhook_secret: Arc<str>,
    /// How the dynamic price's ping speaks to the buyer (§5.1); `None`: natively.
    pub ping_integration: Option<Integration>,
    /// How the lead's delivery speaks to the buyer (§5.1); `None`: natively.
    pub post_integration: Option<Integration>,
}

impl CompiledCampaign {
    /// This campaign's bid of `amount` for one lead.
    pub fn bid(self: &Arc<Self>, amount: Money) -> Bid {
        Bid { campaign: Arc::clone(self), amount }
    }

    /// A bare campaign of buyer `b-<id>` for unit tests of the auction.
    #[cfg(test)]
    pub(crate) fn stub(id: &str, tier: u32) -> Arc<CompiledCampaign> {
        let campaign: Campaign = serde_json::from_value(serde_json::json!({
            "id": id, "buyer_id": format!("b-{id}"), "vertical": "v", "tier": tier,
            "pricing": {"type": "fixed", "price": "1.00"}, "delivery": {"mode": "pull"}
        }))
        .unwrap_or_else(|e| panic!("stub campaign: {e}"));
        Arc::new(CompiledCampaign {
            id: id.into(),
            buyer_id: format!("b-{id}").into(),
            tz: chrono_tz::UTC,
            open_hours: None,
            caps: Vec::new(),
            circle: None,
            zips: ZipSet::default(),
            exclude_zips: ZipSet::default(),
            funding: Funding { mode: super::model::BillingMode::Prepaid, credit_limit: None },
            currency: crate::domain::money::Currency::EUR,
            webhook_secret: "secret".into(),
            ping_integration: None,
            post_integration: None,
            campaign,
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarketError {
    #[error("invalid {kind} {id}")]
    Invalid {
        kind: &'static str,
        /// The object's id (or name), so that a config file's error says which one.
        id: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("unknown {0}")]
    NotFound(&'static str),
}

/// A lead's candidates: slots of its vertical's campaigns (every slot is in range), and the
/// campaigns' compiled filters.
pub(crate) struct Candidates<'m> {
    pub campaigns: &'m [Arc<CompiledCampaign>],
    pub screens: &'m Screens,
    pub slots: Vec<u32>,
}

#[derive(Debug, Default)]
struct CountryIndex {
    by_zip: HashMap<Box<str>, Vec<u32>>,
    by_prefix: HashMap<Box<str>, Vec<u32>>,
    prefix_lens: Vec<usize>,
    grid: HashMap<(i32, i32), Vec<u32>>,
    by_state: HashMap<Box<str>, Vec<u32>>,
    rest: Vec<u32>,
}

#[derive(Debug, Default)]
struct VerticalIndex {
    campaigns: Vec<Arc<CompiledCampaign>>,
    by_country: HashMap<Box<str>, CountryIndex>,
    /// Radius campaigns with no country filter: a circle does not stop at a border (US
    /// military ZIPs have German centroids), so they are found by grid cell alone.
    any_country_grid: HashMap<(i32, i32), Vec<u32>>,
    /// Campaigns no country, postal or radius filter narrows: candidates everywhere.
    anywhere: Vec<u32>,
    /// The static filters of `campaigns`, by slot, laid out for the per-lead checks.
    screens: Screens,
}

#[derive(Debug, Default)]
pub struct Market {
    config: MarketConfig,
    suppliers: HashMap<String, Arc<Supplier>>,
    buyers: HashMap<String, Arc<Buyer>>,
    /// Each buyer's currency, read once its settings are valid.
    currencies: HashMap<String, Currency>,
    campaigns: HashMap<String, Arc<CompiledCampaign>>,
    verticals: HashMap<String, Arc<Vertical>>,
    api_keys: HashMap<String, Party>,
    index: HashMap<String, VerticalIndex>,
}

impl Market {
    /// Validates every object and every reference between them, then compiles and indexes.
    pub fn build(mut config: MarketConfig, postal: &PostalTable) -> Result<Market, MarketError> {
        sort_config(&mut config);
        check_unique("vertical", &config.verticals, |v| &v.name)?;
        check_unique("supplier", &config.suppliers, |s| &s.id)?;
        check_unique("buyer", &config.buyers, |b| &b.id)?;
        check_unique("campaign", &config.campaigns, |c| &c.id)?;
        let mut market = Market::default();
        for vertical in &config.verticals {
            vertical.validate().map_err(|errors| MarketError::Invalid {
                kind: "vertical",
                id: vertical.name.clone(),
                errors,
            })?;
            market.verticals.insert(vertical.name.clone(), Arc::new(vertical.clone()));
        }
        for supplier in &config.suppliers {
            supplier.validate().map_err(|errors| MarketError::Invalid {
                kind: "supplier",
                id: supplier.id.clone(),
                errors,
            })?;
            market.add_key(&supplier.api_key, Party::Supplier(supplier.id.clone()))?;
            market.suppliers.insert(supplier.id.clone(), Arc::new(supplier.clone()));
        }
        for buyer in &config.buyers {
            buyer.validate().map_err(|errors| MarketError::Invalid { kind: "buyer", id: buyer.id.clone(), errors })?;
            market.add_key(&buyer.api_key, Party::Buyer(buyer.id.clone()))?;
            let currency = buyer.currency.parse().map_err(|_| MarketError::Invalid {
                kind: "buyer",
                id: buyer.id.clone(),
                errors: vec![FieldError::new("currency", "an ISO 4217 code such as EUR")],
            })?;
            market.currencies.insert(buyer.id.clone(), currency);
            market.buyers.insert(buyer.id.clone(), Arc::new(buyer.clone()));
        }
        // Every campaign of a vertical sells in one currency (its buyer's): an auction
        // compares prices as numbers, and USD 30.00 must never beat EUR 10.00 as 30 > 10.
        let mut currencies: HashMap<&str, (&str, Currency)> = HashMap::new();
        for campaign in &config.campaigns {
            let compiled = market.compile(campaign, postal)?;
            let currency = currencies.entry(&campaign.vertical).or_insert((&campaign.id, compiled.currency));
            if currency.1 != compiled.currency {
                let message = format!(
                    "its buyer pays in {} but vertical {} sells in {} (campaign {}): every campaign of a vertical sells in one currency",
                    compiled.currency, campaign.vertical, currency.1, currency.0
                );
                return Err(MarketError::Invalid {
                    kind: "campaign",
                    id: campaign.id.clone(),
                    errors: vec![FieldError::new("buyer_id", message)],
                });
            }
            market.campaigns.insert(campaign.id.clone(), Arc::new(compiled));
        }
        market.build_index(&config);
        market.config = config;
        Ok(market)
    }

    fn add_key(&mut self, key: &str, party: Party) -> Result<(), MarketError> {
        let id = match &party {
            Party::Supplier(id) | Party::Buyer(id) => id.clone(),
        };
        if self.api_keys.insert(key.to_string(), party).is_some() {
            return Err(MarketError::Invalid {
                kind: "api key",
                id,
                errors: vec![FieldError::new("api_key", "already used by another supplier or buyer")],
            });
        }
        Ok(())
    }

    fn compile(&self, campaign: &Campaign, postal: &PostalTable) -> Result<CompiledCampaign, MarketError> {
        let invalid = |errors| MarketError::Invalid { kind: "campaign", id: campaign.id.clone(), errors };
        campaign.validate().map_err(invalid)?;
        let (ping_integration, post_integration) = integrations_of(campaign).map_err(invalid)?;
        let Some(buyer) = self.buyers.get(&campaign.buyer_id) else {
            return Err(invalid(vec![FieldError::new("buyer_id", "unknown buyer")]));
        };
        if !self.verticals.contains_key(&campaign.vertical) {
            return Err(invalid(vec![FieldError::new("vertical", "unknown vertical")]));
        }
        let tz_name = campaign.timezone.as_deref().unwrap_or(&buyer.timezone);
        let tz: Tz = tz_name.parse().map_err(|_| invalid(vec![FieldError::new("timezone", "unknown time zone")]))?;
        let open_hours = match &campaign.schedule {
            Some(schedule) => Some(
                OpenHours::from_schedule(schedule)
                    .map_err(|e| invalid(vec![FieldError::new("schedule", e.to_string())]))?,
            ),
            None => None,
        };
        let center = match &campaign.filters.radius {
            None => None,
            Some(radius) => match (radius.lat, radius.lon, &radius.zip) {
                (Some(lat), Some(lon), _) => Some(Point { lat, lon }),
                (_, _, Some(zip)) => {
                    let country = radius.country.as_deref().or(campaign.filters.countries.first().map(String::as_str));
                    let place = country.and_then(|c| {
                        PostalTable::normalize(c, zip).and_then(|z| postal.lookup(c, &z).map(|p| p.point))
                    });
                    Some(
                        place.ok_or_else(|| {
                            invalid(vec![FieldError::new("filters.radius.zip", "unknown postal code")])
                        })?,
                    )
                }
                _ => None,
            },
        };
        Ok(CompiledCampaign {
            id: campaign.id.as_str().into(),
            buyer_id: campaign.buyer_id.as_str().into(),
            tz,
            open_hours,
            caps: caps_of(&campaign.caps),
            circle: center.zip(campaign.filters.radius.as_ref()).map(|(center, radius)| Circle {
                center,
                center_unit: center.unit(),
                min_dot: min_dot_within(radius.km),
                km: radius.km,
                bbox: bounding_box(center, radius.km),
            }),
            zips: ZipSet::new(&campaign.filters.zips),
            exclude_zips: ZipSet::new(&campaign.filters.exclude_zips),
            funding: Funding::of(buyer),
            currency: self
                .currency_of(&buyer.id)
                .ok_or_else(|| invalid(vec![FieldError::new("buyer_id", "unknown buyer")]))?,
            webhook_secret: buyer.webhook_secret.as_str().into(),
            ping_integration,
            post_integration,
            campaign: campaign.clone(),
        })
    }

    fn build_index(&mut self, config: &MarketConfig) {
        for campaign in &config.campaigns {
            let Some(compiled) = self.campaigns.get(&campaign.id) else {
                continue;
            };
            let index = self.index.entry(campaign.vertical.clone()).or_default();
            let slot = u32::try_from(index.campaigns.len()).unwrap_or(u32::MAX);
            index.campaigns.push(Arc::clone(compiled));
            index_campaign(index, slot, compiled);
        }
        for index in self.index.values_mut() {
            index.screens = Screens::build(&index.campaigns);
        }
    }

    pub fn config(&self) -> &MarketConfig {
        &self.config
    }

    pub fn supplier(&self, id: &str) -> Option<&Arc<Supplier>> {
        self.suppliers.get(id)
    }

    pub fn buyer(&self, id: &str) -> Option<&Arc<Buyer>> {
        self.buyers.get(id)
    }

    /// The currency buyer `id` pays in.
    pub fn currency_of(&self, id: &str) -> Option<Currency> {
        self.currencies.get(id).copied()
    }

    pub fn campaign(&self, id: &str) -> Option<&Arc<CompiledCampaign>> {
        self.campaigns.get(id)
    }

    pub fn vertical(&self, name: &str) -> Option<&Arc<Vertical>> {
        self.verticals.get(name)
    }

    pub fn party(&self, api_key: &str) -> Option<&Party> {
        self.api_keys.get(api_key)
    }

    /// An operator account by name.
    pub fn operator(&self, name: &str) -> Option<&Operator> {
        self.config.operators.iter().find(|operator| operator.name.as_str() == name)
    }

    /// Every operator account, by name.
    pub fn operators(&self) -> &[Operator] {
        &self.config.operators
    }

    pub fn campaigns(&self) -> impl Iterator<Item = &Arc<CompiledCampaign>> {
        self.campaigns.values()
    }

    pub fn active_campaign_count(&self) -> usize {
        self.campaigns.values().filter(|c| c.campaign.active).count()
    }

    /// How many campaigns a vertical has (active or not).
    pub fn campaign_count(&self, vertical: &str) -> usize {
        self.index.get(vertical).map_or(0, |index| index.campaigns.len())
    }

    /// The campaigns of the subject's vertical that its country and postal area could
    /// match, each once, in a stable order. Every one still has to pass `eligibility::check`.
    pub fn candidates(&self, subject: &Subject<'_>) -> Vec<&Arc<CompiledCampaign>> {
        match self.candidate_slots(subject) {
            Some(found) => {
                let campaigns = found.campaigns;
                found.slots.iter().map(|&slot| &campaigns[slot as usize]).collect()
            }
            None => Vec::new(),
        }
    }

    /// `candidates` as slots of the vertical's campaigns, with their compiled filters.
    pub(crate) fn candidate_slots(&self, subject: &Subject<'_>) -> Option<Candidates<'_>> {
        let index = self.index.get(subject.vertical)?;
        let cell = cell_of(subject.location);
        fn bucket(found: Option<&Vec<u32>>) -> &[u32] {
            found.map_or(&[], Vec::as_slice)
        }
        let any_country_grid = bucket(index.any_country_grid.get(&cell));
        let country = index.by_country.get(subject.country);
        let (grid, by_state, rest) = match country {
            Some(country) => (
                bucket(country.grid.get(&cell)),
                bucket(subject.state.and_then(|s| country.by_state.get(s))),
                country.rest.as_slice(),
            ),
            None => (&[][..], &[][..], &[][..]),
        };
        // Sized for every bucket but the postal ones (a few, usually small): at 10,000
        // campaigns a lead has hundreds of candidates, and growing from a guess copied them
        // three times (issue 17).
        let known = index.anywhere.len() + any_country_grid.len() + grid.len() + by_state.len() + rest.len();
        let mut slots: Vec<u32> = Vec::with_capacity(known + POSTAL_ROOM);
        slots.extend_from_slice(&index.anywhere);
        slots.extend_from_slice(any_country_grid);
        if let Some(country) = country {
            // Only a campaign with overlapping postal patterns ("80*" and "803*") can turn up
            // twice, and only among the postal buckets: deduplicate just those.
            let postal_from = slots.len();
            if let Some(found) = country.by_zip.get(subject.zip) {
                slots.extend_from_slice(found);
            }
            for &len in &country.prefix_lens {
                if let Some(found) = subject.zip.get(..len).and_then(|p| country.by_prefix.get(p)) {
                    slots.extend_from_slice(found);
                }
            }
            if slots.len() - postal_from > 1 && !country.prefix_lens.is_empty() {
                let postal = &mut slots[postal_from..];
                postal.sort_unstable();
                let mut kept = postal_from;
                for i in postal_from..slots.len() {
                    if kept == postal_from || slots[i] != slots[kept - 1] {
                        slots[kept] = slots[i];
                        kept += 1;
                    }
                }
                slots.truncate(kept);
            }
            slots.extend_from_slice(grid);
            slots.extend_from_slice(by_state);
            slots.extend_from_slice(rest);
        }
        Some(Candidates { campaigns: &index.campaigns, screens: &index.screens, slots })
    }

    // --- Admin changes: each returns a new market; the caller swaps it in. ---

    /// The market after an operator's change.
    pub fn apply(&self, change: &ConfigChange, postal: &PostalTable) -> Result<Market, MarketError> {
        let mut config = self.config.clone();
        config.apply(change)?;
        Market::build(config, postal)
    }
}

/// An operator's change to the market (admin API), or an admin act recorded beside them
/// (`TopUp`, `ReturnDecision`: their effect is the ledger's, so they change no
/// configuration). Journaled, so that it outlives a restart: at start the journaled changes
/// are applied again, in order, over the config file. The log carries each with who made it
/// and when (`changes::AdminChange`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "object", rename_all = "snake_case")]
pub enum ConfigChange {
    PutSupplier(Box<Supplier>),
    PutBuyer(Box<Buyer>),
    PutCampaign(Box<Campaign>),
    PutVertical(Box<Vertical>),
    DeleteSupplier(String),
    DeleteBuyer(String),
    DeleteCampaign(String),
    DeleteVertical(String),
    /// An operator account added, or its password hash replaced.
    PutOperator(Box<OperatorPut>),
    DeleteOperator(OperatorName),
    /// A buyer's balance topped up (recorded only).
    TopUp(Box<TopUpNote>),
    /// A return approved or rejected by an operator (recorded only).
    ReturnDecision(Box<ReturnDecisionNote>),
}

impl ConfigChange {
    /// Whether applying it changes the market (top-ups and return decisions are recorded
    /// only).
    pub fn changes_market(&self) -> bool {
        !matches!(self, ConfigChange::TopUp(_) | ConfigChange::ReturnDecision(_))
    }

    /// The change with every secret sent back as `***` replaced by the one `market`
    /// holds for the same object (DESIGN §5.1: a GET then PUT keeps the stored secret).
    pub fn keeping_secrets(mut self, market: &Market) -> ConfigChange {
        match &mut self {
            ConfigChange::PutBuyer(buyer) => {
                if let Some(stored) = market.buyer(&buyer.id) {
                    buyer.keep_secrets_of(stored);
                }
            }
            ConfigChange::PutCampaign(campaign) => {
                if let Some(stored) = market.campaign(&campaign.id) {
                    campaign.keep_secrets_of(&stored.campaign);
                }
            }
            _ => {}
        }
        self
    }
}

impl MarketConfig {
    /// Applies a change to the objects (what refers to what is checked when the market is
    /// built from them).
    pub fn apply(&mut self, change: &ConfigChange) -> Result<(), MarketError> {
        match change {
            ConfigChange::PutSupplier(supplier) => upsert(&mut self.suppliers, (**supplier).clone(), |s| &s.id),
            ConfigChange::PutBuyer(buyer) => upsert(&mut self.buyers, (**buyer).clone(), |b| &b.id),
            ConfigChange::PutCampaign(campaign) => upsert(&mut self.campaigns, (**campaign).clone(), |c| &c.id),
            ConfigChange::PutVertical(vertical) => upsert(&mut self.verticals, (**vertical).clone(), |v| &v.name),
            ConfigChange::DeleteSupplier(id) => {
                remove(&mut self.suppliers, id, |s| &s.id).ok_or(MarketError::NotFound("supplier"))?;
            }
            ConfigChange::DeleteBuyer(id) => {
                if self.campaigns.iter().any(|c| &c.buyer_id == id) {
                    return Err(MarketError::Conflict("the buyer still has campaigns: delete them first".into()));
                }
                remove(&mut self.buyers, id, |b| &b.id).ok_or(MarketError::NotFound("buyer"))?;
            }
            ConfigChange::DeleteCampaign(id) => {
                remove(&mut self.campaigns, id, |c| &c.id).ok_or(MarketError::NotFound("campaign"))?;
            }
            ConfigChange::DeleteVertical(name) => {
                if self.campaigns.iter().any(|c| &c.vertical == name) {
                    return Err(MarketError::Conflict("the vertical still has campaigns: delete them first".into()));
                }
                remove(&mut self.verticals, name, |v| &v.name).ok_or(MarketError::NotFound("vertical"))?;
            }
            ConfigChange::PutOperator(put) => match self.operators.iter_mut().find(|o| o.name == put.name) {
                Some(operator) => {
                    operator.password_hash = put.password_hash.clone();
                    operator.changed_at = put.at;
                }
                None => self.operators.push(Operator {
                    name: put.name.clone(),
                    password_hash: put.password_hash.clone(),
                    added_at: put.at,
                    changed_at: put.at,
                }),
            },
            ConfigChange::DeleteOperator(name) => {
                let position = self.operators.iter().position(|o| &o.name == name);
                self.operators.remove(position.ok_or(MarketError::NotFound("operator"))?);
            }
            ConfigChange::TopUp(_) | ConfigChange::ReturnDecision(_) => {}
        }
        Ok(())
    }
}

fn sort_config(config: &mut MarketConfig) {
    config.verticals.sort_by(|a, b| a.name.cmp(&b.name));
    config.suppliers.sort_by(|a, b| a.id.cmp(&b.id));
    config.buyers.sort_by(|a, b| a.id.cmp(&b.id));
    config.campaigns.sort_by(|a, b| a.id.cmp(&b.id));
    config.operators.sort_by(|a, b| a.name.cmp(&b.name));
}

/// After sorting, a repeated id stands next to itself.
fn check_unique<T>(kind: &'static str, items: &[T], id: impl Fn(&T) -> &String) -> Result<(), MarketError> {
    match items.windows(2).find(|pair| id(&pair[0]) == id(&pair[1])) {
        Some(pair) => Err(MarketError::Invalid {
            kind,
            id: id(&pair[0]).clone(),
            errors: vec![FieldError::new("id", format!("{} is defined twice", id(&pair[0])))],
        }),
        None => Ok(()),
    }
}

fn upsert<T>(items: &mut Vec<T>, item: T, id: impl Fn(&T) -> &String) {
    match items.iter().position(|existing| id(existing) == id(&item)) {
        Some(i) => items[i] = item,
        None => items.push(item),
    }
}

fn remove<T>(items: &mut Vec<T>, key: &str, id: impl Fn(&T) -> &String) -> Option<T> {
    let position = items.iter().position(|existing| id(existing) == key)?;
    Some(items.remove(position))
}

/// Room for the postal buckets' candidates in `candidate_slots`' first allocation.
const POSTAL_ROOM: usize = 64;

fn cell_of(point: Point) -> (i32, i32) {
    let lat = (point.lat / GRID_DEGREES).floor() as i32;
    let lon = (point.lon / GRID_DEGREES).floor() as i32;
    (lat, wrap_lon_cell(lon))
}

fn wrap_lon_cell(cell: i32) -> i32 {
    let cells_around = (360.0 / GRID_DEGREES) as i32;
    let half = cells_around / 2;
    (cell + half).rem_euclid(cells_around) - half
}

/// Puts a campaign into the most selective bucket its filters allow; `check` then applies
/// every filter, so a bucket only needs to be a superset.
fn index_campaign(index: &mut VerticalIndex, slot: u32, compiled: &CompiledCampaign) {
    let filters = &compiled.campaign.filters;
    let countries = &filters.countries;
    if countries.is_empty() {
        match compiled.circle.as_ref().and_then(cells_covering) {
            Some(cells) if compiled.zips.is_empty() => {
                for cell in cells {
                    index.any_country_grid.entry(cell).or_default().push(slot);
                }
            }
            _ => index.anywhere.push(slot),
        }
        return;
    }
    for country in countries {
        let bucket = index.by_country.entry(country.as_str().into()).or_default();
        if !compiled.zips.is_empty() {
            for zip in &compiled.zips.exact {
                bucket.by_zip.entry(zip.clone()).or_default().push(slot);
            }
            for prefix in &compiled.zips.prefixes {
                bucket.by_prefix.entry(prefix.clone()).or_default().push(slot);
                if !bucket.prefix_lens.contains(&prefix.len()) {
                    bucket.prefix_lens.push(prefix.len());
                }
            }
        } else if let Some(circle) = &compiled.circle {
            match cells_covering(circle) {
                Some(cells) => {
                    for cell in cells {
                        bucket.grid.entry(cell).or_default().push(slot);
                    }
                }
                None => bucket.rest.push(slot),
            }
        } else if !filters.states.is_empty() {
            for state in &filters.states {
                bucket.by_state.entry(state.to_ascii_uppercase().into()).or_default().push(slot);
            }
        } else {
            bucket.rest.push(slot);
        }
    }
}

/// The grid cells a circle's bounding box touches; None when they are too many to list.
fn cells_covering(circle: &Circle) -> Option<Vec<(i32, i32)>> {
    let bbox = circle.bbox;
    let lat_lo = (bbox.lat_min / GRID_DEGREES).floor() as i32;
    let lat_hi = (bbox.lat_max / GRID_DEGREES).floor() as i32;
    let lon_lo = (bbox.lon_min / GRID_DEGREES).floor() as i32;
    let lon_hi = (bbox.lon_max / GRID_DEGREES).floor() as i32;
    let lon_span = (lon_hi - lon_lo + 1).min((360.0 / GRID_DEGREES) as i32);
    let lat_span = lat_hi - lat_lo + 1;
    if (lat_span as i64) * (lon_span as i64) > GRID_CELLS_MAX as i64 {
        return None;
    }
    let mut cells = Vec::with_capacity((lat_span * lon_span) as usize);
    for lat in lat_lo..=lat_hi {
        for lon in lon_lo..lon_lo + lon_span {
            cells.push((lat, wrap_lon_cell(lon)));
        }
    }
    Some(cells)
}

/// A campaign's ping and post integrations, compiled (every template, path and name
/// checked) with every problem under its field path.
fn integrations_of(campaign: &Campaign) -> Result<(Option<Integration>, Option<Integration>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let ping = match &campaign.pricing {
        Pricing::Dynamic { request, answer, .. } => {
            Integration::compile(request.as_deref(), answer.as_deref(), "pricing", Stage::Ping).unwrap_or_else(
                |mut found| {
                    errors.append(&mut found);
                    None
                },
            )
        }
        Pricing::Fixed { .. } => None,
    };
    let delivery = &campaign.delivery;
    let buyer_format = delivery.request.is_some() || delivery.answer.is_some();
    if delivery.mode == DeliveryMode::Pull && buyer_format {
        errors.push(FieldError::new("delivery.request", "pull delivery sends no request"));
    }
    let post = Integration::compile(delivery.request.as_ref(), delivery.answer.as_ref(), "delivery", Stage::Post)
        .unwrap_or_else(|mut found| {
            errors.append(&mut found);
            None
        });
    if errors.is_empty() {
        Ok((ping, post))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::eligibility::check;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::json;

    fn market(campaigns: Vec<serde_json::Value>) -> Market {
        let config = json!({
            "verticals": [{"name": "solar", "model": "ping_post"}],
            "buyers": [{"id": "b1", "name": "B", "api_key": "buyer-key-b1-xxxxxxxx", "webhook_secret": "secret-secret-secret",
                        "currency": "EUR", "billing": {"mode": "prepaid"}}],
            "campaigns": campaigns,
        });
        Market::build(serde_json::from_value(config).unwrap(), PostalTable::bundled()).unwrap()
    }

    fn built(campaigns: Vec<serde_json::Value>) -> Result<Market, MarketError> {
        let config = json!({
            "verticals": [{"name": "solar", "model": "ping_post"}],
            "buyers": [{"id": "b1", "name": "B", "api_key": "buyer-key-b1-xxxxxxxx", "webhook_secret": "secret-secret-secret",
                        "currency": "EUR", "billing": {"mode": "prepaid"}}],
            "campaigns": campaigns,
        });
        Market::build(serde_json::from_value(config).unwrap(), PostalTable::bundled())
    }

    #[test]
    fn an_async_delivery_takes_a_buyer_format_and_a_pull_delivery_still_refuses_one() {
        let request = json!({"format": "form", "fields": [{"name": "email", "value": "{{ lead.email }}"}]});
        let mut async_campaign = campaign(1, json!({}));
        async_campaign["delivery"] =
            json!({"mode": "webhook_async", "url": "http://127.0.0.1:9/in", "request": request});
        let market = built(vec![async_campaign]).expect("stored");
        assert!(market.campaign("c1").and_then(|c| c.post_integration.as_ref()).is_some(), "compiled for the outbox");

        let mut pull = campaign(2, json!({}));
        pull["delivery"] = json!({"mode": "pull", "request": request});
        let Err(MarketError::Invalid { errors, .. }) = built(vec![pull]) else {
            panic!("a pull delivery sends nothing")
        };
        assert_eq!(errors[0].field, "delivery.request");
    }

    fn campaign(i: usize, filters: serde_json::Value) -> serde_json::Value {
        json!({"id": format!("c{i}"), "buyer_id": "b1", "vertical": "solar", "pricing": {"type": "fixed", "price": "10.00"},
               "filters": filters, "delivery": {"mode": "pull"}})
    }

    /// A postal code of the bundled table, by index.
    fn zip_at(country: &str, index: usize) -> String {
        static CODES: std::sync::LazyLock<HashMap<&'static str, Vec<&'static str>>> = std::sync::LazyLock::new(|| {
            let table = include_str!("../../assets/geo/postal-centroids.csv");
            let mut codes: HashMap<&str, Vec<&str>> = HashMap::new();
            for line in table.lines().skip(1) {
                let mut cells = line.split(',');
                if let (Some(country), Some(code)) = (cells.next(), cells.next()) {
                    codes.entry(country).or_default().push(code);
                }
            }
            codes
        });
        let codes = &CODES[country];
        codes[index % codes.len()].to_string()
    }

    fn filters() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            (0usize..60_000, 1u32..300)
                .prop_map(|(z, km)| json!({"countries": ["DE"], "radius": {"zip": zip_at("DE", z), "km": km}})),
            (0usize..60_000, 1u32..300)
                .prop_map(|(z, km)| json!({"radius": {"zip": zip_at("US", z), "country": "US", "km": km}})),
            (-89.0f64..89.0, -179.9f64..179.9, 1u32..3000)
                .prop_map(|(lat, lon, km)| json!({"radius": {"lat": lat, "lon": lon, "km": km}})),
            (0usize..60_000, 1usize..4)
                .prop_map(|(z, len)| json!({"countries": ["DE"], "zips": [format!("{}*", &zip_at("DE", z)[..len])]})),
            (0usize..60_000).prop_map(|z| json!({"countries": ["US"], "zips": [zip_at("US", z)]})),
            Just(json!({"countries": ["DE"], "states": ["BY", "HH"]})),
            Just(json!({"countries": ["US"]})),
            Just(json!({})),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The index is only an optimization: every campaign that passes the full check
        /// for a lead is among the lead's candidates.
        #[test]
        fn the_index_never_hides_an_eligible_campaign(
            all_filters in proptest::collection::vec(filters(), 1..40),
            leads in proptest::collection::vec((prop_oneof![Just("DE"), Just("US")], 0usize..60_000), 1..20),
        ) {
            let market = market(all_filters.into_iter().enumerate().map(|(i, f)| campaign(i, f)).collect());
            let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
            let fields = serde_json::Map::new();
            for (country, z) in leads {
                let zip = zip_at(country, z);
                let place = PostalTable::bundled().lookup(country, &zip).unwrap();
                let subject = Subject { supplier_id: "s1", vertical: "solar", country, zip: &zip, state: place.state_code(), location: place.point, unit: place.point.unit(), fields: &fields };
                let candidates: Vec<&str> = market.candidates(&subject).iter().map(|c| &*c.id).collect();
                for compiled in market.campaigns() {
                    if check(compiled, &subject, now).is_ok() {
                        prop_assert!(candidates.contains(&&*compiled.id), "{} eligible for {country} {zip} but not a candidate: {:?}", compiled.id, compiled.campaign.filters);
                    }
                }
            }
        }
    }
    /// Every other static filter, or none, over `filters()`'s area filters.
    fn with_more_filters() -> impl Strategy<Value = serde_json::Value> {
        let suppliers = proptest::sample::subsequence(vec!["s1", "s2", "s3"], 0..=2);
        let states = proptest::sample::subsequence(vec!["BY", "by", "HH", "BE", "CA", "ny", "TX"], 0..=3);
        let rule = prop_oneof![
            Just(json!([])),
            Just(json!([{"field": "roof", "op": "eq", "value": "tile"}])),
            Just(json!([{"field": "roof", "op": "ne", "value": "flat"}])),
            Just(json!([{"field": "area", "op": "gte", "value": 40}])),
        ];
        let exclude = proptest::option::of((0usize..60_000, 1usize..3));
        (filters(), suppliers.clone(), suppliers, states, rule, exclude).prop_map(
            |(mut filters, allow, deny, states, rules, exclude)| {
                filters["allow_suppliers"] = json!(allow);
                filters["deny_suppliers"] = json!(deny);
                if filters.get("radius").is_none() || !states.is_empty() {
                    filters["states"] = json!(states);
                }
                filters["rules"] = rules;
                if let Some((z, len)) = exclude {
                    filters["exclude_zips"] = json!([format!("{}*", &zip_at("DE", z)[..len])]);
                }
                filters
            },
        )
    }

    fn full_campaign() -> impl Strategy<Value = (serde_json::Value, bool, bool, Option<&'static str>, Option<u8>)> {
        let zone =
            proptest::option::of(prop_oneof![Just("Europe/Berlin"), Just("America/New_York"), Just("Asia/Tokyo")]);
        (with_more_filters(), any::<bool>(), proptest::bool::weighted(0.9), zone, proptest::option::of(0u8..4))
    }

    fn schedule(pick: u8) -> serde_json::Value {
        match pick {
            0 => json!({"mon": ["08:00-18:00"], "tue": ["08:00-18:00"], "wed": ["09:30-11:15", "13:00-24:00"]}),
            1 => json!({"sat": ["00:00-24:00"], "sun": ["10:00-12:00"]}),
            2 => json!({"thu": ["00:00-06:00"], "fri": ["22:00-24:00"]}),
            _ => json!({}),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// `evaluate` on the compiled screens answers, for every candidate, what `check` (the
        /// campaign's own configuration) answers: the same verdict, reason and detail.
        #[test]
        fn screened_verdicts_are_the_checks_verdicts(
            campaigns in proptest::collection::vec(full_campaign(), 1..30),
            leads in proptest::collection::vec((
                prop_oneof![Just("DE"), Just("US")], 0usize..60_000,
                prop_oneof![Just("s1"), Just("s2"), Just("s4")],
                proptest::option::of(prop_oneof![Just("tile"), Just("flat")]), proptest::option::of(0u32..80),
                0i64..(14 * 24 * 60),
            ), 1..12),
            bidding in any::<bool>(),
        ) {
            let configs = campaigns.into_iter().enumerate().map(|(i, (filters, fixed, active, zone, hours))| {
                let mut c = campaign(i, filters);
                if !fixed {
                    c["pricing"] = json!({"type": "dynamic", "ping_url": "http://127.0.0.1:9/ping"});
                }
                c["active"] = json!(active);
                if let Some(zone) = zone {
                    c["timezone"] = json!(zone);
                }
                if let Some(pick) = hours {
                    c["schedule"] = schedule(pick);
                }
                c
            }).collect();
            let market = market(configs);
            let model = if bidding { crate::domain::model::Model::Bidding } else { crate::domain::model::Model::PingPost };
            for (country, z, supplier, roof, area, minutes) in leads {
                let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes);
                let mut fields = serde_json::Map::new();
                if let Some(roof) = roof {
                    fields.insert("roof".into(), json!(roof));
                }
                if let Some(area) = area {
                    fields.insert("area".into(), json!(area));
                }
                let zip = zip_at(country, z);
                let place = PostalTable::bundled().lookup(country, &zip).unwrap();
                let subject = Subject { supplier_id: supplier, vertical: "solar", country, zip: &zip, state: place.state_code(), location: place.point, unit: place.point.unit(), fields: &fields };
                let candidates = market.candidates(&subject);
                let verdicts = crate::domain::eligibility::evaluate(&market, &subject, model, now);
                prop_assert_eq!(verdicts.len(), candidates.len());
                // What a decision reads: the standing bids, bid by bid, and the live bidders
                // are those of the campaigns `check` passes, in candidate order.
                let evaluation = crate::domain::eligibility::screen(&market, &subject, model, now);
                prop_assert_eq!(evaluation.len(), candidates.len());
                let passed: Vec<&Arc<CompiledCampaign>> =
                    candidates.iter().copied().filter(|c| check(c, &subject, now).is_ok()).collect();
                let standing: Vec<_> =
                    passed.iter().filter_map(|c| c.campaign.fixed_price().map(|price| (*c, price))).collect();
                prop_assert_eq!(evaluation.bids().len(), standing.len());
                for (bid, (campaign, price)) in evaluation.bids().iter().zip(&standing) {
                    prop_assert!(Arc::ptr_eq(bid.campaign, campaign));
                    prop_assert_eq!(bid.amount, *price);
                    prop_assert_eq!(bid.tier(), campaign.campaign.tier);
                    prop_assert_eq!(bid.cents(), crate::domain::auction::BidRef::new(campaign, *price).cents());
                }
                let live: Vec<_> = evaluation.live().collect();
                let expected_live: Vec<_> =
                    passed.iter().copied().filter(|c| !bidding && c.campaign.fixed_price().is_none()).collect();
                prop_assert_eq!(live.len(), expected_live.len());
                prop_assert!(live.iter().zip(&expected_live).all(|(a, b)| Arc::ptr_eq(a, b)));
                for (candidate, verdict) in candidates.into_iter().zip(verdicts) {
                    use crate::domain::eligibility::Verdict;
                    match (check(candidate, &subject, now), verdict) {
                        (Err(expected), Verdict::Filtered(c, got)) => {
                            prop_assert!(Arc::ptr_eq(c, candidate));
                            prop_assert_eq!(got, expected);
                        }
                        (Ok(()), Verdict::Standing(c, price)) => {
                            prop_assert!(Arc::ptr_eq(c, candidate));
                            prop_assert_eq!(Some(price), candidate.campaign.fixed_price());
                        }
                        (Ok(()), Verdict::Live(c)) => {
                            prop_assert!(Arc::ptr_eq(c, candidate) && !bidding && candidate.campaign.fixed_price().is_none());
                        }
                        (Ok(()), Verdict::Filtered(c, got)) => {
                            prop_assert!(Arc::ptr_eq(c, candidate) && bidding && got.code == "no_standing_bid");
                        }
                        (expected, got) => prop_assert!(false, "{}: check {expected:?}, evaluate {got:?}", candidate.id),
                    }
                }
            }
        }
    }
}
