//! Planning a flush (each channel's cut, from the policy, the registered
//! consumers and the log) and applying it in short steps.

use std::collections::HashMap;

use super::{ChannelFlush, FlushPolicy, FlushReport};
use crate::connection::Store;
use crate::log::{channels, time_index};
use crate::ownership::registry::{self, RegisteredConsumer};
use crate::protocol::{self, scripts};
use crate::{MessageId, Result};

/// Applies `policy` once: removes what it allows, in steps of at most
/// [`step`](FlushPolicy::step) messages per Redis call.
///
/// # Errors
/// [`Error::InvalidPattern`](crate::Error::InvalidPattern) for an empty
/// pattern; [`Error::Redis`](crate::Error::Redis) when a call fails (what was
/// removed before stays removed).
pub(crate) async fn apply(store: &Store, policy: &FlushPolicy) -> Result<FlushReport> {
    let mut report = decide(store, policy).await?;
    for channel in &mut report.channels {
        let pattern = escape_glob(&channel.channel);
        channel.removed = 0;
        loop {
            let removed = flush_step(store, &pattern, channel.before, policy.step).await?;
            if removed == 0 {
                break;
            }
            channel.removed += removed;
        }
    }
    report.channels.retain(|c| c.removed > 0);
    time_index::prune(store).await?;
    trim_order_index(store).await?;
    Ok(report)
}

/// The most `flush.lua` calls one flush spends on the order index's front
/// (each looks at up to 1000 entries), so a namespace that publishes faster
/// than its flushes run does not let the index lag behind the streams.
const INDEX_TRIM_CALLS: usize = 100;

/// Trims the order index's front past entries whose messages are all gone:
/// `flush.lua` with a before-id of 0 removes no message and only does that,
/// and with a literal name that is not a channel it scans none. Stops when a
/// call no longer moves the front.
async fn trim_order_index(store: &Store) -> Result<()> {
    let key = store.namespace().order_key();
    let front = async || -> Result<Vec<(String, redis::Value)>> {
        store
            .query(
                "read the order index",
                redis::cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(1),
            )
            .await
    };
    let mut before = front().await?;
    for _ in 0..INDEX_TRIM_CALLS {
        let _: u64 = store.eval("flush", &scripts::FLUSH, (INDEX_ONLY, 0)).await?;
        let after = front().await?;
        if after.first().map(|e| &e.0) == before.first().map(|e| &e.0) {
            break;
        }
        before = after;
    }
    Ok(())
}

/// A literal pattern no channel can have (channel names have no newline), so a
/// `flush.lua` call with it trims only the order index.
const INDEX_ONLY: &str = "\n";

/// What [`apply`] would remove now, without removing anything (a dry run: it
/// reads the ids it would remove to count them).
///
/// # Errors
/// As [`apply`].
pub(crate) async fn dry_run(store: &Store, policy: &FlushPolicy) -> Result<FlushReport> {
    let mut report = decide(store, policy).await?;
    for channel in &mut report.channels {
        channel.removed = channels::count_below(store, &channel.channel, channel.before).await?;
    }
    report.channels.retain(|c| c.removed > 0);
    Ok(report)
}

/// Decides each channel's cut; `removed` is left at 0.
async fn decide(store: &Store, policy: &FlushPolicy) -> Result<FlushReport> {
    protocol::validate_pattern(&policy.pattern)?;
    let channels = channels::matching(store, &policy.pattern).await?;
    let mut report = FlushReport::default();
    let mut interest: HashMap<&str, MessageId> = HashMap::new();
    if policy.interest {
        for consumer in &registry::list(store).await? {
            if consumer.unseen > policy.stale_after {
                report.stale_consumers.push(consumer.name.clone());
                continue;
            }
            let keep_from = MessageId::new(consumer.cursor.get() + 1);
            for channel in channels_of(store, consumer, &channels).await? {
                let cut = interest.entry(channel).or_insert(keep_from);
                *cut = (*cut).min(keep_from);
            }
        }
    }
    let by_age = match policy.max_age {
        Some(age) => Some(time_index::cut_for_age(store, age).await?),
        None => None,
    };
    for channel in &channels {
        let by_size = match policy.keep_last {
            Some(keep) => channels::keep_newest_from(store, channel, keep).await?,
            None => None,
        };
        let limit = [policy.before, by_age, by_size].into_iter().flatten().max();
        let mut cut = match (policy.interest, limit, interest.get(channel.as_str())) {
            (true, Some(limit), Some(&keep)) => limit.min(keep),
            (true, None, Some(&keep)) => keep,
            (_, limit, _) => limit.unwrap_or(MessageId::ZERO),
        };
        if let Some(cap) = policy.hard_cap
            && let Some(cap_cut) = channels::keep_newest_from(store, channel, cap).await?
        {
            cut = cut.max(cap_cut);
        }
        if cut > MessageId::ZERO {
            report.channels.push(ChannelFlush {
                channel: channel.clone(),
                partition: 0,
                before: cut,
                removed: 0,
            });
        }
    }
    Ok(report)
}

/// The channels of `among` that `consumer`'s pattern matches (Redis decides,
/// so the glob dialect is exactly the one of PSUBSCRIBE).
async fn channels_of<'a>(
    store: &Store,
    consumer: &RegisteredConsumer,
    among: &'a [String],
) -> Result<Vec<&'a str>> {
    if consumer.pattern.is_empty() {
        return Ok(Vec::new());
    }
    let matching = channels::matching(store, &consumer.pattern).await?;
    Ok(among.iter().filter(|c| matching.binary_search(c).is_ok()).map(String::as_str).collect())
}

/// One bounded step of a flush: removes at most `max` messages below `before`
/// from the channels matching `pattern`; 0 means nothing is left.
async fn flush_step(store: &Store, pattern: &str, before: MessageId, max: u64) -> Result<u64> {
    store.eval("flush", &scripts::FLUSH, (pattern, before.get(), max.max(1))).await
}

/// A glob that matches exactly `channel` (channel names have no `* ? [ ]`; only
/// the escape character needs escaping).
fn escape_glob(channel: &str) -> String {
    channel.replace('\\', "\\\\")
}
