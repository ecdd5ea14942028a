//! The time index, kept by the publish scripts in `<base>:time`: a sorted set of
//! samples, member = an id, score = the Unix second (Redis server clock) it was
//! published in; one sample per 64 ids and per batch call, at most one a second.
//! Age-based retention reads it one way (the newest sample before a time), lag
//! in seconds the other (when an id was published, to a sample's precision).

use std::time::{Duration, SystemTime};

use super::channels::{self, WALK_PAGE};
use crate::connection::Store;
use crate::{MessageId, Result};

/// Where age-based retention may cut for messages older than `age`: just
/// past the newest index entry from before then (every id up to it was
/// published earlier). Ids after that entry may be older too, but the index
/// cannot tell, so they are kept: retention by age errs on the side of
/// keeping, by at most the messages between two entries. [`MessageId::ZERO`]
/// when the index has nothing that old.
pub(crate) async fn cut_for_age(store: &Store, age: Duration) -> Result<MessageId> {
    let since = super::server_time(store).await?.saturating_sub(age).as_secs();
    Ok(newest_sample_before(store, since).await?.map_or(MessageId::ZERO, |id| MessageId::new(id + 1)))
}

/// The id of the newest sample from a second before `second`, if any.
async fn newest_sample_before(store: &Store, second: u64) -> Result<Option<u64>> {
    let newest: Vec<u64> = store
        .query(
            "read the time index",
            redis::cmd("ZRANGE")
                .arg(store.namespace().time_key())
                .arg(format!("({second}"))
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(1),
        )
        .await?;
    Ok(newest.first().copied())
}

/// The first id that may have been published at or after `time` (by the
/// Redis server's clock): just past the newest sample from a second before
/// `time`'s, since every id up to it was published earlier. Ids after that
/// sample may be older than `time` too; the index cannot tell, so they count
/// (at most the messages between two samples). `1` when the index holds
/// nothing that old (the oldest message kept is then the answer); the id
/// after the head for a time still to come.
pub(crate) async fn first_id_at(store: &Store, time: SystemTime) -> Result<MessageId> {
    let at = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    if at > super::server_time(store).await? {
        return Ok(MessageId::new(super::head(store).await?.get() + 1));
    }
    Ok(MessageId::new(newest_sample_before(store, at.as_secs()).await?.map_or(1, |id| id + 1)))
}

/// About when `id` was published, in Unix seconds: interpolated by id
/// between the samples just before and just after it, or the one sample on
/// its side when there is only one; `None` for an empty index. Ids and
/// seconds grow together, so a binary search over ranks finds the pair in
/// about log2(entries) reads.
pub(crate) async fn published_second(store: &Store, id: MessageId) -> Result<Option<u64>> {
    let key = store.namespace().time_key();
    let entries: u64 = store.query("read the time index", redis::cmd("ZCARD").arg(&key)).await?;
    let sample = |rank: u64| {
        let key = key.clone();
        async move {
            let entry: Vec<(u64, u64)> = store
                .query(
                    "read the time index",
                    redis::cmd("ZRANGE").arg(&key).arg(rank).arg(rank).arg("WITHSCORES"),
                )
                .await?;
            Ok::<_, crate::Error>(entry.first().copied())
        }
    };
    // The first rank whose id is above `id`.
    let (mut low, mut high, mut before) = (0, entries, None);
    while low < high {
        let middle = low + (high - low) / 2;
        match sample(middle).await? {
            Some(entry) if MessageId::new(entry.0) <= id => {
                before = Some(entry);
                low = middle + 1;
            }
            Some(_) => high = middle,
            None => break,
        }
    }
    let after = if low < entries { sample(low).await? } else { None };
    Ok(match (before, after) {
        (Some((p, s)), Some((q, t))) if q > p && t >= s => Some(s + (id.get() - p) * (t - s) / (q - p)),
        (Some((_, s)), _) => Some(s),
        (None, after) => after.map(|(_, t)| t),
    })
}

/// Drops time-index entries that no stored message needs any more: those
/// before the entry covering the oldest message still kept in any channel.
pub(crate) async fn prune(store: &Store) -> Result<()> {
    let channels = channels::matching(store, "*").await?;
    if channels.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for channel in &channels {
        pipe.cmd("XRANGE").arg(store.namespace().channel_key(channel)).arg("-").arg("+").arg("COUNT").arg(1);
    }
    let firsts: Vec<Vec<(String, redis::Value)>> = store.query_pipe("find the oldest message", &pipe).await?;
    let mut oldest = MessageId::new(super::head(store).await?.get() + 1);
    for first in firsts.iter().filter_map(|page| page.first()) {
        oldest = oldest.min(channels::entry_id(&first.0)?);
    }
    let key = store.namespace().time_key();
    loop {
        let entries: Vec<u64> = store
            .query("read the time index", redis::cmd("ZRANGE").arg(&key).arg(0).arg(WALK_PAGE - 1))
            .await?;
        // Entry i may go when the next one also starts at or below `oldest`.
        let droppable = entries.windows(2).take_while(|pair| MessageId::new(pair[1]) <= oldest).count();
        if droppable == 0 {
            return Ok(());
        }
        let _: () = store
            .query("prune the time index", redis::cmd("ZREMRANGEBYRANK").arg(&key).arg(0).arg(droppable - 1))
            .await?;
        if droppable < WALK_PAGE - 1 {
            return Ok(());
        }
    }
}
