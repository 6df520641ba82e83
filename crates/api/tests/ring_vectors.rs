//! The shared placement vectors (`clients/python/tests/ring_vectors.json`, written by
//! the Python client's port of `keys`, `ranges` and `ring`; format in docs/python.md,
//! "Ring test vectors") hold for this crate too, so the two clients route every key
//! to the same shard.

use ctxstore_api::keys::{key_hash, partition_key};
use ctxstore_api::ranges::{even_arcs, RangeMap};
use ctxstore_api::ring::Ring;
use ctxstore_api::types::ShardId;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/python/tests/ring_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("ring_vectors.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_str()
        .expect("u64 as a decimal string")
        .parse()
        .expect("u64")
}

fn arcs(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .expect("arcs")
        .iter()
        .map(|a| (u(&a[0]), u(&a[1])))
        .collect()
}

fn shard(v: &Value) -> Option<ShardId> {
    v.as_u64().map(ShardId)
}

fn list<'a>(v: &'a Value, name: &str) -> &'a Vec<Value> {
    let l = v[name].as_array().unwrap_or_else(|| panic!("{name}[]"));
    assert!(
        !l.is_empty(),
        "{name}[] is empty: the test would check nothing"
    );
    l
}

#[test]
fn keys_hash_like_the_python_client() {
    let v = vectors();
    for k in list(&v, "keys") {
        let key = hex(k["key_hex"].as_str().expect("key_hex"));
        let pk = hex(k["partition_key_hex"].as_str().expect("partition_key_hex"));
        assert_eq!(partition_key(&key), &pk[..], "partition key of {key:?}");
        assert_eq!(key_hash(&key), u(&k["hash"]), "hash of {key:?}");
    }
}

#[test]
fn new_clusters_split_the_space_like_the_python_client() {
    let v = vectors();
    for e in list(&v, "even_arcs") {
        let n = e["shards"].as_u64().expect("shards");
        let want = arcs(&e["arcs"]);
        assert_eq!(even_arcs(n), want, "even arcs of {n}");
        let mut map = RangeMap::new();
        for (i, a) in want.iter().enumerate() {
            map.insert(ShardId(i as u64 + 1), 1, &[*a]);
        }
        for (kh, s) in e["keys"].as_object().expect("keys") {
            let h = key_hash(&hex(kh));
            assert_eq!(map.shard_for_hash(h), shard(s), "{n} shards, key {kh}");
        }
    }
}

#[test]
fn legacy_rings_place_like_the_python_client() {
    let v = vectors();
    for r in list(&v, "legacy_rings") {
        let ids: Vec<ShardId> = r["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| ShardId(s.as_u64().expect("id")))
            .collect();
        let vnodes = u32::try_from(r["vnodes"].as_u64().expect("vnodes")).expect("u32");
        let ring = Ring::new(&ids, vnodes);
        for (h, s) in r["hashes"].as_object().expect("hashes") {
            let h: u64 = h.parse().expect("hash");
            assert_eq!(ring.shard_for_hash(h), shard(s), "{ids:?}: hash {h}");
        }
        for (kh, s) in r["keys"].as_object().expect("keys") {
            assert_eq!(ring.shard_for_key(&hex(kh)), shard(s), "{ids:?}: key {kh}");
        }
        if let Some(per_shard) = r.get("arcs").and_then(Value::as_object) {
            for (id, a) in per_shard {
                let id = ShardId(id.parse().expect("shard id"));
                assert_eq!(ring.arcs(id), arcs(a), "{ids:?}: arcs of {id:?}");
            }
        }
    }
}

#[test]
fn range_maps_resolve_overlaps_like_the_python_client() {
    let v = vectors();
    for m in list(&v, "range_maps") {
        let mut map = RangeMap::new();
        for d in m["descriptors"].as_array().expect("descriptors") {
            map.insert(
                ShardId(d["shard"].as_u64().expect("shard")),
                d["ring_ver"].as_u64().expect("ring_ver"),
                &arcs(&d["arcs"]),
            );
        }
        for (h, s) in m["hashes"].as_object().expect("hashes") {
            let h: u64 = h.parse().expect("hash");
            assert_eq!(map.shard_for_hash(h), shard(s), "hash {h}");
        }
    }
}
