"""Which shard owns each part of the 64-bit hash space, as the server computes it.

Three pieces, each a port of the Rust code that defines it:

- :func:`even_arcs` (``crates/api/src/ranges.rs``): the arcs of the data shards of a
  new cluster, ``n`` contiguous, nearly equal ranges in shard order.
- :class:`RangeMap` (``ranges.rs``): hash -> shard from the arcs of shard
  descriptors; where two descriptors claim the same hash, the higher ``ring_ver``
  wins. This is what the client routes with.
- :class:`Ring` (``crates/api/src/ring.rs``): the consistent-hash ring with virtual
  points that versions before explicit arcs used. A descriptor without ``arcs`` but
  with ``ring_shards`` still gets its arcs from it (``arcs_of``).

Hashes are Python ints in ``0 .. 2**64 - 1``; arcs are inclusive ``(lo, hi)`` pairs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import xxhash

__all__ = [
    "DEFAULT_VNODES",
    "SPACE",
    "MAX_HASH",
    "Arc",
    "even_arcs",
    "Ring",
    "RangeMap",
    "arcs_of",
    "legacy_arcs",
]

#: Virtual points per shard of the legacy ring.
DEFAULT_VNODES = 64
#: Seed of the legacy ring's token hash ("ctxstore" as a big-endian u64).
TOKEN_SEED = 0x6374_7873_746F_7265
#: Size of the hash space.
SPACE = 1 << 64
#: Largest hash.
MAX_HASH = SPACE - 1
#: The meta shard, which owns no keys.
META_SHARD = 0

Arc = tuple[int, int]


def even_arcs(n: int) -> list[Arc]:
    """``n`` contiguous arcs of (nearly) equal size covering the whole space, in order:
    shard ``i + 1`` of a new cluster with ``initial-shards = n`` owns arc ``i``."""
    n = max(n, 1)
    return [((SPACE * i) // n, (SPACE * (i + 1)) // n - 1) for i in range(n)]


def token(shard: int, i: int) -> int:
    """The legacy ring's token of point ``i`` of ``shard``:
    ``xxh3_64_with_seed(shard as u64 BE ++ i as u32 BE, TOKEN_SEED)``."""
    data = shard.to_bytes(8, "big") + i.to_bytes(4, "big")
    return xxhash.xxh3_64_intdigest(data, seed=TOKEN_SEED)


class Ring:
    """The legacy consistent-hash ring: ``vnodes`` points per shard.

    Shards are placed in ascending id order. The first shard's points are evenly
    spaced with an xxh3-derived phase; each later shard takes its fair share from the
    shards already placed, splitting their largest arcs (see ``ring.rs``). A hash
    belongs to the first point whose token is ``>=`` it, wrapping to the first point.
    """

    def __init__(self, shards: Iterable[int], vnodes: int = DEFAULT_VNODES) -> None:
        #: Sorted ``(token, shard)`` points.
        self.points: list[tuple[int, int]] = []
        for s in sorted(set(shards)):
            self._add_shard(s, max(vnodes, 1))
        self._tokens = [t for t, _ in self.points]

    @classmethod
    def from_ring_shards(cls, ring_shards: Sequence[int]) -> "Ring | None":
        """The ring of a descriptor's ``ring_shards`` (64 points per shard); ``None``
        for zero or one shard (one shard owns everything)."""
        if len(ring_shards) <= 1:
            return None
        return cls(ring_shards, DEFAULT_VNODES)

    def _add_shard(self, shard: int, vnodes: int) -> None:
        if not self.points:
            # `(SPACE / vnodes) as u64` in Rust: truncated to 64 bits (0 for vnodes = 1).
            step = (SPACE // vnodes) & MAX_HASH
            phase = token(shard, 0) % max(step, 1)
            self.points = sorted(((phase + i * step) & MAX_HASH, shard) for i in range(vnodes))
            return
        n = len(self.points)
        # Arcs of every old shard: (length, start exclusive); point j owns
        # (t[j-1], t[j]], the first point wrapping around from the last.
        arcs: dict[int, list[tuple[int, int]]] = {}
        for j in range(n):
            t, owner = self.points[j]
            prev = self.points[(j + n - 1) % n][0]
            length = SPACE if n == 1 else (t - prev) & MAX_HASH
            arcs.setdefault(owner, []).append((length, prev))
        old = len(arcs)
        owned = {s: sum(length for length, _ in a) for s, a in sorted(arcs.items())}
        total_pts = vnodes
        # Points per old shard: proportional to what it owns (largest remainder).
        quota = [[s, (o * total_pts) // SPACE, (o * total_pts) % SPACE] for s, o in owned.items()]
        left = total_pts - sum(q[1] for q in quota)
        order = sorted(range(len(quota)), key=lambda i: (-quota[i][2], quota[i][0]))
        for i in order:
            if left == 0:
                break
            quota[i][1] += 1
            left -= 1
        new_points = []
        for s, k, _ in quota:
            if k == 0:
                continue
            mine = arcs.pop(s, [])
            # Largest arcs first; ties by position.
            mine.sort(key=lambda a: (-a[0], a[1]))
            chosen = mine[: min(k, len(mine))]
            want = owned[s] // (old + 1)
            have = sum(length for length, _ in chosen)
            for length, start in chosen:
                take = (length * want) // max(have, 1)
                take = min(max(take, 1), max(length - 1, 1))
                new_points.append(((start + take) & MAX_HASH, shard))
        points = sorted(self.points + new_points)
        # dedup_by_key on the token: keep the first of equal tokens.
        deduped: list[tuple[int, int]] = []
        for p in points:
            if deduped and deduped[-1][0] == p[0]:
                continue
            deduped.append(p)
        self.points = deduped

    def shards(self) -> list[int]:
        """The shards on the ring, ascending."""
        return sorted({s for _, s in self.points})

    def shard_for_hash(self, h: int) -> int | None:
        """The shard owning ring position ``h`` (None on an empty ring)."""
        if not self.points:
            return None
        i = bisect.bisect_left(self._tokens, h)
        if i == len(self.points):
            i = 0
        return self.points[i][1]

    def arcs(self, shard: int) -> list[Arc]:
        """Inclusive hash ranges owned by ``shard``, ascending."""
        out: list[Arc] = []
        n = len(self.points)
        for i, (t, s) in enumerate(self.points):
            if s != shard:
                continue
            if i == 0:
                out.append((0, t))
                last = self.points[n - 1][0]
                if last < MAX_HASH:
                    out.append((last + 1, MAX_HASH))
            else:
                prev = self.points[i - 1][0]
                if prev < t:
                    out.append((prev + 1, t))
        out.sort()
        return out


def legacy_arcs(ring_shards: Sequence[int], shard: int) -> list[Arc]:
    """The arcs of ``shard`` on the legacy ring over ``ring_shards`` (the whole space
    for a single shard)."""
    ring = Ring.from_ring_shards(ring_shards)
    if ring is None:
        return [(0, MAX_HASH)]
    return ring.arcs(shard)


def arcs_of(desc) -> list[Arc]:
    """The arcs a ``ShardDescriptor`` owns: its ``arcs``, else (a descriptor written
    before explicit arcs) those its ``ring_shards`` give it. The meta shard, and a
    replica's placeholder descriptor (``conf_ver`` 0, no arcs), own none."""
    if desc.shard_id == META_SHARD or (not desc.arcs and desc.conf_ver == 0):
        return []
    if desc.arcs:
        return [(r.lo, r.hi) for r in desc.arcs]
    return legacy_arcs(list(desc.ring_shards), desc.shard_id)


