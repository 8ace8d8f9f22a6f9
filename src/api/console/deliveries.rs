//! The outbox in the console: messages waiting for their next attempt and dead letters,
//! each dead letter with a retry (the admin API's `/admin/v1/deliveries`). URLs are shown
//! as the admin views show them (no query values), never a message's body.

use maud::{html, Markup};

use crate::api::session::Session;
use crate::api::web::form::{notice, Outcome};
use crate::engine::memory::outbox::Delivery;
use crate::engine::ports::outbox::{MessageKind, Recipient};

fn kind(delivery: &Delivery) -> &'static str {
    match delivery.kind {
        MessageKind::Lead => "lead",
        MessageKind::Notification => "notification",
    }
}

fn recipient(delivery: &Delivery) -> String {
    match &delivery.recipient {
        Recipient::Buyer(id) => format!("buyer {id}"),
        Recipient::Supplier(id) => format!("supplier {id}"),
    }
}

pub fn page(dead: &[Delivery], pending: &[Delivery], session: &Session, outcome: &Outcome) -> Markup {
    html! {
        h1 { "Deliveries" }
        (notice(outcome))
        h2 { "Dead letters (" (dead.len()) ")" }
        @if dead.is_empty() { p { "None: every message was delivered or is still being tried." } }
        @else {
            div.table-box {
                table {
                    thead { tr { th scope="col" { "Message" } th scope="col" { "Kind" } th scope="col" { "To" } th scope="col" { "URL" } th scope="col" { "Attempts" } th scope="col" { "Last error" } th scope="col" { "Retry" } } }
                    tbody {
                        @for delivery in dead {
                            tr {
                                td { (delivery.id) }
                                td { (kind(delivery)) }
                                td { (recipient(delivery)) }
                                td { (delivery.url) }
                                td { (delivery.attempts) }
                                td { (delivery.last_error.as_deref().unwrap_or("")) }
                                td {
                                    form method="post" action=(format!("/console/deliveries/{}/retry", delivery.id)) {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button type="submit" aria-label=(format!("Retry {}", delivery.id)) { "Retry" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Waiting for their next attempt (" (pending.len()) ")" }
        @if pending.is_empty() { p { "None." } }
        @else {
            div.table-box {
                table {
                    thead { tr { th scope="col" { "Message" } th scope="col" { "Kind" } th scope="col" { "To" } th scope="col" { "Attempts" } th scope="col" { "Last error" } } }
                    tbody {
                        @for delivery in pending {
                            tr {
                                td { (delivery.id) }
                                td { (kind(delivery)) }
                                td { (recipient(delivery)) }
                                td { (delivery.attempts) }
                                td { (delivery.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
