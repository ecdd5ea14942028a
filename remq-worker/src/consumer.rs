//! One durable consumer: a handler bound to a pattern under a durable name.
//! It stands by until it owns the lease, then feeds the handler in id order and
//! checkpoints what is done, until shutdown or until the lease is lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpointer;
use crate::config::{Settings, StartFrom};
use crate::extract::{Delivery, States};
use crate::lease::LeaseGuard;
use crate::middleware::{self, BoxedLayer, DeadLetterLayer, HandlerService, StackConfig};
use crate::subscription::MessageFeed;
use crate::{BoxedHandler, Client, Error, HandlerOptions, Message, MessageId, Result};

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
    /// Its overrides of the worker's retry, timeout and dead-letter settings.
    pub(crate) options: HandlerOptions,
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
    /// The application's middleware layers, outermost first.
    pub(crate) layers: Arc<[BoxedLayer]>,
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
        // Retries and dead-letter attempts stop at shutdown or when the lease is lost.
        let halt = rt.shutdown.child_token();
        let _halt_on_loss = {
            let (lost, halt) = (lease.lost().clone(), halt.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                halt.run_until_cancelled(lost.cancelled()).await.map(|()| halt.cancel())
            }))
        };
        let mut service = self.service(rt, &halt);
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
                    other => checkpointer.report(other),
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
            let handled = match self.handle(rt, &mut service, message).await {
                Ok(handled) => handled,
                Err(error) => {
                    // Keep what is done before stopping on this message.
                    let _ = tokio::time::timeout(SHUTDOWN_IO, checkpointer.flush()).await;
                    return Err(error);
                }
            };
            if !handled {
                if lease.lost().is_cancelled() {
                    return Ok(Stop::LeaseLost);
                }
                break Stop::Shutdown;
            }
            match checkpointer.processed(id).await {
                Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
                other => checkpointer.report(other),
            }
        };
        let final_flush = tokio::time::timeout(SHUTDOWN_IO, checkpointer.flush()).await;
        match final_flush.unwrap_or(Err(Error::Timeout { op: "final checkpoint", after: SHUTDOWN_IO })) {
            Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
            other => checkpointer.report(other),
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

    /// Sends one message through the handler's stack (retries, timeout,
    /// dead-lettering: see [`middleware`](crate::middleware)). `Ok(true)`: done,
    /// checkpoint it. `Ok(false)`: shutdown or the loss of the lease stopped it
    /// first; it is not checkpointed and the next owner sees it again. `Err`: its
    /// dead letter could not be stored, so the consumer must stop without moving
    /// past it.
    async fn handle(&self, rt: &Runtime, service: &mut HandlerService, message: Message) -> Result<bool> {
        let id = message.id;
        let delivery = Delivery::new(message, self.name.clone(), rt.states.clone());
        let call = middleware::dispatch(service, delivery);
        tokio::pin!(call);
        // Most handlers finish on their first poll; only wait on shutdown for the rest.
        let result = match (&mut call).now_or_never() {
            Some(result) => result,
            None => tokio::select! {
                result = &mut call => result,
                _ = rt.shutdown.cancelled() => {
                    let deadline = Instant::now() + rt.settings.shutdown_deadline;
                    match tokio::time::timeout_at(deadline, call).await {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::warn!(consumer = &*self.name, %id, "handler still running at the shutdown deadline; abandoned, it will be delivered again");
                            return Ok(false);
                        }
                    }
                }
            },
        };
        match result {
            Ok(()) => Ok(true),
            Err(Error::ShuttingDown) => Ok(false),
            Err(error) if rt.settings.dead_letter_prefix.is_none() => {
                tracing::error!(consumer = &*self.name, %id, %error, "handler failed for good; dead letters are off, message skipped");
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }

    /// The handler wrapped in its middleware, for one period of ownership:
    /// `halt` stops retries and dead-letter attempts.
    fn service(&self, rt: &Runtime, halt: &CancellationToken) -> HandlerService {
        let s = &rt.settings;
        let retry = match self.options.retries {
            Some(retries) => s.retry.clone().max_attempts(retries.saturating_add(1)),
            None => s.retry.clone(),
        };
        let dead_letter = s.dead_letter_prefix.as_deref().map(|prefix| {
            DeadLetterLayer::new(
                rt.client.clone(),
                self.name.clone(),
                prefix,
                self.options.dead_letter,
                halt.clone(),
            )
        });
        middleware::stack(
            self.handler.clone(),
            StackConfig {
                consumer: self.name.clone(),
                retry,
                timeout: self.options.timeout.or(s.handler_timeout),
                dead_letter,
                layers: &rt.layers,
                shutdown: halt.clone(),
            },
        )
    }
}
