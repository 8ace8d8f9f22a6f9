//! What the router, the billing worker and the load tester must agree on, defined once:
//! exact money and the one grammar every amount on the wire is read with (`money`), the
//! currency an amount is in (`currency`), the ids of sales, leads, returns and accounts
//! (`ids`) and the sale models (`Model`). Pure: no I/O, no clock.

pub mod currency;
pub mod ids;
pub mod model;
pub mod money;
#[cfg(feature = "openapi")]
pub mod openapi;

pub use currency::{Currency, InvalidCurrency};
pub use ids::{BuyerId, CampaignId, LeadId, PingId, ReturnId, SaleId, SupplierId};
pub use model::Model;
pub use money::{Money, MoneyError};
