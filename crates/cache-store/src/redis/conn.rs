//! Connecting: URL parsing, the standalone or cluster connection, timeouts, and errors.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisFuture, ScriptInvocation, Value};

use crate::breaker::{Breaker, PAUSE};
use crate::StoreError;

/// A Redis failure: what the store was doing, and redis-rs's error (or a timeout).
#[derive(Debug)]
pub(super) struct RedisFailure {
    context: String,
    source: Option<redis::RedisError>,
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl StdError for RedisFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

pub(super) fn failure(context: impl Into<String>, source: redis::RedisError) -> StoreError {
    StoreError::unavailable(RedisFailure {
        context: context.into(),
        source: Some(source),
    })
}

pub(super) fn message(context: impl Into<String>) -> StoreError {
    StoreError::unavailable(RedisFailure {
        context: context.into(),
        source: None,
    })
}

/// Where to connect, from a `redis://` or `redis+cluster://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// One URL per node (one for a standalone server), without the store's own parameters.
    pub(super) nodes: Vec<String>,
    pub(super) cluster: bool,
    /// The `prefix` parameter, if given.
    pub(super) prefix: Option<String>,
    /// The URL with any password replaced by `***`, for messages.
    pub(super) shown: String,
}

const EXPECTED: &str = "expected redis://HOST:PORT/DB?prefix=P or \
                        redis+cluster://HOST1:PORT1,HOST2:PORT2?prefix=P";

fn invalid(url: &str, why: &str) -> StoreError {
    StoreError::unavailable(format!("invalid Redis URL `{url}`: {why}; {EXPECTED}"))
}

/// Percent-decodes a query value (`+` is a plain character in a prefix).
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) use crate::open::redact;

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
        let shown = redact(url);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(&shown, "no scheme"))?;
        let cluster = match scheme {
            "redis" => false,
            "redis+cluster" => true,
            "rediss" | "rediss+cluster" => {
                return Err(invalid(
                    &shown,
                    "TLS is not built in (connect through a TLS proxy, or to a local server)",
                ))
            }
            _ => return Err(invalid(&shown, "unknown scheme")),
        };
        if cluster && !cfg!(feature = "redis-cluster") {
            return Err(invalid(
                &shown,
                "cluster URLs need the `redis-cluster` feature of cache-store",
            ));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let mut prefix = None;
        let mut passed = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            match pair.split_once('=') {
                Some(("prefix", value)) => {
                    let value = percent_decode(value).ok_or_else(|| {
                        invalid(&shown, "the prefix is not valid percent-encoding")
                    })?;
                    prefix = Some(value);
                }
                _ => passed.push(pair),
            }
        }
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(invalid(&shown, "no host"));
        }
        if cluster && !path.is_empty() && path != "0" {
            return Err(invalid(&shown, "a cluster has only database 0"));
        }
        let hosts: Vec<&str> = hosts.split(',').collect();
        if !cluster && hosts.len() > 1 {
            return Err(invalid(
                &shown,
                "several hosts given: use redis+cluster:// for a cluster",
            ));
        }
        let query = if passed.is_empty() {
            String::new()
        } else {
            format!("?{}", passed.join("&"))
        };
        let mut nodes = Vec::with_capacity(hosts.len());
        for host in hosts {
            if host.is_empty() {
                return Err(invalid(&shown, "an empty host in the host list"));
            }
            if let Some((_, port)) = host.rsplit_once(':') {
                if !host.ends_with(']') && port.parse::<u16>().is_err() {
                    return Err(invalid(&shown, "a port is not a number from 1 to 65535"));
                }
            }
            let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            let path = if cluster {
                String::new()
            } else {
                format!("/{path}")
            };
            let node = format!("redis://{user}{host}{path}{query}");
            // redis-rs checks the rest (host syntax, database number).
            redis::Client::open(node.as_str()).map_err(|e| invalid(&shown, &e.to_string()))?;
            nodes.push(node);
        }
        Ok(Target {
            nodes,
            cluster,
            prefix,
            shown,
        })
    }
}

/// The connection every operation clones, and the breaker every clone shares.
#[derive(Clone)]
pub(super) struct Conn {
    link: Link,
    breaker: Arc<Breaker>,
}

