//! What each consumer of a worker is doing, for `/readyz` and the
//! `remq_lease_owner` gauge.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::metrics;

/// Where one consumer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ConsumerState {
    /// Not yet connected or waiting for Redis.
    Starting = 0,
    /// Another process owns the lease; this one waits as a hot standby.
    Standby = 1,
    /// Owns the lease and is replaying what it missed.
    CatchingUp = 2,
    /// Owns the lease and has caught up with the log at least once since.
    Live = 3,
    /// A member of a consumer group (a partitioned namespace); its partitions
    /// have entries of their own.
    Member = 4,
}

impl ConsumerState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => ConsumerState::Standby,
            2 => ConsumerState::CatchingUp,
            3 => ConsumerState::Live,
            4 => ConsumerState::Member,
            _ => ConsumerState::Starting,
        }
    }

    /// A word for `/readyz`'s body.
    fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Starting => "starting",
            ConsumerState::Standby => "standby",
            ConsumerState::CatchingUp => "catching up",
            ConsumerState::Live => "live",
            ConsumerState::Member => "group member",
        }
    }

    /// Ready: owns the lease and is caught up, or is a standby or a group member.
    fn is_ready(self) -> bool {
        matches!(self, ConsumerState::Standby | ConsumerState::Live | ConsumerState::Member)
    }
}

/// The states of every consumer in a worker, shared with the HTTP listener.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    /// By durable name and partition (`None`: the consumer of an unpartitioned
    /// namespace, or a group member), in that order for a stable `/readyz` body.
    consumers: Arc<Mutex<BTreeMap<Entry, Arc<AtomicU8>>>>,
}

/// A consumer's durable name, and the partition for one partition of it.
type Entry = (Arc<str>, Option<u32>);

impl Health {
    /// Adds a consumer, or one partition of it, in state `Starting`, and
    /// returns its handle.
    pub(crate) fn consumer(&self, name: &Arc<str>, partition: Option<u32>) -> ConsumerHealth {
        let state = Arc::new(AtomicU8::new(ConsumerState::Starting as u8));
        self.consumers.lock().expect("no panics while held").insert((name.clone(), partition), state.clone());
        ConsumerHealth { state, owner: metrics::handler_gauge(metrics::LEASE_OWNER, name, partition) }
    }

    /// Removes the entry of a partition that moved to another member.
    pub(crate) fn remove(&self, name: &Arc<str>, partition: Option<u32>) {
        self.consumers.lock().expect("no panics while held").remove(&(name.clone(), partition));
    }

    /// Whether every consumer is ready, and one line per consumer saying how it is.
    pub(crate) fn readiness(&self) -> (bool, String) {
        let consumers = self.consumers.lock().expect("no panics while held");
        let mut ready = !consumers.is_empty();
        let mut body = String::new();
        for ((name, partition), state) in consumers.iter() {
            let state = ConsumerState::from_u8(state.load(Ordering::Relaxed));
            ready &= state.is_ready();
            match partition {
                Some(partition) => {
                    body.push_str(&format!("{name} partition {partition}: {}\n", state.as_str()))
                }
                None => body.push_str(&format!("{name}: {}\n", state.as_str())),
            }
        }
        (ready, body)
    }
}

/// One consumer's entry in [`Health`].
#[derive(Clone, Debug)]
pub(crate) struct ConsumerHealth {
    /// The [`ConsumerState`] as a number.
    state: Arc<AtomicU8>,
    /// `remq_lease_owner`.
    owner: ::metrics::Gauge,
}

impl ConsumerHealth {
    /// Records a new state.
    pub(crate) fn set(&self, state: ConsumerState) {
        self.state.store(state as u8, Ordering::Relaxed);
        let owns = matches!(state, ConsumerState::CatchingUp | ConsumerState::Live);
        self.owner.set(if owns { 1.0 } else { 0.0 });
    }

    /// The current state.
    pub(crate) fn get(&self) -> ConsumerState {
        ConsumerState::from_u8(self.state.load(Ordering::Relaxed))
    }
}
