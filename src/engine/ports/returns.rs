//! Returns as their store keeps them, and how many a page may hold.

use crate::domain::returns::LeadReturn;

/// At most this many returns per page.
pub const RETURNS_PAGE_MAX: usize = 1_000;

/// A return with its place in the feeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub lead_return: LeadReturn,
    /// When it was requested, in revision order (the buyer's list cursor).
    pub created: u64,
    /// Its latest change (the supplier feed's cursor).
    pub revision: u64,
}
