//! Durable consumers, as an operator sees them: [`Client::consumers`] lists
//! them with cursor, lag and owner; [`Client::seek`] moves one's cursor while
//! no worker owns it.

use std::collections::HashMap;
use std::time::Duration;

use super::Client;
use crate::ownership::group;
use crate::ownership::lease::LeaseGuard;
use crate::ownership::registry::{self, RegisteredConsumer};
use crate::protocol::{LeaseKey, scripts};
use crate::{Error, MessageId, Result};

/// How long [`Client::seek`] holds the consumer's lease: long enough for its
/// two calls; released at once after them.
const SEEK_LEASE: Duration = Duration::from_secs(10);

impl Client {
    /// Every consumer registered in this namespace (workers register theirs
    /// while they own them), with pattern, cursor, owner and when it was last
    /// seen. In a partitioned namespace, one entry per consumer and partition,
    /// each with the group member its partition is assigned to; sorted by
    /// name, then partition.
    ///
    /// # Errors
    /// [`Error::Redis`] when the call fails.
    pub async fn consumers(&self) -> Result<Vec<RegisteredConsumer>> {
        if self.partitions().await? <= 1 {
            return registry::list(&self.store).await;
        }
        let mut all = Vec::new();
        for view in self.every_partition().await? {
            let mut listed = registry::list(&view.store).await?;
            listed.iter_mut().for_each(|c| c.partition = view.partition_index());
            all.extend(listed);
        }
        all.sort_by(|a, b| (&a.name, a.partition).cmp(&(&b.name, b.partition)));
        let mut assigned: Option<(String, HashMap<u32, String>)> = None;
        for consumer in &mut all {
            if assigned.as_ref().is_none_or(|(name, _)| *name != consumer.name) {
                let by_partition = group::assignment(&self.store, &consumer.name)
                    .await?
                    .into_iter()
                    .flat_map(|(member, partitions)| partitions.into_iter().map(move |p| (p, member.clone())))
                    .collect();
                assigned = Some((consumer.name.clone(), by_partition));
            }
            consumer.assigned_to = assigned.as_ref().and_then(|(_, by)| by.get(&consumer.partition).cloned());
        }
        Ok(all)
    }

    /// Moves the cursor of the durable consumer `consumer` to `to` (forwards
    /// or backwards): its next owner goes on with the messages after `to`.
    /// Only while no worker owns it: the move takes the consumer's lease, as
    /// an owner would, so a worker that starts meanwhile stands by until the
    /// move is stored and then reads it, and no running owner can overwrite
    /// it. A consumer that has no cursor yet gets one (it will start after
    /// `to`, whatever its `StartFrom`). In a partitioned namespace, move each
    /// partition's cursor through [`partition(k)`](Self::partition). Returns
    /// the cursor stored.
    ///
    /// # Errors
    /// [`Error::ConsumerOwned`] while a worker owns it; [`Error::Partitions`]
    /// on the base of a partitioned namespace; [`Error::Config`] for an id
    /// above the last one issued; [`Error::Redis`] when a call fails.
    pub async fn seek(&self, consumer: &str, to: MessageId) -> Result<MessageId> {
        let count = self.partitions().await?;
        if count > 1 {
            return Err(Error::Partitions {
                namespace: self.namespace().to_string(),
                reason: format!("each partition has its own cursor: seek in one (0 to {})", count - 1),
            });
        }
        let head = self.head().await?;
        if to > head {
            return Err(Error::Config {
                name: "seek",
                value: to.to_string(),
                reason: format!("the last id issued is {head}: a cursor cannot be ahead of it"),
            });
        }
        let key = LeaseKey::Consumer(consumer.into());
        let Ok(lease) = LeaseGuard::try_acquire(self.store(), &key, SEEK_LEASE).await? else {
            return Err(Error::ConsumerOwned { consumer: consumer.to_owned() });
        };
        let args = (consumer, lease.token(), to.get(), "rewind");
        let stored = self.store().eval::<u64>("seek", &scripts::CHECKPOINT, args).await;
        lease.release().await;
        Ok(MessageId::new(stored?))
    }
}
