//! Dead letters: a message that failed for good is published, with why, to a
//! dead-letter channel; only then does it count as done.
//!
//! The envelope is text headers, a blank line, then the original body byte for
//! byte, so any Redis client can read it:
//!
//! ```text
//! remq-dead-letter: 1
//! channel: orders.created
//! id: 42
//! handler: billing
//! attempts: 5
//! error: handler failed: card declined
//!
//! {"order":42}
//! ```
//!
//! A message of a partitioned namespace adds `partition: <k>` after its `id`
//! (the id is one of that partition).

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Undone;
use crate::connection::backoff::Backoff;
use crate::observe::metrics;
use crate::{Client, Error, Message, MessageId, Result};

/// The first line of every envelope.
const MAGIC: &str = "remq-dead-letter: 1";

/// Where and how one handler's dead letters are published.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetters {
    /// Publishes the dead letters.
    client: Client,
    /// The consumer, named in envelopes.
    consumer: Arc<str>,
    /// Dead letters of channel `c` go to `<prefix><c>`, unless `channel` is set.
    prefix: Arc<str>,
    /// One dead-letter channel for all of this handler's failures.
    channel: Option<Arc<str>>,
    /// Cancelled at shutdown: a dead letter that cannot be published by then
    /// leaves its message unprocessed.
    shutdown: CancellationToken,
    /// `remq_messages_handled_total{outcome="dead_lettered"}`.
    dead_lettered: ::metrics::Counter,
}

impl DeadLetters {
    /// Dead letters of `consumer` go to `<prefix><channel>`, or to `channel` when given.
    pub(crate) fn new(
        client: Client,
        consumer: Arc<str>,
        prefix: &str,
        channel: Option<&str>,
        shutdown: CancellationToken,
    ) -> Self {
        DeadLetters {
            client: client.with_script_size_limit(),
            dead_lettered: metrics::handled(&consumer, "dead_lettered"),
            consumer,
            prefix: prefix.into(),
            channel: channel.map(Into::into),
            shutdown,
        }
    }

    /// Publishes a message given up on after `attempts` attempts, the last of
    /// which failed with `error`; only then does it count as done (`Ok`). If
    /// publishing fails it is retried with back-off until it succeeds or the
    /// owner must stop ([`Undone::Interrupted`]); a permanent failure to publish
    /// is [`Undone::DeadLetterFailed`].
    pub(crate) async fn publish(&self, attempts: u32, message: &Message, error: Error) -> Result<(), Undone> {
        // A handler whose pattern also matches its dead-letter channel (say
        // `*`) must not turn one failure into an endless chain of dead
        // letters: a failed dead letter (known by its first line) stays where
        // it is, in the log.
        if message.body.starts_with(MAGIC.as_bytes()) {
            tracing::error!(consumer = &*self.consumer, id = %message.id, channel = message.channel, %error, attempts, "a dead letter failed again; it stays in its channel");
            return Ok(());
        }
        let channel = match &self.channel {
            Some(channel) => channel.to_string(),
            None => format!("{}{}", self.prefix, message.channel),
        };
        let envelope = envelope(message, &self.consumer, attempts, &error);
        let mut backoff = Backoff::default();
        loop {
            let published = tokio::select! {
                published = self.client.publish(&channel, &envelope) => published,
                _ = self.shutdown.cancelled() => return Err(Undone::Interrupted),
            };
            match published {
                Ok(dead) => {
                    tracing::error!(consumer = &*self.consumer, id = %message.id, channel = message.channel, %error, attempts, dead_letter = %channel, dead_letter_id = %dead, "message dead-lettered");
                    self.dead_lettered.increment(1);
                    return Ok(());
                }
                Err(publish_error) if publish_error.is_permanent() => {
                    return Err(Undone::DeadLetterFailed(publish_error));
                }
                Err(publish_error) => {
                    let wait = backoff.failure(&self.consumer, "dead-letter publish", &publish_error);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err(Undone::Interrupted),
                    }
                }
            }
        }
    }
}

/// Builds the envelope of a failed message.
fn envelope(message: &Message, consumer: &str, attempts: u32, error: &Error) -> Vec<u8> {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let partition = match message.partition {
        0 => String::new(),
        k => format!("partition: {k}\n"),
    };
    let mut out = format!(
        "{MAGIC}\nchannel: {}\nid: {}\n{partition}handler: {}\nattempts: {attempts}\nerror: {}\n\n",
        message.channel,
        message.id,
        one_line(consumer),
        one_line(&error.to_string())
    )
    .into_bytes();
    out.extend_from_slice(&message.body);
    out
}

