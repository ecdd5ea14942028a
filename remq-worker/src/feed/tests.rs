//! The feed's hard cases, against a fake log whose pages, head and pushes the
//! tests control: replay → live with duplicates in the buffer, overflow, a
//! disconnect during replay, a counter reset seen live and seen in a page, a
//! retention gap, and pushes the log never held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{FeedStop, MessageFeed, Source};
use crate::connection::Pushes;
use crate::protocol::{LogState, PackedPage};
use crate::{Message, MessageId, Result};

/// A log in memory: what is stored, the counter, what retention removed, and
/// the live subscribers.
#[derive(Default)]
struct Log {
    /// Stored messages, in id order.
    stored: Vec<Message>,
    /// The last id issued.
    head: u64,
    /// The highest id retention removed.
    removed: u64,
    /// Senders of the open subscriptions.
    subscribers: Vec<mpsc::UnboundedSender<Bytes>>,
    /// Subscriptions opened so far.
    subscriptions: usize,
    /// Bursts of pushes checked against the log so far.
    checks: usize,
    /// Pages read so far.
    pages: usize,
}

#[derive(Clone, Default)]
struct FakeLog(Arc<Mutex<Log>>);

impl FakeLog {
    /// Stores a message with the next id and pushes it to every subscriber.
    fn publish(&self) -> MessageId {
        let mut log = self.0.lock().unwrap();
        log.head += 1;
        let message = Message::new(MessageId::new(log.head), "c", Bytes::from_static(b"x"));
        for subscriber in &log.subscribers {
            let _ = subscriber.send(message.to_frame());
        }
        log.stored.push(message);
        MessageId::new(log.head)
    }

    /// Pushes a frame the log does not hold, as someone allowed to PUBLISH on
    /// the channel can.
    fn forge(&self, id: u64) {
        let forged = Message::new(MessageId::new(id), "c", Bytes::from_static(b"forged"));
        for subscriber in &self.0.lock().unwrap().subscribers {
            let _ = subscriber.send(forged.to_frame());
        }
    }

    /// Ends every open subscription, as a dropped connection does.
    fn disconnect(&self) {
        self.0.lock().unwrap().subscribers.clear();
    }

    /// Loses every write (a restore from an empty snapshot): the counter starts over.
    fn lose_everything(&self) {
        let mut log = self.0.lock().unwrap();
        log.stored.clear();
        log.head = 0;
    }

    /// Retention removes the messages up to `id`.
    fn remove_through(&self, id: u64) {
        let mut log = self.0.lock().unwrap();
        log.stored.retain(|m| m.id.get() > id);
        log.removed = id;
    }

    fn subscriptions(&self) -> usize {
        self.0.lock().unwrap().subscriptions
    }

    /// Reads of the log so far: pages, and checks of pushed messages.
    fn reads(&self) -> usize {
        let log = self.0.lock().unwrap();
        log.pages + log.checks
    }
}

impl Source for FakeLog {
    async fn page(&self, _pattern: &str, after: MessageId, limit: usize) -> Result<PackedPage> {
        let mut log = self.0.lock().unwrap();
        log.pages += 1;
        let entries: Vec<_> = log.stored.iter().filter(|m| m.id > after).take(limit).cloned().collect();
        let last_entry = entries.last().map(|m| m.id);
        let state = LogState {
            head: MessageId::new(log.head),
            removed: MessageId::new(log.removed),
            stopped_at: None,
        };
        Ok(PackedPage {
            state,
            entries: entries.into_iter().map(Ok).collect(),
            last_entry,
            follow_index: false,
        })
    }

    async fn stored(&self, pushes: Vec<Message>) -> Result<Vec<Message>> {
        let mut log = self.0.lock().unwrap();
        log.checks += 1;
        Ok(pushes
            .iter()
            .filter_map(|push| {
                log.stored.iter().find(|m| m.id == push.id && m.channel == push.channel).cloned()
            })
            .collect())
    }

    async fn head(&self) -> Result<MessageId> {
        Ok(MessageId::new(self.0.lock().unwrap().head))
    }

