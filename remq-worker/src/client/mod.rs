//! The client: every public operation on a namespace, over one multiplexed
//! connection. Each file holds one group of them; the reads and writes they
//! share live below, in `log`, `ownership` and `retention`.

mod builder;
mod channels;
mod consumers;
mod idempotent;
mod partitions;
mod retention;
mod tail;

use std::fmt;
use std::ops::RangeInclusive;

pub use builder::ClientBuilder;
pub use channels::ChannelInfo;
pub use partitions::{Published, PublishedBatch};
pub use tail::Tail;

use crate::connection::{ReplicaAcks, Store};
use crate::error::RedisAddr;
use crate::protocol::{self, MAX_CONSUME_LIMIT, Namespace, scripts};
use crate::{Error, FlushPolicy, Message, MessageId, Result, log};

/// A handle to a Remq namespace on one Redis server.
///
/// All clones (and all [`with_namespace`](Client::with_namespace) views) share one
/// multiplexed connection: concurrent calls from many tasks are pipelined on it
/// rather than waiting for each other. The connection reconnects on its own after
/// Redis restarts or the network drops; a call made while it is down fails with a
/// retryable [`Error::Redis`].
#[derive(Clone)]
pub struct Client {
    /// The shared connection, in this client's namespace.
    store: Store,
    /// The largest message `publish` sends.
    max_message_size: usize,
    /// Replica acknowledgements every publish waits for.
    acks: Option<ReplicaAcks>,
    /// Which partition this client works in, and how many its namespace has.
    partitioning: partitions::Partitioning,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", self.store.addr())
            .field("namespace", self.store.namespace())
            .finish()
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
    pub(crate) fn from_parts(store: Store, max_message_size: usize, acks: Option<ReplicaAcks>) -> Self {
        let partitioning = partitions::Partitioning::of(store.namespace());
        Client { store, max_message_size, acks, partitioning }
    }

    /// A view of the same connection working in another namespace, e.g.
    /// `remq:{orders}` (see [`Namespace`]).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the base is not usable.
    pub fn with_namespace(&self, base: &str) -> Result<Client> {
        let namespace = Namespace::new(base)?;
        if self.store.is_cluster() {
            namespace.check_for_cluster()?;
        }
        let partitioning = partitions::Partitioning::of(&namespace);
        Ok(Client { store: self.store.with_namespace(namespace), partitioning, ..self.clone() })
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &Namespace {
        self.store.namespace()
    }

    /// Where the server is (host, port, db; never the password).
    pub fn addr(&self) -> &RedisAddr {
        self.store.addr()
    }

    /// Publishes one message and returns its id. The message is stored before the
    /// call returns and pushed to live subscribers in the same Redis call. In a
    /// partitioned namespace the channel name picks the partition
    /// ([`partition_for`](crate::partition_for)); the id is one of that
    /// partition ([`publish_keyed`](Self::publish_keyed) says which).
    ///
    /// # Errors
    /// [`Error::InvalidChannel`] for a name that breaks the rules (see
    /// [`validate_channel`](crate::validate_channel)); [`Error::MessageTooLarge`]
    /// above the size limit; [`Error::Redis`] when the call fails.
    ///
    /// # Cancel safety
    /// Dropping the future after the command was sent may still publish the message.
    pub async fn publish(&self, channel: &str, body: impl AsRef<[u8]>) -> Result<MessageId> {
        Ok(self.publish_keyed(channel, channel, body).await?.id)
    }

    /// Publishes many messages on one channel in one call; they get consecutive ids,
    /// returned as `first..=last`. Faster than single publishes for bulk producers.
    /// In a partitioned namespace the channel name picks the partition, as for
    /// [`publish`](Self::publish).
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
        Ok(self.publish_batch_keyed(channel, channel, bodies).await?.ids)
    }

    /// Stores one message in this client's own namespace (no partition
    /// picked), at most once per `once` key within the idempotency window.
    async fn publish_here(&self, channel: &str, body: &[u8], once: Option<&[u8]>) -> Result<MessageId> {
        protocol::validate_channel(channel)?;
        self.check_size(body)?;
        let id = self
            .store_messages("publish", &scripts::PUBLISH, once, (channel, body), |&id: &u64| id..=id)
            .await?;
        Ok(MessageId::new(id))
    }

