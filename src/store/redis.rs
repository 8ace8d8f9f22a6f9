//! The connection every Redis adapter uses: a reconnecting connection manager whose
//! commands fail within about a second when Redis is away, so a node answers 503 quickly
//! instead of hanging (issue 6's failure behaviour).

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

/// Opens `url` and connects; answers the client too, for adapters that need a second,
/// dedicated connection (blocking reads).
pub async fn connect(url: &str) -> Result<(Client, ConnectionManager), RedisError> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(1)
        .set_max_delay(500);
    let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
    Ok((client, manager))
}
