//! The runtime's internal signals: why a piece of work stopped when nothing
//! failed (shutdown, a lost lease, a counter that went backwards). They are
//! returned, not raised as [`Error`]s, so a lost lease ends one period of
//! ownership and nothing else, and the public `Error` only says what failed.

use std::fmt;

use crate::{Error, MessageId};

/// The namespace's id counter went backwards: Redis lost writes (a restore
/// from an old snapshot, or a failover to a replica that was behind), so new
/// messages get ids a reader believes it has seen. The reader rewinds (see
/// "Failover" in `docs/operations.md`) and replays rather than skip them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CounterReset {
    /// How far the reader had got.
    pub(crate) cursor: MessageId,
    /// The last id issued: the counter in Redis, read from the log.
    pub(crate) head: MessageId,
}

impl CounterReset {
    /// Where to replay from: `stored` (the stored cursor, or for a reader that
    /// keeps none, its own) when it is at most the head (a restored snapshot
    /// brings back a matching checkpoint); otherwise nothing tells old ids from
    /// new (a live push could, but pushes are not trusted: anyone allowed to
    /// publish on a channel can forge one), so the start: every message still
    /// in the log is replayed, duplicates rather than a loss.
    pub(crate) fn rewind_to(&self, stored: MessageId) -> MessageId {
        if stored <= self.head { stored } else { MessageId::ZERO }
    }
}

impl fmt::Display for CounterReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the id counter went backwards: processed up to id {}, but the last id issued is {}; Redis lost writes (restored from an old snapshot, or failed over to a replica that was behind), so what may be new is replayed; see \"Failover\" in docs/operations.md",
            self.cursor, self.head
        )
    }
}

/// Why a period of ownership ended without a failure.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Shutdown was requested.
    Shutdown,
    /// Another owner took the lease (or it could not be renewed in time).
    LeaseLost,
    /// The id counter went backwards.
    CounterReset(CounterReset),
}

/// What interrupts work in progress: a [`Stop`], or a failure.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// Nothing failed; the work must stop for this reason.
    Stop(Stop),
    /// Something failed (retryable or not: see [`Error::is_retryable`]).
    Failed(Error),
}

impl From<Error> for Interrupt {
    fn from(error: Error) -> Self {
        Interrupt::Failed(error)
    }
}

impl From<Stop> for Interrupt {
    fn from(stop: Stop) -> Self {
        Interrupt::Stop(stop)
    }
}

impl From<CounterReset> for Interrupt {
    fn from(reset: CounterReset) -> Self {
        Interrupt::Stop(Stop::CounterReset(reset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(head: u64) -> CounterReset {
        CounterReset { cursor: MessageId::new(100), head: MessageId::new(head) }
    }

    #[test]
    fn rewinds_to_the_stored_cursor_when_it_came_back_with_the_data_else_to_the_start() {
        let id = MessageId::new;
        // A stored cursor at or below the head came back with the data.
        assert_eq!(reset(50).rewind_to(id(40)), id(40));
        assert_eq!(reset(50).rewind_to(id(50)), id(50));
        // Nothing tells old from new: from the start.
        assert_eq!(reset(50).rewind_to(id(100)), MessageId::ZERO);
    }
}
