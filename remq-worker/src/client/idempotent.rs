//! Idempotent publishes: [`Client::publish_idempotent`] and
//! [`Client::publish_batch_idempotent`] store a message (or a batch) once per
//! key within the namespace's window ([`Client::set_idempotency_window`]).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::Client;
use crate::{Error, MessageId, Result};

impl Client {
    /// Publishes `body` on `channel` once per idempotency `key`: within the
    /// namespace's window (2 minutes unless
    /// [`set_idempotency_window`](Self::set_idempotency_window) says otherwise)
    /// a publish with a key already used returns the first publish's id and
    /// stores and pushes nothing, whatever its channel or body. So a producer
    /// that timed out, or lost its connection, retries with the same key and
    /// cannot store the message twice. The key is kept beside the message in
    /// the same script call (`<base>:once:<key>`, with the id, expiring after
    /// the window: about 136 bytes of Redis memory a message with a 14-byte
    /// key), and
    /// flushes do not touch it. In a partitioned namespace the channel picks
    /// the partition, as for [`publish`](Self::publish): keys are per partition.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty key; otherwise as [`publish`](Self::publish).
    ///
    /// # Cancel safety
    /// As [`publish`](Self::publish); retrying with the same key is what makes
    /// an interrupted call safe.
    pub async fn publish_idempotent(
        &self,
        channel: &str,
        key: impl AsRef<[u8]>,
        body: impl AsRef<[u8]>,
    ) -> Result<MessageId> {
        let key = checked(key.as_ref())?;
        self.partition_of(channel.as_bytes()).await?.publish_here(channel, body.as_ref(), Some(key)).await
    }

    /// [`publish_batch`](Self::publish_batch) once per idempotency `key`, as
    /// [`publish_idempotent`](Self::publish_idempotent) does for one message:
    /// a retry returns the first call's ids.
    ///
    /// # Errors
    /// As [`publish_idempotent`](Self::publish_idempotent) and
    /// [`publish_batch`](Self::publish_batch).
    pub async fn publish_batch_idempotent<I>(
        &self,
        channel: &str,
        key: impl AsRef<[u8]>,
        bodies: I,
    ) -> Result<RangeInclusive<MessageId>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let key = checked(key.as_ref())?;
        let bodies: Vec<I::Item> = bodies.into_iter().collect();
        let bodies: Vec<&[u8]> = bodies.iter().map(AsRef::as_ref).collect();
        self.partition_of(channel.as_bytes()).await?.publish_batch_here(channel, &bodies, Some(key)).await
    }

    /// Sets how long this namespace remembers idempotency keys (stored in
    /// `<base>:once-window`, so every producer of the namespace shares it; 2
    /// minutes when never set). Keys already stored keep the window they got.
    /// In a partitioned namespace, every partition's.
    ///
    /// # Errors
    /// [`Error::Config`] for a window under a millisecond; [`Error::Redis`]
    /// when a call fails.
    pub async fn set_idempotency_window(&self, window: Duration) -> Result<()> {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return Err(Error::Config {
                name: "idempotency window",
                value: format!("{window:?}"),
                reason: "it must be at least a millisecond".to_owned(),
            });
        }
        for view in self.every_partition().await? {
            let mut set = redis::cmd("SET");
            set.arg(view.namespace().once_window_key()).arg(millis);
            view.store().query::<()>("set the idempotency window", &set).await?;
        }
        Ok(())
    }
}

/// An idempotency key: any bytes but none.
fn checked(key: &[u8]) -> Result<&[u8]> {
    if key.is_empty() {
        return Err(Error::Config {
            name: "idempotency key",
            value: String::new(),
            reason: "it must not be empty: use something unique to the message, such as its business id"
                .to_owned(),
        });
    }
    Ok(key)
}
