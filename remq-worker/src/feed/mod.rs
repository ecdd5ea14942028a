//! The gap-free feed of one consumer: live pub/sub pushes joined with replay
//! from the durable log, in strictly ascending id order, each id once.
//!
//! Subscribe first and buffer live pushes; replay from the cursor with
//! `consume` until a page comes back short; then drain the buffer, skipping ids
//! already handed out. A dropped pub/sub connection, a full buffer, or a Redis
//! restart all end the live feed, and the feed starts over the same way from the
//! last id it handed out: nothing is skipped because pub/sub lost it.
//!
//! The feed reads through a [`Source`] (pages, head, pushes), so its hard cases
//! are unit-tested against a fake log (`tests.rs`). It is shared by a worker's
//! consumers and [`Tail`](crate::Tail), with where they start ([`StartFrom`]).

mod live;
mod source;
mod start;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use self::live::{GapReason, Hint, LiveFeed, skip_malformed};
pub(crate) use self::source::Source;
pub use self::start::StartFrom;
use crate::connection::backoff::Backoff;
use crate::observe::metrics;
use crate::outcome::CounterReset;
use crate::protocol::{Entries, EntriesIter, LogState, PackedPage};
use crate::{Error, Message, MessageId, Result};

/// Why [`MessageFeed::next`] returned no message.
#[derive(Debug)]
pub(crate) enum FeedStop {
    /// The id counter went backwards; the feed must be started over from a
    /// rewound cursor ([`CounterReset::rewind_to`]).
    CounterReset(CounterReset),
    /// A failure that retrying cannot fix (e.g. a missing ACL permission).
    Failed(Error),
}

/// A subscription being opened in the background, so a `select!` that drops
/// [`MessageFeed::next`] (e.g. for a checkpoint timer) does not start it over.
type Opening = AbortOnDropHandle<Result<LiveFeed>>;

/// One page read from the log.
struct Page {
    /// The cursor the page was read after.
    after: MessageId,
    /// The entries, in id order, each made a message when it is taken (so
    /// the next page is asked for before this one's messages are built).
    entries: Entries,
    /// The log's state when the page was read.
    state: LogState,
    /// Where the next page starts; `None` at the end of the log.
    next_after: Option<MessageId>,
}

/// Where the feed is in the subscribe → replay → live cycle.
enum Phase {
    /// Not subscribed; the next call subscribes and replays.
    Resync {
        /// Why, for the logs.
        reason: GapReason,
        /// The subscription under way, if one was started.
        opening: Option<Opening>,
    },
    /// Replaying the log while live pushes are buffered.
    Replay {
        /// The subscription whose buffer fills meanwhile.
        live: LiveFeed,
        /// The rest of the last page read from the log.
        page: EntriesIter,
        /// The next page, already being read while this one is handled, so Redis
        /// and the handler work at the same time.
        next_page: Option<AbortOnDropHandle<Result<Page>>>,
        /// Whether the last page reached the end of the log.
        exhausted: bool,
        /// Whether this replay catches up after a gap (a new subscription),
        /// rather than reads what a push hinted at.
        catching_up: bool,
    },
    /// Following pub/sub.
    Live(LiveFeed),
    /// Checking pushes against the log (see [`Hint::Check`]).
    Checking {
        /// The subscription whose buffer fills meanwhile.
        live: LiveFeed,
        /// The read under way: the pushed messages the log holds. (Polled by
        /// `next`, not spawned: a task would add a hop to every live message.)
        stored: BoxFuture<'static, Result<Vec<Message>>>,
    },
}

impl Phase {
    fn resync(reason: GapReason) -> Phase {
        Phase::Resync { reason, opening: None }
    }
}

/// An ordered, gap-free, duplicate-free stream of the messages of one pattern,
/// starting after a cursor.
pub(crate) struct MessageFeed<S: Source> {
    /// Where pages, the head and live pushes come from.
    source: S,
    /// The consumer's durable name, for logs.
    consumer: Arc<str>,
    /// The channel pattern.
    pattern: Arc<str>,
    /// The last id handed out.
    cursor: MessageId,
    /// Live buffer capacity.
    buffer: usize,
    /// Page size when replaying.
    batch: usize,
    /// Where in the cycle we are.
    phase: Phase,
    /// Reconnect back-off across failures.
    backoff: Backoff,
    /// After a failure, when the next attempt may start (kept in the feed so a
    /// cancelled `next` does not cut the back-off short).
    retry_at: Option<Instant>,
    /// Notices messages that retention removed before they were read.
    losses: LossWatch,
    /// Messages read from the log to catch up after a gap.
    replayed: ::metrics::Counter,
    /// Subscriptions re-opened after a failure.
    reconnects: ::metrics::Counter,
}

