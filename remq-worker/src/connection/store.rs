//! One namespace over one connection: the request helpers that every read and
//! write of Remq's keys funnels through, and subscriptions to its pushes.

use std::fmt;
use std::time::Duration;

use redis::{FromRedisValue, Script, ToRedisArgs};

use super::{Connection, Pushes};
use crate::error::RedisAddr;
use crate::{Error, Namespace, Result};

/// How many replicas must confirm a publish's writes, and how long to wait
/// for them (`WAIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaAcks {
    /// Replicas that must have the writes.
    pub(crate) replicas: u32,
    /// How long the master waits for them.
    pub(crate) timeout: Duration,
}

/// A [`Connection`] working in one [`Namespace`]. Cheap to clone: clones share
/// the connection.
#[derive(Clone)]
pub(crate) struct Store {
    /// Where requests go.
    connection: Connection,
    /// Which namespace's keys and scripts are used.
    namespace: Namespace,
    /// Where the server is, for messages (never with the password).
    addr: RedisAddr,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("addr", &self.addr).field("namespace", &self.namespace).finish()
    }
}

impl Store {
    /// `connection`, working in `namespace`.
    pub(crate) fn new(connection: Connection, namespace: Namespace, addr: RedisAddr) -> Self {
        Store { connection, namespace, addr }
    }

    /// The same connection in another namespace.
    pub(crate) fn with_namespace(&self, namespace: Namespace) -> Store {
        Store { namespace, ..self.clone() }
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.connection.is_cluster()
    }

    /// Where the server is.
    pub(crate) fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// Calls `script` in this namespace with `args` (a tuple is spread into
    /// several arguments); `op` names the operation in errors.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        args: impl ToRedisArgs,
    ) -> Result<T> {
        self.eval_once(op, script, None, args).await
    }

    /// [`eval`](Self::eval) of a publish script, idempotent under `once`
    /// when given (`<base>:once:<key>` as `KEYS[2]`).
    pub(crate) async fn eval_once<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        once: Option<&[u8]>,
        args: impl ToRedisArgs,
    ) -> Result<T> {
        self.namespace
            .invoke(script, once)
            .arg(args)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// Calls `script` as [`eval_once`](Self::eval_once) does and, right behind it in one
    /// pipeline (so on the same connection, to the same node), `WAIT` for
    /// `acks.replicas` replicas; returns the script's reply and how many
    /// replicas confirmed its writes within `acks.timeout`.
    pub(crate) async fn eval_then_wait<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        once: Option<&[u8]>,
        args: impl ToRedisArgs,
        acks: ReplicaAcks,
    ) -> Result<(T, u32)> {
        let mut pipe = redis::pipe();
        let mut eval = self.namespace.evalsha(script, once);
        eval.arg(args);
        pipe.add_command(eval);
        let timeout = u64::try_from(acks.timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        pipe.cmd("WAIT").arg(acks.replicas).arg(timeout);
        let mut connection = self.connection.clone();
        let error = |e| Error::redis_in(op, self.namespace.base(), e);
        match pipe.query_async(&mut connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut connection).await.map_err(error)?;
                pipe.query_async(&mut connection).await.map_err(error)
            }
            result => result.map_err(error),
        }
    }

    /// `GET key`; `op` names the operation in errors.
    pub(crate) async fn get<T: FromRedisValue>(&self, op: &'static str, key: &str) -> Result<T> {
        self.query(op, redis::cmd("GET").arg(key)).await
    }

    /// Runs a command; `op` names the operation in errors.
    pub(crate) async fn query<T: FromRedisValue>(&self, op: &'static str, command: &redis::Cmd) -> Result<T> {
        command
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// Runs a pipeline; `op` names the operation in errors.
    pub(crate) async fn query_pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        pipe.query_async(&mut self.connection.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// Follows the live pushes of the channels matching `pattern` in this
    /// namespace: classic `PSUBSCRIBE`, or, when the namespace pushes sharded
    /// (`<base>:push-mode` is `sharded`, which this sets on a cluster when
    /// nothing is set yet), `SSUBSCRIBE` to its shard channel.
    ///
    /// # Errors
    /// [`Error::Permission`] when the user may not subscribe; [`Error::Redis`]
    /// when the connection cannot be opened; [`Error::Config`] when the
    /// namespace pushes sharded on a single server.
    pub(crate) async fn subscribe(&self, pattern: &str) -> Result<Pushes> {
        let subscriber = self.connection.subscriber();
        if self.pushes_sharded().await? {
            let channel = self.namespace.shard_channel();
            let Some(subscribed) = subscriber.ssubscribe(&channel, pattern).await else {
                let key = self.namespace.push_mode_key();
                let reason = format!(
                    "{key} asks for sharded pushes (SPUBLISH {channel}), which Remq follows only on a Redis Cluster; on one server, DEL {key}"
                );
                return Err(Error::Config { name: "push mode", value: "sharded".into(), reason });
            };
            return subscribed.map_err(|e| Error::subscribe(&channel, e));
        }
        let pattern = self.namespace.subscription_pattern(pattern);
        subscriber.psubscribe(&pattern).await.map_err(|e| Error::subscribe(&pattern, e))
    }

    /// Whether the publish scripts push this namespace's messages with
    /// `SPUBLISH`. On a cluster, a namespace with no mode set is switched to
    /// sharded first (`SET NX`): the subscription that follows then gets every
    /// later push, and the replay after it covers the earlier ones.
    async fn pushes_sharded(&self) -> Result<bool> {
        if self.namespace.is_default() {
            return Ok(false);
        }
        let key = self.namespace.push_mode_key();
        let mode: Option<String> = if self.is_cluster() {
            let set = redis::cmd("SET").arg(&key).arg("sharded").arg("NX").arg("GET").clone();
            Some(
                self.query::<Option<String>>("set the push mode", &set)
                    .await?
                    .unwrap_or_else(|| "sharded".into()),
            )
        } else {
            self.get("read the push mode", &key).await?
        };
        Ok(mode.as_deref() == Some("sharded"))
    }
}