/// A reconnecting [`ConnectionManager`], or a cluster connection (which follows the
/// cluster's topology and reconnects to its nodes by itself).
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(cmd, offset, count),
            #[cfg(feature = "redis-cluster")]
            Link::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            #[cfg(feature = "redis-cluster")]
            Link::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Awaits `fut`, an operation on the server, for at most `timeout`, if the breaker lets
    /// it go at all; a Redis error or the timeout is [`StoreError::Unavailable`] naming
    /// `what`.
    async fn within<T>(
        &self,
        timeout: Duration,
        what: &str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.admit() {
            return Err(message(format!(
                "Redis is unreachable (a connection failed less than {PAUSE:?} ago); \
                 not trying again yet"
            )));
        }
        let result = tokio::time::timeout(timeout, fut).await;
        self.breaker.record(
            matches!(&result, Ok(Ok(_))) || matches!(&result, Ok(Err(e)) if !unreachable(e)),
        );
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(failure(format!("Redis {what} failed"), e)),
            Err(_) => Err(message(format!(
                "Redis did not answer {what} within {timeout:?} (server down or overloaded)"
            ))),
        }
    }

    /// Connects to `target`: fails within about `timeout` when no server answers.
    pub(super) async fn connect(target: &Target, timeout: Duration) -> Result<Conn, StoreError> {
        let unreachable = |e: Option<redis::RedisError>| {
            let why = match &e {
                Some(e) => format!(": {e}"),
                None => format!(": no answer within {timeout:?}"),
            };
            StoreError::unavailable(format!(
                "cannot connect to Redis at `{}`{why}; check that the server is running and \
                 reachable at that address, and that the URL is right",
                target.shown
            ))
        };
        let connecting = async {
            if target.cluster {
                Self::connect_cluster(target, timeout).await
            } else {
                let client = redis::Client::open(target.nodes[0].as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_with_config(client, config).await?;
                Ok(Link::Single(manager))
            }
        };
        // Generous: a connection attempt plus its retries.
        let link = match tokio::time::timeout(timeout * 3, connecting).await {
            Ok(Ok(link)) => link,
            Ok(Err(e)) => return Err(unreachable(Some(e))),
            Err(_) => return Err(unreachable(None)),
        };
        // A server that accepts connections but does not answer is no server either.
        let mut probe = link.clone();
        let pong: redis::RedisResult<String> =
            match tokio::time::timeout(timeout, redis::cmd("PING").query_async(&mut probe)).await {
                Ok(result) => result,
                Err(_) => return Err(unreachable(None)),
            };
        pong.map_err(|e| unreachable(Some(e)))?;
        Ok(Conn {
            link,
            breaker: Arc::new(Breaker::new()),
        })
    }

    #[cfg(feature = "redis-cluster")]
    async fn connect_cluster(target: &Target, timeout: Duration) -> redis::RedisResult<Link> {
        let client = redis::cluster::ClusterClient::builder(target.nodes.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .max_retry_wait(500)
            .build()?;
        Ok(Link::Cluster(client.get_async_connection().await?))
    }

    #[cfg(not(feature = "redis-cluster"))]
    async fn connect_cluster(_: &Target, _: Duration) -> redis::RedisResult<Link> {
        Err((
            redis::ErrorKind::InvalidClientConfig,
            "cluster URLs need the `redis-cluster` feature",
        )
            .into())
    }

    /// Runs one command.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        timeout: Duration,
        what: &str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let mut link = self.link.clone();
        self.within(timeout, what, cmd.query_async(&mut link)).await
    }

    /// Runs a script (EVALSHA, loading it on a server that does not have it yet).
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        timeout: Duration,
        what: &str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut link = self.link.clone();
        self.within(timeout, what, invocation.invoke_async(&mut link))
            .await
    }

    /// Every key matching `pattern`, on the server or on every master of the cluster, handed
    /// to `each` a batch at a time (SCAN; keys written meanwhile may be missed).
    pub(super) async fn scan_each<F, Fut>(
        &self,
        timeout: Duration,
        pattern: &str,
        mut each: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(Vec<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            cmd
        };
        match &self.link {
            Link::Single(_) => {
                let mut cursor = 0;
                loop {
                    let (next, keys): (u64, Vec<Vec<u8>>) =
                        self.query(timeout, "SCAN", &scan(cursor)).await?;
                    if !keys.is_empty() {
                        each(keys).await?;
                    }
                    if next == 0 {
                        return Ok(());
                    }
                    cursor = next;
                }
            }
            #[cfg(feature = "redis-cluster")]
            Link::Cluster(cluster) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                for (host, port) in self.masters(timeout).await? {
                    let mut cursor = 0;
                    loop {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let mut conn = cluster.clone();
                        let value = self
                            .within(timeout, "SCAN", conn.route_command(scan(cursor), route))
                            .await?;
                        let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(value)
                            .map_err(|e| failure("Redis SCAN answered oddly", e.into()))?;
                        if !keys.is_empty() {
                            each(keys).await?;
                        }
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
                Ok(())
            }
        }
    }

    /// The addresses of the cluster's masters, from `CLUSTER NODES`.
    #[cfg(feature = "redis-cluster")]
    async fn masters(&self, timeout: Duration) -> Result<Vec<(String, u16)>, StoreError> {
        let nodes: String = self
            .query(
                timeout,
                "CLUSTER NODES",
                &redis::cmd("CLUSTER").arg("NODES").clone(),
            )
            .await?;
        let mut out = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.contains(&"fail") {
                continue;
            }
            // ip:port@cport[,hostname]
            let addr = addr.split(['@', ',']).next().unwrap_or_default();
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push((host.trim_matches(['[', ']']).to_owned(), port));
                }
            }
        }
        if out.is_empty() {
            return Err(message("Redis CLUSTER NODES listed no master"));
        }
        Ok(out)
    }
}

/// Whether `error` says the server could not be reached (rather than that it answered with
/// an error).
fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_cluster_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("redis://127.0.0.1:6379/2?prefix=a%3Ab").expect("parse");
        assert_eq!(t.nodes, ["redis://127.0.0.1:6379/2"]);
        assert_eq!(t.prefix.as_deref(), Some("a:b"));
        assert!(!t.cluster);
        let t = Target::parse("redis://u:secret@h:1?protocol=resp3&prefix=p").expect("parse");
        assert_eq!(t.nodes, ["redis://u:secret@h:1/?protocol=resp3"]);
        assert!(!t.shown.contains("secret"));
        for bad in [
            "127.0.0.1:6379",
            "http://h:1",
            "redis://",
            "redis://h:notaport",
            "redis://a:1,b:2",
            "rediss://h:1",
        ] {
            let e = Target::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("invalid Redis URL"), "{bad}: {e}");
        }
    }

    #[cfg(feature = "redis-cluster")]
    #[test]
    fn cluster_urls() {
        let t = Target::parse("redis+cluster://a:1,b:2?prefix=x").expect("parse");
        assert!(t.cluster);
        assert_eq!(t.nodes, ["redis://a:1", "redis://b:2"]);
        assert!(Target::parse("redis+cluster://a:1/3").is_err());
    }
}
