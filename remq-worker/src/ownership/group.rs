//! Membership of a consumer group: the worker processes that run one durable
//! consumer of a partitioned namespace, and which partitions each should own.
//!
//! Each member heartbeats into `<base>:group:<consumer>:members` with an expiry
//! (the lease time, renewed every third of it, on the Redis server's clock) and
//! polls its share often; `group.lua` drops expired members and, when the live
//! members change, computes a balanced, sticky assignment atomically (no member
//! leads). The assignment is advice: a partition is run only under its own
//! lease, so two members never run it at once even while they disagree.

use std::time::Duration;

use crate::Result;
use crate::connection::Store;
use crate::protocol::scripts;

/// A member's view of its group after a call to `group.lua`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Bumped whenever the assignment changes.
    pub(crate) generation: u64,
    /// How many members are live.
    pub(crate) members: u32,
    /// Whether this member is one of them (a poll after its heartbeat expired
    /// finds it missing: it must heartbeat again).
    pub(crate) live: bool,
    /// The partitions this member should own, ascending.
    pub(crate) partitions: Vec<u32>,
}

/// A name for this worker process in a group: `<host>:<pid>:<random>`, unique
/// even for several workers in one process.
pub(crate) fn member_name() -> String {
    format!("{}:{:04x}", super::registry::owner_name(), fastrand::u16(..))
}

/// Drops expired members, rebalances when the live members changed, and
/// returns `member`'s share. With `heartbeat`, `member` is also kept live for
/// that long (and joins if it was not); without, this is a poll.
///
/// # Errors
/// [`Error::Redis`] when the call fails, or the namespace is not partitioned.
pub(crate) async fn sync(
    store: &Store,
    consumer: &str,
    member: &str,
    heartbeat: Option<Duration>,
) -> Result<Assignment> {
    let ttl = heartbeat.map_or(0, |ttl| ttl.as_millis().try_into().unwrap_or(u64::MAX).max(1));
    let (generation, members, live, partitions): (u64, u32, u8, Vec<u32>) =
        store.eval("group heartbeat", &scripts::GROUP, ("sync", consumer, member, ttl)).await?;
    Ok(Assignment { generation, members, live: live == 1, partitions })
}

/// Takes `member` out of the group at once (a graceful exit), so the others
/// are given its partitions on their next poll rather than after its
/// heartbeat expires.
///
/// # Errors
/// [`Error::Redis`] when the call fails.
pub(crate) async fn leave(store: &Store, consumer: &str, member: &str) -> Result<u64> {
    store.eval("leave group", &scripts::GROUP, ("leave", consumer, member, 0)).await
}

/// The assignment of consumer `consumer`'s group as stored: each live
/// member with the partitions it should own, by member name.
///
/// # Errors
/// [`Error::Redis`] when it cannot be read.
pub(crate) async fn assignment(store: &Store, consumer: &str) -> Result<Vec<(String, Vec<u32>)>> {
    let mut read = redis::cmd("HGETALL");
    read.arg(store.namespace().group_assignment_key(consumer));
    let stored: std::collections::BTreeMap<String, String> = store.query("read group", &read).await?;
    Ok(stored
        .into_iter()
        .map(|(member, partitions)| {
            let partitions = partitions.split(',').filter_map(|p| p.parse().ok()).collect();
            (member, partitions)
        })
        .collect())
}
