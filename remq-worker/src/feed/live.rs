//! The live half of a feed: one subscription whose pushes a reader task moves
//! into a bounded buffer, and why such a feed ends.
//!
//! A push is a hint, not a message: the feed hands out only what it reads
//! from the log. A push tells it that the log may hold something after its
//! cursor (or, arriving out of order, that the id counter may have gone back);
//! the feed then reads the log from its cursor. So a frame someone PUBLISHes
//! by hand on a channel never reaches a handler unless the log holds it.

use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::task::AbortOnDropHandle;

use super::Source;
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

/// The ids of one `PSUBSCRIBE`'s pushes, forwarded by a reader task into a
/// bounded buffer. The reader stops at the first push that does not fit, or
/// when the connection ends, and reports which.
pub(super) struct LiveFeed {
    /// Buffered push ids, in the order they came.
    rx: mpsc::Receiver<MessageId>,
    /// The reader; its result says why the feed ended.
    reader: AbortOnDropHandle<GapReason>,
    /// The highest id pushed so far that the feed has looked at.
    highest: Option<MessageId>,
    /// Whether the feed has caught up with the log once on this subscription.
    pub(super) followed: bool,
}

impl LiveFeed {
    /// Subscribes to `pattern` through `source`, buffering at most `capacity` pushes.
    pub(super) async fn open(
        source: &impl Source,
        pattern: &str,
        capacity: usize,
        consumer: Arc<str>,
    ) -> Result<LiveFeed> {
        let mut pushes = source.subscribe(pattern).await?;
        let (tx, rx) = mpsc::channel(capacity);
        let reader = tokio::spawn(async move {
            while let Some(push) = pushes.next().await {
                let Some(message) = skip_malformed(&consumer, "pub/sub", Message::from_frame(push)) else {
                    continue;
                };
                match tx.try_send(message.id) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return GapReason::Overflow,
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            GapReason::Disconnect
        });
        Ok(LiveFeed { rx, reader: AbortOnDropHandle::new(reader), highest: None, followed: false })
    }

    /// Whether no push is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Waits for a push that calls for a read of the log after `cursor` (see
    /// [`calls_for_a_read`](Self::calls_for_a_read)), or for why the feed
    /// ended once the buffer is drained.
    pub(super) async fn next_hint(&mut self, cursor: MessageId) -> std::result::Result<(), GapReason> {
        loop {
            match self.rx.recv().await {
                Some(id) if self.calls_for_a_read(id, cursor) => return Ok(()),
                Some(_) => {}
                None => return Err((&mut self.reader).await.unwrap_or(GapReason::Disconnect)),
            }
        }
    }

    /// Whether a push already buffered calls for a read of the log after
    /// `cursor`; drops the pushes before it that do not.
    pub(super) fn try_hint(&mut self, cursor: MessageId) -> bool {
        while let Ok(id) = self.rx.try_recv() {
            if self.calls_for_a_read(id, cursor) {
                return true;
            }
        }
        false
    }

    /// A read of the log found `head` the last id issued: a push above it
    /// that came before was not the log's, so it no longer counts as the
    /// highest push (else every real push below it would call for a read).
    pub(super) fn read_up_to(&mut self, head: MessageId) {
        self.highest = self.highest.map(|highest| highest.min(head));
    }

    /// Whether the push of `id` calls for a read of the log after `cursor`:
    /// - above the cursor: the log may hold something new;
    /// - at or below the cursor and above every push before it: no, a read
    ///   already took that message (reads run ahead of pushes);
    /// - at or below the highest push before it (pushes of one subscription
    ///   come in id order), or the first push of the subscription at or below
    ///   the cursor: the id counter may have gone back, or the push is not the
    ///   log's; the read's head tells (a forged push costs one read).
    fn calls_for_a_read(&mut self, id: MessageId, cursor: MessageId) -> bool {
        let in_order = self.highest.is_some_and(|highest| id > highest);
        self.highest = self.highest.max(Some(id));
        id > cursor || !in_order
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
