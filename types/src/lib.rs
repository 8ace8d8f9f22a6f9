//! What the router, the billing worker and the load tester must agree on, defined once:
//! exact money and the one grammar every amount on the wire is read with (`money`), and the
//! sale models (`Model`). Pure: no I/O, no clock.

pub mod model;
pub mod money;

pub use model::Model;
pub use money::{Money, MoneyError};
