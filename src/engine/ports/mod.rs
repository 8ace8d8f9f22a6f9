//! The engine's ports: what the use cases need of state, and the record types and limits
//! they share with the adapters that keep it (`store`, embedded and Redis). Adapters import
//! these; the engine and the API never import an adapter's own types. Types move here from
//! `store` as each piece of state gets its port.

pub mod idempotency;
pub mod outbox;
pub mod pull;
pub mod returns;
