//! Remq: durable, ordered topic consumers on plain Redis.
//!
//! Producers [`publish`](Client::publish) a message to a named channel and get back
//! a unique, increasing [`MessageId`]. Consumers follow many channels with one glob
//! pattern (`events.*`): live through Redis pub/sub, and from a durable log
//! ([`consume`](Client::consume)) for everything after the last id they processed,
//! so a crash or a disconnect never loses a message. Old messages are removed with
//! [`flush`](Client::flush).
//!
//! The protocol is a handful of Lua scripts (the repository's `scripts/` folder)
//! that any Redis client in any language can call with `EVAL` and `PSUBSCRIBE`.
//! The repository's `docs/` folder describes it (`docs/protocol.md`), with the
//! guide, the settings, operations and the `remq` command line.
//!
//! # Layout
//! One folder per concern, lowest layer first; each module's own docs say more.
//! - `error`: the one [`Error`] type (what failed, for users) and [`RedisAddr`],
//!   so no password leaks into messages; `message`: [`Message`] and
//!   [`MessageId`], and the wire frame `<channel>@<id>\n<body>`.
//! - `protocol`: the scripts, the key layout of a [`Namespace`] (the one place
//!   that formats a key, leases under typed keys included), the rules for
//!   channel names and patterns, and the packed page `consume.lua` returns.
//! - `connection`: the `Connection` every request goes through (one server
//!   today; a cluster is its second variant), the `Subscriber` for live pushes,
//!   a `Store` (a connection in one namespace), opening connections (URLs,
//!   TLS, timeouts) and reconnect back-off.
//! - `log`: the read side shared by everything above it: pages, the head, the
//!   server's clock, the channels of a pattern, stream walks, the time index.
//! - `feed`: the gap-free feed (subscribe, replay, then live; back to replay
//!   after a disconnect or a full buffer) over a `Source`, and where it starts
//!   ([`StartFrom`]).
//! - `ownership`: leases (a consumer's, a flush lock), fenced checkpoints, the
//!   consumer registry ([`RegisteredConsumer`]), and consumer-group membership
//!   with the partitions each member should own (`group.lua`), all on the
//!   server's clock.
//! - `retention`: [`FlushPolicy`], planning a flush and applying it in short
//!   steps, and the periodic flush job.
//! - `client`: [`Client`], every public operation (publish, consume, flush,
//!   head, consumers, [`channels`](Client::channels), [`tail`](Client::tail),
//!   [`flush_with`](Client::flush_with)), and [`ClientBuilder`].
//! - `handler`: the [`Handler`] trait for async functions of extractors
//!   ([`Json`], [`Message`], [`MessageId`], [`Channel`], [`Body`], [`State`] …),
//!   and the registry the macro submits to.
//! - [`middleware`]: the tower stack around every handler: dead letters, retries
//!   ([`RetryPolicy`]), tracing spans, the application's layers, timeouts, panics.
//! - `runtime`: [`Worker`], its settings and `REMQ_*` variables, `run` and
//!   graceful shutdown; a consumer's lease loop and one period of ownership (in
//!   order, or in lanes); a consumer-group member running its share of a
//!   partitioned namespace ([`partition_for`] picks a key's partition);
//!   `outcome`: the internal signals (shutdown, a lost lease, a counter
//!   reset) that stop a period without being errors.
//! - `observe`: every Prometheus series, named in one place; consumer states
//!   for `/readyz`; the `/metrics`, `/healthz`, `/readyz` listener; lag.
//!
//! # Example
//! ```no_run
//! use remq::{Json, Message};
//!
//! #[derive(serde::Deserialize)]
//! struct Signup {
//!     account_id: u64,
//! }
//!
//! #[remq::handler("events.accounts.*")]
//! async fn on_signup(Json(signup): Json<Signup>, message: Message) -> remq::Result<()> {
//!     println!("account {} signed up (message #{})", signup.account_id, message.id);
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> remq::Result<()> {
//!     let client = remq::Client::connect("redis://127.0.0.1:6379").await?;
//!     client.publish("events.accounts.created", r#"{"account_id":1}"#).await?;
//!     remq::Worker::from_env()?.run().await // until SIGTERM or Ctrl-C
//! }
//! ```

mod client;
mod connection;
mod error;
mod feed;
mod handler;
mod log;
mod message;
pub mod middleware;
mod observe;
mod outcome;
mod ownership;
mod protocol;
mod retention;
mod runtime;

pub use client::{ChannelInfo, Client, ClientBuilder, Published, PublishedBatch, Tail};
pub use error::{BoxError, Error, RedisAddr, Result};
pub use feed::StartFrom;
#[doc(hidden)]
pub use handler::__private;
pub use handler::{
    Body, BoxedHandler, Channel, Delivery, FromMessage, Handler, HandlerOptions, HandlerOutput, Json, State,
};
pub use message::{Message, MessageId};
pub use middleware::{RetryPolicy, redrive, redrive_page};
pub use ownership::registry::RegisteredConsumer;
pub use protocol::{
    DEFAULT_MAX_MESSAGE_SIZE, MAX_CONSUME_LIMIT, MAX_MESSAGE_SIZE, MAX_PARTITIONS, Namespace, partition_for,
    validate_channel, validate_pattern,
};
pub use remq_macros::handler;
pub use retention::{ChannelFlush, FlushPolicy, FlushReport};
pub use runtime::Worker;

/// The Rust code blocks of the README and of `docs/`, compiled (and, unless
/// marked `no_run`, run) as doc tests, so the documentation cannot drift from
/// the API. Only under `cfg(doctest)`: the files are outside the crate.
#[cfg(doctest)]
mod documentation {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../docs/guide.md")]
    pub struct Guide;
    #[doc = include_str!("../../docs/configuration.md")]
    pub struct Configuration;
    #[doc = include_str!("../../docs/operations.md")]
    pub struct Operations;
    #[doc = include_str!("../../docs/cluster.md")]
    pub struct Cluster;
    #[doc = include_str!("../../docs/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../../docs/protocol.md")]
    pub struct Protocol;
    #[doc = include_str!("../../docs/security.md")]
    pub struct Security;
    #[doc = include_str!("../../docs/layout.md")]
    pub struct Layout;
}

/// Entry points for the cargo-fuzz targets in `fuzz/`, which build with
/// `--cfg fuzzing`; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use bytes::Bytes;

    /// Reads a `consume.lua … packed` reply: `(head, removed, entries)`, or
    /// what is wrong with the reply.
    pub fn packed_page(
        reply: &Bytes,
    ) -> Result<(u64, u64, Vec<crate::Result<crate::Message>>), &'static str> {
        let page = crate::protocol::PackedPage::decode(reply)?;
        Ok((page.state.head.get(), page.state.removed.get(), page.entries.into_iter().collect()))
    }
}
