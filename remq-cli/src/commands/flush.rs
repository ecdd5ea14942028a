//! `remq flush <pattern> (--before ID | --keep N | --older-than AGE) [--dry-run]`:
//! remove old messages, or count what would go.

use std::time::Duration;

use clap::{ArgGroup, Args};
use remq::{ChannelFlush, FlushPolicy, MessageId};
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, InPartition, Record};

/// Arguments of `remq flush`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["before", "keep", "older_than"])))]
pub(crate) struct FlushArgs {
    /// The channels: a Redis glob such as 'orders.*' (quote it in the shell).
    pattern: String,
    /// Remove messages with ids below this.
    #[arg(long, value_name = "ID")]
    before: Option<MessageId>,
    /// Keep only the newest N messages of each channel.
    #[arg(long, value_name = "N")]
    keep: Option<u64>,
    /// Remove messages published longer ago than this, e.g. 7d or 12h (by the
    /// time index: messages between two samples may stay a little longer).
    #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Also keep what registered consumers have not processed yet.
    #[arg(long)]
    interest: bool,
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

impl FlushArgs {
    /// Flushes (or plans) and prints what went per channel, then the total.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.pattern)?;
        let mut policy = FlushPolicy::new(&self.pattern).interest(self.interest);
        if let Some(before) = self.before {
            policy = policy.before(before);
        }
        if let Some(keep) = self.keep {
            policy = policy.keep_last(keep);
        }
        if let Some(age) = self.older_than {
            policy = policy.max_age(age);
        }
        let (client, partitioned) = context.spanned().await?;
        let report =
            if self.dry_run { client.plan_flush(&policy).await? } else { client.flush_with(&policy).await? };
        let rows: Vec<InPartition<Row<'_>>> = report
            .channels
            .iter()
            .map(|channel| InPartition {
                partition: channel.partition,
                record: Row { channel, dry_run: self.dry_run },
            })
            .collect();
        let channels = rows.len();
        let mut out = context.output();
        out.all_in_partitions(partitioned, rows)?;
        if !out.is_json() {
            let verb = if self.dry_run { "would remove" } else { "removed" };
            out.line(&format!("{verb} {} messages from {channels} channels", report.removed()))?;
        }
        out.flush()?;
        for name in &report.stale_consumers {
            eprintln!("remq: consumer '{name}' was not seen for a day; it did not hold messages back");
        }
        Ok(())
    }
}

/// One channel's line of the report.
struct Row<'a> {
    /// What happened to it.
    channel: &'a ChannelFlush,
    /// Whether nothing was removed for real.
    dry_run: bool,
}

impl Record for Row<'_> {
    fn columns() -> Vec<Column> {
        vec![Column::text("CHANNEL"), Column::number("BEFORE"), Column::number("REMOVED")]
    }

    fn json(&self) -> impl Serialize {
        RowJson {
            channel: &self.channel.channel,
            before: self.channel.before.get(),
            removed: self.channel.removed,
            dry_run: self.dry_run,
        }
    }

    fn cells(&self) -> Vec<String> {
        vec![self.channel.channel.clone(), self.channel.before.to_string(), self.channel.removed.to_string()]
    }
}

/// A channel's line in JSON.
#[derive(Serialize)]
struct RowJson<'a> {
    /// The channel.
    channel: &'a str,
    /// Messages with ids below this were (or would be) removed.
    before: u64,
    /// How many.
    removed: u64,
    /// Whether this was a dry run.
    dry_run: bool,
}
