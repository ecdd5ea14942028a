//! `remq tail <pattern>`: messages as they arrive, after replaying older ones
//! when asked, through the worker's gap-free feed ([`remq::Tail`]).

use clap::Args;
use remq::{MessageId, StartFrom};

use crate::cli::Context;
use crate::error::Result;
use crate::stop;

/// Arguments of `remq tail`.
#[derive(Debug, Args)]
#[command(after_help = "Stops on Ctrl-C, on SIGTERM, or when the reader of its output goes away \
                        (remq tail 'x.*' | head -1), and exits 0.")]
pub(crate) struct TailArgs {
    /// The channels: a Redis glob such as 'orders.*' (quote it in the shell).
    pattern: String,
    /// First replay the stored messages from this id on (this id included).
    #[arg(long, value_name = "ID", conflicts_with = "from_start")]
    from: Option<MessageId>,
    /// First replay every stored message.
    #[arg(long)]
    from_start: bool,
    /// First replay what was published since this UTC time (2026-12-01T09:00:00Z)
    /// or this long ago (15m), by the time index: nothing since is skipped, and
    /// a few messages from just before may come too.
    #[arg(long, value_name = "TIME|AGO", value_parser = super::parse_since, conflicts_with_all = ["from", "from_start"])]
    since: Option<std::time::SystemTime>,
    /// Exit after this many messages.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

impl TailArgs {
    /// Prints messages until the limit, a signal, or a closed stdout.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        remq::validate_pattern(&self.pattern)?;
        let start = match (self.from_start, self.from, self.since) {
            (true, _, _) => StartFrom::Earliest,
            (false, Some(id), _) => StartFrom::After(MessageId::new(id.get().saturating_sub(1))),
            (false, None, Some(time)) => StartFrom::Time(time),
            (false, None, None) => StartFrom::Latest,
        };
        let client = context.one_partition().await?;
        let mut tail = client.tail(&self.pattern, start).await?;
        let mut out = context.output();
        let stop = stop::requested();
        tokio::pin!(stop);
        let mut printed = 0;
        while self.limit.is_none_or(|limit| printed < limit) {
            tokio::select! {
                biased;
                stopped = &mut stop => return Ok(stopped?),
                message = tail.next() => out.stream(&message?)?,
            }
            printed += 1;
        }
        Ok(())
    }
}
