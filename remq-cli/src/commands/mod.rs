//! The subcommands, one module each: its clap arguments (`…Args`) and its `run`.

mod bench;
mod channels;
mod consume;
mod consumers;
mod dead;
mod flush;
mod namespace;
mod publish;
mod redrive;
mod tail;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Subcommand};
use remq::{MAX_CONSUME_LIMIT, MessageId};

use crate::cli::Context;
use crate::error::Result;

/// A `--since` value: a UTC time (`2026-12-01T09:00:00Z`) or a time ago
/// (`15m`, `-15m`, `2h 30m`).
fn parse_since(value: &str) -> std::result::Result<std::time::SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(value.trim_start_matches('-')) {
        return std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{value} ago is before 1970"));
    }
    humantime::parse_rfc3339(value)
        .map_err(|_| "expected a UTC time such as 2026-12-01T09:00:00Z or a time ago such as 15m".to_owned())
}

/// The cursor that reads from the first message that may have been published
/// at or after `time` (the id before [`Client::id_at`](remq::Client::id_at)).
async fn cursor_at(client: &remq::Client, time: std::time::SystemTime) -> Result<MessageId> {
    Ok(MessageId::new(client.id_at(time).await?.get().saturating_sub(1)))
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish a message (the argument, or stdin) and print its id.
    Publish(publish::PublishArgs),
    /// Print the messages of a pattern as they arrive, after replaying older ones when asked.
    Tail(tail::TailArgs),
    /// Print one page of stored messages after an id.
    Consume(consume::ConsumeArgs),
    /// List channels with their message count, first and last id, and memory.
    Channels(channels::ChannelsArgs),
    /// Remove old messages (by id, count or age), or count what would go with --dry-run.
    Flush(flush::FlushArgs),
    /// List registered consumers with pattern, cursor, lag, lease owner and last seen.
    Consumers(consumers::ConsumersArgs),
    /// List dead letters: messages that handlers gave up on, with why.
    Dead(dead::DeadArgs),
    /// Publish dead letters back to their original channels, as new messages.
    Redrive(redrive::RedriveArgs),
    /// Measure publish and consume throughput against the server.
    Bench(bench::BenchArgs),
    /// Create a partitioned namespace.
    Namespace(namespace::NamespaceArgs),
}

impl Command {
    /// Runs the subcommand.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        match self {
            Command::Publish(args) => args.run(context).await,
            Command::Tail(args) => args.run(context).await,
            Command::Consume(args) => args.run(context).await,
            Command::Channels(args) => args.run(context).await,
            Command::Flush(args) => args.run(context).await,
            Command::Consumers(args) => args.run(context).await,
            Command::Dead(args) => args.run(context).await,
            Command::Redrive(args) => args.run(context).await,
            Command::Bench(args) => args.run(context).await,
            Command::Namespace(args) => args.run(context).await,
        }
    }
}

/// Which page of the log to read: the options of `consume` and `dead`.
#[derive(Debug, Args)]
pub(crate) struct PageArgs {
    /// Only ids strictly greater than this (0: from the start).
    #[arg(long, value_name = "ID", default_value_t = MessageId::ZERO)]
    after: MessageId,
    /// At most this many (up to 10000).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_CONSUME_LIMIT as u64))]
    limit: usize,
}
