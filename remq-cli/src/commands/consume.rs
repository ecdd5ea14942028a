//! `remq consume <pattern> --after <id>`: one page of stored messages.

use clap::Args;
use remq::MessageId;

use crate::cli::Context;
use crate::error::Result;

/// Arguments of `remq consume`.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The channels: a Redis glob such as 'orders.*' (quote it in the shell).
    pattern: String,
    /// Only messages with an id strictly greater than this (0: from the start).
    #[arg(long, value_name = "ID", default_value_t = MessageId::ZERO)]
    after: MessageId,
    /// At most this many messages (up to 10000).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=remq::MAX_CONSUME_LIMIT as u64))]
    limit: u64,
}

impl ConsumeArgs {
    /// Reads the page and prints it; says on stderr where the next page starts.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.pattern)?;
        let client = context.client().await?;
        let limit = usize::try_from(self.limit).unwrap_or(remq::MAX_CONSUME_LIMIT);
        let page = client.consume(&self.pattern, self.after, limit).await?;
        let mut out = context.output();
        out.all(&page)?;
        out.flush()?;
        if let Some(last) = page.last().filter(|_| page.len() == limit && !out.is_json()) {
            eprintln!("remq: more may follow: remq consume '{}' --after {}", self.pattern, last.id);
        }
        Ok(())
    }
}
