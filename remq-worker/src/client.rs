//! The client: publish, consume, flush and head over one multiplexed connection.

use std::fmt;
use std::ops::RangeInclusive;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, ToRedisArgs};

use crate::connect::ClientBuilder;
use crate::error::RedisAddr;
use crate::packed::PackedPage;
use crate::protocol::{self, MAX_CONSUME_LIMIT, Namespace};
use crate::registry::{self, RegisteredConsumer};
use crate::{Error, Message, MessageId, Result};

/// A handle to a Remq namespace on one Redis server.
///
/// All clones (and all [`with_namespace`](Client::with_namespace) views) share one
/// multiplexed connection: concurrent calls from many tasks are pipelined on it
/// rather than waiting for each other. The connection reconnects on its own after
/// Redis restarts or the network drops; a call made while it is down fails with a
/// retryable [`Error::Redis`].
#[derive(Clone)]
pub struct Client {
    /// The shared, self-healing multiplexed connection.
    conn: ConnectionManager,
    /// Opens the dedicated connections that pub/sub needs.
    redis: redis::Client,
    /// Which namespace calls go to.
    namespace: Namespace,
    /// Where the server is, for messages (never with the password).
    addr: RedisAddr,
    /// The largest message `publish` sends.
    max_message_size: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).field("namespace", &self.namespace).finish()
    }
}

