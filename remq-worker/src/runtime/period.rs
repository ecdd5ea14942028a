//! One period of ownership of a consumer, from taking its lease to a stop
//! (shutdown, a lost lease, a counter that went backwards) or a failure: load
//! the cursor, feed the handler in id order (one at a time, or in lanes),
//! checkpoint what is done, and write the final checkpoint.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::Runtime;
use super::consumer::Consumer;
use super::lanes::Lanes;
use crate::connection::Store;
use crate::feed::{FeedStop, MessageFeed};
use crate::middleware::{Stack, StackService, Undone};
use crate::observe::health::{ConsumerHealth, ConsumerState};
use crate::observe::lag::{self, Progress};
use crate::observe::metrics;
use crate::outcome::{CounterReset, Interrupt, Stop};
use crate::ownership::checkpoint::Checkpointer;
use crate::ownership::lease::LeaseGuard;
use crate::ownership::registry;
use crate::{Delivery, Error, Message, MessageId, Result};

/// How long the final checkpoint and the lease release may take at shutdown, so
/// a slow Redis cannot push the exit past the orchestrator's grace period.
pub(super) const SHUTDOWN_IO: Duration = Duration::from_secs(3);

/// How one delivery through the stack ended, for the consuming loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivered {
    /// Handled or dead-lettered (or, with dead letters off, given up on):
    /// checkpoint it.
    Done,
    /// Shutdown or the loss of the lease stopped it first: it is not
    /// checkpointed, and the next owner sees it again.
    Interrupted,
}

/// The state of one period of ownership that both consuming loops share.
pub(super) struct Period<'a> {
    /// The consumer owned.
    consumer: &'a Consumer,
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

