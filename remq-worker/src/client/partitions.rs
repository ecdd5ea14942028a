//! Partitioned namespaces on the client: creating one, picking a partition
//! for a key, and views of one partition (the rules live in
//! `protocol::partition`).

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use super::Client;
use crate::protocol::{MAX_PARTITIONS, Namespace, partition_for};
use crate::{Error, MessageId, Result};

/// Where a keyed publish stored its message: the partition and the id in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Published {
    /// The partition (0 in a namespace that is not partitioned).
    pub partition: u32,
    /// The message's id in that partition.
    pub id: MessageId,
}

/// Where a keyed batch publish stored its messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PublishedBatch {
    /// The partition (0 in a namespace that is not partitioned).
    pub partition: u32,
    /// The messages' consecutive ids in that partition.
    pub ids: RangeInclusive<MessageId>,
}

/// Which partition a client works in, and how many partitions its namespace
/// has (read from Redis once, at the first publish, and shared by clones).
#[derive(Clone, Debug)]
pub(super) struct Partitioning {
    /// The partition this client's namespace is (0 for a whole namespace).
    index: u32,
    /// How many partitions the namespace has; 0 until read.
    count: Arc<AtomicU32>,
    /// A view of each partition, made at the first keyed publish or
    /// [`Client::partition`] once the count is known (so a publish does not
    /// build a client each time).
    views: Arc<OnceLock<Vec<Client>>>,
}

impl Partitioning {
    /// A whole namespace: the default one speaks the seed protocol and is
    /// never partitioned; any other has its count read when first needed.
    pub(super) fn of(namespace: &Namespace) -> Self {
        let known = if namespace.is_default() { 1 } else { 0 };
        Partitioning { index: 0, count: Arc::new(AtomicU32::new(known)), views: Arc::default() }
    }

    /// The same partitioning, without the views made so far (for a client
    /// whose settings differ from the one they were made from).
    pub(super) fn without_views(&self) -> Self {
        let count = Arc::new(AtomicU32::new(self.count.load(Ordering::Relaxed)));
        Partitioning { index: self.index, count, views: Arc::default() }
    }
}

