//! `remq publish <channel> [message]`: one message from the argument or from
//! stdin, or one per line of stdin.

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::Args;
use remq::Client;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cli::Context;
use crate::error::Result;
use crate::output::Output;

/// Lines published in one `publish_batch` call at most.
const BATCH: usize = 1000;

/// Arguments of `remq publish`.
#[derive(Debug, Args)]
#[command(after_help = "Prints the id of each message published, one per line; in a partitioned namespace, \
the id, a tab and `partition <k>` (the JSON lines add \"partition\").")]
pub(crate) struct PublishArgs {
    /// The channel, e.g. orders.created (no newline, none of * ? [ ]).
    channel: String,
    /// The message; without it, all of stdin is one message (any bytes).
    message: Option<OsString>,
    /// Publish each line of stdin as a message of its own (without its line
    /// ending, \n or \r\n); lines already waiting are published in batches.
    #[arg(long, conflicts_with = "message")]
    lines: bool,
    /// In a partitioned namespace, the key that picks the partition (default:
    /// the channel name); every message of one key lands in one partition.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Publish at most once per this key within the namespace's window (2
    /// minutes unless set): a retry with the same key prints the first
    /// publish's id and stores nothing. One message (not --lines); the channel
    /// picks the partition.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["lines", "key"])]
    idempotency_key: Option<String>,
    /// Wait until this many replicas of the master have each message (WAIT);
    /// fail, with the ids, when fewer confirm within --replicas-timeout.
    #[arg(long, env = "REMQ_PUBLISH_REPLICAS", default_value_t = 0, value_name = "N")]
    replicas: u32,
    /// How long to wait for the replicas.
    #[arg(long, env = "REMQ_PUBLISH_REPLICAS_TIMEOUT", default_value = "1s", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    replicas_timeout: std::time::Duration,
}

impl PublishArgs {
    /// Publishes and prints the ids.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_channel(&self.channel)?;
        let builder =
            context.client_builder()?.replicas(self.replicas).replicas_timeout(self.replicas_timeout);
        let client = builder.connect().await?;
        let target = Target {
            partitioned: client.partitions().await? > 1,
            key: self.key.clone().unwrap_or_else(|| self.channel.clone()),
            once: self.idempotency_key.as_deref(),
            channel: &self.channel,
            client,
        };
        let mut out = context.output();
        if let Some(message) = &self.message {
            return target.publish(&mut out, vec![message.as_encoded_bytes().to_vec()]).await;
        }
        if std::io::stdin().is_terminal() {
            eprintln!(
                "remq: reading the message{} from stdin; end with Ctrl-D",
                if self.lines { "s" } else { "" }
            );
        }
        let mut stdin = BufReader::with_capacity(1 << 16, tokio::io::stdin());
        if !self.lines {
            let mut body = Vec::new();
            stdin.read_to_end(&mut body).await?;
            return target.publish(&mut out, vec![body]).await;
        }
        let mut batch = Vec::new();
        loop {
            let mut line = Vec::new();
            let end = stdin.read_until(b'\n', &mut line).await? == 0;
            if !end {
                strip_line_ending(&mut line);
                batch.push(line);
            }
            // Publish what came at once together, and a line typed on its own at
            // once: a batch ends where the data waiting in the buffer ends.
            let more_waiting = stdin.buffer().contains(&b'\n');
            if !batch.is_empty() && (end || !more_waiting || batch.len() == BATCH) {
                target.publish(&mut out, std::mem::take(&mut batch)).await?;
            }
            if end {
                return Ok(());
            }
        }
    }
}

/// Where `remq publish` publishes, and how it prints what it did.
struct Target<'a> {
    /// The client.
    client: Client,
    /// The channel.
    channel: &'a str,
    /// The key that picks the partition.
    key: String,
    /// The idempotency key, for one message.
    once: Option<&'a str>,
    /// Whether the namespace has more than one partition (then the output names it).
    partitioned: bool,
}

impl Target<'_> {
    /// Publishes `bodies` (one message, or a batch of lines) and prints their ids.
    async fn publish(&self, out: &mut Output, bodies: Vec<Vec<u8>>) -> Result<()> {
        let (partition, ids) = if let (Some(once), [body]) = (self.once, &bodies[..]) {
            let id = self.client.publish_idempotent(self.channel, once, body).await?;
            let partition = remq::partition_for(self.channel.as_bytes(), self.client.partitions().await?);
            (partition, id..=id)
        } else if let [body] = &bodies[..] {
            let published = self.client.publish_keyed(self.channel, &self.key, body).await?;
            (published.partition, published.id..=published.id)
        } else {
            let published = self.client.publish_batch_keyed(self.channel, &self.key, bodies).await?;
            (published.partition, published.ids)
        };
        let partition = self.partitioned.then_some(partition);
        for id in ids.start().get()..=ids.end().get() {
            if out.is_json() {
                out.json_line(&Published { id, channel: self.channel, partition })?;
            } else if let Some(partition) = partition {
                out.line(&format!("{id}\tpartition {partition}"))?;
            } else {
                out.line(&id.to_string())?;
            }
        }
        Ok(out.flush()?)
    }
}

/// Removes a trailing `\n` or `\r\n`.
fn strip_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// A published message in JSON.
#[derive(Serialize)]
struct Published<'a> {
    /// Its id.
    id: u64,
    /// Its channel.
    channel: &'a str,
    /// Its partition, in a partitioned namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u32>,
}
