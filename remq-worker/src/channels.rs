//! What a namespace holds: its channels, with how many messages each keeps,
//! their id range and the memory they use.

use std::collections::HashMap;

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{Client, MessageId, Result, protocol};

/// Channels whose statistics are asked for at once on the shared connection.
const IN_FLIGHT: usize = 64;

/// One channel of a namespace, as [`Client::channels`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// How many messages its log holds now (flushed ones are gone).
    pub messages: u64,
    /// The id of its oldest stored message, if it holds any.
    pub first: Option<MessageId>,
    /// The id of its newest stored message, if it holds any.
    pub last: Option<MessageId>,
    /// Bytes of Redis memory its log uses (`MEMORY USAGE`, which samples large
    /// streams), if Redis could tell.
    pub memory_bytes: Option<u64>,
}

impl Client {
    /// Every channel of this namespace whose name matches the glob `pattern`
    /// (`*` for all), sorted by name. Channels are found through the registry
    /// set, never `KEYS`; a channel flushed empty is still listed, with no
    /// messages.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`](crate::Error::InvalidPattern) for an empty
    /// pattern; [`Error::Redis`](crate::Error::Redis) when a call fails.
    pub async fn channels(&self, pattern: &str) -> Result<Vec<ChannelInfo>> {
        protocol::validate_pattern(pattern)?;
        let registry = self.namespace().channels_key();
        let mut names = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SSCAN");
            scan.arg(&registry).arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, page): (u64, Vec<String>) = self.query("channels", &scan).await?;
            names.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort_unstable();
        names.dedup(); // SSCAN may return a member twice while the set is rehashed
        stream::iter(names).map(|name| self.channel_info(name)).buffered(IN_FLIGHT).try_collect().await
    }

    /// The statistics of one channel's stream.
    async fn channel_info(&self, name: String) -> Result<ChannelInfo> {
        let key = self.namespace().channel_key(&name);
        let (mut memory, mut info) = (redis::cmd("MEMORY"), redis::cmd("XINFO"));
        memory.arg("USAGE").arg(&key);
        info.arg("STREAM").arg(&key);
        let (memory_bytes, info) = futures_util::join!(
            self.query::<Option<u64>>("channels", &memory),
            self.query::<HashMap<String, redis::Value>>("channels", &info)
        );
        let info = match info {
            Ok(info) => info,
            // Registered, but the stream was deleted behind Remq's back.
            Err(crate::Error::Redis { source, .. }) if source.to_string().contains("no such key") => {
                HashMap::new()
            }
            Err(error) => return Err(error),
        };
        let messages =
            info.get("length").and_then(|v| redis::from_redis_value_ref::<u64>(v).ok()).unwrap_or(0);
        let (first, last) = if messages == 0 {
            (None, None)
        } else {
            // Remq only trims streams from the front, so the last id added is the
            // newest entry. `recorded-first-entry-id` is Redis 7's oldest entry;
            // Redis 6 only has the whole `first-entry`.
            let first_entry = || match info.get("first-entry")? {
                redis::Value::Array(entry) => entry.first(),
                _ => None,
            };
            let first = info.get("recorded-first-entry-id").or_else(first_entry);
            (first.and_then(stream_id), info.get("last-generated-id").and_then(stream_id))
        };
        Ok(ChannelInfo { name, messages, first, last, memory_bytes: memory_bytes? })
    }
}

/// The message id of a stream entry id `<id>-0`.
fn stream_id(value: &redis::Value) -> Option<MessageId> {
    let raw: String = redis::from_redis_value_ref(value).ok()?;
    raw.split_once('-')?.0.parse().ok().map(MessageId::new)
}
