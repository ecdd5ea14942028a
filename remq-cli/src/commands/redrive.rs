//! `remq redrive <dead-channel>`: dead letters published back to their original
//! channels, as new messages; in a partitioned namespace, each partition's
//! dead letters back into that partition.

use clap::Args;
use remq::MessageId;
use remq::middleware::Redriven;
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, InPartition, Record};

/// Dead letters replayed per `redrive_page` call.
const PAGE: usize = 1000;

/// Arguments of `remq redrive`.
#[derive(Debug, Args)]
#[command(after_help = "Prints each message replayed: its dead letter's id, its channel and its new id. \
                        The dead letters stay where they are. Dead letters that arrive while it runs \
                        (say, the replayed messages failing again) are not chased.")]
pub(crate) struct RedriveArgs {
    /// The dead-letter channel, e.g. dead.orders.created (a glob such as 'dead.*'
    /// replays several, in id order).
    dead_channel: String,
    /// Only dead letters with an id strictly greater than this.
    #[arg(long, value_name = "ID", default_value_t = MessageId::ZERO)]
    after: MessageId,
    /// At most this many dead letters.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

impl RedriveArgs {
    /// Replays the dead letters, a page at a time.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.dead_channel)?;
        let (client, partitioned) = context.spanned().await?;
        let mut out = context.output();
        let (limit, mut replayed) = (self.limit.unwrap_or(u64::MAX), 0u64);
        for view in client.every_partition().await? {
            // New dead letters get ids above the head: stop there, or a handler
            // that keeps failing would keep this loop going.
            let head = view.head().await?;
            let mut after = self.after;
            while replayed < limit && after < head {
                let page_size = usize::try_from(limit - replayed).map_or(PAGE, |left| left.min(PAGE));
                let page = remq::redrive_page(&view, &self.dead_channel, after, page_size).await?;
                let Some(last) = page.last() else { break };
                after = last.dead_id;
                replayed += page.len() as u64;
                for record in page {
                    if partitioned {
                        out.stream(&InPartition { partition: view.partition_index(), record })?;
                    } else {
                        out.stream(&record)?;
                    }
                }
            }
        }
        if !out.is_json() {
            eprintln!(
                "remq: replayed {replayed} dead letter(s) from '{}'; they stay there until flushed",
                self.dead_channel
            );
        }
        Ok(())
    }
}

impl Record for Redriven {
    fn columns() -> Vec<Column> {
        vec![Column::number("DEAD ID"), Column::text("CHANNEL"), Column::number("ID")]
    }

    fn json(&self) -> impl Serialize {
        RedrivenJson { dead_id: self.dead_id.get(), channel: &self.channel, id: self.id.get() }
    }

    fn cells(&self) -> Vec<String> {
        vec![self.dead_id.to_string(), self.channel.clone(), self.id.to_string()]
    }
}

/// A replayed dead letter in JSON.
#[derive(Serialize)]
struct RedrivenJson<'a> {
    /// The dead letter's id.
    dead_id: u64,
    /// Where the message was published again.
    channel: &'a str,
    /// Its new id there.
    id: u64,
}
