//! The checkpointer: records how far a consumer got, after processing, in
//! batches, fenced by the lease token.

use std::sync::Arc;

use crate::connection::Store;
use crate::observe::metrics;
use crate::outcome::{CounterReset, Interrupt, Stop};
use crate::protocol::scripts;
use crate::{Error, MessageId, Result};

/// Writes a consumer's cursor to Redis: after every `every` processed messages,
/// when [`flush`](Self::flush) is called (on a timer and at shutdown), and never
/// backwards. A write refused because another owner holds the lease is
/// [`Stop::LeaseLost`]; one refused because the id counter went backwards is
/// [`Stop::CounterReset`].
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// Used to run `checkpoint.lua`.
    store: Store,
    /// The consumer whose cursor this is.
    consumer: Arc<str>,
    /// The lease's fencing token.
    token: u64,
    /// The highest id up to which everything is processed.
    done: MessageId,
    /// The cursor as last stored in Redis; `None` for a new consumer, whose
    /// starting position is stored by the first flush even when it is 0.
    saved: Option<MessageId>,
    /// Processed messages not yet covered by a stored checkpoint.
    pending: u64,
    /// Store after this many processed messages.
    every: u64,
    /// Whether the last store failed: failures are logged once per outage.
    failing: bool,
    /// `remq_checkpoint_id`.
    gauge: ::metrics::Gauge,
}

impl Checkpointer {
    /// A checkpointer whose stored cursor is `saved` (`None`: nothing stored yet),
    /// with everything up to `done` already processed; `partition` labels its
    /// gauge for one partition of a partitioned namespace.
    pub(crate) fn new(
        store: Store,
        (consumer, partition): (Arc<str>, Option<u32>),
        token: u64,
        saved: Option<MessageId>,
        done: MessageId,
        every: u64,
    ) -> Self {
        let gauge = metrics::handler_gauge(metrics::CHECKPOINT, &consumer, partition);
        Checkpointer { store, consumer, token, done, saved, pending: 0, every, failing: false, gauge }
    }

    /// Loads the stored cursor of `consumer`, or `None` for a new consumer.
    ///
    /// # Errors
    /// When Redis cannot be read.
    pub(crate) async fn load(store: &Store, consumer: &str) -> Result<Option<MessageId>> {
        let cursor: Option<u64> =
            store.get("load checkpoint", &store.namespace().cursor_key(consumer)).await?;
        Ok(cursor.map(MessageId::new))
    }

    /// The id up to which everything is processed.
    pub(crate) fn done(&self) -> MessageId {
        self.done
    }

    /// Logs the outcome of a store that is retried later anyway: the first
    /// failure of an outage as a warning, the rest at debug level, and the
    /// recovery.
    pub(crate) fn report(&mut self, result: Result<(), Error>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(consumer = &*self.consumer, cursor = %self.done, "checkpoint stored again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(consumer = &*self.consumer, %error, "could not store the checkpoint; will retry (logged once per outage)");
            }
            Err(error) => tracing::debug!(consumer = &*self.consumer, %error, "checkpoint still failing"),
        }
    }

    /// Records that every message up to `id` is processed, storing the cursor
    /// when `every` messages have accumulated.
    ///
    /// # Errors
    /// [`Stop::LeaseLost`] when fenced, [`Stop::CounterReset`]; Redis errors.
    pub(crate) async fn processed(&mut self, id: MessageId) -> Result<(), Interrupt> {
        self.done = self.done.max(id);
        self.pending += 1;
        if self.pending >= self.every { self.flush().await } else { Ok(()) }
    }

    /// Moves the cursor back to `id` and stores it (fenced), for a consumer that
    /// found the id counter went backwards; it replays from there.
    ///
    /// # Errors
    /// [`Stop::LeaseLost`] when fenced; Redis errors.
    pub(crate) async fn rewind(&mut self, id: MessageId) -> Result<(), Interrupt> {
        self.done = id;
        self.store(Some("rewind")).await
    }

    /// Stores the cursor now if it moved since the last store.
    ///
    /// # Errors
    /// [`Stop::LeaseLost`] when fenced, [`Stop::CounterReset`]; Redis errors
    /// (the cursor is kept and stored by a later call).
    pub(crate) async fn flush(&mut self) -> Result<(), Interrupt> {
        if self.saved.is_some_and(|saved| self.done <= saved) {
            return Ok(());
        }
        self.store(None).await
    }

    /// Runs `checkpoint.lua` for `done`, with its optional mode.
    async fn store(&mut self, mode: Option<&str>) -> Result<(), Interrupt> {
        let args = (&*self.consumer, self.token, self.done.get(), mode);
        let stored: u64 = match self.store.eval("checkpoint", &scripts::CHECKPOINT, args).await {
            Ok(stored) => stored,
            Err(Error::Redis { ref source, .. }) if source.code() == Some("FENCED") => {
                return Err(Stop::LeaseLost.into());
            }
            Err(Error::Redis { ref source, .. }) if source.code() == Some("BEHIND") => {
                // The reply ends with the head: "... went backwards to <head>".
                let head = source.detail().and_then(|d| d.rsplit(' ').next()?.parse().ok()).unwrap_or(0);
                let reset = CounterReset { cursor: self.done, head: MessageId::new(head) };
                return Err(reset.into());
            }
            Err(error) => return Err(error.into()),
        };
        self.saved = Some(MessageId::new(stored));
        self.gauge.set(stored as f64);
        self.pending = 0;
        tracing::debug!(consumer = &*self.consumer, cursor = stored, "checkpoint stored");
        Ok(())
    }
}
