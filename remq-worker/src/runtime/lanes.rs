//! Ordered concurrency: up to N deliveries of one consumer in flight, one at a
//! time per channel (the ordering key, like a Kafka partition), in id order
//! within each channel, and the checkpoint watermark that makes this safe.

use std::collections::{BTreeSet, HashMap, VecDeque};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;

use crate::middleware::{self, StackService, Undone};
use crate::{Delivery, MessageId};

/// A finished delivery: its channel, its id, and what the stack returned.
type Finished = (String, MessageId, Result<(), Undone>);

/// The deliveries of one consumer that are running or waiting for their channel.
pub(crate) struct Lanes {
    /// The handler's stack, cloned for each delivery in flight.
    service: StackService,
    /// At most this many deliveries run at once.
    limit: usize,
    /// At most this many wait behind a busy channel; then intake pauses.
    queue_limit: usize,
    /// The deliveries in flight.
    running: FuturesUnordered<BoxFuture<'static, Finished>>,
    /// Busy channels, each with the deliveries waiting for it, in id order.
    waiting: HashMap<String, VecDeque<Delivery>>,
    /// How many deliveries wait in `waiting`.
    queued: usize,
    /// Ids taken in but not yet done (running, waiting, or failed).
    unfinished: BTreeSet<MessageId>,
    /// The highest id taken in (the starting cursor before any).
    last: MessageId,
    /// Cleared at shutdown: waiting deliveries are then not started.
    starting: bool,
}

impl Lanes {
    /// Lanes after `cursor`, running at most `limit` deliveries at once, with
    /// at most `queue_limit` more waiting behind busy channels. The queue is the
    /// look-ahead that keeps lanes busy when one channel has a run of messages.
    pub(crate) fn new(service: StackService, limit: usize, queue_limit: usize, cursor: MessageId) -> Self {
        Lanes {
            service,
            limit: limit.max(1),
            queue_limit: queue_limit.max(1),
            running: FuturesUnordered::new(),
            waiting: HashMap::new(),
            queued: 0,
            unfinished: BTreeSet::new(),
            last: cursor,
            starting: true,
        }
    }

    /// Whether another message may be taken in (backpressure: a slow handler
    /// slows intake instead of growing memory).
    pub(crate) fn has_room(&self) -> bool {
        self.starting && self.running.len() < self.limit && self.queued < self.queue_limit
    }

    /// Whether any delivery is in flight.
    pub(crate) fn is_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// Takes in the next message (ids must ascend): it runs at once unless its
    /// channel is busy, in which case it waits for the channel's earlier messages.
    pub(crate) fn submit(&mut self, delivery: Delivery) {
        let id = delivery.message.id;
        self.unfinished.insert(id);
        self.last = self.last.max(id);
        match self.waiting.get_mut(&delivery.message.channel) {
            Some(queue) => {
                queue.push_back(delivery);
                self.queued += 1;
            }
            None => {
                self.waiting.insert(delivery.message.channel.clone(), VecDeque::new());
                self.start(delivery);
            }
        }
    }

    /// Waits for a delivery in flight to finish and returns its id and result;
    /// the next message of its channel, if any, starts.
    ///
    /// # Cancel safety
    /// Cancel-safe: a finished delivery is returned only by a completed call.
    pub(crate) async fn next_finished(&mut self) -> Option<(MessageId, Result<(), Undone>)> {
        let (channel, id, result) = self.running.next().await?;
        if matches!(result, Err(Undone::Interrupted)) {
            // Stopping: the channel's next message must not start after this one
            // was interrupted.
            self.starting = false;
        }
        let next = self.waiting.get_mut(&channel).and_then(|queue| queue.pop_front());
        match next {
            Some(delivery) if self.starting => {
                self.queued -= 1;
                self.start(delivery);
            }
            Some(delivery) => {
                // Not started at shutdown: put it back so the lane stays busy.
                if let Some(queue) = self.waiting.get_mut(&channel) {
                    queue.push_front(delivery);
                }
            }
            None => {
                self.waiting.remove(&channel);
            }
        }
        Some((id, result))
    }

    /// Records that message `id` is done for good (handled or dead-lettered).
    pub(crate) fn done(&mut self, id: MessageId) {
        self.unfinished.remove(&id);
    }

    /// The checkpoint that is safe now: every message up to it is done, even
    /// when later ones of other channels finished first.
    pub(crate) fn watermark(&self) -> MessageId {
        match self.unfinished.first() {
            Some(first) => MessageId::new(first.get() - 1),
            None => self.last,
        }
    }

    /// Stops starting deliveries (at shutdown); those in flight go on.
    pub(crate) fn stop_starting(&mut self) {
        self.starting = false;
    }

    fn start(&mut self, delivery: Delivery) {
        let mut service = self.service.clone();
        let (channel, id) = (delivery.message.channel.clone(), delivery.message.id);
        self.running.push(Box::pin(async move {
            let result = middleware::dispatch(&mut service, delivery).await;
            (channel, id, result)
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tower::util::BoxCloneService;

    use super::*;
    use crate::Message;

    fn delivery(id: u64, channel: &str) -> Delivery {
        let message = Message::new(MessageId::new(id), channel, Bytes::new());
        Delivery::new(message, "c".into(), Arc::default())
    }

    /// A stack whose handler sleeps `id` milliseconds on channel `slow`.
    fn sleepy() -> StackService {
        BoxCloneService::new(tower::service_fn(|d: Delivery| async move {
            if d.message.channel == "slow" {
                tokio::time::sleep(Duration::from_millis(d.message.id.get() * 10)).await;
            }
            Ok::<(), Undone>(())
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn channels_run_in_parallel_in_order_and_the_watermark_waits_for_the_oldest() {
        let mut lanes = Lanes::new(sleepy(), 8, 100, MessageId::new(0));
        lanes.submit(delivery(1, "slow"));
        lanes.submit(delivery(2, "fast"));
        lanes.submit(delivery(3, "slow"));
        lanes.submit(delivery(4, "fast"));
        let mut order = Vec::new();
        while let Some((id, result)) = lanes.next_finished().await {
            result.unwrap();
            lanes.done(id);
            order.push((id.get(), lanes.watermark().get()));
        }
        // 2 and 4 finish first, but the watermark stays below 1 until 1 is done;
        // 3 waits for 1 on its channel.
        assert_eq!(order, [(2, 0), (4, 0), (1, 2), (3, 4)]);
    }

    #[tokio::test(start_paused = true)]
    async fn intake_pauses_at_the_limit_and_waiting_messages_do_not_start_after_shutdown() {
        let mut lanes = Lanes::new(sleepy(), 2, 100, MessageId::new(0));
        lanes.submit(delivery(1, "slow"));
        assert!(lanes.has_room());
        lanes.submit(delivery(2, "slow"));
        assert!(lanes.has_room(), "2 waits behind 1: one running");
        lanes.submit(delivery(3, "other"));
        assert!(!lanes.has_room(), "two running: the limit");
        lanes.stop_starting();
        let (id, _) = lanes.next_finished().await.unwrap();
        lanes.done(id);
        let (id, _) = lanes.next_finished().await.unwrap();
        lanes.done(id);
        assert!(lanes.next_finished().await.is_none(), "2 was not started after shutdown");
        assert_eq!(lanes.watermark(), MessageId::new(1), "and the checkpoint stays below it");
    }
}