    async fn id_at(&self, _time: std::time::SystemTime) -> Result<MessageId> {
        unimplemented!("the fake log has no time index; tests/start_time.rs covers StartFrom::Time")
    }

    async fn subscribe(&self, _pattern: &str) -> Result<Pushes> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut log = self.0.lock().unwrap();
        log.subscribers.push(tx);
        log.subscriptions += 1;
        Ok(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|push| (push, rx)) })
            .boxed())
    }
}

/// A feed of the fake log after `after`, with a live buffer of `buffer` and
/// pages of `batch`.
fn feed(log: &FakeLog, after: u64, buffer: usize, batch: usize) -> MessageFeed<FakeLog> {
    MessageFeed::new(log.clone(), "test".into(), "*", MessageId::new(after), buffer, batch)
}

/// The ids of the next messages up to and including `last`; fails the test if
/// they do not come within a few seconds.
async fn ids_through(feed: &mut MessageFeed<FakeLog>, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let next = tokio::time::timeout(Duration::from_secs(5), feed.next()).await;
        let message = next.expect("the feed stalled").expect("the feed stopped");
        ids.push(message.id.get());
    }
    ids
}

#[tokio::test]
async fn replay_then_live_skips_the_duplicates_buffered_during_replay() {
    let log = FakeLog::default();
    for _ in 0..5 {
        log.publish();
    }
    let mut feed = feed(&log, 0, 100, 2);
    assert_eq!(ids_through(&mut feed, 1).await, [1]);
    // Subscribed and replaying: these are stored (so replay reads them) and
    // pushed (so the live buffer holds them too).
    for _ in 0..3 {
        log.publish();
    }
    assert_eq!(ids_through(&mut feed, 8).await, [2, 3, 4, 5, 6, 7, 8]);
    let reads = log.reads();
    assert!(feed.caught_up() || feed.try_next().is_none(), "nothing is handed out twice");
    log.publish();
    assert_eq!(ids_through(&mut feed, 9).await, [9], "and live pushes follow");
    assert!(tokio::time::timeout(Duration::from_millis(50), feed.next()).await.is_err());
    assert_eq!(log.subscriptions(), 1);
    // The buffered pushes of 6, 7 and 8: the first of the subscription is at
    // or below the cursor, and one read checks the head (taking 9 too); the
    // others, and 9's push, call for nothing. (The replay's last page may be
    // read after `reads` was taken: at most two reads, where a read per push
    // would make five.)
    let after = log.reads() - reads;
    assert!(after <= 2, "{after} reads for the buffered pushes");
}

#[tokio::test]
async fn an_overflowing_live_buffer_falls_back_to_replay_without_a_gap() {
    let log = FakeLog::default();
    log.publish();
    let mut feed = feed(&log, 0, 2, 1000);
    assert_eq!(ids_through(&mut feed, 1).await, [1]);
    // Live now; ten pushes into a buffer of two overflow it.
    for _ in 0..10 {
        log.publish();
    }
    assert_eq!(ids_through(&mut feed, 11).await, (2..=11).collect::<Vec<_>>());
    // (The first push's read took all ten; the overflow shows once the buffer
    // is drained.)
    log.publish();
    assert_eq!(ids_through(&mut feed, 12).await, [12]);
    assert_eq!(log.subscriptions(), 2, "the overflow made the feed subscribe again and replay");
}

#[tokio::test]
async fn a_disconnect_during_replay_loses_nothing() {
    let log = FakeLog::default();
    for _ in 0..5 {
        log.publish();
    }
    let mut feed = feed(&log, 0, 100, 2);
    assert_eq!(ids_through(&mut feed, 1).await, [1]);
    log.disconnect();
    // Published while no subscription is open: only the log has them.
    log.publish();
    log.publish();
    assert_eq!(ids_through(&mut feed, 7).await, [2, 3, 4, 5, 6, 7]);
    log.publish();
    assert_eq!(ids_through(&mut feed, 8).await, [8]);
    assert_eq!(log.subscriptions(), 2, "the feed noticed the disconnect and subscribed again");
    log.publish();
    assert_eq!(ids_through(&mut feed, 9).await, [9], "and follows the new subscription");
}

