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
//! - `error`: the one [`Error`] type, with [`RedisAddr`] so no password leaks into
//!   messages.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> remq::Result<()> {
//! let client = remq::Client::connect("redis://127.0.0.1:6379").await?;
//! let id = client.publish("events.accounts.created", r#"{"account_id":1}"#).await?;
//! for message in client.consume("events.*", remq::MessageId::ZERO, 100).await? {
//!     println!("{} #{}: {:?}", message.channel, message.id, message.body);
//! }
//! # let _ = id; Ok(()) }
//! ```

mod backoff;
mod checkpoint;
mod client;
mod config;
mod connect;
mod consumer;
mod error;
mod extract;
mod handler;
mod lease;
mod message;
mod protocol;
mod subscription;
mod worker;

pub use client::Client;
pub use config::StartFrom;
pub use connect::ClientBuilder;
pub use error::{BoxError, Error, RedisAddr, Result};
pub use extract::{Body, Channel, Delivery, FromMessage, Json, State};
#[doc(hidden)]
pub use handler::__private;
pub use handler::{BoxedHandler, Handler, HandlerOutput};
pub use message::{Message, MessageId};
pub use protocol::{MAX_CONSUME_LIMIT, Namespace, validate_channel, validate_pattern};
pub use remq_macros::handler;
pub use worker::Worker;