/// Notices, from the log's state read with each page, messages that retention
/// removed before this consumer read them; logs and counts each loss once.
struct LossWatch {
    /// The highest id already reported.
    reported: MessageId,
    /// `remq_retention_gaps_total`.
    gaps: ::metrics::Counter,
}

impl LossWatch {
    /// Checks a page read after `after`: ids above it up to `state.removed` are
    /// gone. Replay goes on from the oldest message kept.
    fn check(&mut self, consumer: &str, pattern: &str, after: MessageId, state: LogState) {
        let from = after.max(self.reported);
        if state.removed <= from {
            return;
        }
        let (first, last) = (from.get() + 1, state.removed);
        tracing::error!(
            consumer,
            pattern,
            lost_from = first,
            lost_through = %last,
            "messages with ids {first} through {last} on this pattern were removed by retention before this consumer processed them; continuing from the oldest message kept (a flush hard cap, a stale consumer registration or a manual flush let this happen)"
        );
        self.gaps.increment(1);
        self.reported = last;
    }
}

impl<S: Source> MessageFeed<S> {
    /// A feed of `pattern` after `cursor`.
    pub(crate) fn new(
        source: S,
        consumer: Arc<str>,
        pattern: &str,
        cursor: MessageId,
        buffer: usize,
        batch: usize,
    ) -> Self {
        MessageFeed {
            source,
            pattern: pattern.into(),
            cursor,
            buffer,
            batch,
            phase: Phase::resync(GapReason::Startup),
            backoff: Backoff::default(),
            retry_at: None,
            losses: LossWatch {
                reported: MessageId::ZERO,
                gaps: metrics::handler_counter(metrics::RETENTION_GAPS, &consumer),
            },
            replayed: metrics::handler_counter(metrics::REPLAYED, &consumer),
            reconnects: metrics::handler_counter(metrics::RECONNECTS, &consumer),
            consumer,
        }
    }

    /// Whether the feed follows live pushes with nothing buffered: the consumer
    /// has processed everything published so far.
    pub(crate) fn caught_up(&self) -> bool {
        matches!(&self.phase, Phase::Live(live) if live.is_empty())
    }

    /// The next message if one is already read from the log, without waiting
    /// or touching Redis. (A push buffered meanwhile that calls for a read of
    /// the log makes the next [`next`](Self::next) read it.)
    pub(crate) fn try_next(&mut self) -> Option<Message> {
        loop {
            let message = match &mut self.phase {
                Phase::Replay { page, catching_up, .. } => {
                    let Some(message) = skip_malformed(&self.consumer, "the log", page.next()?) else {
                        continue;
                    };
                    if *catching_up {
                        self.replayed.increment(1);
                    }
                    message
                }
                Phase::Live(live) => {
                    if let Some(hint) = live.try_hint(self.cursor, self.batch) {
                        self.follow(hint);
                    }
                    return None;
                }
                Phase::Resync { .. } | Phase::Checking { .. } => return None,
            };
            if let Some(message) = self.hand_out(message) {
                return Some(message);
            }
        }
    }

