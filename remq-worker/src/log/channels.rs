//! The channels of a namespace and walks along one channel's stream.
//!
//! Channels are found through the registry set `<base>:channels` (`SSCAN
//! MATCH`), never `KEYS`; a stream is walked in pages of [`WALK_PAGE`].

use crate::connection::Store;
use crate::{Error, MessageId, Result};

/// Entries read per call when walking a stream to find a rank.
pub(crate) const WALK_PAGE: usize = 1000;

/// The registered channels matching `pattern`.
pub(crate) async fn matching(store: &Store, pattern: &str) -> Result<Vec<String>> {
    let mut cursor = 0u64;
    let mut channels = Vec::new();
    loop {
        let (next, page): (u64, Vec<String>) = store
            .query(
                "list channels",
                redis::cmd("SSCAN")
                    .arg(store.namespace().channels_key())
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        channels.extend(page);
        if next == 0 {
            channels.sort();
            channels.dedup();
            return Ok(channels);
        }
        cursor = next;
    }
}

/// The id from which the newest `keep` messages of `channel` start (remove
/// below it), or `None` when it holds no more than `keep`. Reads whichever
/// end of the stream is closer.
pub(crate) async fn keep_newest_from(store: &Store, channel: &str, keep: u64) -> Result<Option<MessageId>> {
    let key = store.namespace().channel_key(channel);
    let len: u64 = store.query("read a channel's length", redis::cmd("XLEN").arg(&key)).await?;
    if len <= keep {
        return Ok(None);
    }
    if keep == 0 {
        let last = nth_id(store, &key, true, 1).await?;
        return Ok(last.map(|id| MessageId::new(id.get() + 1)));
    }
    if keep <= len - keep {
        nth_id(store, &key, true, keep).await
    } else {
        nth_id(store, &key, false, len - keep + 1).await
    }
}

/// The id of the `n`th entry (1-based) of the stream at `key`, counted from
/// the newest or the oldest end, read in pages.
async fn nth_id(store: &Store, key: &str, from_newest: bool, n: u64) -> Result<Option<MessageId>> {
    let (mut bound, mut left) = (if from_newest { "+".to_owned() } else { "-".to_owned() }, n);
    loop {
        let count = left.min(WALK_PAGE as u64);
        let mut cmd = redis::cmd(if from_newest { "XREVRANGE" } else { "XRANGE" });
        cmd.arg(key);
        if from_newest {
            cmd.arg(&bound).arg("-")
        } else {
            cmd.arg(&bound).arg("+")
        };
        let page: Vec<(String, redis::Value)> =
            store.query("walk a channel", cmd.arg("COUNT").arg(count)).await?;
        let Some((last, _)) = page.last() else { return Ok(None) };
        left -= page.len() as u64;
        if left == 0 {
            return Ok(Some(entry_id(last)?));
        }
        if (page.len() as u64) < count {
            return Ok(None);
        }
        bound = format!("({last}");
    }
}

/// How many messages of `channel` have ids below `before`.
pub(crate) async fn count_below(store: &Store, channel: &str, before: MessageId) -> Result<u64> {
    let key = store.namespace().channel_key(channel);
    let (mut from, mut count) = ("-".to_owned(), 0u64);
    loop {
        let page: Vec<(String, redis::Value)> = store
            .query(
                "count messages",
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&from)
                    .arg(format!("({}-0", before.get()))
                    .arg("COUNT")
                    .arg(WALK_PAGE),
            )
            .await?;
        count += page.len() as u64;
        match page.last() {
            Some((last, _)) if page.len() == WALK_PAGE => from = format!("({last}"),
            _ => return Ok(count),
        }
    }
}

/// The message id of a stream entry id `<id>-0`.
pub(crate) fn entry_id(entry: &str) -> Result<MessageId> {
    MessageId::from_entry_id(entry.as_bytes())
        .ok_or_else(|| Error::retryable(format!("unexpected stream entry id {entry:?}")))
}
