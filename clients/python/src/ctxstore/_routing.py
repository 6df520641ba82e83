"""The client's routing cache (a port of ``crates/client/src/routing.rs``): which shard
owns each hash (from the descriptors' arcs), each shard's newest descriptor, the
leader it last answered from, and every node's address. Pure state, no I/O; guarded
by a lock because the sync client may be used from several threads."""

from __future__ import annotations

import threading
from typing import Iterable

from .ring import RangeMap


class Routing:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ranges = RangeMap()
        #: Newest descriptor per shard, by (ring_ver, conf_ver).
        self.descs: dict[int, object] = {}
        #: Address of the node believed to lead each shard.
        self.leaders: dict[int, str] = {}
        #: Node id -> address, from the routing table's node list.
        self.nodes: dict[int, str] = {}

    def fetched(self) -> bool:
        """Whether a data shard is known (until then every request fetches the table)."""
        with self._lock:
            return any(s != 0 for s in self.descs)

    def learn_table(self, table) -> list[str]:
        """Learns a ``RoutingTable``; returns the addresses it mentions."""
        addrs: list[str] = []
        with self._lock:
            for n in table.nodes:
                if n.addr:
                    self.nodes[n.node_id] = n.addr
                    addrs.append(n.addr)
        addrs.extend(self.learn_routes(table.shards))
        return addrs

    def learn_routes(self, routes: Iterable) -> list[str]:
        """Learns ``ShardRoute`` s (from a table or a ``StaleEpoch``); returns the
        addresses of their replicas."""
        addrs: list[str] = []
        with self._lock:
            for route in routes:
                if not route.HasField("descriptor"):
                    continue
                d = route.descriptor
                addrs.extend(self._addr_of(r.node_id, r.addr) for r in d.replicas)
                old = self.descs.get(d.shard_id)
                if old is not None and (old.ring_ver, old.conf_ver) > (d.ring_ver, d.conf_ver):
                    continue
                if route.HasField("leader"):
                    a = self._addr_of(route.leader.node_id, route.leader.addr)
                    if a:
                        self.leaders[d.shard_id] = a
                self.ranges.insert_descriptor(d)
                self.descs[d.shard_id] = d
        return [a for a in addrs if a]

    def _addr_of(self, node: int, recorded: str) -> str:
        return self.nodes.get(node, recorded)

    def node_addr(self, node: int, recorded: str) -> str:
        """A node's address: as the table lists the node, else as recorded."""
        with self._lock:
            return self._addr_of(node, recorded)

    def shard_for_hash(self, h: int) -> int | None:
        with self._lock:
            return self.ranges.shard_for_hash(h)

    def shards(self) -> list[int]:
        """Every data shard known, ascending."""
        with self._lock:
            return self.ranges.known_shards()

    def epoch(self, shard: int) -> tuple[int, int]:
        """``(conf_ver, ring_ver)`` of the cached descriptor (zeros: unknown)."""
        with self._lock:
            d = self.descs.get(shard)
            return (d.conf_ver, d.ring_ver) if d is not None else (0, 0)

    def target(self, shard: int, attempt: int) -> str | None:
        """Where to send a request for ``shard``: the believed leader, else the
        replicas in turn (None: nothing known)."""
        with self._lock:
            a = self.leaders.get(shard)
            if a:
                return a
            d = self.descs.get(shard)
            if d is None or not d.replicas:
                return None
            r = d.replicas[attempt % len(d.replicas)]
            return self._addr_of(r.node_id, r.addr) or None

    def replicas(self, shard: int) -> list[str]:
        """The addresses of every replica of ``shard`` (empty: unknown)."""
        with self._lock:
            d = self.descs.get(shard)
            if d is None:
                return []
            addrs = [self._addr_of(r.node_id, r.addr) for r in d.replicas]
            return [a for a in addrs if a]

    def set_leader(self, shard: int, addr: str) -> None:
        with self._lock:
            self.leaders[shard] = addr

    def forget_leader(self, shard: int) -> None:
        with self._lock:
            self.leaders.pop(shard, None)

    def routes(self) -> list[tuple[object, str | None]]:
        """Every shard's descriptor with its believed leader, by shard id."""
        with self._lock:
            return [(self.descs[s], self.leaders.get(s)) for s in sorted(self.descs)]
