//! The live half of a feed: one subscription whose pushes a reader task moves
//! into a bounded buffer, and why such a feed ends.
//!
//! A push is a hint, not a message: the feed hands out only what the log
//! holds. Pushes above the cursor, in id order, are checked against their
//! channels' streams (the log's body is handed out); a push out of order (the
//! id counter may have gone back, or it is not the log's) makes the feed read
//! the log from its cursor. So a frame someone PUBLISHes by hand on a channel
//! never reaches a handler unless the log holds it.

use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::task::AbortOnDropHandle;

use super::Source;
use crate::protocol::Glob;
use crate::{Message, MessageId, Result};

/// Why a consumer went back to the log instead of following pub/sub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GapReason {
    /// The consumer (re)started.
    Startup,
    /// The pub/sub connection dropped (network, `CLIENT KILL`, Redis restart, or
    /// Redis' output buffer limit).
    Disconnect,
    /// The local live buffer filled up faster than the handler drained it.
    Overflow,
}

impl GapReason {
    /// The reason as a word, for logs and metric labels.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            GapReason::Startup => "startup",
            GapReason::Disconnect => "disconnect",
            GapReason::Overflow => "overflow",
        }
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What buffered pushes call for.
#[derive(Debug)]
pub(super) enum Hint {
    /// Read the log after the cursor: a push came out of id order (the id
    /// counter may have gone back, or the push is not the log's), and the
    /// log's head tells which.
    Read,
    /// Check these pushes, above the cursor and in id order, against their
    /// channels' streams, and hand out what the log holds.
    Check(Vec<Message>),
}

/// One `PSUBSCRIBE`'s pushes, forwarded by a reader task into a bounded
/// buffer. The reader stops at the first push that does not fit, or when the
/// connection ends, and reports which.
pub(super) struct LiveFeed {
    /// Buffered pushes, in the order they came.
    rx: mpsc::Receiver<Message>,
    /// The reader; its result says why the feed ended.
    reader: AbortOnDropHandle<GapReason>,
    /// The highest pushed id known to be the log's (checked against it, or
    /// at or below the cursor when it came), for telling pushes out of order.
    highest: Option<MessageId>,
    /// The push that last called for a read, until the read shows the log's
    /// head at or above it: from then on it counts as the highest.
    read_for: Option<MessageId>,
    /// Whether the feed has caught up with the log once on this subscription.
    pub(super) followed: bool,
}

impl LiveFeed {
    /// Subscribes to `pattern` through `source`, buffering at most `capacity`
    /// pushes (of channels the pattern matches: a frame naming another
    /// channel cannot be the log's, and is dropped).
    pub(super) async fn open(
        source: &impl Source,
        pattern: &str,
        capacity: usize,
        consumer: Arc<str>,
    ) -> Result<LiveFeed> {
        let mut pushes = source.subscribe(pattern).await?;
        let (tx, rx) = mpsc::channel(capacity);
        let pattern = pattern.to_owned();
        let reader = tokio::spawn(async move {
            let glob = Glob::new(&pattern);
            while let Some(push) = pushes.next().await {
                let Some(message) = skip_malformed(&consumer, "pub/sub", Message::from_frame(push)) else {
                    continue;
                };
                if !glob.matches(message.channel.as_bytes()) {
                    continue;
                }
                match tx.try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return GapReason::Overflow,
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            GapReason::Disconnect
        });
        Ok(LiveFeed {
            rx,
            reader: AbortOnDropHandle::new(reader),
            highest: None,
            read_for: None,
            followed: false,
        })
    }

    /// Whether no push is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Waits for pushes that call for something after `cursor` (at most
    /// `limit` to check), or for why the feed ended once the buffer is drained.
    pub(super) async fn next_hint(
        &mut self,
        cursor: MessageId,
        limit: usize,
    ) -> std::result::Result<Hint, GapReason> {
        loop {
            match self.rx.recv().await {
                Some(push) => {
                    if let Some(hint) = self.gather(Some(push), cursor, limit) {
                        return Ok(hint);
                    }
                }
                None => return Err((&mut self.reader).await.unwrap_or(GapReason::Disconnect)),
            }
        }
    }

    /// What the pushes already buffered call for after `cursor`, if anything
    /// (at most `limit` to check); drops those that call for nothing.
    pub(super) fn try_hint(&mut self, cursor: MessageId, limit: usize) -> Option<Hint> {
        self.gather(None, cursor, limit)
    }

    /// Sorts `first` and the pushes buffered after it (see [`Hint`]): a push
    /// out of order ends the gathering with [`Hint::Read`], which covers
    /// those gathered before it.
    fn gather(&mut self, first: Option<Message>, cursor: MessageId, limit: usize) -> Option<Hint> {
        let mut check = Vec::new();
        // The highest id so far, those gathered to check included.
        let mut high = self.highest;
        let mut push = first.or_else(|| self.rx.try_recv().ok());
        while let Some(message) = push {
            let in_order = high.is_none_or(|high| message.id > high);
            let first_of_subscription = high.is_none();
            high = high.max(Some(message.id));
            if message.id > cursor && in_order {
                check.push(message);
                if check.len() >= limit {
                    break;
                }
            } else if !in_order || first_of_subscription {
                // Out of order, or the subscription's first push at or below
                // the cursor: a replayed message pushed again, a reset
                // counter's, or a forged one; the log's head tells.
                self.read_for = Some(message.id);
                return Some(Hint::Read);
            } else {
                // At or below the cursor and in order: a read took it already.
                self.highest = high;
            }
            push = self.rx.try_recv().ok();
        }
        (!check.is_empty()).then_some(Hint::Check(check))
    }

    /// Pushes up to `id` were checked and the log holds that one: later pushes
    /// are in order above it. (A forged push never counts as the highest, so
    /// it cannot make real pushes below it look out of order.)
    pub(super) fn checked_up_to(&mut self, id: Option<MessageId>) {
        self.highest = self.highest.max(id);
    }

    /// A read of the log found `head` the last id issued: the push that
    /// called for the read, if not above it, now counts as the highest (so
    /// the pushes after it that a read took already call for nothing).
    pub(super) fn read_up_to(&mut self, head: MessageId) {
        if let Some(id) = self.read_for.take().filter(|&id| id <= head) {
            self.highest = self.highest.max(Some(id));
        }
    }
}

/// The message, or, when it cannot be a Remq message, nothing and a log line
/// that says why.
pub(super) fn skip_malformed(consumer: &str, source: &str, message: Result<Message>) -> Option<Message> {
    match message {
        Ok(message) => Some(message),
        Err(error) => {
            // Remq's scripts only store and push well-formed messages with UTF-8
            // channel names, so this was written by something else; skipping it
            // keeps the stream going, and the error says what was skipped.
            tracing::error!(consumer, source, %error, "skipped a malformed frame");
            None
        }
    }
}
