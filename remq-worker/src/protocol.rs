//! The wire protocol: the Lua scripts, the key layout of a namespace, and the
//! rules for channel names and patterns.
//!
//! The scripts in the repository's `scripts/` folder are the protocol's source of
//! truth; they are compiled into this crate once, here, with `include_str!`.

use std::fmt;
use std::sync::LazyLock;

use redis::Script;

use crate::{Error, Result};

/// `publish.lua`: `EVAL 0 <channel> <message>` → id.
pub(crate) static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/publish.lua")));
/// `publish_batch.lua`: `EVAL 0 <channel> <message>…` → `{first, last}`.
pub(crate) static PUBLISH_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/publish_batch.lua")));
/// `consume.lua`: `EVAL 0 <pattern> <cursor> <limit> [state|packed]` → frames, or
/// (packed) one MessagePack page.
pub(crate) static CONSUME: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/consume.lua")));
/// `flush.lua`: `EVAL 0 <pattern> <before-id>` → count removed.
pub(crate) static FLUSH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/flush.lua")));

/// `lease.lua`: `EVAL 0 acquire|renew|release <consumer> <ttl-ms> [<token>]`.
pub(crate) static LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/lease.lua")));
/// `checkpoint.lua`: `EVAL 0 <consumer> <token> <id>` → stored cursor.
pub(crate) static CHECKPOINT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../scripts/checkpoint.lua")));

/// The largest message the publish scripts accept, in bytes (8 MiB): their
/// `MAX_MESSAGE_SIZE`. Clients default to a lower limit of their own
/// ([`DEFAULT_MAX_MESSAGE_SIZE`]), which leaves room for a dead letter's headers.
pub const MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// A client's default limit on the size of a message it publishes (4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The most messages one `consume.lua` call returns; larger limits are capped.
pub const MAX_CONSUME_LIMIT: usize = 10_000;

/// Glob characters of Redis patterns, which a channel name must not contain.
const GLOB_CHARS: [char; 4] = ['*', '?', '[', ']'];

/// The base that prefixes every key and pub/sub channel of one Remq namespace.
///
/// The default namespace is `remq`, which the scripts use when called with no
/// keys, so it speaks exactly the seed protocol (`remq:id`, `remq:channel:<c>`).
/// Another base such as `remq:{orders}` is passed as `KEYS[1]`; with a hash tag
/// all of the namespace's keys live in one Redis Cluster slot.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The key prefix, e.g. `remq` or `remq:{orders}`.
    base: String,
}

impl Namespace {
    /// The default base, used by scripts called with `numkeys` 0.
    pub const DEFAULT: &'static str = "remq";

    /// A namespace with the given base.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the base is empty or contains a newline,
    /// whitespace, or a glob character (`* ? [ ] \`): the base is part of the
    /// subscription pattern, where those characters would match other namespaces.
    pub fn new(base: impl Into<String>) -> Result<Self> {
        let base = base.into();
        let reason = if base.is_empty() {
            Some("a namespace must not be empty")
        } else if base.chars().any(|c| c.is_whitespace() || GLOB_CHARS.contains(&c) || c == '\\') {
            Some("a namespace must not contain whitespace or the glob characters * ? [ ] \\")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidNamespace { namespace: base, reason }),
            None => Ok(Namespace { base }),
        }
    }

    /// The base string, e.g. `remq`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// True for the default `remq` namespace (scripts are called with no keys).
    pub(crate) fn is_default(&self) -> bool {
        self.base == Self::DEFAULT
    }

    /// `<base>:id`, the counter that issues message ids.
    pub(crate) fn id_key(&self) -> String {
        format!("{}:id", self.base)
    }

    /// `<base>:consumer:<name>:cursor`, where a consumer's checkpoint lives.
    pub(crate) fn cursor_key(&self, consumer: &str) -> String {
        format!("{}:consumer:{consumer}:cursor", self.base)
    }

    /// `<base>:consumer:<name>:lease`, held by the consumer's owner (`lease.lua`).
    pub(crate) fn lease_key(&self, consumer: &str) -> String {
        format!("{}:consumer:{consumer}:lease", self.base)
    }

    /// `<base>:consumer:<name>:info`, a registered consumer's pattern and owner.
    pub(crate) fn consumer_info_key(&self, consumer: &str) -> String {
        format!("{}:consumer:{consumer}:info", self.base)
    }

    /// `<base>:consumers`, the registry of consumers scored by when each was last seen.
    pub(crate) fn consumers_key(&self) -> String {
        format!("{}:consumers", self.base)
    }

    /// `<base>:channels`, the registry of channels.
    pub(crate) fn channels_key(&self) -> String {
        format!("{}:channels", self.base)
    }

    /// `<base>:channel:<channel>`, the stream of a channel.
    pub(crate) fn channel_key(&self, channel: &str) -> String {
        format!("{}:channel:{channel}", self.base)
    }

    /// `<base>:time`, the time index: sampled ids by the second they were published in.
    pub(crate) fn time_key(&self) -> String {
        format!("{}:time", self.base)
    }

    /// `<base>:channel:<pattern>`, what `PSUBSCRIBE` takes to follow a pattern live.
    pub fn subscription_pattern(&self, pattern: &str) -> String {
        format!("{}:channel:{pattern}", self.base)
    }

    /// Prepares a call of `script` in this namespace: `numkeys` 0 for the default
    /// base, else the base as `KEYS[1]`.
    pub(crate) fn invoke<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        if !self.is_default() {
            invocation.key(&self.base);
        }
        invocation
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace { base: Self::DEFAULT.to_owned() }
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.base, f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

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
    fn pattern_rules() {
        validate_pattern("events.*").unwrap();
        validate_pattern("[ac]").unwrap();
        assert!(matches!(validate_pattern(""), Err(Error::InvalidPattern { .. })));
        assert!(matches!(validate_pattern("a\n*"), Err(Error::InvalidPattern { .. })));
    }

    #[test]
    fn namespace_rules() {
        assert_eq!(Namespace::default().subscription_pattern("events.*"), "remq:channel:events.*");
        let orders = Namespace::new("remq:{orders}").unwrap();
        assert_eq!(orders.id_key(), "remq:{orders}:id");
        assert!(!orders.is_default());
        for bad in ["", "a b", "remq*", "remq[1]", "a\\b"] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
    }
}
