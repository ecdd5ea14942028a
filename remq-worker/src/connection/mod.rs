//! How Remq talks to Redis: the [`Connection`] that every request goes through,
//! the [`Subscriber`] for live pushes, the [`Store`] that scopes both to one
//! namespace, opening them ([`open`]), and reconnect back-off.
//!
//! One server is the only kind today. A Redis Cluster is a second variant of
//! [`Connection`] (the `redis` crate's cluster client) and a second way of
//! subscribing (`SSUBSCRIBE` per namespace, the glob matched here): nothing
//! above this module needs to change for it.

pub(crate) mod backoff;
mod open;
mod store;
mod subscriber;

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub(crate) use open::{ConnectOptions, open};
pub(crate) use store::Store;
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
}

impl Connection {
    /// A subscriber for live pushes on this connection's server(s).
    pub(crate) fn subscriber(&self) -> Subscriber {
        match self {
            Connection::Standalone { client, .. } => Subscriber::Standalone(Arc::clone(client)),
        }
    }
}

/// Requests go to the server (or, later, the cluster node) that holds their keys.
impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone { requests, .. } => requests.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone { requests, .. } => requests.get_db(),
        }
    }
}
