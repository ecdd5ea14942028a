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
use crate::health::{ConsumerHealth, ConsumerState, Health};
use crate::lag::{self, Progress};
use crate::lanes::Lanes;
use crate::lease::LeaseGuard;
use crate::middleware::{self, BoxedLayer, DeadLetterLayer, HandlerService, StackConfig};
use crate::subscription::MessageFeed;
use crate::{BoxedHandler, Client, Error, HandlerOptions, Message, MessageId, Result};
use crate::{metrics, registry};

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
    /// The application's middleware for it, outermost first: the worker's
    /// layers, then its own.
    pub(crate) layers: Vec<BoxedLayer>,
}

/// Why an owner stopped.
enum Stop {
    /// Shutdown was requested; the final checkpoint is written.
    Shutdown,
    /// Another process took the lease; go back to standing by.
    LeaseLost,
    /// The id counter went backwards (a checkpoint was refused, or the feed saw
    /// it); until `own` has rewound the cursor, the reset, afterwards why to
    /// start over (the reset, or the error that kept the rewind from reading).
    CounterReset(Error),
}

/// The state of one period of ownership that both consuming loops share.
struct Run<'a> {
    /// The runtime.
    rt: &'a Runtime,
    /// The lease held.
    lease: &'a LeaseGuard,
    /// The cursor's writer.
    checkpointer: Checkpointer,
    /// When the checkpoint is stored next even if few messages were processed.
    next_flush: Instant,
    /// Stops retries and dead-letter attempts: cancelled at shutdown and when
    /// the lease is found lost.
    halt: CancellationToken,
    /// This consumer's entry for `/readyz`.
    health: &'a ConsumerHealth,
    /// What the lag task reads.
    progress: Arc<Progress>,
}

impl Run<'_> {
    /// Between messages: stop on shutdown or a lost lease, and store the
    /// checkpoint when its interval is up. `caught_up`: the feed follows live
    /// pushes with nothing buffered (the first time, the consumer becomes ready).
    async fn between_messages(&mut self, caught_up: bool) -> Option<Stop> {
        self.progress.set_caught_up(caught_up);
        if caught_up && self.health.get() != ConsumerState::Live {
            self.health.set(ConsumerState::Live);
        }
        if self.rt.shutdown.is_cancelled() {
            return Some(Stop::Shutdown);
        }
        if self.lease.lost().is_cancelled() {
            return Some(Stop::LeaseLost);
        }
        self.flush_if_due().await
    }

    /// Writes the checkpoint when the interval has passed since the last one.
    async fn flush_if_due(&mut self) -> Option<Stop> {
        if Instant::now() >= self.next_flush {
            self.next_flush = Instant::now() + self.rt.settings.checkpoint_interval;
            match self.checkpointer.flush().await {
                Err(Error::LeaseLost { .. }) => return Some(Stop::LeaseLost),
                Err(reset @ Error::CounterReset { .. }) => return Some(Stop::CounterReset(reset)),
                other => self.checkpointer.report(other),
            }
        }
        None
    }

    /// Records that everything up to `id` is processed.
    async fn processed(&mut self, id: MessageId) -> Option<Stop> {
        self.progress.processed(id);
        match self.checkpointer.processed(id).await {
            Err(Error::LeaseLost { .. }) => Some(Stop::LeaseLost),
            Err(reset @ Error::CounterReset { .. }) => Some(Stop::CounterReset(reset)),
            other => {
                self.checkpointer.report(other);
                None
            }
        }
    }

    /// Why a delivery was interrupted.
    fn stopped(&self) -> Stop {
        if self.lease.lost().is_cancelled() { Stop::LeaseLost } else { Stop::Shutdown }
    }

    /// Stores what is done before the consumer stops on `error`.
    async fn keep_done(&mut self, error: Error) -> Error {
        let _ = tokio::time::timeout(SHUTDOWN_IO, self.checkpointer.flush()).await;
        error
    }
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
    /// Every consumer's state, for `/readyz`.
    pub(crate) health: Health,
}