@dataclass
class _Stretch:
    lo: int
    hi: int
    shard: int
    ring_ver: int


@dataclass
class RangeMap:
    """Hash -> shard, from the arcs of the descriptors it was told about; where two
    claim the same hash, the one with the higher ``ring_ver`` (then the higher shard
    id, as the Rust map repaints in ``(ring_ver, shard)`` order) wins."""

    #: Each known shard's newest ``(ring_ver, arcs)``.
    shards: dict[int, tuple[int, list[Arc]]] = field(default_factory=dict)
    _stretches: list[_Stretch] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)

    def insert_descriptor(self, desc) -> bool:
        """Records a ``ShardDescriptor`` (ignoring the meta shard); whether anything
        changed."""
        if desc.shard_id == META_SHARD:
            return False
        return self.insert(desc.shard_id, desc.ring_ver, arcs_of(desc))

    def insert(self, shard: int, ring_ver: int, arcs: Sequence[Arc]) -> bool:
        """Records ``shard``'s arcs as of ``ring_ver``; an older ``ring_ver`` than the
        one known is ignored. Whether anything changed."""
        arcs = sorted(tuple(a) for a in arcs)
        known = self.shards.get(shard)
        if known is not None and (known[0] > ring_ver or (known[0] == ring_ver and known[1] == arcs)):
            return False
        self.shards[shard] = (ring_ver, arcs)
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        stretches: list[_Stretch] = []
        for ring_ver, shard in sorted((v, s) for s, (v, _) in self.shards.items()):
            for lo, hi in self.shards[shard][1]:
                if lo > hi:
                    continue
                kept: list[_Stretch] = []
                for st in stretches:
                    if st.hi < lo or st.lo > hi:
                        kept.append(st)
                        continue
                    if st.lo < lo:
                        kept.append(_Stretch(st.lo, lo - 1, st.shard, st.ring_ver))
                    if st.hi > hi:
                        kept.append(_Stretch(hi + 1, st.hi, st.shard, st.ring_ver))
                kept.append(_Stretch(lo, hi, shard, ring_ver))
                stretches = kept
        stretches.sort(key=lambda s: s.lo)
        self._stretches = stretches
        self._starts = [s.lo for s in stretches]

    def shard_for_hash(self, h: int) -> int | None:
        """The shard owning hash ``h``, if a known shard claims it."""
        i = bisect.bisect_right(self._starts, h) - 1
        if i < 0:
            return None
        st = self._stretches[i]
        return st.shard if st.hi >= h else None

    def known_shards(self) -> list[int]:
        """The shards known, ascending."""
        return sorted(self.shards)

    def owned(self, shard: int) -> list[Arc]:
        """The arcs ``shard`` owns in this map (its own minus what newer claims took),
        ascending and merged."""
        out: list[list[int]] = []
        for st in self._stretches:
            if st.shard != shard:
                continue
            if out and out[-1][1] + 1 == st.lo:
                out[-1][1] = st.hi
            else:
                out.append([st.lo, st.hi])
        return [(a, b) for a, b in out]

    def covers_everything(self) -> bool:
        """Whether every hash has exactly one owner."""
        nxt = 0
        for st in self._stretches:
            if st.lo != nxt:
                return False
            nxt = st.hi + 1
        return nxt == SPACE
