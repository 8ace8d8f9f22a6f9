//! The console's money pages: buyers' balances with a top-up form, and the queue of pending
//! returns to approve or reject with a reason. Both change state through the same engine
//! use cases as the admin API, so they validate alike: a refused form shows each field's
//! error next to the field and changes nothing.

use maud::{html, Markup};

use crate::api::error::ApiError;
use crate::api::session::Session;
use crate::api::web::form::{input, notice, Outcome};
use crate::domain::money::Money;
use crate::domain::operator::Actor;
use crate::domain::returns::LeadReturn;
use crate::engine::Router;

/// Buyers with their balances, and a top-up form.
pub async fn buyers_page(router: &Router, session: &Session, outcome: &Outcome) -> Markup {
    let market = router.market();
    let mut rows = Vec::new();
    for buyer in &market.config().buyers {
        let balance = router.accounts().balance(&buyer.id).await.ok();
        rows.push((buyer.id.clone(), buyer.name.clone(), buyer.billing.mode, balance));
    }
    html! {
        h1 { "Buyers and top-ups" }
        (notice(outcome))
        form.stacked method="post" action="/console/top-ups" {
            input type="hidden" name="csrf" value=(session.csrf);
            label for="buyer_id-top-up" { "Buyer" }
            select id="buyer_id-top-up" name="buyer_id" {
                @for (id, name, _, _) in &rows {
                    option value=(id) selected[outcome.value("buyer_id") == id] { (name) " (" (id) ")" }
                }
            }
            @if let Some(error) = outcome.error("buyer_id") {
                p.field-error { (error) }
            }
            (input(outcome, "amount", "Amount", "text", "top-up"))
            (input(outcome, "reference", "Reference (e.g. the bank transfer's)", "text", "top-up"))
            p { button type="submit" { "Top up" } }
        }
        h2 { "Balances" }
        div.table-box {
            table {
                thead { tr { th scope="col" { "Buyer" } th scope="col" { "Billing" } th scope="col" { "Balance" } th scope="col" { "Held" } th scope="col" { "Available" } } }
                tbody {
                    @for (id, name, mode, balance) in &rows {
                        tr {
                            td { (name) " " span.muted { "(" (id) ")" } }
                            td { (format!("{mode:?}").to_lowercase()) }
                            @match balance {
                                Some((view, currency)) => {
                                    td { (view.balance) " " (currency) }
                                    td { (view.held) }
                                    td { (view.available) }
                                }
                                None => { td colspan="3" { "unavailable" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Tops up from the form's fields through the engine; answers what to show.
pub async fn top_up(router: &Router, form: &[(String, String)], by: &Actor) -> Outcome {
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str());
    let values: Vec<(String, String)> =
        ["buyer_id", "amount", "reference"].iter().map(|name| (name.to_string(), field(name).to_string())).collect();
    let amount = match Money::parse(field("amount").trim()) {
        Ok(amount) => amount,
        Err(error) => {
            let error = ApiError::invalid(vec![crate::domain::model::FieldError::new("amount", error.to_string())]);
            return Outcome::refused(error, values);
        }
    };
    match router.accounts().top_up(field("buyer_id"), amount, field("reference"), by).await {
        Ok(view) => Outcome::done(format!("Topped up {amount}: the balance is {}.", view.balance)),
        Err(error) => Outcome::refused(ApiError::from(error), values),
    }
}

/// The pending returns, oldest first, each with approve and reject (with a reason).
pub fn returns_page(pending: &[LeadReturn], session: &Session, outcome: &Outcome) -> Markup {
    html! {
        h1 { "Returns to decide" }
        (notice(outcome))
        @if pending.is_empty() {
            p { "No return is waiting for a decision." }
        }
        @for lead_return in pending {
            @let blank = Outcome::default();
            @let outcome = if outcome.value("return_id") == lead_return.return_id { outcome } else { &blank };
            section.tile aria-labelledby=(format!("return-{}", lead_return.return_id)) {
                h2 id=(format!("return-{}", lead_return.return_id)) { "Return " (lead_return.return_id) }
                p {
                    "Sale " (lead_return.sale_id) " to " (lead_return.buyer_id) " from " (lead_return.supplier_id)
                    ", campaign " (lead_return.campaign_id) ", " (lead_return.price) " " (lead_return.currency)
                    ". Reason: " strong { (lead_return.reason) }
                    @if let Some(note) = &lead_return.note { " — “" (note) "”" }
                    ". Requested " (lead_return.requested_at.format("%Y-%m-%d %H:%M UTC")) "."
                }
                form method="post" action=(format!("/console/returns/{}/approve", lead_return.return_id)) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { "Approve" }
                }
                form method="post" action=(format!("/console/returns/{}/reject", lead_return.return_id)) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    (input(outcome, "reason", "Reason for rejecting", "text", &lead_return.return_id))
                    p { button.quiet type="submit" { "Reject" } }
                }
            }
        }
    }
}

/// Approves or rejects a return through the engine; answers what to show.
pub async fn resolve(router: &Router, return_id: &str, approve: bool, reason: Option<String>, by: &Actor) -> Outcome {
    let values = vec![
        ("reason".to_string(), reason.clone().unwrap_or_default()),
        ("return_id".to_string(), return_id.to_string()),
    ];
    match router.returns().resolve_return(return_id, approve, reason, by).await {
        Ok(resolved) => Outcome::done(format!("Return {} {}.", resolved.return_id, resolved.status.as_str())),
        Err(error) => Outcome::refused(ApiError::from(error), values),
    }
}