impl<'a> Period<'a> {
    /// Consumes as the owner of `lease` until a stop or a failure.
    ///
    /// # Errors
    /// Failures: Redis unreachable at the start (retryable), a dead letter that
    /// could not be stored, a missing permission.
    pub(super) async fn run(
        consumer: &'a Consumer,
        rt: &'a Runtime,
        lease: &'a LeaseGuard,
        health: &'a ConsumerHealth,
    ) -> Result<Stop> {
        let store = rt.client.store();
        let s = &rt.settings;
        let stored = Checkpointer::load(store, &consumer.name).await?;
        let cursor = match stored {
            Some(cursor) => cursor,
            None => s.start_from.resolve(store, &consumer.pattern).await?,
        };
        let mut checkpointer = Checkpointer::new(
            store.clone(),
            (consumer.name.clone(), rt.partition),
            lease.token(),
            stored,
            cursor,
            s.checkpoint_every,
        );
        // A new consumer stores where it starts at once (even 0), so a crash
        // before its first checkpoint cannot move its start to a later `latest`.
        match checkpointer.flush().await {
            Ok(()) => {}
            Err(Interrupt::Stop(stop)) => return Ok(stop),
            Err(Interrupt::Failed(error)) => return Err(error),
        }
        let feed = MessageFeed::new(
            store.clone(),
            consumer.name.clone(),
            &consumer.pattern,
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
        let service = consumer.service(rt, &halt);
        let _registration = AbortOnDropHandle::new(tokio::spawn(registry::keep_registered(
            store.clone(),
            consumer.name.clone(),
            consumer.pattern.clone(),
            (s.lease_ttl / 3).max(Duration::from_millis(100)),
        )));
        let concurrency = consumer.options.concurrency.unwrap_or(s.concurrency).max(1);
        tracing::info!(consumer = &*consumer.name, pattern = %consumer.pattern, after = %cursor, concurrency, "consuming");
        let progress = Progress::new(cursor);
        let _lag = AbortOnDropHandle::new(tokio::spawn(lag::watch(
            store.clone(),
            consumer.name.clone(),
            rt.partition,
            progress.clone(),
            s.checkpoint_interval.max(Duration::from_millis(100)),
        )));
        let next_flush = Instant::now() + s.checkpoint_interval;
        let mut period = Period { consumer, rt, lease, checkpointer, next_flush, halt, health, progress };
        let stop = if concurrency == 1 {
            period.in_order(feed, service).await?
        } else {
            let lanes = Lanes::new(StackService::new(service), concurrency, s.buffer_size, cursor);
            period.in_lanes(feed, lanes).await?
        };
        match stop {
            Stop::CounterReset(reset) => Ok(period.rewind(reset).await),
            Stop::LeaseLost => Ok(Stop::LeaseLost),
            Stop::Shutdown => period.finish().await,
        }
    }

    /// One message at a time, in id order: the default, and the fastest path.
    async fn in_order(&mut self, mut feed: MessageFeed<Store>, mut service: Stack) -> Result<Stop> {
        let rt = self.rt;
        loop {
            // Flags and the clock are checked directly, and a buffered message is
            // taken without a `select!`: the fast path of a busy consumer.
            if let Some(stop) = self.between_messages(feed.caught_up()).await {
                return Ok(stop);
            }
            let message = match feed.try_next() {
                Some(message) => message,
                None => tokio::select! {
                    biased;
                    _ = rt.shutdown.cancelled() => return Ok(Stop::Shutdown),
                    _ = self.lease.lost().cancelled() => return Ok(Stop::LeaseLost),
                    _ = tokio::time::sleep_until(self.next_flush) => continue,
                    next = feed.next() => match next {
                        Ok(message) => message,
                        Err(stop) => return feed_stopped(stop),
                    },
                },
            };
            let id = message.id;
            // A slow handler must not hold back the checkpoint of what is done
            // before it: the interval keeps running while it does. A stop that
            // the checkpoint reports waits for the handler to finish.
            let mut interrupted = None;
            let handling = handle(self.consumer, rt, &mut service, message);
            tokio::pin!(handling);
            let handled = loop {
                tokio::select! {
                    biased;
                    handled = &mut handling => break handled,
                    _ = tokio::time::sleep_until(self.next_flush), if interrupted.is_none() => {
                        interrupted = self.flush_if_due().await;
                    }
                }
            };
            let handled = match handled {
                Ok(handled) => handled,
                Err(error) => return Err(self.keep_done(error).await),
            };
            if handled == Delivered::Interrupted {
                return Ok(self.stopped());
            }
            if let Some(stop) = self.processed(id).await.or(interrupted) {
                return Ok(stop);
            }
        }
    }

    /// Up to N messages at once, one at a time per channel; the checkpoint is
    /// the watermark below the oldest unfinished message.
    async fn in_lanes(&mut self, mut feed: MessageFeed<Store>, mut lanes: Lanes) -> Result<Stop> {
        let rt = self.rt;
        let stop = loop {
            if let Some(stop) = self.between_messages(feed.caught_up() && !lanes.is_running()).await {
                break stop;
            }
            let (has_room, is_running) = (lanes.has_room(), lanes.is_running());
            tokio::select! {
                biased;
                _ = rt.shutdown.cancelled() => break Stop::Shutdown,
                _ = self.lease.lost().cancelled() => break Stop::LeaseLost,
                finished = lanes.next_finished(), if is_running => {
                    let Some((id, result)) = finished else { continue };
                    match outcome(self.consumer, rt, id, result) {
                        Ok(Delivered::Done) => lanes.done(id),
                        Ok(Delivered::Interrupted) => break self.stopped(),
                        Err(error) => return Err(self.keep_done(error).await),
                    }
                    if let Some(stop) = self.processed(lanes.watermark()).await {
                        break stop;
                    }
                }
                _ = tokio::time::sleep_until(self.next_flush) => {}
                next = feed.next(), if has_room => match next {
                    Ok(message) => lanes.submit(delivery(self.consumer, rt, message)),
                    Err(stop) => return feed_stopped(stop),
                },
            }
        };
        if matches!(stop, Stop::LeaseLost) {
            // Another owner has the messages now: stop retries and dead letters
            // at once; nothing more can be checkpointed anyway.
            self.halt.cancel();
            return Ok(stop);
        }
        // Let what is in flight finish within the deadline; nothing new starts.
        lanes.stop_starting();
        let deadline = Instant::now() + rt.settings.shutdown_deadline;
        while lanes.is_running() {
            match tokio::time::timeout_at(deadline, lanes.next_finished()).await {
                Ok(Some((id, result))) => match outcome(self.consumer, rt, id, result) {
                    Ok(Delivered::Done) => lanes.done(id),
                    Ok(Delivered::Interrupted) => {}
                    // Not checkpointed: the next owner sees the message again.
                    Err(error) => {
                        tracing::error!(consumer = &*self.consumer.name, %id, %error, "could not store a dead letter while stopping")
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        consumer = &*self.consumer.name,
                        "handlers still running at the shutdown deadline; abandoned, they will be delivered again"
                    );
                    break;
                }
            }
        }
        if let Some(lost) = self.processed(lanes.watermark()).await {
            return Ok(lost);
        }
        Ok(stop)
    }

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
        if Instant::now() < self.next_flush {
            return None;
        }
        self.next_flush = Instant::now() + self.rt.settings.checkpoint_interval;
        let stored = self.checkpointer.flush().await;
        self.stored(stored)
    }

    /// Records that everything up to `id` is processed.
    async fn processed(&mut self, id: MessageId) -> Option<Stop> {
        self.progress.processed(id);
        let stored = self.checkpointer.processed(id).await;
        self.stored(stored)
    }