#[tokio::test]
async fn a_counter_reset_seen_live_stops_the_feed_with_the_head_read_from_the_log() {
    let log = FakeLog::default();
    for _ in 0..3 {
        log.publish();
    }
    let mut feed = feed(&log, 0, 100, 1000);
    assert_eq!(ids_through(&mut feed, 3).await, [1, 2, 3]);
    log.publish();
    assert_eq!(ids_through(&mut feed, 4).await, [4], "a live push above the cursor");
    log.lose_everything();
    // Pushes come in id order: one that is not above the last calls for a read,
    // and the log's head shows the reset.
    log.publish();
    match feed.next().await {
        Err(FeedStop::CounterReset(reset)) => {
            assert_eq!((reset.cursor, reset.head), (MessageId::new(4), MessageId::new(1)));
        }
        other => panic!("expected a counter reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_counter_reset_seen_as_the_first_live_push_is_checked_against_the_log() {
    let log = FakeLog::default();
    for _ in 0..3 {
        log.publish();
    }
    let mut feed = feed(&log, 0, 100, 1000);
    assert_eq!(ids_through(&mut feed, 3).await, [1, 2, 3]);
    // The first push of the live phase is at or below the cursor: a replayed
    // message pushed again, or a reset; the log's head tells which.
    log.lose_everything();
    log.publish();
    log.publish();
    match feed.next().await {
        Err(FeedStop::CounterReset(reset)) => {
            assert_eq!((reset.cursor, reset.head), (MessageId::new(3), MessageId::new(2)));
        }
        other => panic!("expected a counter reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_counter_reset_seen_in_a_page_stops_the_feed() {
    let log = FakeLog::default();
    for _ in 0..3 {
        log.publish();
    }
    // The feed believes it processed up to 10, but the counter says 3.
    let mut feed = feed(&log, 10, 100, 1000);
    match feed.next().await {
        Err(FeedStop::CounterReset(reset)) => {
            assert_eq!((reset.cursor, reset.head), (MessageId::new(10), MessageId::new(3)));
        }
        other => panic!("expected a counter reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_retention_gap_is_reported_once_and_replay_goes_on_from_the_oldest_kept() {
    let log = FakeLog::default();
    for _ in 0..8 {
        log.publish();
    }
    log.remove_through(4);
    let mut feed = feed(&log, 2, 100, 2);
    assert_eq!(ids_through(&mut feed, 8).await, [5, 6, 7, 8]);
    assert_eq!(feed.losses.reported, MessageId::new(4), "ids 3 and 4 were reported lost");
}

#[tokio::test]
async fn a_push_the_log_never_held_is_not_handed_out() {
    let log = FakeLog::default();
    log.publish();
    let mut feed = feed(&log, 0, 100, 1000);
    assert_eq!(ids_through(&mut feed, 1).await, [1]);
    // Above the cursor, at the next id and far past the head, and below it.
    for id in [2, 1_000_000, 1] {
        log.forge(id);
    }
    log.publish();
    log.publish();
    assert_eq!(ids_through(&mut feed, 3).await, [2, 3], "only what the log holds, with the log's bodies");
    log.publish();
    let fourth = tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap().unwrap();
    assert_eq!((fourth.id.get(), &fourth.body[..]), (4, &b"x"[..]));
}

#[tokio::test]
async fn pushes_a_read_already_took_cost_no_read_even_after_a_forged_one() {
    let log = FakeLog::default();
    let mut feed = feed(&log, 0, 1000, 1000);
    // Caught up on the empty log, following pushes.
    assert!(tokio::time::timeout(Duration::from_millis(50), feed.next()).await.is_err());
    log.forge(1_000_000);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), feed.next()).await.is_err(),
        "nothing handed out"
    );
    // A hundred messages pushed before the feed looks: one check of the burst
    // takes them all, though the forged push was higher than all of them.
    for _ in 0..100 {
        log.publish();
    }
    let reads = log.reads();
    assert_eq!(ids_through(&mut feed, 100).await, (1..=100).collect::<Vec<_>>());
    assert!(tokio::time::timeout(Duration::from_millis(50), feed.next()).await.is_err());
    assert_eq!(log.reads() - reads, 1, "one read for the burst");
}
