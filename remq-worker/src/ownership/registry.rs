//! The consumer registry: every consumer that owns its lease records itself in
//! Redis (name, pattern, owner, last seen), so retention knows whose cursor to
//! respect and operators can list consumers and their lag.
//!
//! Keys (all under the namespace base):
//! - `<base>:consumers`: a sorted set of durable names, scored by when each was
//!   last seen (Unix milliseconds, on the Redis server's clock, which is also
//!   the clock staleness is judged by: workers' clocks may drift);
//! - `<base>:consumer:<name>:info`: a hash with `pattern` and `owner` (host and
//!   process id of the instance that last owned it);
//! - `<base>:consumer:<name>:cursor`: the checkpoint (see `checkpoint.lua`).

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Store;
use crate::protocol::LeaseKey;
use crate::{Error, MessageId, Result, log};

/// A consumer as the registry holds it; in a partitioned namespace, one
/// partition of it (each partition has a cursor, a lease and an owner of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisteredConsumer {
    /// The durable name.
    pub name: String,
    /// The partition (0 in a namespace that is not partitioned).
    pub partition: u32,
    /// The last id issued in its namespace (or partition) when the registry
    /// was read: `head - cursor` is its lag.
    pub head: MessageId,
    /// In a partitioned namespace, the member of the consumer group that the
    /// group's assignment gives this partition to (its owner once the previous
    /// one released it); `None` when not partitioned, or when no member is live.
    pub assigned_to: Option<String>,
    /// The channel pattern it consumes.
    pub pattern: String,
    /// Its checkpoint: everything up to this id is processed.
    pub cursor: MessageId,
    /// Host and process id of the instance that last owned it.
    pub owner: String,
    /// When it was last seen, in Unix milliseconds (the Redis server's clock).
    pub seen_ms: u64,
    /// How long ago it was last seen when the registry was read, by the Redis
    /// server's clock.
    pub unseen: Duration,
    /// Whether some instance holds its lease now (it may be a stale owner's
    /// until the lease expires).
    pub leased: bool,
}

/// This process, as named in the registry: `<host>:<pid>`.
pub(crate) fn owner_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Records that consumer `name` (pattern `pattern`) is alive and owned by `owner`.
///
/// # Errors
/// When Redis cannot be written.
pub(crate) async fn heartbeat(store: &Store, name: &str, pattern: &str, owner: &str) -> Result<()> {
    let ns = store.namespace();
    let now = log::server_time(store).await?.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(ns.consumer_info_key(name))
        .arg("pattern")
        .arg(pattern)
        .arg("owner")
        .arg(owner)
        .ignore()
        .zadd(ns.consumers_key(), name, now)
        .ignore();
    store.query_pipe("register consumer", &pipe).await
}

/// Every registered consumer, with its cursor.
///
/// # Errors
/// When Redis cannot be read.
pub(crate) async fn list(store: &Store) -> Result<Vec<RegisteredConsumer>> {
    let ns = store.namespace();
    let mut read = redis::pipe();
    read.cmd("TIME").cmd("ZRANGE").arg(ns.consumers_key()).arg(0).arg(-1).arg("WITHSCORES").get(ns.id_key());
    type Read = ((u64, u64), Vec<(String, u64)>, Option<u64>);
    let (time, names, head): Read = store.query_pipe("list consumers", &read).await?;
    let now_ms = log::since_epoch(time).as_millis() as u64;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (name, _) in &names {
        pipe.cmd("HMGET")
            .arg(ns.consumer_info_key(name))
            .arg("pattern")
            .arg("owner")
            .get(ns.cursor_key(name))
            .cmd("PTTL")
            .arg(ns.lease_key(&LeaseKey::Consumer(Arc::from(name.as_str()))));
    }
    let details: Vec<redis::Value> = store.query_pipe("list consumers", &pipe).await?;
    let mut details = details.into_iter();
    let mut consumers = Vec::with_capacity(names.len());
    for (name, seen_ms) in names {
        let (Some(info), Some(cursor), Some(lease)) = (details.next(), details.next(), details.next()) else {
            break;
        };
        let (pattern, owner): (Option<String>, Option<String>) =
            redis::from_redis_value(info).map_err(|e| Error::redis("list consumers", e.into()))?;
        let cursor: Option<u64> =
            redis::from_redis_value(cursor).map_err(|e| Error::redis("list consumers", e.into()))?;
        // PTTL: -2 without the key, -1 without an expiry, else milliseconds left.
        let lease: i64 =
            redis::from_redis_value(lease).map_err(|e| Error::redis("list consumers", e.into()))?;
        consumers.push(RegisteredConsumer {
            name,
            partition: 0,
            head: MessageId::new(head.unwrap_or(0)),
            assigned_to: None,
            pattern: pattern.unwrap_or_default(),
            cursor: MessageId::new(cursor.unwrap_or(0)),
            owner: owner.unwrap_or_default(),
            seen_ms,
            unseen: Duration::from_millis(now_ms.saturating_sub(seen_ms)),
            leased: lease != -2,
        });
    }
    Ok(consumers)
}

/// Keeps consumer `name` registered: a heartbeat now and every `every` after,
/// until the task is dropped. Failures are retried at the next beat (an outage
/// is reported by the consumer's other calls).
pub(crate) async fn keep_registered(
    store: Store,
    name: std::sync::Arc<str>,
    pattern: String,
    every: Duration,
) {
    let owner = owner_name();
    let mut failing = false;
    loop {
        match heartbeat(&store, &name, &pattern, &owner).await {
            Ok(()) if std::mem::take(&mut failing) => {
                tracing::info!(consumer = &*name, "consumer registration refreshed again");
            }
            Ok(()) => {}
            // Without a registration, interest retention does not protect this
            // consumer's messages: worth a warning, once per outage.
            Err(error) if !std::mem::replace(&mut failing, true) => {
                tracing::warn!(consumer = &*name, %error, "could not register the consumer; retention may not wait for it (logged once per outage)");
            }
            Err(error) => tracing::debug!(consumer = &*name, %error, "consumer registration still failing"),
        }
        tokio::time::sleep(every).await;
    }
}
