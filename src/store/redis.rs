//! The connection every Redis adapter uses, to one Redis or to a Redis Cluster (`--redis`):
//! `redis://host:port/` is one Redis, `redis+cluster://host:port[,host:port...]` the seed
//! nodes of a cluster (one reachable seed is enough; the client learns every shard from
//! it). Either way the adapters hold a `Shared`, which speaks `ConnectionLike`: on one
//! Redis a reconnecting connection manager, on a cluster a cluster connection that routes
//! each command (and each script and pipeline, by its first key) to the shard owning the
//! key's hash slot. Every multi-key script and pipeline of the adapters names keys of one
//! hash tag, so one slot (each adapter's `//!` says which).
//!
//! A Redis (or shard) that refuses connections fails commands at once; one that hangs fails
//! them after `RESPONSE_TIMEOUT`, and the health probe (`engine::shared`, through
//! `Shared::probe`) turns the node unready within about a second, so later requests answer
//! 503 without waiting. Neither connection ever sends a command twice by itself: a write
//! whose reply was lost must not run again (a cluster connection that meets a MOVED after
//! a failover fails that command and reloads the slot map for the next).

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// How long one command may wait for Redis's reply. Redis with `appendfsync always`
/// replies after its fsync, and a disk that stalls for a second must not fail sales; a
/// Redis that is gone or hung is caught sooner by the node's health probe (1 s), after
/// which requests are refused at once.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long connecting to one Redis (or one shard) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The scheme of a cluster's seed list.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Where `--redis` points: one Redis, or the seed nodes of a Redis Cluster (each as a
/// `redis://host:port/` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    One(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Reads `--redis`: `redis+cluster://[user[:password]@]host:port[,host:port...][/]` is a
    /// cluster, anything else one Redis's URL (`redis://host:port/`). Answers what is wrong
    /// with it otherwise (never echoing a password).
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let Some(rest) = strip_prefix_ignore_case(url, CLUSTER_SCHEME) else {
            return match url.into_connection_info() {
                Ok(_) => Ok(RedisTarget::One(url.to_string())),
                Err(_) => Err(format!(
                    "not a Redis URL: use redis://host:port/ for one Redis or {CLUSTER_SCHEME}host:port[,host:port...] \
                     for the seed nodes of a Redis Cluster"
                )),
            };
        };
        let (user, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        let seeds = match rest.split_once('/') {
            None => rest,
            Some((seeds, "")) => seeds,
            Some(_) => {
                return Err(format!(
                    "a {CLUSTER_SCHEME} URL names seed nodes only (host:port,host:port): a cluster has one database \
                     and takes no path or options"
                ))
            }
        };
        let mut nodes = Vec::new();
        for seed in seeds.split(',') {
            let seed = seed.trim();
            let port = seed.rsplit_once(':').and_then(|(host, port)| {
                let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
                (!host.is_empty() && !host.contains(['/', '?', '#', ' '])).then_some(port)
            });
            if port.is_none() {
                return Err(format!("{CLUSTER_SCHEME}: the seed {seed:?} is not host:port"));
            }
            let node = match user {
                Some(user) => format!("redis://{user}@{seed}/"),
                None => format!("redis://{seed}/"),
            };
            if node.as_str().into_connection_info().is_err() {
                return Err(format!("{CLUSTER_SCHEME}: the seed {seed:?} is not a Redis address"));
            }
            nodes.push(node);
        }
        Ok(RedisTarget::Cluster(nodes))
    }

    /// For logs: the addresses, without user or password.
    pub fn redacted(&self) -> String {
        let hide = |url: &str| match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, rest)) => format!("{scheme}://***@{rest}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        };
        match self {
            RedisTarget::One(url) => hide(url),
            RedisTarget::Cluster(nodes) => {
                let seeds: Vec<String> = nodes
                    .iter()
                    .map(|node| {
                        let node = node.trim_start_matches("redis://").trim_end_matches('/');
                        node.rsplit_once('@').map_or(node, |(_, seed)| seed).to_string()
                    })
                    .collect();
                format!("{CLUSTER_SCHEME}{}", seeds.join(","))
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// A command connection: one Redis's reconnecting connection manager, or a cluster
/// connection that routes every command to the shard of its key. Cheap to clone (clones
/// share the connection); every adapter keeps one and uses `AsyncCommands` and
/// `Script::invoke_async` on it alike.
#[derive(Clone)]
pub enum Shared {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Shared::One(connection) => connection.req_packed_command(cmd),
            Shared::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Shared::One(connection) => connection.req_packed_commands(cmd, offset, count),
            Shared::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::One(connection) => connection.get_db(),
            Shared::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Shared {
    /// Whether Redis answers: `PING` on one Redis; on a cluster, `PING` to every primary the
    /// slot map names, so one shard gone is noticed (a `PING` fanned out by the cluster
    /// connection would skip a shard it has no connection to). Reconnects what it can.
    pub fn probe(&self) -> BoxFuture<'static, RedisResult<()>> {
        let shared = self.clone();
        async move {
            match shared {
                Shared::One(mut connection) => pong(redis::cmd("PING").query_async(&mut connection).await?),
                Shared::Cluster(connection) => probe_cluster(connection).await,
            }
        }
        .boxed()
    }
}

fn pong(answer: String) -> RedisResult<()> {
    if answer == "PONG" {
        Ok(())
    } else {
        Err(RedisError::from((ErrorKind::ResponseError, "PING answered", answer)))
    }
}

async fn probe_cluster(mut connection: ClusterConnection) -> RedisResult<()> {
    let slots = connection
        .route_command(redis::cmd("CLUSTER").arg("SLOTS"), RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await?;
    let primaries = primaries_of(&slots).ok_or_else(|| {
        RedisError::from((ErrorKind::ResponseError, "CLUSTER SLOTS names no primary with an address"))
    })?;
    let pings = primaries.into_iter().map(|(host, port)| {
        let mut connection = connection.clone();
        async move {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let answer = connection.route_command(&redis::cmd("PING"), routing).await?;
            pong(redis::from_redis_value(&answer)?)
        }
    });
    futures::future::try_join_all(pings).await.map(|_| ())
}

/// The primaries of a `CLUSTER SLOTS` reply (`[[start, end, [host, port, id, ...], replicas...], ...]`),
/// each once; None when the reply names none, or one without an address.
fn primaries_of(slots: &Value) -> Option<Vec<(String, u16)>> {
    let Value::Array(ranges) = slots else { return None };
    let mut primaries: Vec<(String, u16)> = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else { return None };
        let Some(Value::Array(primary)) = range.get(2) else { return None };
        let host: String = redis::from_redis_value(primary.first()?).ok()?;
        let port: u16 = redis::from_redis_value(primary.get(1)?).ok()?;
        if host.is_empty() || host == "?" {
            return None;
        }
        if !primaries.iter().any(|(h, p)| *h == host && *p == port) {
            primaries.push((host, port));
        }
    }
    (!primaries.is_empty()).then_some(primaries)
}

/// What opens connections to the Redis of `--redis`: for the shared command connection, and
/// for each dedicated one (blocking reads).
#[derive(Clone)]
pub enum RedisClient {
    One(Client),
    Cluster(ClusterClient),
}

impl RedisClient {
    pub fn open(target: &RedisTarget) -> RedisResult<RedisClient> {
        Ok(match target {
            RedisTarget::One(url) => RedisClient::One(Client::open(url.as_str())?),
            RedisTarget::Cluster(nodes) => RedisClient::Cluster(
                ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // Never re-send a command (see the module doc); a request that meets a
                    // redirect or a shard gone fails, and the slot map is reloaded.
                    .retries(0)
                    .min_retry_wait(10)
                    .max_retry_wait(500)
                    .build()?,
            ),
        })
    }

    /// A new connection of its own, with the same timeouts: a blocking read (`XREAD BLOCK`)
    /// waits on it without stalling the commands of the shared one. On a cluster it is a
    /// cluster connection with its own connection to each shard.
    pub async fn connect(&self) -> RedisResult<Shared> {
        match self {
            RedisClient::One(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_number_of_retries(1)
                    .set_max_delay(500);
                Ok(Shared::One(ConnectionManager::new_with_config(client.clone(), config).await?))
            }
            RedisClient::Cluster(client) => Ok(Shared::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// One node's connection to Redis, shared by every adapter: when Redis comes back, the
/// first command that reconnects it (the health probe, at the latest) heals them all.
#[derive(Clone)]
pub struct RedisConnection {
    /// For adapters that need a dedicated connection (blocking reads).
    pub client: RedisClient,
    pub manager: Shared,
}

impl RedisConnection {
    /// Connects to `url` (`--redis`: one Redis or a cluster's seeds).
    pub async fn open(url: &str) -> Result<RedisConnection, RedisError> {
        let (client, manager) = connect(url).await?;
        Ok(RedisConnection { client, manager })
    }
}

/// Opens `url` and connects; answers the client too, for adapters that need a second,
/// dedicated connection (blocking reads). A URL that does not parse is
/// `ErrorKind::InvalidClientConfig`.
pub async fn connect(url: &str) -> Result<(RedisClient, Shared), RedisError> {
    let target = RedisTarget::parse(url)
        .map_err(|problem| RedisError::from((ErrorKind::InvalidClientConfig, "--redis", problem)))?;
    let client = RedisClient::open(&target)?;
    let manager = client.connect().await?;
    Ok((client, manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_redis_and_cluster_seeds_parse() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/"),
            Ok(RedisTarget::One("redis://127.0.0.1:6379/".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001"),
            Ok(RedisTarget::Cluster(vec!["redis://10.0.0.1:7000/".into(), "redis://10.0.0.2:7001/".into()]))
        );
        assert_eq!(
            RedisTarget::parse("REDIS+CLUSTER://u:secret@redis-0:7000/"),
            Ok(RedisTarget::Cluster(vec!["redis://u:secret@redis-0:7000/".into()]))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_a_password() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://host",
            "redis+cluster://host:0",
            "redis+cluster://host:7000,",
            "redis+cluster://host:7000/1",
            "redis+cluster://:7000",
            "redis+cluster://u:hunter2@host:x",
            "http://host:6379",
            "host:6379",
        ] {
            let problem = RedisTarget::parse(bad).expect_err(bad);
            assert!(!problem.contains("hunter2"), "{problem}");
        }
    }

    #[test]
    fn logs_see_no_password() {
        let target = RedisTarget::parse("redis+cluster://u:hunter2@a:1,b:2").unwrap();
        assert_eq!(target.redacted(), "redis+cluster://a:1,b:2");
        let one = RedisTarget::parse("redis://:hunter2@a:1/").unwrap();
        assert_eq!(one.redacted(), "redis://***@a:1/");
    }

    #[test]
    fn primaries_are_read_from_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range =
            |start: i64, end: i64, primary: Value| Value::Array(vec![Value::Int(start), Value::Int(end), primary]);
        let slots = Value::Array(vec![
            range(0, 5460, node("127.0.0.1", 7000)),
            range(5461, 10922, node("127.0.0.1", 7001)),
            range(10923, 16383, node("127.0.0.1", 7000)),
        ]);
        assert_eq!(primaries_of(&slots), Some(vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]));
        assert_eq!(primaries_of(&Value::Array(vec![])), None);
        assert_eq!(primaries_of(&Value::Array(vec![range(0, 1, node("?", 7000))])), None);
    }
}