impl Client {
    /// Creates this namespace with `count` partitions, each an ordinary
    /// namespace with its own ids, streams, cursors and leases (named as
    /// [`partition_for`] says: `remq:{orders}` → `remq:{orders.0}` …). The
    /// count is stored in `<base>:partitions` and fixed from then on; creating
    /// it again with the same count does nothing. Create it before anything
    /// publishes: a client reads the count once.
    ///
    /// # Errors
    /// [`Error::Partitions`] for a count of 0 or above [`MAX_PARTITIONS`], for
    /// the default namespace (it speaks the seed protocol), for a namespace
    /// created with another count, or one that already holds messages of its
    /// own; [`Error::Redis`] when a call fails.
    pub async fn create_partitions(&self, count: u32) -> Result<()> {
        let namespace = self.namespace();
        let refuse = |reason: String| Err(Error::Partitions { namespace: namespace.to_string(), reason });
        if count == 0 || count > MAX_PARTITIONS {
            return refuse(format!("a namespace has 1 to {MAX_PARTITIONS} partitions, not {count}"));
        }
        if namespace.is_default() {
            return refuse(
                "the default namespace `remq` speaks the 2013 protocol and cannot be partitioned: \
                           partition a namespace of its own, e.g. REMQ_NAMESPACE=remq:{app}"
                    .to_owned(),
            );
        }
        if count > 1
            && self.store.get::<Option<u64>>("create_partitions", &namespace.id_key()).await?.is_some()
        {
            return refuse("it already holds messages of its own: partition a new namespace".to_owned());
        }
        let mut set = redis::cmd("SET");
        set.arg(namespace.partitions_key()).arg(count).arg("NX").arg("GET");
        match self.store.query::<Option<u32>>("create_partitions", &set).await? {
            Some(stored) if stored != count => {
                refuse(format!("it was created with {stored} partitions; the count is fixed at creation"))
            }
            _ => {
                self.partitioning.count.store(count, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// How many partitions this namespace has (1 when it was not created
    /// partitioned, and for a view of one partition).
    ///
    /// # Errors
    /// [`Error::Redis`] when the count cannot be read.
    pub async fn partitions(&self) -> Result<u32> {
        let known = self.partitioning.count.load(Ordering::Relaxed);
        if known != 0 {
            return Ok(known);
        }
        let stored: Option<u32> = self.store.get("partitions", &self.namespace().partitions_key()).await?;
        let count = stored.unwrap_or(1).max(1);
        self.partitioning.count.store(count, Ordering::Relaxed);
        Ok(count)
    }

    /// The partition this client works in: 0 for a whole namespace, `k` for
    /// the view [`partition(k)`](Self::partition) returned.
    pub fn partition_index(&self) -> u32 {
        self.partitioning.index
    }

    /// A view of partition `index` of this namespace, over the same
    /// connection: an ordinary namespace (publish, consume, tail, flush …
    /// work on that partition alone), whose messages carry `index` as their
    /// [`partition`](crate::Message::partition). Partition 0 of a namespace
    /// that is not partitioned is the namespace itself.
    ///
    /// # Errors
    /// [`Error::Partitions`] when `index` is not below [`partitions`](Self::partitions);
    /// [`Error::Redis`] when the count cannot be read.
    pub async fn partition(&self, index: u32) -> Result<Client> {
        Ok(self.view(index).await?.clone())
    }

    /// [`partition`](Self::partition), borrowed: this client when the
    /// namespace is not partitioned, else the view made once per partition.
    async fn view(&self, index: u32) -> Result<&Client> {
        let count = self.partitions().await?;
        if index >= count {
            return Err(Error::Partitions {
                namespace: self.namespace().to_string(),
                reason: format!("partition {index} does not exist: it has {count} (0 to {})", count - 1),
            });
        }
        if count == 1 {
            return Ok(self);
        }
        let views = self.partitioning.views.get_or_init(|| {
            (0..count)
                .map(|index| {
                    let namespace = self.namespace().partition(index, count);
                    let partitioning =
                        Partitioning { index, count: Arc::new(AtomicU32::new(1)), views: Arc::default() };
                    Client { store: self.store.with_namespace(namespace), partitioning, ..self.clone() }
                })
                .collect()
        });
        Ok(&views[index as usize])
    }

    /// A view of every partition of this namespace, in partition order
    /// ([`partition(0)`](Self::partition) … `partition(P - 1)`); this client
    /// alone when the namespace is not partitioned. Operations that span a
    /// partitioned namespace ([`flush_with`](Self::flush_with),
    /// [`consumers`](Self::consumers)) walk these.
    ///
    /// # Errors
    /// [`Error::Redis`] when the count cannot be read.
    pub async fn every_partition(&self) -> Result<Vec<Client>> {
        let count = self.partitions().await?;
        let mut views = Vec::with_capacity(count as usize);
        for index in 0..count {
            views.push(self.partition(index).await?);
        }
        Ok(views)
    }

    /// Publishes one message on `channel` in the partition that `key` picks
    /// ([`partition_for`]); every message of one key lands in one partition,
    /// in publish order. In a namespace that is not partitioned the key
    /// changes nothing.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    ///
    /// # Cancel safety
    /// As [`publish`](Self::publish).
    pub async fn publish_keyed(
        &self,
        channel: &str,
        key: impl AsRef<[u8]>,
        body: impl AsRef<[u8]>,
    ) -> Result<Published> {
        let target = self.partition_of(key.as_ref()).await?;
        let id = target.publish_here(channel, body.as_ref(), None).await?;
        Ok(Published { partition: target.partitioning.index, id })
    }

    /// Publishes a batch on `channel` in the partition that `key` picks (the
    /// whole batch goes to one partition, with consecutive ids).
    ///
    /// # Errors
    /// As [`publish_batch`](Self::publish_batch).
    ///
    /// # Cancel safety
    /// As [`publish_batch`](Self::publish_batch).
    pub async fn publish_batch_keyed<I>(
        &self,
        channel: &str,
        key: impl AsRef<[u8]>,
        bodies: I,
    ) -> Result<PublishedBatch>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let bodies: Vec<I::Item> = bodies.into_iter().collect();
        let bodies: Vec<&[u8]> = bodies.iter().map(AsRef::as_ref).collect();
        let target = self.partition_of(key.as_ref()).await?;
        let ids = target.publish_batch_here(channel, &bodies, None).await?;
        Ok(PublishedBatch { partition: target.partitioning.index, ids })
    }

    /// The client of the partition `key` picks: this one, not a copy, when
    /// the namespace is not partitioned (or this is already a view of one
    /// partition), so an unpartitioned publish costs one atomic load more.
    pub(super) async fn partition_of(&self, key: &[u8]) -> Result<&Client> {
        let count = self.partitions().await?;
        self.view(if count == 1 { 0 } else { partition_for(key, count) }).await
    }
}
