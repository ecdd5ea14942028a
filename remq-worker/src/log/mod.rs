//! The read side of the log, shared by the feed, the tail, retention and the
//! observers: pages in id order across channels, the head, the server's clock,
//! the channels of a pattern, walks along one channel's stream, and the time
//! index.

pub(crate) mod channels;
mod index;
mod pushed;
mod streams;
pub(crate) mod time_index;

use std::time::Duration;

use crate::connection::Store;
use crate::protocol::{self, MAX_CONSUME_LIMIT, PackedPage, scripts};
use crate::{MessageId, Result};

pub(crate) use self::pushed::stored;

/// One page after `after` with the log's [`LogState`](crate::protocol::LogState),
/// read by a `consume.lua … route` call and, for a broad pattern, by
/// following the order index from where it stopped (up to the head it
/// reported, so the two agree). An entry that is not a Remq message is an
/// error in its place, so a caller can skip it without losing the rest of the
/// page.
///
/// # Errors
/// [`Error::InvalidPattern`](crate::Error::InvalidPattern) for an empty
/// pattern; [`Error::Redis`](crate::Error::Redis) when the call fails.
pub(crate) async fn read_page(
    store: &Store,
    pattern: &str,
    after: MessageId,
    limit: usize,
) -> Result<PackedPage> {
    protocol::validate_pattern(pattern)?;
    let limit = limit.clamp(1, MAX_CONSUME_LIMIT);
    let mut page: PackedPage =
        store.eval("consume", &scripts::CONSUME, (pattern, after.get(), limit, "route")).await?;
    if page.follow_index {
        index::follow(store, pattern, &mut page, limit).await?;
    }
    Ok(page)
}

/// The last id issued in the namespace ([`MessageId::ZERO`] before the first publish).
///
/// # Errors
/// [`Error::Redis`](crate::Error::Redis) when the call fails.
pub(crate) async fn head(store: &Store) -> Result<MessageId> {
    let id: Option<u64> = store.get("head", &store.namespace().id_key()).await?;
    Ok(MessageId::new(id.unwrap_or(0)))
}

/// The Redis server's clock (`TIME`), since the Unix epoch: the one clock that
/// liveness, ages and the time index are judged by.
///
/// # Errors
/// [`Error::Redis`](crate::Error::Redis) when the call fails.
pub(crate) async fn server_time(store: &Store) -> Result<Duration> {
    let time = store.query("read the server time", &redis::cmd("TIME")).await?;
    Ok(since_epoch(time))
}

/// A `TIME` reply, `(seconds, microseconds)`, as the time since the Unix epoch
/// (for callers that read `TIME` in a pipeline of their own).
pub(crate) fn since_epoch((secs, micros): (u64, u64)) -> Duration {
    Duration::from_secs(secs) + Duration::from_micros(micros)
}