    /// The next message, with an id greater than every id handed out before.
    /// Connection problems are retried with back-off inside.
    ///
    /// # Errors
    /// [`FeedStop::CounterReset`] when the id counter went backwards, and
    /// failures that retrying cannot fix (e.g. a missing ACL permission).
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is handed out only by a completed call; the
    /// subscription and page reads under way, and the back-off, carry over to the
    /// next call.
    pub(crate) async fn next(&mut self) -> std::result::Result<Message, FeedStop> {
        loop {
            if let Some(message) = self.try_next() {
                return Ok(message);
            }
            if let Some(retry_at) = self.retry_at {
                tokio::time::sleep_until(retry_at).await;
                self.retry_at = None;
            }
            match &mut self.phase {
                Phase::Resync { reason, opening } => {
                    let reason = *reason;
                    let open = opening.get_or_insert_with(|| {
                        let (source, pattern, consumer) =
                            (self.source.clone(), self.pattern.clone(), self.consumer.clone());
                        let buffer = self.buffer;
                        AbortOnDropHandle::new(tokio::spawn(async move {
                            LiveFeed::open(&source, &pattern, buffer, consumer).await
                        }))
                    });
                    let opened = open.await.unwrap_or_else(|e| Err(Error::retryable(e)));
                    *opening = None;
                    match opened {
                        Ok(live) => {
                            self.backoff.succeeded(&self.consumer);
                            metrics::gap_replay(&self.consumer, reason.as_str());
                            if reason == GapReason::Disconnect {
                                self.reconnects.increment(1);
                            }
                            tracing::debug!(consumer = &*self.consumer, %reason, after = %self.cursor, "subscribed; replaying from the log");
                            self.phase = Phase::Replay {
                                live,
                                page: EntriesIter::default(),
                                next_page: None,
                                exhausted: false,
                                catching_up: true,
                            };
                        }
                        Err(error) => self.failed("subscribe", error)?,
                    }
                }
                Phase::Replay { exhausted: true, .. } => {
                    let mut live = self.take_live();
                    if !live.followed {
                        tracing::debug!(consumer = &*self.consumer, after = %self.cursor, "caught up; following live pushes");
                        live.followed = true;
                    }
                    self.phase = Phase::Live(live);
                }
                Phase::Replay { live, page, next_page, exhausted, .. } => {
                    let fetch = next_page.get_or_insert_with(|| {
                        read_page(&self.source, &self.pattern, self.cursor, self.batch)
                    });
                    let read = fetch.await.unwrap_or_else(|e| Err(Error::retryable(e)));
                    *next_page = None;
                    match read {
                        Ok(read) => {
                            self.backoff.succeeded(&self.consumer);
                            live.read_up_to(read.state.head);
                            if read.state.head < read.after {
                                let head = read.state.head;
                                self.phase = Phase::resync(GapReason::Startup);
                                return Err(FeedStop::CounterReset(CounterReset {
                                    cursor: self.cursor,
                                    head,
                                }));
                            }
                            self.losses.check(&self.consumer, &self.pattern, read.after, read.state);
                            *exhausted = read.next_after.is_none();
                            if let Some(after) = read.next_after {
                                // After what the call looked at, malformed entries and
                                // a stretch of other channels' ids included.
                                *next_page = Some(read_page(&self.source, &self.pattern, after, self.batch));
                            }
                            *page = read.entries.into_iter();
                        }
                        Err(error) => self.failed("replay", error)?,
                    }
                }
                Phase::Checking { stored, .. } => match stored.await {
                    Ok(messages) => {
                        let mut live = self.take_live();
                        live.checked_up_to(messages.last().map(|m| m.id));
                        self.phase = Phase::Replay {
                            live,
                            page: messages.into_iter().map(Ok).collect::<Entries>().into_iter(),
                            next_page: None,
                            exhausted: true,
                            catching_up: false,
                        };
                    }
                    Err(error) => self.failed("check pushes against the log", error)?,
                },
                Phase::Live(live) => match live.next_hint(self.cursor, self.batch).await {
                    Ok(hint) => self.follow(hint),
                    Err(reason) => {
                        tracing::info!(consumer = &*self.consumer, %reason, after = %self.cursor, "live feed ended; replaying from the log");
                        self.phase = Phase::resync(reason);
                    }
                },
            }
        }
    }

    /// Following pub/sub, pushes called for something: reads the log after
    /// the cursor up to its end, or checks the pushes against it; then
    /// follows pub/sub again.
    fn follow(&mut self, hint: Hint) {
        let live = self.take_live();
        self.phase = match hint {
            Hint::Read => Phase::Replay {
                live,
                page: EntriesIter::default(),
                next_page: None,
                exhausted: false,
                catching_up: false,
            },
            Hint::Check(pushes) => {
                let source = self.source.clone();
                let stored = Box::pin(async move { source.stored(pushes).await });
                Phase::Checking { live, stored }
            }
        };
    }

    /// Takes the subscription out of a phase that has one, to move it into the
    /// next phase (the feed is left to resync meanwhile).
    fn take_live(&mut self) -> LiveFeed {
        match std::mem::replace(&mut self.phase, Phase::resync(GapReason::Startup)) {
            Phase::Replay { live, .. } | Phase::Checking { live, .. } | Phase::Live(live) => live,
            Phase::Resync { .. } => unreachable!("only a subscribed feed moves between phases"),
        }
    }

    /// Moves the cursor past `message`, or drops it when it was already handed out.
    fn hand_out(&mut self, message: Message) -> Option<Message> {
        (message.id > self.cursor).then(|| {
            self.cursor = message.id;
            message
        })
    }

    /// Handles a failed Redis call: permanent errors end the feed; others drop
    /// the subscription and schedule a retry after a back-off.
    fn failed(&mut self, what: &str, error: Error) -> std::result::Result<(), FeedStop> {
        if error.is_permanent() {
            return Err(FeedStop::Failed(error));
        }
        self.phase = Phase::resync(GapReason::Disconnect);
        self.retry_at = Some(Instant::now() + self.backoff.failure(&self.consumer, what, &error));
        Ok(())
    }
}

/// Starts reading one page of the log after `after` in the background.
fn read_page(
    source: &impl Source,
    pattern: &Arc<str>,
    after: MessageId,
    batch: usize,
) -> AbortOnDropHandle<Result<Page>> {
    let (source, pattern) = (source.clone(), pattern.clone());
    AbortOnDropHandle::new(tokio::spawn(async move {
        let page = source.page(&pattern, after, batch).await?;
        let next_after = page.next_after(batch);
        let PackedPage { state, entries, .. } = page;
        Ok(Page { after, entries, state, next_after })
    }))
}
