//! Exact money: `Money`, the one grammar of amounts and `Currency` live in the workspace's
//! shared types crate (`leadrouter-types`), so the router, the billing worker and the load
//! tester read amounts alike. The domain names them from here.

pub use leadrouter_types::money::*;
pub use leadrouter_types::Currency;
