//! Partitioned namespaces: how a key picks a partition, and how partitions
//! are named. Both are part of the protocol: a producer in another language
//! must pick the same partition and write to the same keys.
//!
//! - The partition of a key among `P` is `crc32(key) mod P`, where `crc32` is
//!   CRC-32/ISO-HDLC (IEEE 802.3, what zlib's `crc32`, Python's
//!   `zlib.crc32`, Go's `crc32.ChecksumIEEE` and Java's `CRC32` compute) of
//!   the key's bytes. By default the key is the channel name.
//! - Partition `k` of base `remq:{orders}` is the namespace `remq:{orders.k}`:
//!   the hash tag gets `.k`, so on a Redis Cluster each partition hashes to a
//!   slot of its own. A base without a hash tag (one server only) gets `.k`
//!   at its end: `remq:orders` → `remq:orders.k`.
//! - `P` is stored in `<base>:partitions` when the namespace is created. A
//!   namespace without that key, or with `P` = 1, is its own one partition:
//!   its messages live under the base itself, exactly as before partitions.

use super::Namespace;

/// The most partitions a namespace may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The partition of `key` among `count` partitions: CRC-32 (IEEE, as zlib
/// computes it) of the key's bytes, modulo `count` (taken as 1 when 0).
///
/// ```
/// // The CRC-32 check value: crc32("123456789") = 0xCBF43926.
/// assert_eq!(remq::partition_for(b"123456789", 16), 0xCBF4_3926 % 16);
/// ```
pub fn partition_for(key: &[u8], count: u32) -> u32 {
    crc32fast::hash(key) % count.max(1)
}

impl Namespace {
    /// The namespace of partition `index` of this one (see the module docs):
    /// `remq:{orders}` → `remq:{orders.3}`; the base itself for a namespace of
    /// one partition.
    pub(crate) fn partition(&self, index: u32, count: u32) -> Namespace {
        if count <= 1 {
            return self.clone();
        }
        let base = self.base();
        let tagged = base.find('{').and_then(|open| Some((open, open + 1 + base[open + 1..].find('}')?)));
        let partition = match tagged {
            Some((open, close)) if close > open + 1 => {
                format!("{}.{index}{}", &base[..close], &base[close..])
            }
            _ => format!("{base}.{index}"),
        };
        Namespace::new(partition).expect("a valid base with a number added stays valid")
    }

    /// `<base>:partitions`: how many partitions the namespace was created with.
    pub(crate) fn partitions_key(&self) -> String {
        format!("{}:partitions", self.base())
    }

    /// `<base>:group:<consumer>:assignment`: which partitions each live member
    /// of a consumer group owns (written by `group.lua`).
    pub(crate) fn group_assignment_key(&self, consumer: &str) -> String {
        format!("{}:group:{consumer}:assignment", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pick_partitions_by_crc32_as_zlib_computes_it() {
        // Test vectors, computed with Python's zlib.crc32.
        let vectors: [(&[u8], u32, u32, u32); 4] = [
            (b"123456789", 0xCBF4_3926, 2, 6),
            (b"orders.created", 0x23B2_54CD, 1, 13),
            (b"user-42", 0x7D06_B873, 7, 3),
            (b"", 0, 0, 0),
        ];
        for (key, crc, of_12, of_16) in vectors {
            assert_eq!(crc32fast::hash(key), crc);
            assert_eq!((partition_for(key, 12), partition_for(key, 16)), (of_12, of_16), "{key:?}");
        }
        assert_eq!(partition_for(b"anything", 1), 0);
        assert_eq!(partition_for(b"anything", 0), 0, "no partitions counts as one");
    }

    #[test]
    fn partitions_are_named_inside_the_hash_tag() {
        let name = |base: &str, index| Namespace::new(base).unwrap().partition(index, 16).base().to_owned();
        assert_eq!(name("remq:{orders}", 3), "remq:{orders.3}");
        assert_eq!(name("{orders}:x", 15), "{orders.15}:x");
        assert_eq!(name("remq:orders", 0), "remq:orders.0");
        assert_eq!(name("remq:{}", 1), "remq:{}.1", "an empty tag is no tag");
        let one = Namespace::new("remq:{orders}").unwrap();
        assert_eq!(one.partition(0, 1), one, "one partition is the namespace itself");
        assert_eq!(Namespace::new("remq:{o}").unwrap().partition(2, 4).hash_tag(), Some("o.2"));
    }
}
