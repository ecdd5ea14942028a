//! `remq channels [pattern]`: channels with their message count, id range and memory.

use clap::Args;
use remq::ChannelInfo;
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, Record, human_bytes};

/// Arguments of `remq channels`.
#[derive(Debug, Args)]
pub(crate) struct ChannelsArgs {
    /// Only channels matching this Redis glob.
    #[arg(default_value = "*")]
    pattern: String,
}

impl ChannelsArgs {
    /// Lists the channels.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.pattern)?;
        let client = context.one_partition().await?;
        let channels = client.channels(&self.pattern).await?;
        let mut out = context.output();
        out.all(&channels)?;
        out.flush()?;
        if channels.is_empty() && !out.is_json() {
            eprintln!("remq: no channel matches '{}' in namespace {}", self.pattern, client.namespace());
        }
        Ok(())
    }
}

impl Record for ChannelInfo {
    fn columns() -> Vec<Column> {
        vec![
            Column::text("CHANNEL"),
            Column::number("MESSAGES"),
            Column::number("FIRST"),
            Column::number("LAST"),
            Column::number("MEMORY"),
        ]
    }

    fn json(&self) -> impl Serialize {
        ChannelJson {
            channel: &self.name,
            messages: self.messages,
            first_id: self.first.map(|id| id.get()),
            last_id: self.last.map(|id| id.get()),
            memory_bytes: self.memory_bytes,
        }
    }

    fn cells(&self) -> Vec<String> {
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
        vec![
            self.name.clone(),
            self.messages.to_string(),
            or_dash(self.first.map(|id| id.to_string())),
            or_dash(self.last.map(|id| id.to_string())),
            or_dash(self.memory_bytes.map(human_bytes)),
        ]
    }
}

/// A channel in JSON; ids and memory are `null` when unknown.
#[derive(Serialize)]
struct ChannelJson<'a> {
    /// The name.
    channel: &'a str,
    /// Messages stored.
    messages: u64,
    /// The oldest stored id.
    first_id: Option<u64>,
    /// The newest stored id.
    last_id: Option<u64>,
    /// Redis memory used.
    memory_bytes: Option<u64>,
}
