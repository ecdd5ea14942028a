//! One durable consumer: a handler bound to a pattern under a durable name.
//! It stands by until it owns the lease, then feeds the handler in id order and
//! checkpoints what is done, until shutdown or until the lease is lost.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpointer;
use crate::config::{Settings, StartFrom};
use crate::extract::{Delivery, States};
use crate::lease::LeaseGuard;
use crate::subscription::MessageFeed;
use crate::{BoxedHandler, Client, Error, Message, MessageId, Result};

/// The first delay before a failed message is tried again; it doubles per attempt.
const RETRY_INITIAL: Duration = Duration::from_millis(50);
/// The longest delay between two attempts at one message.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the final checkpoint and the lease release may take at shutdown, so
/// a slow Redis cannot push the exit past the orchestrator's grace period.
const SHUTDOWN_IO: Duration = Duration::from_secs(3);

/// A handler with its pattern and durable name, ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Consumer {
    /// The durable name: keys its cursor and lease.
    pub(crate) name: Arc<str>,
    /// The channel pattern.
    pub(crate) pattern: String,
    /// The handler.
    pub(crate) handler: BoxedHandler,
}

/// Why an owner stopped.
enum Stop {
    /// Shutdown was requested; the final checkpoint is written.
    Shutdown,
    /// Another process took the lease; go back to standing by.
    LeaseLost,
}

/// What the runtime shares with every consumer.
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    /// The connection.
    pub(crate) client: Client,
    /// Settings.
    pub(crate) settings: Arc<Settings>,
    /// Application state for extractors.
    pub(crate) states: Arc<States>,
    /// Cancelled on shutdown.
    pub(crate) shutdown: CancellationToken,
}

