//! The wire protocol: the scripts, the key layout of a namespace, the rules for
//! channel names and patterns, and the packed page `consume.lua` returns.

mod glob;
mod keys;
mod packed;
mod partition;
pub(crate) mod scripts;

pub(crate) use glob::Glob;
pub(crate) use keys::LeaseKey;
pub use keys::Namespace;
pub(crate) use packed::{Entries, EntriesIter, LogState, PackedPage, message};
pub use partition::{MAX_PARTITIONS, partition_for};

use crate::{Error, Result};

/// The largest message the publish scripts accept, in bytes (8 MiB): their
/// `MAX_MESSAGE_SIZE`. Clients default to a lower limit of their own
/// ([`DEFAULT_MAX_MESSAGE_SIZE`]), which leaves room for a dead letter's headers.
pub const MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// A client's default limit on the size of a message it publishes (4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The most messages one `consume.lua` call returns; larger limits are capped.
pub const MAX_CONSUME_LIMIT: usize = 10_000;

/// Glob characters of Redis patterns, which a channel name must not contain.
pub(crate) const GLOB_CHARS: [char; 4] = ['*', '?', '[', ']'];

/// Checks a channel name against the protocol's rules (the scripts check the same).
///
/// # Errors
/// [`Error::InvalidChannel`] naming the broken rule: empty, a newline, or a glob
/// character `* ? [ ]`.
pub fn validate_channel(channel: &str) -> Result<()> {
    let reason = if channel.is_empty() {
        "a channel name must not be empty"
    } else if channel.contains('\n') {
        "a channel name must not contain a newline"
    } else if channel.contains(GLOB_CHARS) {
        "a channel name must not contain the glob characters * ? [ ] (they are for patterns)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidChannel { channel: channel.to_owned(), reason })
}

/// Checks a subscription pattern (a Redis glob over channel names).
///
/// # Errors
/// [`Error::InvalidPattern`] when it is empty or contains a newline (it could
/// never match a channel).
pub fn validate_pattern(pattern: &str) -> Result<()> {
    let reason = if pattern.is_empty() {
        "a pattern must not be empty (use `*` for every channel)"
    } else if pattern.contains('\n') {
        "a pattern must not contain a newline (no channel name has one)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPattern { pattern: pattern.to_owned(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rules() {
        for ok in ["a", "events.accounts.created", "a@b", "a:b", "ünï"] {
            validate_channel(ok).unwrap();
        }
        for bad in ["", "a\nb", "a*", "a?", "a[b", "a]"] {
            assert!(matches!(validate_channel(bad), Err(Error::InvalidChannel { .. })), "{bad:?}");
        }
    }

    #[test]
    fn the_script_limit_is_the_one_errors_name() {
        // `Error::MessageTooLarge` says "8 MiB" (the error module depends on nothing).
        assert_eq!(MAX_MESSAGE_SIZE, 8 * 1024 * 1024);
        let error = Error::MessageTooLarge { size: 1, max: 0 }.to_string();
        assert!(error.contains("at most 8 MiB"), "{error}");
    }

    #[test]
    fn pattern_rules() {
        validate_pattern("events.*").unwrap();
        validate_pattern("[ac]").unwrap();
        assert!(matches!(validate_pattern(""), Err(Error::InvalidPattern { .. })));
        assert!(matches!(validate_pattern("a\n*"), Err(Error::InvalidPattern { .. })));
    }
}
