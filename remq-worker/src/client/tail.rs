//! Following a pattern without a durable consumer: the worker's gap-free feed
//! (subscribe, replay the log, then live) for tools, scripts and tests that
//! want every message from some point on, in order, but keep no cursor in
//! Redis and take no lease.

use std::fmt;
use std::sync::Arc;

use crate::connection::Store;
use crate::feed::{FeedStop, MessageFeed};
use crate::outcome::CounterReset;
use crate::{Client, Message, MessageId, Result, StartFrom, protocol};

/// Live pushes buffered before the feed falls back to replaying from the log
/// (the worker's default `REMQ_BUFFER_SIZE`).
const LIVE_BUFFER: usize = 10_000;
/// Messages per `consume` call while replaying (the worker's default `REMQ_REPLAY_BATCH`).
const REPLAY_BATCH: usize = 1000;

/// The messages of one pattern, from a starting point on, in ascending id order,
/// each once: what [`Client::tail`] returns.
///
/// It is the same engine that feeds a worker's handlers: it subscribes first,
/// replays the log from the starting point, then follows live pushes, skipping
/// ids it already handed out. A dropped connection, a Redis restart or a reader
/// too slow for its live buffer make it replay from the last id it handed out,
/// so nothing is skipped and nothing is handed out twice.
///
/// When Redis lost writes and the id counter went backwards (see "Failover" in
/// `docs/operations.md`), new messages get ids the tail has already handed out. Like a
/// worker's consumer, it does not skip them: it logs an error and replays from
/// just before the first new message when it saw it live, else from the start
/// of the log (duplicates rather than a loss). Only then do ids go down.
pub struct Tail {
    /// The gap-free feed shared with the worker; replaced when it rewinds.
    feed: MessageFeed<Store>,
    /// The connection, to start the feed over after a counter reset.
    store: Store,
    /// The pattern followed.
    pattern: Arc<str>,
    /// The name in the feed's logs.
    name: Arc<str>,
    /// The id the tail started after, for `Debug`.
    started_after: MessageId,
    /// The partition its messages are in (0 unless a view of one partition).
    partition: u32,
}

impl Client {
    /// Follows every channel matching the glob `pattern`, starting at `from`:
    /// [`StartFrom::Earliest`] replays everything still in the log,
    /// [`StartFrom::Latest`] starts with the next message published, and
    /// [`StartFrom::After`] replays what came after an id. Nothing is stored in
    /// Redis: unlike a worker's consumer, a tail has no cursor and no lease.
    ///
    /// ```no_run
    /// # async fn demo(client: remq::Client) -> remq::Result<()> {
    /// let mut tail = client.tail("events.*", remq::StartFrom::Earliest).await?;
    /// loop {
    ///     let message = tail.next().await?;
    ///     println!("{} {} {:?}", message.id, message.channel, message.body);
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPattern`](crate::Error::InvalidPattern) for an empty
    /// pattern; [`Error::Redis`](crate::Error::Redis) when the starting point
    /// cannot be read.
    pub async fn tail(&self, pattern: &str, from: StartFrom) -> Result<Tail> {
        protocol::validate_pattern(pattern)?;
        let store = self.store().clone();
        let after = from.resolve(&store, pattern).await?;
        let (pattern, name): (Arc<str>, Arc<str>) = (pattern.into(), format!("tail {pattern}").into());
        let feed = feed(&store, &name, &pattern, after);
        Ok(Tail { feed, store, pattern, name, started_after: after, partition: self.partition_index() })
    }
}

impl Tail {
    /// The next message: its id is greater than that of every message handed out
    /// before, and no message of the pattern published after the starting point
    /// is ever left out. Waits until one is published. Connection problems are
    /// retried inside with back-off (and logged through `tracing`), so a Redis
    /// restart only delays the next message.
    ///
    /// # Errors
    /// Only failures that retrying cannot fix, such as a missing ACL permission
    /// (a counter that went backwards is handled inside, as described on [`Tail`]).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future (say in a `select!` with a shutdown
    /// signal) loses no message; the next call goes on where this one was.
    pub async fn next(&mut self) -> Result<Message> {
        loop {
            match self.feed.next().await {
                Ok(message) => return Ok(Message { partition: self.partition, ..message }),
                Err(FeedStop::CounterReset(reset)) => self.rewind(reset),
                Err(FeedStop::Failed(error)) => return Err(error),
            }
        }
    }

    /// Starts the feed over after the id counter went backwards: from the
    /// start (a tail keeps no stored cursor, so its own stands in for one).
    fn rewind(&mut self, reset: CounterReset) {
        let to = reset.rewind_to(reset.cursor);
        tracing::error!(consumer = &*self.name, rewind_to = %to, error = %reset, "the id counter went backwards; replaying");
        self.feed = feed(&self.store, &self.name, &self.pattern, to);
    }
}

/// The worker's feed of `pattern` after `after`, with the worker's default sizes.
fn feed(store: &Store, name: &Arc<str>, pattern: &str, after: MessageId) -> MessageFeed<Store> {
    MessageFeed::new(store.clone(), name.clone(), pattern, after, LIVE_BUFFER, REPLAY_BATCH)
}

impl fmt::Debug for Tail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tail").field("started_after", &self.started_after).finish_non_exhaustive()
    }
}
