//! Every admin change with who made it and when (DESIGN §15), newest first, a page at a
//! time: what `GET /admin/v1/changes` lists, never a secret.

use maud::{html, Markup};

use crate::engine::ChangeView;

pub fn page(changes: &[ChangeView], next: Option<&str>) -> Markup {
    html! {
        h1 { "Admin changes" }
        @if changes.is_empty() { p { "No change yet." } }
        @else {
            div.table-box {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Object" } th scope="col" { "Summary" } } }
                    tbody {
                        @for change in changes {
                            tr {
                                td { @if let Some(at) = change.summary.at { (at.format("%Y-%m-%d %H:%M:%S UTC")) } @else { "unknown" } }
                                td { (change.summary.by.to_string()) }
                                td { (change.summary.kind) }
                                td { (change.summary.object) }
                                td { (change.summary.summary) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a href=(format!("/console/changes?before={next}")) { "Older changes" } }
        }
    }
}
