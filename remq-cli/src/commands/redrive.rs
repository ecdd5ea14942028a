//! `remq redrive <dead-channel>`: dead letters published back to their original
//! channels, as new messages.

use clap::Args;
use remq::MessageId;
use remq::middleware::Redriven;
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, Record};

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
        let client = context.client().await?;
        let mut out = context.output();
        // New dead letters get ids above this one: stop there, or a handler that
        // keeps failing would keep this loop going.
        let head = client.head().await?;
        let (mut after, mut left, mut replayed) = (self.after, self.limit.unwrap_or(u64::MAX), 0u64);
        while left > 0 && after < head {
            let page_size = usize::try_from(left).map_or(PAGE, |left| left.min(PAGE));
            let page = remq::redrive_page(&client, &self.dead_channel, after, page_size).await?;
            let Some(last) = page.last() else { break };
            after = last.dead_id;
            left -= page.len() as u64;
            replayed += page.len() as u64;
            page.iter().try_for_each(|redriven| out.stream(redriven))?;
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
    const COLUMNS: &'static [Column] =
        &[Column::number("DEAD ID"), Column::text("CHANNEL"), Column::number("ID")];

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
