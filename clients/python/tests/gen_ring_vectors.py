"""Writes ``ring_vectors.json``: shared test vectors of key placement, computed with
this package's port of ``crates/api/src/{keys,ranges,ring}.rs``. The Python tests
check the file against this code and against a live cluster (test_ring.py); a Rust
test reads the same file (format in docs/python.md, "Ring test vectors").

    python clients/python/tests/gen_ring_vectors.py     # rewrite the file
"""

from __future__ import annotations

import json
from pathlib import Path

from ctxstore.keys import key_hash, partition_key
from ctxstore.ring import RangeMap, Ring, even_arcs

OUT = Path(__file__).resolve().parent / "ring_vectors.json"

#: Keys with edge cases of the hash-tag rule, and plain keys that spread over shards.
KEYS: list[bytes] = [
    b"",
    b"a",
    b"plain",
    b"{conv:1}:msg:7",
    b"conv:1",
    b"{}empty",
    b"a{b}c{d}",
    b"open{only",
    b"x}{y}",
    b"{a}{b}",
    b"a{}{b}",
    b"{tag}:a",
    b"{tag}:b",
    b"tag",
    b"caf\xc3\xa9",
    b"{\xc3\xa9t\xc3\xa9}x",
    b"\x00\xff\x01{\x00}\x02",
    b"\x00C{c/agents/run-7}",
    b"\x00M{c/agents/run-7}\x00\x00\x00\x00\x00\x00\x00\x09",
    b"\x00H{t/thread-1}",
    b"\x00R{registry}model-a",
] + [f"key-{i}".encode() for i in range(48)]

#: Shard counts of new clusters (``initial-shards``) whose initial arcs are listed.
EVEN = [1, 2, 3, 4, 7, 8]
#: Legacy rings (shards, points per shard).
#: (shards, points per shard, whether to list every shard's arcs).
LEGACY = [([1, 2, 3, 4], 64, True), ([1, 2, 3, 4, 5], 8, True), ([3, 1, 2], 64, False)]


def hexs(b: bytes) -> str:
    return b.hex()


def main() -> None:
    keys = []
    for k in KEYS:
        entry = {"key_hex": hexs(k), "partition_key_hex": hexs(partition_key(k)), "hash": str(key_hash(k))}
        try:
            entry["key"] = k.decode("utf-8")
        except UnicodeDecodeError:
            pass
        keys.append(entry)
    even = []
    for n in EVEN:
        m = RangeMap()
        arcs = even_arcs(n)
        for i, a in enumerate(arcs):
            m.insert(i + 1, 1, [a])
        even.append(
            {
                "shards": n,
                "arcs": [[str(lo), str(hi)] for lo, hi in arcs],
                "keys": {hexs(k): m.shard_for_hash(key_hash(k)) for k in KEYS},
            }
        )
    legacy = []
    for shards, vnodes, with_arcs in LEGACY:
        ring = Ring(shards, vnodes)
        probes = [0, 1, (1 << 63), (1 << 64) - 2, (1 << 64) - 1] + [t for t, _ in ring.points[:3]]
        entry = {
            "shards": shards,
            "vnodes": vnodes,
            "points": len(ring.points),
            "hashes": {str(h): ring.shard_for_hash(h) for h in probes},
            "keys": {hexs(k): ring.shard_for_hash(key_hash(k)) for k in KEYS},
        }
        if with_arcs:
            entry["arcs"] = {str(s): [[str(lo), str(hi)] for lo, hi in ring.arcs(s)] for s in ring.shards()}
        legacy.append(entry)
    # A split: shard 1 (ring_ver 1) owned everything; at ring_ver 2 it keeps the lower
    # half and shard 5 owns the upper half. A router that also still holds the old
    # descriptor must let the newer claim win.
    half = 1 << 63
    maps = [
        {
            "descriptors": [
                {"shard": 1, "ring_ver": 1, "arcs": [["0", str((1 << 64) - 1)]]},
                {"shard": 5, "ring_ver": 2, "arcs": [[str(half), str((1 << 64) - 1)]]},
            ]
        },
        {
            "descriptors": [
                {"shard": 2, "ring_ver": 3, "arcs": [["100", "199"], ["500", "599"]]},
                {"shard": 3, "ring_ver": 4, "arcs": [["150", "520"]]},
            ]
        },
    ]
    for m in maps:
        rm = RangeMap()
        for d in m["descriptors"]:
            rm.insert(d["shard"], d["ring_ver"], [(int(lo), int(hi)) for lo, hi in d["arcs"]])
        probes = sorted({0, 99, 100, 149, 150, 199, 200, 499, 500, 520, 521, 599, 600, half - 1, half, (1 << 64) - 1})
        m["hashes"] = {str(h): rm.shard_for_hash(h) for h in probes}
    doc = {
        "about": (
            "Shared ring test vectors of ctxstore (clients/python/tests/gen_ring_vectors.py; "
            "format: docs/python.md, 'Ring test vectors'). Hashes and arc bounds are u64 as "
            "decimal strings; keys are hex-encoded bytes."
        ),
        "keys": keys,
        "even_arcs": even,
        "legacy_rings": legacy,
        "range_maps": maps,
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