    /// What a checkpoint write means for the period: the stop it reports, or
    /// nothing (a failure is logged once per outage; a later write retries).
    fn stored(&mut self, stored: Result<(), Interrupt>) -> Option<Stop> {
        match stored {
            Ok(()) => self.checkpointer.report(Ok(())),
            Err(Interrupt::Stop(stop)) => return Some(stop),
            Err(Interrupt::Failed(error)) => self.checkpointer.report(Err(error)),
        }
        None
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

    /// At shutdown: writes the final checkpoint.
    async fn finish(mut self) -> Result<Stop> {
        let name = &*self.consumer.name;
        let stored = tokio::time::timeout(SHUTDOWN_IO, self.checkpointer.flush())
            .await
            .unwrap_or_else(|_| Err(Error::Timeout { op: "final checkpoint", after: SHUTDOWN_IO }.into()));
        match self.stored(stored) {
            Some(Stop::LeaseLost) => return Ok(Stop::LeaseLost),
            // The next owner notices the reset again, and rewinds.
            Some(stop) => tracing::warn!(consumer = name, ?stop, "the final checkpoint was refused"),
            None => {}
        }
        tracing::info!(consumer = name, cursor = %self.checkpointer.done(), "stopped; final checkpoint written");
        Ok(Stop::Shutdown)
    }

    /// After the id counter went backwards: logs it, counts it, and moves the
    /// stored cursor back ([`CounterReset::rewind_to`]) so the next ownership
    /// replays instead of skipping new messages whose ids it believes it has
    /// seen. Returns the stop, which restarts the consumer (with back-off).
    async fn rewind(mut self, reset: CounterReset) -> Stop {
        let name = &*self.consumer.name;
        let stored = match Checkpointer::load(self.rt.client.store(), name).await {
            Ok(stored) => stored.unwrap_or(MessageId::ZERO),
            Err(error) => {
                // Decided by the next attempt, which notices the reset again.
                tracing::warn!(consumer = name, %error, "could not read the stored cursor to rewind; starting over");
                return Stop::CounterReset(reset);
            }
        };
        let to = reset.rewind_to(stored);
        tracing::error!(consumer = name, cursor = %reset.cursor, head = %reset.head, %stored, rewind_to = %to, error = %reset, "the id counter went backwards; rewinding");
        metrics::handler_counter(metrics::COUNTER_RESETS, name).increment(1);
        if let Err(error) = self.checkpointer.rewind(to).await {
            tracing::error!(
                consumer = name,
                ?error,
                "could not store the rewound cursor; the next owner starts from the stored one"
            );
        }
        Stop::CounterReset(reset)
    }
}

/// What a feed that stopped means for the period.
///
/// # Errors
/// The feed's failure.
fn feed_stopped(stop: FeedStop) -> Result<Stop> {
    match stop {
        FeedStop::CounterReset(reset) => Ok(Stop::CounterReset(reset)),
        FeedStop::Failed(error) => Err(error),
    }
}

/// Sends one message through the handler's stack (retries, timeout,
/// dead-lettering: see [`middleware`](crate::middleware)).
///
/// # Errors
/// Its dead letter could not be stored, so the consumer must stop without
/// moving past it.
async fn handle(
    consumer: &Consumer,
    rt: &Runtime,
    service: &mut Stack,
    message: Message,
) -> Result<Delivered> {
    let id = message.id;
    let call = service.deliver(delivery(consumer, rt, message));
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
                        tracing::warn!(consumer = &*consumer.name, %id, "handler still running at the shutdown deadline; abandoned, it will be delivered again");
                        return Ok(Delivered::Interrupted);
                    }
                }
            }
        },
    };
    outcome(consumer, rt, id, result)
}

/// `message` on its way to `consumer`'s handler, marked with the partition it
/// was read from.
fn delivery(consumer: &Consumer, rt: &Runtime, mut message: Message) -> Delivery {
    message.partition = rt.partition.unwrap_or(0);
    Delivery::new(message, consumer.name.clone(), rt.states.clone())
}

/// What a finished delivery means for the consumer.
///
/// # Errors
/// A dead letter that could not be stored; with dead letters on, a stack that
/// could not take the delivery at all (a layer's `poll_ready` failed): the
/// consumer stops without moving past the message.
fn outcome(
    consumer: &Consumer,
    rt: &Runtime,
    id: MessageId,
    result: Result<(), Undone>,
) -> Result<Delivered> {
    let dead_letters = rt.settings.dead_letter_prefix.is_some();
    match result {
        Ok(()) => Ok(Delivered::Done),
        Err(Undone::Interrupted) => Ok(Delivered::Interrupted),
        // Without dead letters, a message given up on reaches the runtime.
        Err(Undone::GaveUp { attempts, error, .. }) => Ok(dropped(consumer, id, attempts, &error)),
        Err(Undone::Failed(error)) if !dead_letters => Ok(dropped(consumer, id, 1, &error)),
        Err(Undone::Failed(error) | Undone::DeadLetterFailed(error)) => Err(error),
    }
}

/// Passes over a message that failed for good while dead letters are off.
fn dropped(consumer: &Consumer, id: MessageId, attempts: u32, error: &Error) -> Delivered {
    metrics::handled(&consumer.name, "dropped").increment(1);
    tracing::error!(consumer = &*consumer.name, %id, attempts, %error, "handler failed for good; dead letters are off, message skipped");
    Delivered::Done
}
