//! Verticals, suppliers, buyers and campaigns in the console: lists, and an editor per
//! object that saves through the admin API's own path (`admin::put_object`), so a form is
//! validated exactly as a PUT is. The object is edited as the admin API shows it (secrets as
//! `***`, which a save keeps as stored); a refusal lists every field-path error beside the
//! editor, marks the editor invalid, keeps what was typed, and stores nothing.

use maud::{html, Markup};
use serde_json::Value;

use crate::api::admin::{self, Kind};
use crate::api::error::ApiError;
use crate::api::session::Session;
use crate::api::web::form::{notice, Outcome};
use crate::domain::market::Market;
use crate::domain::model::FieldError;
use crate::domain::operator::Actor;
use crate::engine::Router;

/// The URL slug and the names of a kind.
pub fn kind_of(slug: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|kind| slug_of(*kind) == slug)
}

pub fn slug_of(kind: Kind) -> &'static str {
    kind.path().trim_start_matches('/')
}

fn title_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Suppliers => "Suppliers",
        Kind::Buyers => "Buyers",
        Kind::Campaigns => "Campaigns",
        Kind::Verticals => "Verticals",
    }
}

/// (id, what to show beside it) of every object of a kind.
fn rows(market: &Market, kind: Kind) -> Vec<(String, String)> {
    let config = market.config();
    match kind {
        Kind::Suppliers => config.suppliers.iter().map(|s| (s.id.clone(), s.name.clone())).collect(),
        Kind::Buyers => config.buyers.iter().map(|b| (b.id.clone(), b.name.clone())).collect(),
        Kind::Campaigns => {
            config.campaigns.iter().map(|c| (c.id.clone(), format!("{} · buyer {}", c.vertical, c.buyer_id))).collect()
        }
        Kind::Verticals => config.verticals.iter().map(|v| (v.name.clone(), String::new())).collect(),
    }
}

/// The list of a kind, with links to edit each and to add one.
pub fn list_page(market: &Market, kind: Kind) -> Markup {
    let slug = slug_of(kind);
    let rows = rows(market, kind);
    html! {
        h1 { (title_of(kind)) }
        p { a href=(format!("/console/config/{slug}/new")) { "Add one" } }
        @if rows.is_empty() { p { "None yet." } }
        @else {
            div.table-box {
                table {
                    thead { tr { th scope="col" { "Id" } th scope="col" { "" } } }
                    tbody {
                        @for (id, about) in &rows {
                            tr {
                                td { a href=(format!("/console/config/{slug}/{id}")) { (id) } }
                                td { (about) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The editor of one object (`id` empty: a new one), starting from `text`.
pub fn edit_page(kind: Kind, id: &str, text: &str, session: &Session, outcome: &Outcome) -> Markup {
    let slug = slug_of(kind);
    let new = id.is_empty();
    let errors = &outcome.errors;
    html! {
        h1 { @if new { "New: " (title_of(kind)) } @else { (title_of(kind)) ": " (id) } }
        (notice(outcome))
        form.stacked method="post" action=(format!("/console/config/{slug}/{}", if new { "new" } else { id })) {
            input type="hidden" name="csrf" value=(session.csrf);
            @if new {
                label for="object-id" { "Id (" (kind.id_field()) ")" }
                input id="object-id" name="id" type="text" value=(outcome.value("id")) required
                    aria-invalid=[outcome.error(kind.id_field()).map(|_| "true")];
                @if let Some(error) = outcome.error(kind.id_field()) { p.field-error { (error) } }
            }
            label for="object-json" { "Settings (JSON, as the admin API takes them; secrets shown as *** are kept)" }
            textarea id="object-json" name="object" rows="24" spellcheck="false"
                aria-invalid=[(!errors.is_empty()).then_some("true")]
                aria-describedby=[(!errors.is_empty()).then_some("object-errors")] { (text) }
            @if !errors.is_empty() {
                ul.field-error id="object-errors" {
                    @for (field, message) in errors {
                        li { code { (field) } ": " (message) }
                    }
                }
            }
            p { button type="submit" { "Save" } " " a href=(format!("/console/config/{slug}")) { "Back to the list" } }
        }
    }
}

/// The editor's starting text: the object as shown, or a new object's skeleton.
pub fn text_of(market: &Market, kind: Kind, id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("{\n}".to_string());
    }
    admin::shown(market, kind, id)
}

/// Saves the form's object as the admin API's PUT would; answers the outcome and the
/// object's id (for a new object, the one typed).
pub async fn save(router: &Router, kind: Kind, id: &str, form: &[(String, String)], by: &Actor) -> (Outcome, String) {
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str());
    let id = if id.is_empty() { field("id").trim().to_string() } else { id.to_string() };
    let values = vec![("id".to_string(), id.clone()), ("object".to_string(), field("object").to_string())];
    if id.is_empty() {
        let error = ApiError::invalid(vec![FieldError::new(kind.id_field(), "required")]);
        return (Outcome::refused(error, values), id);
    }
    let object = match serde_json::from_str::<Value>(field("object")) {
        Ok(Value::Object(mut map)) => {
            map.entry(kind.id_field().to_string()).or_insert_with(|| Value::String(id.clone()));
            if map.get(kind.id_field()) != Some(&Value::String(id.clone())) {
                let error = ApiError::invalid(vec![FieldError::new(kind.id_field(), "must equal the id being edited")]);
                return (Outcome::refused(error, values), id);
            }
            Value::Object(map)
        }
        Ok(_) => {
            let error = ApiError::invalid(vec![FieldError::new("object", "must be a JSON object")]);
            return (Outcome::refused(error, values), id);
        }
        Err(error) => {
            let error = ApiError::invalid(vec![FieldError::new("object", format!("not JSON: {error}"))]);
            return (Outcome::refused(error, values), id);
        }
    };
    match admin::put_object(router, kind, &id, object, by).await {
        Ok(existed) => (Outcome::done(if existed { format!("Saved {id}.") } else { format!("Created {id}.") }), id),
        Err(error) => (Outcome::refused(error, values), id),
    }
}
