//! One Redis server or a Redis Cluster behind the same handle. `redis.url`
//! naming several nodes (comma-separated) is a cluster: the client learns
//! the slot map from any of them and follows failovers. Every key of a
//! namespace shares the `{namespace}` hash tag, so each script's keys live
//! in one slot, on one master.

use crate::timeouts;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nodes `redis.url` names: `redis://a:7000,b:7001` or
/// `redis://a:7000,redis://b:7001`. Later nodes take the first's scheme
/// and, if they name none, its credentials (`redis://:pw@a,b` is `pw` on
/// both).
pub fn nodes(url: &str) -> Vec<String> {
    let (scheme, first) = url.split_once("://").unwrap_or(("redis", url));
    let authority = &first[..first.find(['/', ',']).unwrap_or(first.len())];
    let credentials = authority.rfind('@').map(|at| &authority[..=at]);
    url.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
        .map(|(i, n)| match (n.contains("://"), credentials) {
            (true, _) => n.to_string(),
            (false, Some(c)) if i > 0 && !n.contains('@') => format!("{scheme}://{c}{n}"),
            (false, _) => format!("{scheme}://{n}"),
        })
        .collect()
}

/// An error that waiting cannot mend: a bad client configuration or a
/// refused password. (A cluster client reports a node's refusal inside
/// its "initial connections" I/O error, so its text is read too.)
pub fn is_configuration(e: &RedisError) -> bool {
    use redis::ErrorKind::{AuthenticationFailed, InvalidClientConfig};
    if matches!(e.kind(), InvalidClientConfig | AuthenticationFailed) {
        return true;
    }
    let text = e.to_string();
    [
        "WRONGPASS",
        "NOAUTH",
        "invalid password",
        "Password authentication failed",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// A connection to a single server or to a cluster.
#[derive(Clone)]
pub enum Con {
    Single(ConnectionManager),
    /// For blocking reads on a single server.
    Multiplexed(MultiplexedConnection),
    Cluster(Arc<Cluster>),
}

/// A cluster connection rebuilt from the seed nodes after a failure. The
/// client's own repair refreshes the slot map at once when a master dies,
/// before its replica has taken over, and then keeps timing out on the
/// dead node; a fresh connection learns the new master.
pub struct Cluster {
    nodes: Vec<String>,
    response: Duration,
    current: parking_lot::RwLock<ClusterConnection>,
    rebuilding: AtomicBool,
    last_rebuild: parking_lot::Mutex<Instant>,
    /// Slots whose master had no replica to confirm a write, and when.
    lonely: parking_lot::Mutex<std::collections::HashMap<redis::cluster_routing::Slot, Instant>>,
}

/// At most one rebuild a second.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

impl Cluster {
    async fn connect(
        nodes: &[String],
        response: Duration,
    ) -> Result<ClusterConnection, RedisError> {
        redis::cluster::ClusterClient::builder(nodes.to_vec())
            .connection_timeout(timeouts::REDIS_CONNECT)
            .response_timeout(response)
            .retries(2)
            .build()?
            .get_async_connection()
            .await
    }

    /// After a failed command: a fresh connection in the background.
    fn rebuild_soon(self: &Arc<Self>) {
        if self.last_rebuild.lock().elapsed() < REBUILD_EVERY
            || self.rebuilding.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            match Cluster::connect(&me.nodes, me.response).await {
                Ok(fresh) => {
                    tracing::info!("Redis Cluster connection rebuilt (new slot map)");
                    *me.current.write() = fresh;
                }
                Err(e) => tracing::warn!(error = %e, "cannot reconnect to the Redis Cluster yet"),
            }
            *me.last_rebuild.lock() = Instant::now();
            me.rebuilding.store(false, Ordering::SeqCst);
        });
    }

    /// A call that answers within twice the response timeout, retries
    /// and redirections included, or fails: the client can wait on a slot
    /// map that names a dead master.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.response * 2, call).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from the Redis Cluster",
            ))),
        }
    }

    /// One call on the current connection. Refused by a node that no
    /// longer serves the slot (mid-failover: the command did not run), it
    /// is tried again, at most twice, once a fresh connection may know the
    /// new master.
    async fn call<T, F, Fut>(self: &Arc<Self>, send: F) -> Result<T, RedisError>
    where
        F: Fn(ClusterConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let mut tries = 0;
        loop {
            let con = self.current.read().clone();
            let r = self.bounded(send(con)).await;
            let Err(e) = &r else { return r };
            self.failed(e);
            let refused = matches!(e.code(), Some("MOVED" | "CLUSTERDOWN" | "TRYAGAIN"));
            if !refused || tries == 2 {
                return r;
            }
            tries += 1;
            tokio::time::sleep(REBUILD_EVERY / 2).await;
        }
    }

    fn failed(self: &Arc<Self>, e: &RedisError) {
        if e.is_timeout()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(e.code(), Some("MOVED" | "CLUSTERDOWN"))
        {
            self.rebuild_soon();
        }
    }
}