impl Consumer {
    /// Runs until shutdown: stand by for the lease, own it, and stand by again
    /// whenever it is lost.
    ///
    /// # Errors
    /// Permanent failures (missing permissions, invalid settings).
    pub(crate) async fn run(self, rt: Runtime) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            let lease = tokio::select! {
                _ = rt.shutdown.cancelled() => return Ok(()),
                lease = LeaseGuard::acquire(&rt.client, &self.name, rt.settings.lease_ttl) => lease,
            };
            let outcome = match lease {
                Ok(lease) => {
                    backoff.succeeded(&self.name);
                    let outcome = self.own(&rt, &lease).await;
                    if tokio::time::timeout(SHUTDOWN_IO, lease.release()).await.is_err() {
                        tracing::warn!(
                            consumer = &*self.name,
                            "releasing the lease timed out; it expires on its own"
                        );
                    }
                    outcome
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(Stop::Shutdown) => return Ok(()),
                Ok(Stop::LeaseLost) => {
                    tracing::warn!(consumer = &*self.name, "lost ownership; standing by again");
                }
                Err(error) if error.is_retryable() => tokio::select! {
                    _ = rt.shutdown.cancelled() => return Ok(()),
                    _ = backoff.failed(&self.name, "consumer start", &error) => {}
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// Consumes as the owner of the lease.
    async fn own(&self, rt: &Runtime, lease: &LeaseGuard) -> Result<Stop> {
        let stored = Checkpointer::load(&rt.client, &self.name).await?;
        let cursor = match stored {
            Some(cursor) => cursor,
            None => self.start_position(rt).await?,
        };
        let mut checkpointer = Checkpointer::new(
            rt.client.clone(),
            self.name.clone(),
            lease.token(),
            stored,
            cursor,
            rt.settings.checkpoint_every,
        );
        // A new consumer stores where it starts at once (even 0), so a crash
        // before its first checkpoint cannot move its start to a later `latest`.
        match checkpointer.flush().await {
            Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
            other => other?,
        }
        let s = &rt.settings;
        let mut feed = MessageFeed::new(
            rt.client.clone(),
            self.name.clone(),
            &self.pattern,
            cursor,
            s.buffer_size,
            s.replay_batch,
        );
        let mut next_flush = Instant::now() + s.checkpoint_interval;
        tracing::info!(consumer = &*self.name, pattern = %self.pattern, after = %cursor, "consuming");
        let stop = loop {
            // Flags and the clock are checked directly, and a buffered message is
            // taken without a `select!`: the fast path of a busy consumer.
            if rt.shutdown.is_cancelled() {
                break Stop::Shutdown;
            }
            if lease.lost().is_cancelled() {
                return Ok(Stop::LeaseLost);
            }
            if Instant::now() >= next_flush {
                next_flush = Instant::now() + s.checkpoint_interval;
                match checkpointer.flush().await {
                    Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
                    other => log_checkpoint_error(&self.name, other),
                }
            }
            let message = match feed.try_next() {
                Some(message) => message,
                None => tokio::select! {
                    biased;
                    _ = rt.shutdown.cancelled() => break Stop::Shutdown,
                    _ = lease.lost().cancelled() => return Ok(Stop::LeaseLost),
                    _ = tokio::time::sleep_until(next_flush) => continue,
                    message = feed.next() => message?,
                },
            };
            let id = message.id;
            if !self.handle(rt, lease.lost(), message).await {
                if lease.lost().is_cancelled() {
                    return Ok(Stop::LeaseLost);
                }
                break Stop::Shutdown;
            }
            match checkpointer.processed(id).await {
                Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
                other => log_checkpoint_error(&self.name, other),
            }
        };
        let final_flush = tokio::time::timeout(SHUTDOWN_IO, checkpointer.flush()).await;
        match final_flush.unwrap_or(Err(Error::Timeout { op: "final checkpoint", after: SHUTDOWN_IO })) {
            Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
            other => log_checkpoint_error(&self.name, other),
        }
        tracing::info!(consumer = &*self.name, cursor = %checkpointer.done(), "stopped; final checkpoint written");
        Ok(stop)
    }

    /// Where a consumer without a stored cursor starts.
    async fn start_position(&self, rt: &Runtime) -> Result<MessageId> {
        Ok(match rt.settings.start_from {
            StartFrom::Earliest => MessageId::ZERO,
            StartFrom::Latest => rt.client.head().await?,
            StartFrom::After(id) => id,
        })
    }

    /// Runs the handler on one message until it succeeds or fails for good.
    /// Retryable failures (errors not marked permanent, and panics) are retried
    /// in place with back-off, so later messages wait and order holds; a permanent
    /// failure is logged and the message passed over. Returns `false` when
    /// shutdown or the loss of the lease stopped it first: the message is then not
    /// checkpointed, and the next owner sees it again.
    async fn handle(&self, rt: &Runtime, lost: &CancellationToken, message: Message) -> bool {
        let (id, channel) = (message.id, message.channel.clone());
        let delivery = Delivery::new(message, self.name.clone(), rt.states.clone());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let Some(result) = self.attempt(rt, delivery.clone()).await else {
                return false;
            };
            let error = match result {
                Ok(()) => return true,
                Err(error) if error.is_permanent() => {
                    tracing::error!(consumer = &*self.name, %id, channel, %error, "handler failed permanently; message skipped");
                    return true;
                }
                Err(error) => error,
            };
            let delay = RETRY_INITIAL.saturating_mul(1 << (attempt - 1).min(16)).min(RETRY_MAX);
            tracing::warn!(consumer = &*self.name, %id, channel, attempt, %error, ?delay, "handler failed; retrying");
            tokio::select! {
                _ = rt.shutdown.cancelled() => return false,
                _ = lost.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            if lost.is_cancelled() {
                return false;
            }
        }
    }

    /// One run of the handler, panics caught. `None` when shutdown's deadline
    /// passed before it finished.
    async fn attempt(&self, rt: &Runtime, delivery: Delivery) -> Option<Result<()>> {
        let id = delivery.message.id;
        // The async block makes extraction part of the caught future, so a
        // panicking extractor is caught too.
        let handler = &self.handler;
        let run = AssertUnwindSafe(async move { handler.call(delivery).await }).catch_unwind();
        tokio::pin!(run);
        // Most handlers finish on their first poll; only wait on shutdown for the rest.
        let outcome = match (&mut run).now_or_never() {
            Some(outcome) => outcome,
            None => tokio::select! {
                outcome = &mut run => outcome,
                _ = rt.shutdown.cancelled() => {
                    let deadline = Instant::now() + rt.settings.shutdown_deadline;
                    match tokio::time::timeout_at(deadline, run).await {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            tracing::warn!(consumer = &*self.name, %id, "handler still running at the shutdown deadline; abandoned, it will be delivered again");
                            return None;
                        }
                    }
                }
            },
        };
        Some(outcome.unwrap_or_else(|panic| Err(Error::retryable(panic_message(panic)))))
    }
}

fn log_checkpoint_error(consumer: &str, result: Result<()>) {
    if let Err(error) = result {
        tracing::warn!(consumer, %error, "could not store the checkpoint; will retry");
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    format!("handler panicked: {text}")
}