/// A dead letter, parsed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterEnvelope {
    /// The original message (channel, id, body).
    pub message: Message,
    /// The handler that gave up on it.
    pub handler: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last error, as text.
    pub error: String,
}

impl DeadLetterEnvelope {
    /// Parses an envelope.
    ///
    /// # Errors
    /// [`Error::MalformedFrame`] when `body` is not a dead-letter envelope.
    pub fn parse(body: &Bytes) -> Result<DeadLetterEnvelope> {
        let malformed = |reason| Error::MalformedFrame {
            reason,
            preview: String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned(),
        };
        let split = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| malformed("no blank line after the headers"))?;
        let headers = std::str::from_utf8(&body[..split]).map_err(|_| malformed("headers are not UTF-8"))?;
        let mut lines = headers.lines();
        if lines.next() != Some(MAGIC) {
            return Err(malformed("not a remq dead letter (first line)"));
        }
        let fields: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(": ")).collect();
        let field = |name| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let channel = field("channel").ok_or_else(|| malformed("no channel header"))?;
        let id: u64 =
            field("id").and_then(|v| v.parse().ok()).ok_or_else(|| malformed("no numeric id header"))?;
        Ok(DeadLetterEnvelope {
            message: Message {
                id: MessageId::new(id),
                channel: channel.to_owned(),
                body: body.slice(split + 2..),
                partition: field("partition").and_then(|v| v.parse().ok()).unwrap_or(0),
            },
            handler: field("handler").unwrap_or_default().to_owned(),
            attempts: field("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
            error: field("error").unwrap_or_default().to_owned(),
        })
    }
}

/// One dead letter put back on its original channel by [`redrive_page`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redriven {
    /// The dead letter's own id, on its dead-letter channel.
    pub dead_id: MessageId,
    /// The original channel, where the message was published again.
    pub channel: String,
    /// The id the message got there.
    pub id: MessageId,
}

/// Publishes the dead letters of `dead_channel` after `after` back to their
/// original channels (as new messages, with new ids), up to `limit` of them, and
/// returns the id of the last one replayed (pass it as `after` to continue).
/// Dead letters are left where they are; flush them when done.
///
/// # Errors
/// As [`redrive_page`].
pub async fn redrive(
    client: &Client,
    dead_channel: &str,
    after: MessageId,
    limit: usize,
) -> Result<MessageId> {
    let page = redrive_page(client, dead_channel, after, limit).await?;
    Ok(page.last().map_or(after, |redriven| redriven.dead_id))
}

/// [`redrive`], reporting each message replayed: its dead letter's id, its
/// channel and its new id. An empty page means nothing is left after `after`.
/// `dead_channel` is read like a [`consume`](Client::consume) pattern, so
/// `dead.*` replays the dead letters of every channel at once, in id order.
///
/// # Errors
/// Redis errors, or [`Error::MalformedFrame`] when a message of the page is not
/// a dead letter: then none of the page is replayed, and the error quotes it.
pub async fn redrive_page(
    client: &Client,
    dead_channel: &str,
    after: MessageId,
    limit: usize,
) -> Result<Vec<Redriven>> {
    let dead = client.consume(dead_channel, after, limit).await?;
    let envelopes = dead
        .iter()
        .map(|dead| DeadLetterEnvelope::parse(&dead.body).map(|envelope| (dead.id, envelope.message)))
        .collect::<Result<Vec<_>>>()?;
    let mut redriven = Vec::with_capacity(envelopes.len());
    for (dead_id, message) in envelopes {
        let id = client.publish(&message.channel, &message.body).await?;
        redriven.push(Redriven { dead_id, channel: message.channel, id });
    }
    Ok(redriven)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_keeps_the_partition_and_leaves_it_out_when_there_is_none() {
        let error = Error::permanent("declined");
        let mut message = Message::new(MessageId::new(42), "orders.created", Bytes::from_static(b"{}"));
        let plain = Bytes::from(envelope(&message, "billing", 3, &error));
        assert!(!plain.windows(10).any(|w| w == b"partition:"), "unpartitioned envelopes are as before");
        assert_eq!(DeadLetterEnvelope::parse(&plain).unwrap().message, message);
        message.partition = 7;
        let keyed = Bytes::from(envelope(&message, "billing", 3, &error));
        assert!(
            keyed
                .starts_with(b"remq-dead-letter: 1\nchannel: orders.created\nid: 42\npartition: 7\nhandler:")
        );
        let parsed = DeadLetterEnvelope::parse(&keyed).unwrap();
        assert_eq!((parsed.message, parsed.attempts), (message, 3));
    }
}
