//! Which bytes of a key decide its placement (DESIGN §1): the partition-key rule and
//! the key's position on the hash ring. Clients and servers must agree on both.

use xxhash_rust::xxh3::xxh3_64;

/// The bytes of `key` that decide its placement: the first non-empty `{...}` hash tag,
/// else the whole key (the Redis Cluster rule).
pub fn partition_key(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The complete hash tag a scan prefix pins down, if any: `{tag}` must be closed
/// inside the prefix, and be the key's first `{`.
pub fn prefix_partition(prefix: &[u8]) -> Option<&[u8]> {
    let open = prefix.iter().position(|&b| b == b'{')?;
    let len = prefix[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &prefix[open + 1..open + 1 + len])
}

/// Ring position of `key`: `xxh3_64(partition key)`.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(partition_key(key))
}

/// Ring position of a hash tag (a scan or watch prefix that pins one).
pub fn tag_hash(tag: &[u8]) -> u64 {
    xxh3_64(tag)
}

/// The exclusive upper bound of all byte strings starting with `prefix` (None:
/// unbounded).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_key_follows_hash_tags() {
        assert_eq!(partition_key(b"{conv:1}:msg:7"), b"conv:1");
        assert_eq!(partition_key(b"plain"), b"plain");
        assert_eq!(partition_key(b"{}empty"), b"{}empty");
        assert_eq!(partition_key(b"a{b}c{d}"), b"b");
        assert_eq!(partition_key(b"open{only"), b"open{only");
    }

    #[test]
    fn prefix_partition_needs_a_closed_tag() {
        assert_eq!(prefix_partition(b"{c1}:m"), Some(&b"c1"[..]));
        assert_eq!(prefix_partition(b"{c1"), None);
        assert_eq!(prefix_partition(b"abc"), None);
    }

    #[test]
    fn prefix_end_bounds() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    proptest! {
        #[test]
        fn same_tag_same_hash(tag in "[a-z0-9]{1,12}", a in "[a-z:]{0,8}", b in "[a-z:]{0,8}") {
            let ka = format!("{{{tag}}}{a}");
            let kb = format!("{b}{{{tag}}}");
            prop_assert_eq!(key_hash(ka.as_bytes()), key_hash(kb.as_bytes()));
            prop_assert_eq!(key_hash(ka.as_bytes()), tag_hash(tag.as_bytes()));
        }
    }
}
