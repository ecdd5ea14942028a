//! Who owns what, kept in Redis: leases under typed keys
//! ([`LeaseKey`](crate::protocol::LeaseKey): a consumer, a flush lock; later a
//! partition), the fenced checkpoints of a consumer, the registry of
//! consumers, and the membership of consumer groups with the partitions each
//! member should own. Liveness is judged on one clock, the Redis server's.

pub(crate) mod checkpoint;
pub(crate) mod group;
pub(crate) mod lease;
pub(crate) mod registry;