impl Client {
    /// Connects to the Redis at `url`: `redis://[user:password@]host[:port][/db]`,
    /// or `rediss://…` for TLS against the system's root certificates. The client
    /// uses the default namespace `remq`; [`Client::builder`] sets a namespace, a
    /// CA certificate or a client certificate.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the URL does not parse, [`Error::Auth`] when Redis
    /// refuses the credentials, [`Error::Tls`] when the TLS handshake fails,
    /// [`Error::NotRedis`] when something other than Redis answers,
    /// [`Error::Connect`] when Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Client> {
        ClientBuilder::new(url).connect().await
    }

    /// A builder for a client with more options than [`connect`](Self::connect).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Assembles a client from a connection that [`ClientBuilder`] set up.
    pub(crate) fn from_parts(
        conn: ConnectionManager,
        redis: redis::Client,
        namespace: Namespace,
        addr: RedisAddr,
        max_message_size: usize,
    ) -> Self {
        Client { conn, redis, namespace, addr, max_message_size }
    }

    /// A view of the same connection working in another namespace, e.g.
    /// `remq:{orders}` (see [`Namespace`]).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the base is not usable.
    pub fn with_namespace(&self, base: &str) -> Result<Client> {
        Ok(Client { namespace: Namespace::new(base)?, ..self.clone() })
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Where the server is (host, port, db; never the password).
    pub fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// Publishes one message and returns its id. The message is stored before the
    /// call returns and pushed to live subscribers in the same Redis call.
    ///
    /// # Errors
    /// [`Error::InvalidChannel`] for a name that breaks the rules (see
    /// [`validate_channel`](crate::validate_channel)); [`Error::MessageTooLarge`]
    /// above the size limit; [`Error::Redis`] when the call fails.
    ///
    /// # Cancel safety
    /// Dropping the future after the command was sent may still publish the message.
    pub async fn publish(&self, channel: &str, body: impl AsRef<[u8]>) -> Result<MessageId> {
        protocol::validate_channel(channel)?;
        self.check_size(body.as_ref())?;
        self.eval("publish", &protocol::PUBLISH, (channel, body.as_ref())).await.map(MessageId::new)
    }

    /// Publishes many messages on one channel in one call; they get consecutive ids,
    /// returned as `first..=last`. Faster than single publishes for bulk producers.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] when `bodies` is empty, otherwise as [`publish`](Self::publish).
    ///
    /// # Cancel safety
    /// As [`publish`](Self::publish): the whole batch is stored, or none of it.
    pub async fn publish_batch<I>(&self, channel: &str, bodies: I) -> Result<RangeInclusive<MessageId>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        protocol::validate_channel(channel)?;
        let bodies: Vec<I::Item> = bodies.into_iter().collect();
        if bodies.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let args: Vec<&[u8]> = bodies.iter().map(AsRef::as_ref).collect();
        for body in &args {
            self.check_size(body)?;
        }
        let (first, last): (u64, u64) =
            self.eval("publish_batch", &protocol::PUBLISH_BATCH, (channel, args)).await?;
        Ok(MessageId::new(first)..=MessageId::new(last))
    }

    /// Reads up to `limit` stored messages with ids strictly greater than `after`
    /// from every channel matching the glob `pattern`, in ascending id order.
    /// `limit` is capped at 10,000; fewer messages than asked for means the log
    /// holds nothing more for now.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when the call
    /// fails; [`Error::MalformedFrame`] when something other than Remq wrote to a
    /// channel's stream.
    pub async fn consume(&self, pattern: &str, after: MessageId, limit: usize) -> Result<Vec<Message>> {
        self.consume_page(pattern, after, limit).await?.entries.into_iter().collect()
    }

    /// One page after `after`, with the log's [`LogState`](crate::packed::LogState),
    /// read in one `consume.lua … packed` call so the two agree. An entry that is
    /// not a Remq message is an error in its place, so a caller can skip it
    /// without losing the rest of the page.
    pub(crate) async fn consume_page(
        &self,
        pattern: &str,
        after: MessageId,
        limit: usize,
    ) -> Result<PackedPage> {
        protocol::validate_pattern(pattern)?;
        let limit = limit.clamp(1, MAX_CONSUME_LIMIT);
        self.eval("consume", &protocol::CONSUME, (pattern, after.get(), limit, "packed")).await
    }

    /// Removes the messages with ids strictly below `before` from every channel
    /// matching `pattern`, and returns how many were removed.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when the call fails.
    pub async fn flush(&self, pattern: &str, before: MessageId) -> Result<u64> {
        protocol::validate_pattern(pattern)?;
        self.eval("flush", &protocol::FLUSH, (pattern, before.get())).await
    }

    /// One bounded step of a flush: removes at most `max` messages below
    /// `before` from the channels matching `pattern`; 0 means nothing is left.
    pub(crate) async fn flush_step(&self, pattern: &str, before: MessageId, max: u64) -> Result<u64> {
        self.eval("flush", &protocol::FLUSH, (pattern, before.get(), max.max(1))).await
    }

    /// Every consumer registered in this namespace (workers register theirs
    /// while they own them), with pattern, cursor, owner and when it was last seen.
    ///
    /// # Errors
    /// [`Error::Redis`] when the call fails.
    pub async fn consumers(&self) -> Result<Vec<RegisteredConsumer>> {
        registry::list(self).await
    }

    /// The last id issued in this namespace ([`MessageId::ZERO`] before the first publish).
    ///
    /// # Errors
    /// [`Error::Redis`] when the call fails.
    pub async fn head(&self) -> Result<MessageId> {
        let id: Option<u64> = self.get("head", &self.namespace.id_key()).await?;
        Ok(MessageId::new(id.unwrap_or(0)))
    }

    /// The same client with the scripts' own size limit, for dead letters: the
    /// envelope of a message at the client's limit is a little larger.
    pub(crate) fn with_script_size_limit(&self) -> Client {
        Client { max_message_size: protocol::MAX_MESSAGE_SIZE, ..self.clone() }
    }

    /// [`Error::MessageTooLarge`] when `body` is above the limit.
    fn check_size(&self, body: &[u8]) -> Result<()> {
        if body.len() > self.max_message_size {
            return Err(Error::MessageTooLarge { size: body.len(), max: self.max_message_size });
        }
        Ok(())
    }

    /// Calls `script` in this client's namespace with `args` (a tuple is spread
    /// into several arguments); `op` names the operation in errors.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        args: impl ToRedisArgs,
    ) -> Result<T> {
        self.namespace
            .invoke(script)
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// `GET key`; `op` names the operation in errors.
    pub(crate) async fn get<T: FromRedisValue>(&self, op: &'static str, key: &str) -> Result<T> {
        self.query(op, redis::cmd("GET").arg(key)).await
    }

    /// Runs a command on the shared connection; `op` names the operation in errors.
    pub(crate) async fn query<T: FromRedisValue>(&self, op: &'static str, command: &redis::Cmd) -> Result<T> {
        command
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// Runs a pipeline on the shared connection; `op` names the operation in errors.
    pub(crate) async fn query_pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(|e| Error::redis_in(op, self.namespace.base(), e))
    }

    /// The connection factory for dedicated (pub/sub) connections.
    pub(crate) fn redis(&self) -> &redis::Client {
        &self.redis
    }
}
