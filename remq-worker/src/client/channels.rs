//! What a namespace holds: its channels, with how many messages each keeps,
//! their id range and the memory they use.

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{Client, MessageId, Result, log, protocol};

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
        let names = log::channels::matching(self.store(), pattern).await?;
        stream::iter(names).map(|name| self.channel_info(name)).buffered(IN_FLIGHT).try_collect().await
    }

    /// The statistics of one channel's stream, with the commands a minimal ACL
    /// user has (see "ACLs" in `docs/protocol.md`); `MEMORY USAGE` is extra, and without
    /// it the memory is unknown rather than an error.
    async fn channel_info(&self, name: String) -> Result<ChannelInfo> {
        let key = self.namespace().channel_key(&name);
        let mut stats = redis::pipe();
        stats.cmd("XLEN").arg(&key);
        stats.cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(1);
        stats.cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
        let mut memory = redis::cmd("MEMORY");
        memory.arg("USAGE").arg(&key);
        let (stats, memory_bytes) = futures_util::join!(
            self.store().query_pipe::<(u64, Vec<StreamEntry>, Vec<StreamEntry>)>("channels", &stats),
            self.store().query::<Option<u64>>("channels", &memory)
        );
        let (messages, first, last) = stats?;
        let memory_bytes = match memory_bytes {
            Err(crate::Error::Permission { .. }) => None,
            other => other?,
        };
        Ok(ChannelInfo { name, messages, first: first_id(&first), last: first_id(&last), memory_bytes })
    }
}

/// A stream entry as `XRANGE` returns it: its id `<message id>-0`, and its fields.
type StreamEntry = (String, redis::Value);

/// The message id of the first of `entries`, if any.
fn first_id(entries: &[StreamEntry]) -> Option<MessageId> {
    MessageId::from_entry_id(entries.first()?.0.as_bytes())
}