    /// Stores a batch in this client's own namespace (no partition picked),
    /// at most once per `once` key within the idempotency window.
    async fn publish_batch_here(
        &self,
        channel: &str,
        bodies: &[&[u8]],
        once: Option<&[u8]>,
    ) -> Result<RangeInclusive<MessageId>> {
        protocol::validate_channel(channel)?;
        if bodies.is_empty() {
            return Err(Error::EmptyBatch);
        }
        for body in bodies {
            self.check_size(body)?;
        }
        let (first, last) = self
            .store_messages(
                "publish_batch",
                &scripts::PUBLISH_BATCH,
                once,
                (channel, bodies),
                |&(first, last): &(u64, u64)| first..=last,
            )
            .await?;
        Ok(MessageId::new(first)..=MessageId::new(last))
    }

    /// Runs a publish script and, when the client asks for replica
    /// acknowledgements, `WAIT`s for them on the same connection; `op` names
    /// the call in errors, `ids` says which ids the script's reply stands for;
    /// `once` is the idempotency key, if any.
    async fn store_messages<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &redis::Script,
        once: Option<&[u8]>,
        args: impl redis::ToRedisArgs,
        ids: impl Fn(&T) -> RangeInclusive<u64>,
    ) -> Result<T> {
        let Some(acks) = self.acks else {
            return self.store.eval_once(op, script, once, args).await;
        };
        let (reply, acked) = self.store.eval_then_wait(op, script, once, args, acks).await?;
        if acked < acks.replicas {
            let ids = ids(&reply);
            return Err(Error::NotReplicated {
                ids: MessageId::new(*ids.start())..=MessageId::new(*ids.end()),
                acked,
                wanted: acks.replicas,
                timeout: acks.timeout,
            });
        }
        Ok(reply)
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
        let limit = limit.clamp(1, MAX_CONSUME_LIMIT);
        let (mut messages, mut after) = (Vec::new(), after);
        // One script call may stop early to stay short (see `consume.lua`):
        // the page goes on from where it stopped.
        loop {
            let asked = limit - messages.len();
            let page = log::read_page(&self.store, pattern, after, asked).await?;
            let next_after = page.next_after(asked);
            for entry in page.entries {
                messages.push(Message { partition: self.partition_index(), ..entry? });
            }
            match next_after {
                Some(next) if messages.len() < limit => after = next,
                _ => return Ok(messages),
            }
        }
    }

    /// Removes the messages with ids strictly below `before` from every channel
    /// matching `pattern` (whatever consumers still need: see
    /// [`flush_with`](Self::flush_with) for retention that keeps it), and
    /// returns how many were removed. It goes channel by channel in short
    /// steps, so no Redis call is long however many channels match. In a
    /// partitioned namespace it flushes every partition, each below its own
    /// `before` (ids are per partition: flush one partition through
    /// [`partition(k)`](Self::partition) to cut at an id of that one).
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when a
    /// call fails (what was removed before stays removed).
    pub async fn flush(&self, pattern: &str, before: MessageId) -> Result<u64> {
        let policy = FlushPolicy::new(pattern).before(before).interest(false);
        Ok(self.flush_with(&policy).await?.removed())
    }

    /// The first id that may have been published at or after `time`, by the
    /// Redis server's clock, from the time index the publish scripts keep (a
    /// sample every 64 ids and every batch call, at most one a second): every
    /// message published at or after `time` has this id or a greater one, and
    /// at most the messages between two samples before `time` have one too.
    /// `1` when the index holds nothing that old; the id after the last one
    /// issued for a time still to come. Read from it with
    /// `consume(pattern, id_at(t) - 1, …)`, or start a worker or tail with
    /// [`StartFrom::Time`](crate::StartFrom::Time). In a partitioned namespace,
    /// ask the partition ([`partition(k)`](Self::partition)): ids are per partition.
    ///
    /// # Errors
    /// [`Error::Redis`] when a call fails.
    pub async fn id_at(&self, time: std::time::SystemTime) -> Result<MessageId> {
        log::time_index::first_id_at(&self.store, time).await
    }

    /// The last id issued in this namespace ([`MessageId::ZERO`] before the first publish).
    ///
    /// # Errors
    /// [`Error::Redis`] when the call fails.
    pub async fn head(&self) -> Result<MessageId> {
        log::head(&self.store).await
    }

    /// The same client with the scripts' own size limit, for dead letters: the
    /// envelope of a message at the client's limit is a little larger.
    pub(crate) fn with_script_size_limit(&self) -> Client {
        let partitioning = self.partitioning.without_views();
        Client { max_message_size: protocol::MAX_MESSAGE_SIZE, partitioning, ..self.clone() }
    }

    /// [`Error::MessageTooLarge`] when `body` is above the limit.
    fn check_size(&self, body: &[u8]) -> Result<()> {
        if body.len() > self.max_message_size {
            return Err(Error::MessageTooLarge { size: body.len(), max: self.max_message_size });
        }
        Ok(())
    }

    /// The connection in this client's namespace, for the runtime and the
    /// operations built on it.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}
