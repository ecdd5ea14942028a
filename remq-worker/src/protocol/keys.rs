//! The key layout of a namespace: the one place that formats a key name.

use std::fmt;
use std::sync::Arc;

use redis::Script;

use super::GLOB_CHARS;
use crate::{Error, Result};

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

    /// The hash tag of the base (`orders` in `remq:{orders}`), as Redis Cluster
    /// finds it: between the first `{` and the first `}` after it, if not
    /// empty. All of a namespace's keys hash by it, so they share one slot.
    pub(crate) fn hash_tag(&self) -> Option<&str> {
        let open = self.base.find('{')?;
        let close = self.base[open + 1..].find('}')?;
        Some(&self.base[open + 1..open + 1 + close]).filter(|tag| !tag.is_empty())
    }

    /// Checks that this namespace can live on a Redis Cluster: its base needs
    /// a hash tag.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] saying how to name it.
    pub(crate) fn check_for_cluster(&self) -> Result<()> {
        match self.hash_tag() {
            Some(_) => Ok(()),
            None => Err(Error::InvalidNamespace {
                namespace: self.base.clone(),
                reason: "on a Redis Cluster a namespace needs a hash tag, so that all its keys share one slot: \
                         name it like `remq:{app}` (e.g. REMQ_NAMESPACE=remq:{app})",
            }),
        }
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

    /// The key of a lease (see [`LeaseKey`]).
    pub(crate) fn lease_key(&self, lease: &LeaseKey) -> String {
        match lease {
            LeaseKey::Consumer(name) => format!("{}:consumer:{name}:lease", self.base),
            LeaseKey::FlushLock(pattern) => format!("{}:flush:{pattern}:lock", self.base),
        }
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

    /// The stream of a channel whose name is raw bytes, as the order index's
    /// names come from Redis.
    pub(crate) fn channel_key_bytes(&self, channel: &[u8]) -> Vec<u8> {
        [self.base.as_bytes(), b":channel:", channel].concat()
    }

    /// `<base>:order`, the order index: the channel number of every id.
    pub(crate) fn order_key(&self) -> String {
        format!("{}:order", self.base)
    }

    /// `<base>:channel-names`, channel numbers to names.
    pub(crate) fn channel_names_key(&self) -> String {
        format!("{}:channel-names", self.base)
    }

    /// `<base>:time`, the time index: sampled ids by the second they were published in.
    pub(crate) fn time_key(&self) -> String {
        format!("{}:time", self.base)
    }

    /// `<base>:push-mode`: `sharded` when the publish scripts push with
    /// `SPUBLISH` to [`shard_channel`](Self::shard_channel) (a Redis Cluster),
    /// anything else or nothing for classic `PUBLISH`.
    pub(crate) fn push_mode_key(&self) -> String {
        format!("{}:push-mode", self.base)
    }

    /// `<base>:pushes`, the namespace's one shard channel for sharded pushes.
    pub(crate) fn shard_channel(&self) -> String {
        format!("{}:pushes", self.base)
    }

    /// `<base>:channel:<pattern>`, what `PSUBSCRIBE` takes to follow a pattern live.
    pub fn subscription_pattern(&self, pattern: &str) -> String {
        format!("{}:channel:{pattern}", self.base)
    }

    /// `<base>:once:<key>`, where an idempotent publish keeps its id for the
    /// namespace's window.
    pub(crate) fn once_key(&self, key: &[u8]) -> Vec<u8> {
        [self.base.as_bytes(), b":once:", key].concat()
    }

    /// `<base>:once-window`, the idempotency window in milliseconds (2 minutes when unset).
    pub(crate) fn once_window_key(&self) -> String {
        format!("{}:once-window", self.base)
    }

    /// `EVALSHA <sha> <numkeys> [<base> [<once key>]]` of `script` in this
    /// namespace, for a pipeline (the arguments follow; the script must be loaded).
    pub(crate) fn evalsha(&self, script: &Script, once: Option<&[u8]>) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash());
        match once {
            Some(key) => cmd.arg(2).arg(&self.base).arg(self.once_key(key)),
            None if self.is_default() => cmd.arg(0),
            None => cmd.arg(1).arg(&self.base),
        };
        cmd
    }

    /// Prepares a call of `script` in this namespace: `numkeys` 0 for the default
    /// base, else the base as `KEYS[1]`; with an idempotency key, the base and
    /// `<base>:once:<key>` (the publish scripts' `KEYS[2]`).
    pub(crate) fn invoke<'a>(&self, script: &'a Script, once: Option<&[u8]>) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        if let Some(key) = once {
            invocation.key(&self.base).key(self.once_key(key));
        } else if !self.is_default() {
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

/// What a lease guards. Each kind has keys of its own (`lease.lua`'s fifth
/// argument), so no name of one kind can take another kind's lease: a consumer
/// named `flush:events.*` and the flush lock of `events.*` are two leases.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LeaseKey {
    /// A durable consumer, by name: `<base>:consumer:<name>:lease`, the lease
    /// whose token fences the consumer's checkpoints (`checkpoint.lua`).
    Consumer(Arc<str>),
    /// The periodic flush of a pattern, held by one worker at a time:
    /// `<base>:flush:<pattern>:lock`.
    FlushLock(Arc<str>),
}

impl LeaseKey {
    /// The kind, as `lease.lua` takes it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            LeaseKey::Consumer(_) => "consumer",
            LeaseKey::FlushLock(_) => "flush",
        }
    }

    /// The consumer name or the pattern.
    pub(crate) fn name(&self) -> &Arc<str> {
        match self {
            LeaseKey::Consumer(name) | LeaseKey::FlushLock(name) => name,
        }
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_redis_cluster_finds_them() {
        let tag = |base: &str| Namespace::new(base).unwrap().hash_tag().map(str::to_owned);
        assert_eq!(tag("remq:{orders}").as_deref(), Some("orders"));
        assert_eq!(tag("{a}b{c}").as_deref(), Some("a"));
        assert_eq!(tag("remq:{}x{y}"), None, "an empty first tag hashes the whole key");
        assert_eq!(tag("remq"), None);
        assert_eq!(tag("remq:{open"), None);
        assert!(
            Namespace::new("remq")
                .unwrap()
                .check_for_cluster()
                .unwrap_err()
                .to_string()
                .contains("remq:{app}")
        );
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

    #[test]
    fn lease_kinds_never_share_a_key() {
        let ns = Namespace::default();
        let consumer = LeaseKey::Consumer("flush:events.*".into());
        let lock = LeaseKey::FlushLock("events.*".into());
        assert_eq!(ns.lease_key(&consumer), "remq:consumer:flush:events.*:lease");
        assert_eq!(ns.lease_key(&lock), "remq:flush:events.*:lock");
    }
}
