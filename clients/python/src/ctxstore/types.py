"""Plain Python results and inputs of the Kv API, and helpers that turn Python values
into the protobuf messages of the agent context API.

The agent context calls return the generated protobuf messages themselves
(``ctxstore.pb.ReadResponse``, ``CheckpointTuple``, ``Model``...), documented in
``proto/ctxstore/v1/context.proto``; the Kv calls return the small dataclasses here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from ._proto import context_pb2, kv_pb2
from .keys import as_bytes

__all__ = [
    "KeyValue",
    "WriteResult",
    "DeleteResult",
    "ScanResult",
    "Put",
    "Delete",
    "Check",
    "BatchOpLike",
    "MessageLike",
    "to_chat_message",
    "to_model",
]


@dataclass(frozen=True)
class KeyValue:
    """A stored key with its versions (Raft indexes of its shard)."""

    key: bytes
    value: bytes
    #: Raft index of the last write of this key.
    version: int
    #: Raft index of the write that created this key.
    create_version: int
    #: Unix milliseconds after which the key is invisible; 0 = never.
    expires_at_ms: int = 0
    #: The lease the key is attached to; 0 = none.
    lease_id: int = 0

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> "KeyValue":
        return cls(bytes(kv.key), bytes(kv.value), kv.version, kv.create_version, kv.expires_at_ms, kv.lease_id)


@dataclass(frozen=True)
class Lease:
    """A lease: a key of the partition it lives in (what it was granted with), its
    id, and the TTL it was granted with."""

    key: bytes
    id: int
    ttl_ms: int


@dataclass(frozen=True)
class WriteResult:
    """Result of a put or compare-and-swap."""

    version: int
    create_version: int


@dataclass(frozen=True)
class DeleteResult:
    """Result of a delete: whether a live key was removed, and the delete's index."""

    deleted: bool
    version: int


@dataclass(frozen=True)
class ScanResult:
    """One page of a scan: keys in ascending byte order, and whether more match."""

    kvs: list[KeyValue]
    more: bool


@dataclass(frozen=True)
class Put:
    """Batch operation: write ``value`` at ``key`` (``ttl_ms`` 0 = never expires)."""

    key: str | bytes
    value: str | bytes
    ttl_ms: int = 0
    #: Attach to this lease of the key's partition (0: none).
    lease_id: int = 0


@dataclass(frozen=True)
class Delete:
    """Batch operation: delete ``key``."""

    key: str | bytes


@dataclass(frozen=True)
class Check:
    """Batch condition: ``key`` must be at ``expected_version`` (0 = absent)."""

    key: str | bytes
    expected_version: int


BatchOpLike = Union[Put, Delete, Check, kv_pb2.BatchOp]


def to_batch_op(op: BatchOpLike) -> kv_pb2.BatchOp:
    """A batch operation as its protobuf message."""
    if isinstance(op, kv_pb2.BatchOp):
        return op
    if isinstance(op, Put):
        return kv_pb2.BatchOp(
            put=kv_pb2.PutOp(key=as_bytes(op.key), value=as_bytes(op.value), ttl_ms=op.ttl_ms, lease_id=op.lease_id)
        )
    if isinstance(op, Delete):
        return kv_pb2.BatchOp(delete=kv_pb2.DeleteOp(key=as_bytes(op.key)))
    if isinstance(op, Check):
        return kv_pb2.BatchOp(check=kv_pb2.CheckOp(key=as_bytes(op.key), expected_version=op.expected_version))
    raise TypeError(f"not a batch operation: {op!r}")


@dataclass
class Message:
    """A chat message to append (``seq`` and ``created_at_ms`` are set by the store).

    ``metadata`` keys that mean something to the store: ``tool_call_id``
    (comma-separated ids; messages sharing one are never split by a budget read) and
    ``pinned`` = ``"true"`` (always returned by budget reads with ``include_pinned``).
    """

    role: str
    content: str
    token_count: int = 0
    metadata: dict[str, str] = field(default_factory=dict)


MessageLike = Union[Message, Mapping[str, Any], context_pb2.ChatMessage]


def to_chat_message(m: MessageLike) -> context_pb2.ChatMessage:
    """A message as a ``ChatMessage``: from :class:`Message`, a mapping with ``role``,
    ``content`` and optionally ``token_count`` and ``metadata``, or the message
    itself."""
    if isinstance(m, context_pb2.ChatMessage):
        return m
    if isinstance(m, Message):
        return context_pb2.ChatMessage(
            role=m.role, content=m.content, token_count=m.token_count, metadata=dict(m.metadata)
        )
    if isinstance(m, Mapping):
        return context_pb2.ChatMessage(
            role=str(m.get("role", "")),
            content=str(m.get("content", "")),
            token_count=int(m.get("token_count", 0)),
            metadata={str(k): str(v) for k, v in dict(m.get("metadata") or {}).items()},
        )
    raise TypeError(f"not a message: {m!r}")


def to_model(model: context_pb2.Model | Mapping[str, Any]) -> context_pb2.Model:
    """A model record as a ``Model`` message (from a mapping of its fields)."""
    if isinstance(model, context_pb2.Model):
        return model
    fields = dict(model)
    meta = fields.pop("metadata", None) or {}
    m = context_pb2.Model(**fields)
    m.metadata.update({str(k): str(v) for k, v in meta.items()})
    return m
