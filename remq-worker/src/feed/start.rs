//! Where a feed starts: [`StartFrom`] for a reader without a cursor, resolved
//! against the log. Shared by a worker's consumers and [`Tail`](crate::Tail).

use super::Source;
use crate::{MessageId, Result};

/// Where a consumer that has no checkpoint yet starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// From the oldest message still in the log.
    Earliest,
    /// From the next message published (the id issued last is skipped). The
    /// default, as in Kafka: a new consumer does not replay history.
    #[default]
    Latest,
    /// After the given id.
    After(MessageId),
}

impl std::str::FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            id => id
                .parse()
                .map(StartFrom::After)
                .map_err(|_| "expected `earliest`, `latest` or a message id".to_owned()),
        }
    }
}

impl StartFrom {
    /// The cursor to start after, for a feed of `pattern` read from `source`.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub(crate) async fn resolve(self, source: &impl Source, pattern: &str) -> Result<MessageId> {
        match self {
            StartFrom::Earliest => {
                // Before the oldest message kept, and after what retention
                // removed: those were never this reader's to lose. A page may
                // end early (a pattern that few messages match): then the ids
                // it looked at hold none, and the next one goes on after them.
                let mut after = MessageId::ZERO;
                loop {
                    let page = source.page(pattern, after, 1).await?;
                    let start = after.max(page.state.removed);
                    match page.next_after(1) {
                        Some(next) if page.entries.is_empty() => after = next,
                        _ => return Ok(start),
                    }
                }
            }
            StartFrom::Latest => source.head().await,
            StartFrom::After(id) => Ok(id),
        }
    }
}
