//! Where a feed starts: [`StartFrom`] for a reader without a cursor, resolved
//! against the log. Shared by a worker's consumers and [`Tail`](crate::Tail).

use std::time::SystemTime;

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
    /// From the first message that may have been published at or after this
    /// time (by the Redis server's clock, through the time index): no message
    /// published at or after it is skipped; at most the messages between two
    /// samples of the index before it come too. A time before the oldest
    /// message kept starts at the oldest; a time still to come, at the next
    /// message published.
    Time(SystemTime),
}

impl std::str::FromStr for StartFrom {
    type Err = String;

    /// `earliest`, `latest`, a message id, a UTC time (`2026-12-01T09:00:00Z`)
    /// or a time ago (`-15m`, `-2h 30m`: a duration after a minus sign).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = "expected `earliest`, `latest`, a message id, a UTC time such as \
                        2026-12-01T09:00:00Z, or a time ago such as -15m";
        match s {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            _ if s.starts_with(|c: char| c.is_ascii_digit()) && !s.contains(['-', ':']) => {
                s.parse().map(StartFrom::After).map_err(|_| expected.to_owned())
            }
            _ => {
                let time = match s.strip_prefix('-') {
                    Some(ago) => {
                        humantime::parse_duration(ago).ok().and_then(|ago| SystemTime::now().checked_sub(ago))
                    }
                    None => humantime::parse_rfc3339(s).ok(),
                };
                time.map(StartFrom::Time).ok_or_else(|| expected.to_owned())
            }
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
            StartFrom::Earliest => earliest(source, pattern).await,
            StartFrom::Latest => source.head().await,
            StartFrom::After(id) => Ok(id),
            StartFrom::Time(time) => {
                let first = source.id_at(time).await?;
                Ok(MessageId::new(first.get().saturating_sub(1)).max(earliest(source, pattern).await?))
            }
        }
    }
}

/// Before the oldest message kept, and after what retention removed: those
/// were never this reader's to lose. A page may end early (a pattern that few
/// messages match): then the ids it looked at hold none, and the next one goes
/// on after them.
async fn earliest(source: &impl Source, pattern: &str) -> Result<MessageId> {
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
