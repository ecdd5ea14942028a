//! `remq consume <pattern> --after <id>`: one page of stored messages.

use clap::Args;

use super::PageArgs;
use crate::cli::Context;
use crate::error::Result;

/// Arguments of `remq consume`.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The channels: a Redis glob such as 'orders.*' (quote it in the shell).
    pattern: String,
    /// Which messages.
    #[command(flatten)]
    page: PageArgs,
    /// Instead of --after: from the first message that may have been published
    /// since this UTC time (2026-12-01T09:00:00Z) or this long ago (15m).
    #[arg(long, value_name = "TIME|AGO", value_parser = super::parse_since, conflicts_with = "after")]
    since: Option<std::time::SystemTime>,
}

impl ConsumeArgs {
    /// Reads the page and prints it; says on stderr where the next page starts.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.pattern)?;
        let client = context.one_partition().await?;
        let PageArgs { mut after, limit } = self.page;
        if let Some(time) = self.since {
            after = super::cursor_at(&client, time).await?;
        }
        let page = client.consume(&self.pattern, after, limit).await?;
        let mut out = context.output();
        out.all(&page)?;
        out.flush()?;
        if let Some(last) = page.last().filter(|_| page.len() == limit && !out.is_json()) {
            eprintln!("remq: more may follow: remq consume '{}' --after {}", self.pattern, last.id);
        }
        Ok(())
    }
}
