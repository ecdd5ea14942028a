//! Retention: which old messages a flush may remove ([`FlushPolicy`]), removing
//! them in short steps, and the periodic flush job a worker runs (one at a time
//! per pattern across a deployment, through a lock in Redis).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lease::LeaseGuard;
use crate::registry::{self, RegisteredConsumer};
use crate::{Client, Error, MessageId, Result, metrics, protocol};

/// Entries read per call when walking a stream to find a rank.
pub(crate) const WALK_PAGE: usize = 1000;

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
    /// Messages with ids below this were removed.
    pub before: MessageId,
    /// How many.
    pub removed: u64,
}

impl Client {
    /// Applies `policy` once: removes what it allows, in steps of at most
    /// [`step`](FlushPolicy::step) messages per Redis call.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when a
    /// call fails (what was removed before stays removed).
    pub async fn flush_with(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        let mut report = self.plan(policy).await?;
        for channel in &mut report.channels {
            let pattern = escape_glob(&channel.channel);
            channel.removed = 0;
            loop {
                let removed = self.flush_step(&pattern, channel.before, policy.step).await?;
                if removed == 0 {
                    break;
                }
                channel.removed += removed;
            }
        }
        report.channels.retain(|c| c.removed > 0);
        self.prune_time_index().await?;
        Ok(report)
    }

    /// What [`flush_with`](Self::flush_with) would remove now, without removing
    /// anything (a dry run: it reads the ids it would remove to count them).
    ///
    /// # Errors
    /// As [`flush_with`](Self::flush_with).
    pub async fn plan_flush(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        let mut report = self.plan(policy).await?;
        for channel in &mut report.channels {
            channel.removed = self.count_below(&channel.channel, channel.before).await?;
        }
        report.channels.retain(|c| c.removed > 0);
        Ok(report)
    }

    /// Decides each channel's cut; `removed` is left at 0.
    async fn plan(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        protocol::validate_pattern(&policy.pattern)?;
        let channels = self.matching_channels(&policy.pattern).await?;
        let mut report = FlushReport::default();
        let mut interest: HashMap<&str, MessageId> = HashMap::new();
        if policy.interest {
            let now = self.server_time().await?;
            for consumer in &registry::list(self).await? {
                if consumer.unseen_for(now.as_millis() as u64) > policy.stale_after {
                    report.stale_consumers.push(consumer.name.clone());
                    continue;
                }
                let keep_from = MessageId::new(consumer.cursor.get() + 1);
                for channel in self.channels_of(consumer, &channels).await? {
                    let cut = interest.entry(channel).or_insert(keep_from);
                    *cut = (*cut).min(keep_from);
                }
            }
        }
        let by_age = match policy.max_age {
            Some(age) => Some(self.cut_for_age(age).await?),
            None => None,
        };
        for channel in &channels {
            let by_size = match policy.keep_last {
                Some(keep) => self.keep_newest_from(channel, keep).await?,
                None => None,
            };
            let limit = [policy.before, by_age, by_size].into_iter().flatten().max();
            let mut cut = match (policy.interest, limit, interest.get(channel.as_str())) {
                (true, Some(limit), Some(&keep)) => limit.min(keep),
                (true, None, Some(&keep)) => keep,
                (_, limit, _) => limit.unwrap_or(MessageId::ZERO),
            };
            if let Some(cap) = policy.hard_cap
                && let Some(cap_cut) = self.keep_newest_from(channel, cap).await?
            {
                cut = cut.max(cap_cut);
            }
            if cut > MessageId::ZERO {
                report.channels.push(ChannelFlush { channel: channel.clone(), before: cut, removed: 0 });
            }
        }
        Ok(report)
    }

