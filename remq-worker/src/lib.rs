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
//!
//! # Layout
//! - `client`: [`Client`], publish, batch publish, consume, flush and head over one
//!   multiplexed, self-reconnecting connection.
//! - `connect`: [`ClientBuilder`]: URLs, credentials, namespaces, TLS, timeouts.
//! - `message`: [`Message`], [`MessageId`] and the wire frame `<channel>@<id>\n<body>`.
//! - `protocol`: the scripts, the key layout of a [`Namespace`], and the rules for
//!   channel names and patterns.
//! - `tail`: [`Client::tail`], the gap-free feed of a pattern without a durable
//!   consumer ([`Tail`]); `channels`: [`Client::channels`], what each channel
//!   holds ([`ChannelInfo`]).
//! - `error`: the one [`Error`] type, with [`RedisAddr`] so no password leaks into
//!   messages.
//!
//! The worker runtime, which runs handlers marked `#[remq::handler("pattern")]`:
//! - `handler` and `extract`: the [`Handler`] trait for async functions of
//!   extractors ([`Json`], [`Message`], [`MessageId`], [`Channel`], [`Body`],
//!   [`State`] …), and the registry the macro submits to.
//! - `worker`: [`Worker`], the builder, `run` and graceful shutdown; `config`: its
//!   settings and the `REMQ_*` environment variables.
//! - `consumer`: one durable consumer: lease, feed, handler, checkpoints; `lanes`:
//!   ordered concurrency (one message at a time per channel) and the checkpoint
//!   watermark.
//! - `subscription`: the gap-free feed (subscribe, replay, then live; back to
//!   replay after a disconnect or a full buffer).
//! - `checkpoint`, `lease`, `backoff`: fenced cursors, exclusive ownership with a
//!   hot standby, reconnect back-off.
//! - [`middleware`]: the tower stack around every handler: dead letters, retries
//!   ([`RetryPolicy`]), tracing spans, the application's layers, timeouts, panics.
//!
//! Operations:
//! - `flush`: retention, [`FlushPolicy`] (keep-last, max-age, interest, hard cap)
//!   applied in short steps, and the periodic flush job with its lock;
//!   `time_index`: the samples of which id was published when, for max-age and
//!   lag in seconds; `registry`: consumers recorded in Redis
//!   ([`RegisteredConsumer`]).
//! - `metrics`: every Prometheus series, named in one place; `lag`: the task
//!   that measures a consumer's lag; `health`: consumer states for `/readyz`;
//!   `endpoints`: the `/metrics`, `/healthz`, `/readyz` listener.
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

mod backoff;
mod channels;
mod checkpoint;
mod client;
mod config;
mod connect;
mod consumer;
mod endpoints;
mod error;
mod extract;
mod flush;
mod handler;
mod health;
mod lag;
mod lanes;
mod lease;
mod message;
mod metrics;
pub mod middleware;
mod packed;
mod protocol;
mod registry;
mod subscription;
mod tail;
mod time_index;
mod worker;

pub use channels::ChannelInfo;
pub use client::Client;
pub use config::StartFrom;
pub use connect::ClientBuilder;
pub use error::{BoxError, Error, RedisAddr, Result};
pub use extract::{Body, Channel, Delivery, FromMessage, Json, State};
pub use flush::{ChannelFlush, FlushPolicy, FlushReport};
#[doc(hidden)]
pub use handler::__private;
pub use handler::{BoxedHandler, Handler, HandlerOptions, HandlerOutput};
pub use message::{Message, MessageId};
pub use middleware::{RetryPolicy, redrive, redrive_page};
pub use protocol::{
    DEFAULT_MAX_MESSAGE_SIZE, MAX_CONSUME_LIMIT, MAX_MESSAGE_SIZE, Namespace, validate_channel,
    validate_pattern,
};
pub use registry::RegisteredConsumer;
pub use remq_macros::handler;
pub use tail::Tail;
pub use worker::Worker;

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
        let page = crate::packed::PackedPage::decode(reply)?;
        Ok((page.state.head.get(), page.state.removed.get(), page.entries))
    }
}