impl Consumer {
    /// Runs until shutdown: stand by for the lease, own it, and stand by again
    /// whenever it is lost.
    ///
    /// # Errors
    /// Permanent failures (missing permissions, invalid settings).
    pub(crate) async fn run(self, rt: Runtime) -> Result<()> {
        let mut backoff = Backoff::default();
        let health = rt.health.consumer(&self.name);
        loop {
            let lease = tokio::select! {
                _ = rt.shutdown.cancelled() => return Ok(()),
                lease = LeaseGuard::acquire(&rt.client, &self.name, rt.settings.lease_ttl, &health) => lease,
            };
            let outcome = match lease {
                Ok(lease) => {
                    backoff.succeeded(&self.name);
                    health.set(ConsumerState::CatchingUp);
                    let outcome = self.own(&rt, &lease, &health).await;
                    health.set(ConsumerState::Starting);
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
                // The rewind is stored; start over from it like after an error.
                Ok(Stop::CounterReset(reset)) => tokio::select! {
                    _ = rt.shutdown.cancelled() => return Ok(()),
                    _ = backoff.failed(&self.name, "consumer restart", &reset) => {}
                },
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
    async fn own(&self, rt: &Runtime, lease: &LeaseGuard, health: &ConsumerHealth) -> Result<Stop> {
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
        let feed = MessageFeed::new(
            rt.client.clone(),
            self.name.clone(),
            &self.pattern,
            cursor,
            s.buffer_size,
            s.replay_batch,
        );
        // Retries and dead-letter attempts stop at shutdown or when the lease is lost.
        let halt = rt.shutdown.child_token();
        let _halt_on_loss = {
            let (lost, halt) = (lease.lost().clone(), halt.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                halt.run_until_cancelled(lost.cancelled()).await.map(|()| halt.cancel())
            }))
        };
        let service = self.service(rt, &halt);
        let _registration = AbortOnDropHandle::new(tokio::spawn(registry::keep_registered(
            rt.client.clone(),
            self.name.clone(),
            self.pattern.clone(),
            (s.lease_ttl / 3).max(Duration::from_millis(100)),
        )));
        let concurrency = self.options.concurrency.unwrap_or(s.concurrency).max(1);
        tracing::info!(consumer = &*self.name, pattern = %self.pattern, after = %cursor, concurrency, "consuming");
        let next_flush = Instant::now() + s.checkpoint_interval;
        let progress = Progress::new(cursor);
        let _lag = AbortOnDropHandle::new(tokio::spawn(lag::watch(
            rt.client.clone(),
            self.name.clone(),
            progress.clone(),
            s.checkpoint_interval.max(Duration::from_millis(100)),
        )));
        let mut run = Run { rt, lease, checkpointer, next_flush, halt, health, progress };
        let stop = if concurrency == 1 {
            self.in_order(&mut run, feed, service).await
        } else {
            let lanes = Lanes::new(service, concurrency, s.buffer_size, cursor);
            self.in_lanes(&mut run, feed, lanes).await
        };
        let stop = match stop {
            Err(reset @ Error::CounterReset { .. }) | Ok(Stop::CounterReset(reset)) => {
                return Ok(Stop::CounterReset(self.rewind(rt, &mut run.checkpointer, reset).await));
            }
            other => other?,
        };
        if matches!(stop, Stop::LeaseLost) {
            return Ok(stop);
        }
        let mut checkpointer = run.checkpointer;
        let final_flush = tokio::time::timeout(SHUTDOWN_IO, checkpointer.flush()).await;
        match final_flush.unwrap_or(Err(Error::Timeout { op: "final checkpoint", after: SHUTDOWN_IO })) {
            Err(Error::LeaseLost { .. }) => return Ok(Stop::LeaseLost),
            other => checkpointer.report(other),
        }
        tracing::info!(consumer = &*self.name, cursor = %checkpointer.done(), "stopped; final checkpoint written");
        Ok(stop)
    }

    /// One message at a time, in id order: the default, and the fastest path.
    async fn in_order(
        &self,
        run: &mut Run<'_>,
        mut feed: MessageFeed,
        mut service: HandlerService,
    ) -> Result<Stop> {
        let rt = run.rt;
        loop {
            // Flags and the clock are checked directly, and a buffered message is
            // taken without a `select!`: the fast path of a busy consumer.
            if let Some(stop) = run.between_messages(feed.caught_up()).await {
                return Ok(stop);
            }
            let message = match feed.try_next() {
                Some(message) => message,
                None => tokio::select! {
                    biased;
                    _ = rt.shutdown.cancelled() => return Ok(Stop::Shutdown),
                    _ = run.lease.lost().cancelled() => return Ok(Stop::LeaseLost),
                    _ = tokio::time::sleep_until(run.next_flush) => continue,
                    message = feed.next() => message?,
                },
            };
            let id = message.id;
            // A slow handler must not hold back the checkpoint of what is done
            // before it: the interval keeps running while it does. A stop that
            // the checkpoint reports waits for the handler to finish.
            let mut interrupted = None;
            let handling = self.handle(rt, &mut service, message);
            tokio::pin!(handling);
            let handled = loop {
                tokio::select! {
                    biased;
                    handled = &mut handling => break handled,
                    _ = tokio::time::sleep_until(run.next_flush), if interrupted.is_none() => {
                        interrupted = run.flush_if_due().await;
                    }
                }
            };
            let handled = match handled {
                Ok(handled) => handled,
                Err(error) => return Err(run.keep_done(error).await),
            };
            if !handled {
                return Ok(run.stopped());
            }
            if let Some(stop) = run.processed(id).await.or(interrupted) {
                return Ok(stop);
            }
        }
    }

    /// Up to N messages at once, one at a time per channel; the checkpoint is
    /// the watermark below the oldest unfinished message.
    async fn in_lanes(&self, run: &mut Run<'_>, mut feed: MessageFeed, mut lanes: Lanes) -> Result<Stop> {
        let rt = run.rt;
        let stop = loop {
            if let Some(stop) = run.between_messages(feed.caught_up() && !lanes.is_running()).await {
                break stop;
            }
            let (has_room, is_running) = (lanes.has_room(), lanes.is_running());
            tokio::select! {
                biased;
                _ = rt.shutdown.cancelled() => break Stop::Shutdown,
                _ = run.lease.lost().cancelled() => break Stop::LeaseLost,
                finished = lanes.next_finished(), if is_running => {
                    let Some((id, result)) = finished else { continue };
                    match self.outcome(rt, id, result) {
                        Ok(true) => lanes.done(id),
                        Ok(false) => break run.stopped(),
                        Err(error) => return Err(run.keep_done(error).await),
                    }
                    if let Some(stop) = run.processed(lanes.watermark()).await {
                        break stop;
                    }
                }
                _ = tokio::time::sleep_until(run.next_flush) => {}
                message = feed.next(), if has_room => {
                    lanes.submit(Delivery::new(message?, self.name.clone(), rt.states.clone()));
                }
            }
        };
        if matches!(stop, Stop::LeaseLost) {
            // Another owner has the messages now: stop retries and dead letters
            // at once; nothing more can be checkpointed anyway.
            run.halt.cancel();
            return Ok(stop);
        }
        // Let what is in flight finish within the deadline; nothing new starts.
        lanes.stop_starting();
        let deadline = Instant::now() + rt.settings.shutdown_deadline;
        while lanes.is_running() {
            match tokio::time::timeout_at(deadline, lanes.next_finished()).await {
                Ok(Some((id, result))) => match self.outcome(rt, id, result) {
                    Ok(true) => lanes.done(id),
                    Ok(false) => {}
                    // Not checkpointed: the next owner sees the message again.
                    Err(error) => {
                        tracing::error!(consumer = &*self.name, %id, %error, "could not store a dead letter while stopping")
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        consumer = &*self.name,
                        "handlers still running at the shutdown deadline; abandoned, they will be delivered again"
                    );
                    break;
                }
            }
        }
        if let Some(lost) = run.processed(lanes.watermark()).await {
            return Ok(lost);
        }
        Ok(stop)
    }

    /// After the id counter went backwards (`reset`): logs it, counts it, and
    /// moves the stored cursor back so the next ownership replays instead of
    /// skipping new messages whose ids it believes it has seen. Returns `reset`,
    /// which restarts the consumer. Where to:
    /// - seen live, the first new message is known: just before it, or the
    ///   stored checkpoint if that is lower;
    /// - otherwise the stored checkpoint when it is at most the head (a restored
    ///   snapshot brings back a matching checkpoint);
    /// - otherwise nothing tells old ids from new: the start, so every message
    ///   still in the log is replayed (duplicates rather than a loss).
    async fn rewind(&self, rt: &Runtime, checkpointer: &mut Checkpointer, reset: Error) -> Error {
        let Error::CounterReset { head, cursor, first_new, .. } = &reset else { return reset };
        let stored = match Checkpointer::load(&rt.client, &self.name).await {
            Ok(stored) => stored.unwrap_or(MessageId::ZERO),
            // Decided by the next attempt, which notices the reset again.
            Err(error) => return error,
        };
        let to = match first_new {
            Some(_) => stored.min(*head),
            None if stored <= *head => stored,
            None => MessageId::ZERO,
        };
        tracing::error!(consumer = &*self.name, %cursor, %head, %stored, rewind_to = %to, error = %reset, "the id counter went backwards; rewinding");
        metrics::handler_counter(metrics::COUNTER_RESETS, &self.name).increment(1);
        if let Err(error) = checkpointer.rewind(to).await {
            tracing::error!(consumer = &*self.name, %error, "could not store the rewound cursor; the next owner starts from the stored one");
        }
        reset
    }

    /// Where a consumer without a stored cursor starts.
    async fn start_position(&self, rt: &Runtime) -> Result<MessageId> {
        Ok(match rt.settings.start_from {
            // After what retention removed: those were never this consumer's to lose.
            StartFrom::Earliest => {
                rt.client.consume_page(&self.pattern, MessageId::ZERO, 1).await?.state.removed
            }
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
        self.outcome(rt, id, result)
    }

    /// What a finished delivery means: `Ok(true)` done (checkpoint it),
    /// `Ok(false)` interrupted by shutdown or a lost lease, `Err` a dead letter
    /// that could not be stored.
    fn outcome(&self, rt: &Runtime, id: MessageId, result: Result<()>) -> Result<bool> {
        match result {
            Ok(()) => Ok(true),
            Err(Error::ShuttingDown) => Ok(false),
            Err(error) if rt.settings.dead_letter_prefix.is_none() => {
                metrics::handled(&self.name, "dropped").increment(1);
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
                timeout_permanent: self.options.timeout_permanent.unwrap_or(s.timeout_permanent),
                rate_limit: self.options.rate_limit.or(s.rate_limit),
                dead_letter,
                layers: &self.layers,
                shutdown: halt.clone(),
            },
        )
    }
}