    /// The registered channels matching `pattern`.
    pub(crate) async fn matching_channels(&self, pattern: &str) -> Result<Vec<String>> {
        let mut cursor = 0u64;
        let mut channels = Vec::new();
        loop {
            let (next, page): (u64, Vec<String>) = self
                .query(
                    "list channels",
                    redis::cmd("SSCAN")
                        .arg(self.namespace().channels_key())
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            channels.extend(page);
            if next == 0 {
                channels.sort();
                channels.dedup();
                return Ok(channels);
            }
            cursor = next;
        }
    }

    /// The channels of `among` that `consumer`'s pattern matches (Redis decides,
    /// so the glob dialect is exactly the one of PSUBSCRIBE).
    async fn channels_of<'a>(
        &self,
        consumer: &RegisteredConsumer,
        among: &'a [String],
    ) -> Result<Vec<&'a str>> {
        if consumer.pattern.is_empty() {
            return Ok(Vec::new());
        }
        let matching = self.matching_channels(&consumer.pattern).await?;
        Ok(among.iter().filter(|c| matching.binary_search(c).is_ok()).map(String::as_str).collect())
    }

    /// The id from which the newest `keep` messages of `channel` start (remove
    /// below it), or `None` when it holds no more than `keep`. Reads whichever
    /// end of the stream is closer.
    async fn keep_newest_from(&self, channel: &str, keep: u64) -> Result<Option<MessageId>> {
        let key = self.namespace().channel_key(channel);
        let len: u64 = self.query("read a channel's length", redis::cmd("XLEN").arg(&key)).await?;
        if len <= keep {
            return Ok(None);
        }
        if keep == 0 {
            let last = self.nth_id(&key, true, 1).await?;
            return Ok(last.map(|id| MessageId::new(id.get() + 1)));
        }
        if keep <= len - keep {
            self.nth_id(&key, true, keep).await
        } else {
            self.nth_id(&key, false, len - keep + 1).await
        }
    }

    /// The id of the `n`th entry (1-based) of the stream at `key`, counted from
    /// the newest or the oldest end, read in pages.
    async fn nth_id(&self, key: &str, from_newest: bool, n: u64) -> Result<Option<MessageId>> {
        let (mut bound, mut left) = (if from_newest { "+".to_owned() } else { "-".to_owned() }, n);
        loop {
            let count = left.min(WALK_PAGE as u64);
            let mut cmd = redis::cmd(if from_newest { "XREVRANGE" } else { "XRANGE" });
            cmd.arg(key);
            if from_newest {
                cmd.arg(&bound).arg("-")
            } else {
                cmd.arg(&bound).arg("+")
            };
            let page: Vec<(String, redis::Value)> =
                self.query("walk a channel", cmd.arg("COUNT").arg(count)).await?;
            let Some((last, _)) = page.last() else { return Ok(None) };
            left -= page.len() as u64;
            if left == 0 {
                return Ok(Some(entry_id(last)?));
            }
            if (page.len() as u64) < count {
                return Ok(None);
            }
            bound = format!("({last}");
        }
    }

    /// How many messages of `channel` have ids below `before`.
    async fn count_below(&self, channel: &str, before: MessageId) -> Result<u64> {
        let key = self.namespace().channel_key(channel);
        let (mut from, mut count) = ("-".to_owned(), 0u64);
        loop {
            let page: Vec<(String, redis::Value)> = self
                .query(
                    "count messages",
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(&from)
                        .arg(format!("({}-0", before.get()))
                        .arg("COUNT")
                        .arg(WALK_PAGE),
                )
                .await?;
            count += page.len() as u64;
            match page.last() {
                Some((last, _)) if page.len() == WALK_PAGE => from = format!("({last}"),
                _ => return Ok(count),
            }
        }
    }
}

/// The message id of a stream entry id `<id>-0`.
pub(crate) fn entry_id(entry: &str) -> Result<MessageId> {
    entry
        .split_once('-')
        .and_then(|(id, _)| id.parse().ok())
        .map(MessageId::new)
        .ok_or_else(|| Error::retryable(format!("unexpected stream entry id {entry:?}")))
}

/// A glob that matches exactly `channel` (channel names have no `* ? [ ]`; only
/// the escape character needs escaping).
fn escape_glob(channel: &str) -> String {
    channel.replace('\\', "\\\\")
}

/// The flush job of a worker: runs `policy` every interval until `shutdown`,
/// holding the lock `flush:<pattern>` (a lease like a consumer's) while it runs
/// so one worker of a deployment flushes a pattern at a time.
pub(crate) async fn run_periodically(client: Client, policy: FlushPolicy, shutdown: CancellationToken) {
    let lock: Arc<str> = format!("flush:{}", policy.pattern).into();
    let pattern = policy.pattern.as_str();
    let (ok, failed, locked) = (
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("ok")),
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("error")),
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("locked")),
    );
    let removed = metrics::for_flush(metrics::FLUSH_REMOVED, pattern, None);
    let stale = metrics::for_flush(metrics::FLUSH_STALE, pattern, None);
    // Held long enough for a big flush; renewed while it runs, and released after.
    let ttl = policy.every.max(Duration::from_secs(30));
    loop {
        let run = async {
            let Some(guard) = LeaseGuard::try_acquire(&client, &lock, ttl).await?.ok() else {
                return Ok(None);
            };
            let report = client.flush_with(&policy).await;
            guard.release().await;
            report.map(Some)
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = run => outcome,
        };
        match outcome {
            Ok(Some(report)) => {
                ok.increment(1);
                removed.increment(report.removed());
                for name in &report.stale_consumers {
                    stale.increment(1);
                    tracing::warn!(pattern, consumer = name, stale_after = ?policy.stale_after, "flush ignored a consumer not seen recently; its unprocessed messages may be removed");
                }
                tracing::info!(
                    pattern,
                    removed = report.removed(),
                    channels = report.channels.len(),
                    "flush done"
                );
            }
            Ok(None) => {
                locked.increment(1);
                tracing::debug!(pattern, "another worker is flushing this pattern; skipped");
            }
            Err(error) => {
                failed.increment(1);
                tracing::warn!(pattern, %error, "flush failed; trying again at the next interval");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(policy.every) => {}
        }
    }
}
