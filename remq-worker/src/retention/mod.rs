//! Retention: which old messages a flush may remove ([`FlushPolicy`]), removing
//! them in short steps, and the periodic flush job a worker runs (one at a time
//! per pattern across a deployment, through a lock in Redis).

mod job;
mod plan;

use std::time::Duration;

pub(crate) use job::run_periodically;
pub(crate) use plan::{apply, dry_run};

use crate::MessageId;

/// What a flush of one pattern may remove. Policies combine: the size and time
/// limits ([`keep_last`](Self::keep_last), [`max_age`](Self::max_age),
/// [`before`](Self::before)) each mark older messages for removal, and a message
/// goes when any of them says so; [`interest`](Self::interest) (on by default)
/// then keeps every message a registered consumer of the channel has not yet
/// checkpointed; [`hard_cap`](Self::hard_cap) wins over interest, so a stuck
/// consumer cannot make a channel grow without bound.
///
/// With interest alone (the default), a channel is trimmed to what every
/// registered consumer of it has processed, and a channel that no registered
/// consumer follows is left alone. A consumer not seen for
/// [`stale_after`](Self::stale_after) (24 h by default) no longer holds
/// messages back; the flush logs and counts it.
///
/// ```
/// use std::time::Duration;
/// let policy = remq::FlushPolicy::new("events.*")
///     .every(Duration::from_secs(60))
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .hard_cap(10_000_000);
/// # let _ = policy;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    /// The channels it applies to.
    pattern: String,
    /// How often the worker's flush job runs it.
    every: Duration,
    /// Keep at most this many of the newest messages per channel.
    keep_last: Option<u64>,
    /// Remove messages published longer ago than this.
    max_age: Option<Duration>,
    /// Remove messages with ids below this.
    before: Option<MessageId>,
    /// Keep what registered consumers have not checkpointed.
    interest: bool,
    /// Keep at most this many per channel, whatever consumers still need.
    hard_cap: Option<u64>,
    /// Consumers not seen for this long no longer hold messages back.
    stale_after: Duration,
    /// At most this many messages removed per Redis call.
    step: u64,
}

impl FlushPolicy {
    /// Interest retention for `pattern`: remove what every registered consumer
    /// of each channel has processed, every minute.
    pub fn new(pattern: impl Into<String>) -> Self {
        FlushPolicy {
            pattern: pattern.into(),
            every: Duration::from_secs(60),
            keep_last: None,
            max_age: None,
            before: None,
            interest: true,
            hard_cap: None,
            stale_after: Duration::from_secs(24 * 3600),
            step: 10_000,
        }
    }

    /// The pattern it applies to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// How often a worker runs it (default 60 s).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(10));
        self
    }

    /// Keep only the newest `messages` of each channel.
    pub fn keep_last(mut self, messages: u64) -> Self {
        self.keep_last = Some(messages);
        self
    }

    /// Remove messages published more than `age` ago, by the Redis server's
    /// clock, through the time index the publish scripts keep. The index holds a
    /// sample every 64 ids (and every batch call), at most one a second, so up to
    /// the messages between two samples older than `age` may stay a while longer.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Remove messages with ids below `id`.
    pub fn before(mut self, id: MessageId) -> Self {
        self.before = Some(id);
        self
    }

    /// Whether to keep what registered consumers have not processed (default
    /// true). Off, only the size and time limits apply.
    pub fn interest(mut self, on: bool) -> Self {
        self.interest = on;
        self
    }

    /// Keep at most `messages` per channel even when a consumer has not
    /// processed them (it will log the loss when it gets there).
    pub fn hard_cap(mut self, messages: u64) -> Self {
        self.hard_cap = Some(messages);
        self
    }

    /// Registered consumers not seen for `after` stop holding messages back
    /// (default 24 h).
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    /// At most `messages` removed per Redis call (default 10,000, about 1 ms of
    /// Redis time), so a large flush never blocks Redis for long.
    pub fn step(mut self, messages: u64) -> Self {
        self.step = messages.max(1);
        self
    }
}

/// What a flush removed (or, from [`Client::plan_flush`], would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// One entry per channel with something to remove.
    pub channels: Vec<ChannelFlush>,
    /// Registered consumers that were ignored because they were not seen for
    /// longer than the policy's `stale_after`.
    pub stale_consumers: Vec<String>,
}

impl FlushReport {
    /// Messages removed in all.
    pub fn removed(&self) -> u64 {
        self.channels.iter().map(|c| c.removed).sum()
    }
}

/// What a flush did to one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelFlush {
    /// The channel.
    pub channel: String,
    /// The partition it is in (0 in a namespace that is not partitioned):
    /// `before` is an id of that partition.
    pub partition: u32,
    /// Messages with ids below this were removed.
    pub before: MessageId,
    /// How many.
    pub removed: u64,
}
