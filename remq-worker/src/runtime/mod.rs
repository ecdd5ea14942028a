//! The worker runtime: the [`Worker`] builder and its settings, `run()` and
//! graceful shutdown; a consumer's lease loop (`consumer`), one period of
//! ownership (`period`: in order, or in `lanes`), a consumer group member
//! running the partitions assigned to it (`group`), and signals.
//!
//! The internal outcomes that stop a period (shutdown, a lost lease, a counter
//! reset) are in [`outcome`](crate::outcome); a failure is an [`Error`](crate::Error).

mod consumer;
mod group;
mod lanes;
mod period;
mod settings;
mod signals;
mod worker;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use settings::Settings;
pub use worker::Worker;

use crate::Client;
use crate::handler::States;
use crate::observe::health::Health;

/// What the runtime shares with every consumer.
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    /// The connection (its store for the runtime's own keys; the client for
    /// dead letters, which are published like any message).
    pub(crate) client: Client,
    /// Settings.
    pub(crate) settings: Arc<Settings>,
    /// Application state for extractors.
    pub(crate) states: Arc<States>,
    /// Cancelled on shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Every consumer's state, for `/readyz`.
    pub(crate) health: Health,
    /// For a consumer of one partition of a partitioned namespace: which one
    /// (`client` is then a view of it); labels its gauges, logs and messages.
    pub(crate) partition: Option<u32>,
}
