//! The Lua scripts, compiled into the crate once, here, with `include_str!`.
//! The repository's `scripts/` folder is the protocol's source of truth; each
//! script's header states its KEYS, ARGV and reply.

use std::sync::LazyLock;

use redis::Script;

/// `publish.lua`: `EVAL 0 <channel> <message>` → id.
pub(crate) static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/publish.lua")));
/// `publish_batch.lua`: `EVAL 0 <channel> <message>…` → `{first, last}`.
pub(crate) static PUBLISH_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/publish_batch.lua")));
/// `consume.lua`: `EVAL 0 <pattern> <cursor> <limit> [state|packed]` → frames, or
/// (packed) one MessagePack page.
pub(crate) static CONSUME: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/consume.lua")));
/// `flush.lua`: `EVAL 0 <pattern> <before-id>` → count removed.
pub(crate) static FLUSH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/flush.lua")));

/// `lease.lua`: `EVAL 0 acquire|renew|release <consumer> <ttl-ms> [<token>]`.
pub(crate) static LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/lease.lua")));
/// `checkpoint.lua`: `EVAL 0 <consumer> <token> <id>` → stored cursor.
pub(crate) static CHECKPOINT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/checkpoint.lua")));
/// `group.lua`: `EVAL 1 <base> sync|leave <consumer> <member> [<ttl-ms>]` →
/// the generation, live members and this member's partitions.
pub(crate) static GROUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../scripts/group.lua")));
