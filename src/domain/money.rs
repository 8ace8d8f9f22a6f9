//! Exact money: `Money` and the one grammar of amounts live in the workspace's shared
//! types crate (`leadrouter-types`), so the router, the billing worker and the load tester
//! read amounts alike. The domain names them from here.

pub use leadrouter_types::money::*;
