//! How Remq talks to Redis: the [`Connection`] that every request goes through,
//! the [`Subscriber`] for live pushes, the [`Store`] that scopes both to one
//! namespace, opening them ([`open`]), and reconnect back-off.
//!
//! One server, or a Redis Cluster (the `redis` crate's cluster client, which
//! routes every request by its keys: a namespace's keys share one hash tag, so
//! one slot). Live pushes on a cluster use sharded pub/sub: `SSUBSCRIBE` to
//! the namespace's shard channel, the glob matched here.

pub(crate) mod backoff;
mod open;
mod store;
mod subscriber;

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub(crate) use open::{ConnectOptions, open};
pub(crate) use store::{ReplicaAcks, Store};
pub(crate) use subscriber::{Pushes, Subscriber};

/// A connection to Redis for requests (scripts, commands, pipelines), and the
/// means to open pub/sub connections beside it.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server.
    Standalone {
        /// The shared, self-healing multiplexed connection: concurrent requests
        /// from many tasks are pipelined on it.
        requests: ConnectionManager,
        /// Opens the dedicated connections that pub/sub needs (shared, so a
        /// clone of the connection for a request allocates nothing).
        client: Arc<redis::Client>,
    },
    /// A Redis Cluster.
    Cluster {
        /// The cluster client's connection: each request goes to the master of
        /// its keys' slot, following redirections and failovers.
        requests: redis::cluster_async::ClusterConnection,
        /// Opens a dedicated pub/sub connection per subscription.
        subscriptions: Arc<subscriber::ClusterSubscriber>,
    },
}

impl Connection {
    /// A subscriber for live pushes on this connection's server(s).
    pub(crate) fn subscriber(&self) -> Subscriber {
        match self {
            Connection::Standalone { client, .. } => Subscriber::Standalone(Arc::clone(client)),
            Connection::Cluster { subscriptions, .. } => Subscriber::Cluster(Arc::clone(subscriptions)),
        }
    }

    /// Whether this is a Redis Cluster (a namespace needs a hash tag there).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster { .. })
    }
}

/// Requests go to the server, or the cluster node, that holds their keys.
impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone { requests, .. } => requests.req_packed_command(cmd),
            Connection::Cluster { requests, .. } => requests.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone { requests, .. } => requests.req_packed_commands(pipeline, offset, count),
            Connection::Cluster { requests, .. } => requests.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone { requests, .. } => requests.get_db(),
            Connection::Cluster { requests, .. } => requests.get_db(),
        }
    }
}
