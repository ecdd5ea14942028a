//! The time index: the first id published in each second, kept by the publish
//! scripts in `<base>:time` (a sorted set: member = id, score = Unix seconds by
//! the Redis server's clock). Age-based retention reads it one way (the first id
//! since a time), lag in seconds the other (when an id was published).

use std::time::Duration;

use crate::flush::{WALK_PAGE, entry_id};
use crate::{Client, MessageId, Result};

impl Client {
    /// The Redis server's clock, since the Unix epoch.
    pub(crate) async fn server_time(&self) -> Result<Duration> {
        let (secs, micros): (u64, u64) = self.query("read the server time", &redis::cmd("TIME")).await?;
        Ok(Duration::from_secs(secs) + Duration::from_micros(micros))
    }

    /// The first id published at or after `age` ago (everything older is below
    /// it); the next id to be issued when nothing was published since.
    pub(crate) async fn first_id_since(&self, age: Duration) -> Result<MessageId> {
        let since = self.server_time().await?.saturating_sub(age).as_secs();
        let first: Vec<u64> = self
            .query(
                "read the time index",
                redis::cmd("ZRANGE")
                    .arg(self.namespace().time_key())
                    .arg(since)
                    .arg("+inf")
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1),
            )
            .await?;
        match first.first() {
            Some(&id) => Ok(MessageId::new(id)),
            None => Ok(MessageId::new(self.head().await?.get() + 1)),
        }
    }

    /// The second (Unix time) in which `id` was issued, to the index's
    /// precision: the score of the last entry whose id is at most `id`. `None`
    /// when the index has nothing that old. Ids and seconds grow together, so a
    /// binary search over ranks finds it in about log2(entries) reads.
    pub(crate) async fn published_second(&self, id: MessageId) -> Result<Option<u64>> {
        let key = self.namespace().time_key();
        let entries: u64 = self.query("read the time index", redis::cmd("ZCARD").arg(&key)).await?;
        let (mut low, mut high, mut found) = (0, entries, None);
        while low < high {
            let middle = low + (high - low) / 2;
            let entry: Vec<(u64, u64)> = self
                .query(
                    "read the time index",
                    redis::cmd("ZRANGE").arg(&key).arg(middle).arg(middle).arg("WITHSCORES"),
                )
                .await?;
            match entry.first() {
                Some(&(first, second)) if MessageId::new(first) <= id => {
                    found = Some(second);
                    low = middle + 1;
                }
                Some(_) => high = middle,
                None => break,
            }
        }
        Ok(found)
    }

    /// Drops time-index entries that no stored message needs any more: those
    /// before the entry covering the oldest message still kept in any channel.
    pub(crate) async fn prune_time_index(&self) -> Result<()> {
        let channels = self.matching_channels("*").await?;
        let mut pipe = redis::pipe();
        for channel in &channels {
            pipe.cmd("XRANGE")
                .arg(self.namespace().channel_key(channel))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let firsts: Vec<Vec<(String, redis::Value)>> =
            self.query_pipe("find the oldest message", &pipe).await?;
        let mut oldest = MessageId::new(self.head().await?.get() + 1);
        for first in firsts.iter().filter_map(|page| page.first()) {
            oldest = oldest.min(entry_id(&first.0)?);
        }
        let key = self.namespace().time_key();
        loop {
            let entries: Vec<u64> = self
                .query("read the time index", redis::cmd("ZRANGE").arg(&key).arg(0).arg(WALK_PAGE - 1))
                .await?;
            // Entry i may go when the next one also starts at or below `oldest`.
            let droppable = entries.windows(2).take_while(|pair| MessageId::new(pair[1]) <= oldest).count();
            if droppable == 0 {
                return Ok(());
            }
            let _: () = self
                .query(
                    "prune the time index",
                    redis::cmd("ZREMRANGEBYRANK").arg(&key).arg(0).arg(droppable - 1),
                )
                .await?;
            if droppable < WALK_PAGE - 1 {
                return Ok(());
            }
        }
    }
}
