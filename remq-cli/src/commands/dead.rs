//! `remq dead [pattern]`: the dead letters of the channels matching a pattern,
//! with the handler that gave up, how often it tried, and why; in a
//! partitioned namespace, those of every partition (a dead letter stays in its
//! message's partition), each page `--after`/`--limit` per partition.

use clap::Args;
use remq::Message;
use remq::middleware::DeadLetterEnvelope;
use serde::Serialize;

use super::PageArgs;
use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, InPartition, JsonBody, Record, body_text};

/// Arguments of `remq dead`.
#[derive(Debug, Args)]
pub(crate) struct DeadArgs {
    /// The original channels whose dead letters to list: a Redis glob.
    #[arg(default_value = "*")]
    pattern: String,
    /// The dead-letter prefix: failed messages of channel c are on <prefix>c.
    #[arg(long, env = "REMQ_DEAD_LETTER_PREFIX", default_value = "dead.")]
    prefix: String,
    /// Which dead letters.
    #[command(flatten)]
    page: PageArgs,
}

/// A dead letter: where it is, and what it holds.
struct DeadLetter {
    /// The dead letter itself, on its dead-letter channel.
    dead: Message,
    /// Its contents: the original message and why it failed.
    envelope: DeadLetterEnvelope,
}

impl DeadArgs {
    /// Lists the dead letters.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        let pattern = format!("{}{}", self.prefix, self.pattern);
        remq::validate_pattern(&pattern)?;
        let (client, partitioned) = context.spanned().await?;
        let PageArgs { after, limit } = self.page;
        let mut letters = Vec::new();
        for view in client.every_partition().await? {
            for dead in view.consume(&pattern, after, limit).await? {
                match DeadLetterEnvelope::parse(&dead.body) {
                    Ok(envelope) => letters.push(InPartition {
                        partition: dead.partition,
                        record: DeadLetter { dead, envelope },
                    }),
                    Err(error) => eprintln!("remq: skipped {}@{}: {error}", dead.channel, dead.id),
                }
            }
        }
        let none = letters.is_empty();
        let mut out = context.output();
        out.all_in_partitions(partitioned, letters)?;
        out.flush()?;
        if none && !out.is_json() {
            eprintln!("remq: no dead letters on '{pattern}' after {after}");
        }
        Ok(())
    }
}

impl Record for DeadLetter {
    fn columns() -> Vec<Column> {
        vec![
            Column::number("ID"),
            Column::text("DEAD CHANNEL"),
            Column::text("ORIGINAL"),
            Column::text("HANDLER"),
            Column::number("ATTEMPTS"),
            Column::text("ERROR"),
            Column::text("BODY"),
        ]
    }

    fn json(&self) -> impl Serialize {
        let original = &self.envelope.message;
        DeadLetterJson {
            id: self.dead.id.get(),
            channel: &self.dead.channel,
            original_channel: &original.channel,
            original_id: original.id.get(),
            handler: &self.envelope.handler,
            attempts: self.envelope.attempts,
            error: &self.envelope.error,
            body: JsonBody::new(&original.body),
        }
    }

    fn cells(&self) -> Vec<String> {
        let original = &self.envelope.message;
        vec![
            self.dead.id.to_string(),
            self.dead.channel.clone(),
            format!("{}@{}", original.channel, original.id),
            self.envelope.handler.clone(),
            self.envelope.attempts.to_string(),
            self.envelope.error.clone(),
            body_text(&original.body),
        ]
    }
}

/// A dead letter in JSON: where it is (`id`, `channel`), the message it holds
/// (`original_channel`, `original_id`, `body`), and why it failed.
#[derive(Serialize)]
struct DeadLetterJson<'a> {
    /// The dead letter's id.
    id: u64,
    /// The dead-letter channel.
    channel: &'a str,
    /// Where the message was published.
    original_channel: &'a str,
    /// The message's id there.
    original_id: u64,
    /// The handler that gave up.
    handler: &'a str,
    /// Attempts made.
    attempts: u32,
    /// The last error.
    error: &'a str,
    /// The original body.
    #[serde(flatten)]
    body: JsonBody,
}
