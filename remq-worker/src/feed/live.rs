//! The live half of a feed: one subscription whose pushes a reader task moves
//! into a bounded buffer, and why such a feed ends.

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
    /// A push came with an id not above the one before it: the id counter went
    /// backwards; the push is the first message after the reset.
    CounterReset(MessageId),
}

impl GapReason {
    /// The reason as a word, for logs and metric labels.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            GapReason::Startup => "startup",
            GapReason::Disconnect => "disconnect",
            GapReason::Overflow => "overflow",
            GapReason::CounterReset(_) => "counter_reset",
        }
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live pushes of one `PSUBSCRIBE`, forwarded by a reader task into a bounded
/// buffer. The reader stops at the first push that does not fit, or when the
/// connection ends, and reports which.
pub(super) struct LiveFeed {
    /// Buffered pushes, in publish order.
    pub(super) rx: mpsc::Receiver<Message>,
    /// The reader; its result says why the feed ended.
    reader: AbortOnDropHandle<GapReason>,
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
            // Pushes come in publish order, so their ids only grow, unless the
            // counter went backwards.
            let mut last = MessageId::ZERO;
            while let Some(push) = pushes.next().await {
                let Some(message) = skip_malformed(&consumer, "pub/sub", Message::from_frame(push)) else {
                    continue;
                };
                if message.id <= last {
                    return GapReason::CounterReset(message.id);
                }
                last = message.id;
                match tx.try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return GapReason::Overflow,
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            GapReason::Disconnect
        });
        Ok(LiveFeed { rx, reader: AbortOnDropHandle::new(reader) })
    }

    /// The next buffered push, or why the feed ended once it is drained.
    pub(super) async fn next(&mut self) -> std::result::Result<Message, GapReason> {
        match self.rx.recv().await {
            Some(message) => Ok(message),
            None => Err((&mut self.reader).await.unwrap_or(GapReason::Disconnect)),
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
