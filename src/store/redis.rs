//! The connection every Redis adapter uses: a reconnecting connection manager. A Redis
//! that refuses connections fails commands at once; one that hangs fails them after
//! `RESPONSE_TIMEOUT`, and the health probe (`engine::shared`) turns the node unready
//! within about a second, so later requests answer 503 without waiting.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

/// One node's connection to Redis, shared by every adapter: when Redis comes back, the
/// first command that reconnects it (the health probe, at the latest) heals them all.
#[derive(Clone)]
pub struct RedisConnection {
    /// For adapters that need a dedicated connection (blocking reads, pub/sub).
    pub client: Client,
    pub manager: ConnectionManager,
}

impl RedisConnection {
    pub async fn open(url: &str) -> Result<RedisConnection, RedisError> {
        let (client, manager) = connect(url).await?;
        Ok(RedisConnection { client, manager })
    }
}

/// How long one command may wait for Redis's reply. Redis with `appendfsync always`
/// replies after its fsync, and a disk that stalls for a second must not fail sales; a
/// Redis that is gone or hung is caught sooner by the node's health probe (1 s), after
/// which requests are refused at once.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens `url` and connects; answers the client too, for adapters that need a second,
/// dedicated connection (blocking reads).
pub async fn connect(url: &str) -> Result<(Client, ConnectionManager), RedisError> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(500);
    let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
    Ok((client, manager))
}