impl Con {
    /// The shared connection: reconnects by itself, answers within
    /// `response` or fails.
    pub async fn open(nodes: &[String], response: Duration) -> Result<Con, RedisError> {
        if let [one] = nodes {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeouts::REDIS_CONNECT))
                .set_response_timeout(Some(response))
                .set_number_of_retries(2)
                .set_max_delay(timeouts::REDIS_CONNECT);
            let client = redis::Client::open(one.as_str())?;
            return Ok(Con::Single(
                client.get_connection_manager_with_config(config).await?,
            ));
        }
        Self::cluster(nodes, response).await
    }

    /// A connection of its own for blocking reads (answers within `response`).
    pub async fn blocking(nodes: &[String], response: Duration) -> Result<Con, RedisError> {
        if let [one] = nodes {
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeouts::REDIS_CONNECT))
                .set_response_timeout(Some(response));
            let client = redis::Client::open(one.as_str())?;
            return Ok(Con::Multiplexed(
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?,
            ));
        }
        Self::cluster(nodes, response).await
    }

    async fn cluster(nodes: &[String], response: Duration) -> Result<Con, RedisError> {
        let con = Cluster::connect(nodes, response).await?;
        Ok(Con::Cluster(Arc::new(Cluster {
            nodes: nodes.to_vec(),
            response,
            current: parking_lot::RwLock::new(con),
            rebuilding: AtomicBool::new(false),
            last_rebuild: parking_lot::Mutex::new(Instant::now() - REBUILD_EVERY),
            lonely: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })))
    }
}

/// How long a write waits for its replica before going on unconfirmed.
const REPLICA_WAIT_MS: u64 = 1000;
/// A master found without a replica is not waited on for this long.
const NO_REPLICA_FOR: Duration = Duration::from_secs(60);

impl Con {
    /// On a Redis Cluster, wait until a replica of the master serving
    /// `key`'s slot has every write this process sent it, so a failover
    /// cannot lose them (see docs/redis-keys.md, "Failover: nothing lost").
    /// Returns at once on a single server, and for a master that had no
    /// replica to wait for lately.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Con::Cluster(_))
    }

    pub async fn wait_for_replica(&self, key: &str) -> Result<(), RedisError> {
        let Con::Cluster(c) = self else {
            return Ok(());
        };
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
        let slot = Slot::for_key(key);
        if c.lonely
            .lock()
            .get(&slot)
            .is_some_and(|at| at.elapsed() < NO_REPLICA_FOR)
        {
            return Ok(());
        }
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
            slot,
            SlotAddr::Master,
        )));
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(REPLICA_WAIT_MS);
        let mut con = c.current.read().clone();
        let r = c.bounded(con.route_command(cmd, route)).await;
        match r {
            Ok(Value::Int(0)) => {
                tracing::warn!(key, "no replica confirmed a write within 1 s; not waiting on this master for a minute");
                c.lonely.lock().insert(slot, Instant::now());
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                c.failed(&e);
                Err(e)
            }
        }
    }
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Multiplexed(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move {
                    c.call(|mut con| async move { con.req_packed_command(cmd).await })
                        .await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move {
                    c.call(|mut con| async move {
                        con.req_packed_commands(pipeline, offset, count).await
                    })
                    .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Multiplexed(c) => c.get_db(),
            Con::Cluster(c) => c.current.read().get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nodes;

    #[test]
    fn several_nodes_make_a_cluster_and_share_the_scheme() {
        assert_eq!(nodes("redis://a:1/"), vec!["redis://a:1/"]);
        assert_eq!(
            nodes("redis://a:1, b:2,redis://c:3"),
            vec!["redis://a:1", "redis://b:2", "redis://c:3"]
        );
    }

    #[test]
    fn the_first_nodes_credentials_carry_to_nodes_without_their_own() {
        assert_eq!(
            nodes("redis://:pw@a:7000,b:7001,redis://:other@c:7002"),
            [
                "redis://:pw@a:7000",
                "redis://:pw@b:7001",
                "redis://:other@c:7002"
            ]
        );
        assert_eq!(nodes("redis://a,b"), ["redis://a", "redis://b"]);
        assert_eq!(nodes("rediss://u:p@a/0"), ["rediss://u:p@a/0"]);
    }
}
