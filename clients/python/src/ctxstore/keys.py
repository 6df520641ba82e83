"""Which bytes of a key decide its placement, and the key layout of the agent context
API, as the server defines them (``crates/api/src/keys.rs`` and ``context.rs``).

A key's position on the hash ring is ``xxh3_64(partition key)`` (XXH3, 64 bits,
seed 0). The partition key is the content of the key's first ``{...}`` hash tag when
that tag is non-empty (the Redis Cluster rule: only the first ``{`` counts), else the
whole key.

Conversations, checkpoint threads and the model registry are stored under reserved
keys (first byte ``0x00``) whose hash tag names the conversation, the thread or the
registry, so the client routes a context call by the hash of that tag.
"""

from __future__ import annotations

import unicodedata

import xxhash

from .errors import InvalidArgumentError

__all__ = [
    "MAX_NAME",
    "MAX_THREAD",
    "MAX_THREAD_CAP",
    "as_bytes",
    "partition_key",
    "prefix_partition",
    "key_hash",
    "tag_hash",
    "conversation_hash",
    "thread_hash",
    "registry_hash",
    "validate_conversation",
    "validate_namespace",
    "validate_thread",
    "validate_tenant_namespace",
    "stored_thread",
    "validate_part",
]

#: Longest namespace, conversation id, checkpoint id, channel or model name the
#: server accepts, in UTF-8 bytes.
MAX_NAME = 128
#: Longest checkpoint thread id and checkpoint namespace a server accepts by default
#: (its ``limits.max-thread-id-size`` and ``limits.max-checkpoint-ns-size``), in UTF-8
#: bytes; over a server's limit is :class:`~ctxstore.errors.LimitExceededError`.
MAX_THREAD = 1024
#: What those limits may be set to at most: the client refuses longer names itself.
MAX_THREAD_CAP = 16 * 1024


def as_bytes(key: str | bytes | bytearray | memoryview) -> bytes:
    """A key as bytes: ``str`` keys are UTF-8 encoded."""
    if isinstance(key, str):
        return key.encode("utf-8")
    return bytes(key)


def partition_key(key: bytes) -> bytes:
    """The bytes of ``key`` that decide its placement: the first non-empty ``{...}``
    hash tag, else the whole key.

    Only the first ``{`` is looked at: ``b"a{}{b}"`` has an empty first tag, so its
    partition key is the whole key.
    """
    open_ = key.find(b"{")
    if open_ >= 0:
        close = key.find(b"}", open_ + 1)
        if close > open_ + 1:
            return key[open_ + 1 : close]
    return key


def prefix_partition(prefix: bytes) -> bytes | None:
    """The hash tag a scan or watch prefix pins down, if any: the prefix's first
    ``{`` must be closed inside the prefix by a ``}``, with something in between."""
    open_ = prefix.find(b"{")
    if open_ < 0:
        return None
    close = prefix.find(b"}", open_ + 1)
    if close <= open_ + 1:
        return None
    return prefix[open_ + 1 : close]


def tag_hash(tag: bytes) -> int:
    """Ring position of a hash tag: ``xxh3_64(tag)``."""
    return xxhash.xxh3_64_intdigest(tag)


def key_hash(key: str | bytes) -> int:
    """Ring position of a key: ``xxh3_64(partition_key(key))``."""
    return tag_hash(partition_key(as_bytes(key)))


def conversation_hash(namespace: str, conversation_id: str) -> int:
    """Ring position of a conversation: its records carry the tag ``{c/<ns>/<id>}``."""
    return tag_hash(f"c/{namespace}/{conversation_id}".encode())


def escape(name: str) -> str:
    """A thread id or checkpoint namespace as the server puts it into keys: 0x00,
    0x01, 0x02 and 0x03 become 0x03 followed by ``@``, ``A``, ``B``, ``C``; any other
    name is unchanged."""
    if not any(c <= "\x03" for c in name):
        return name
    return "".join("\x03" + chr(0x40 + ord(c)) if c <= "\x03" else c for c in name)


def stored_thread(thread: str, namespace: str = "") -> str:
    """The name a thread is stored and routed under: its id (escaped) in the default
    tenant namespace, else ``namespace + "\\x01" + id``."""
    return f"{namespace}\x01{escape(thread)}" if namespace else escape(thread)


def thread_hash(thread: str, namespace: str = "") -> int:
    """Ring position of a checkpoint thread (all its checkpoint namespaces): tag
    ``{t/<stored thread>}``."""
    # A `}` would end the tag: the server stores it as 0x02 there.
    return tag_hash(f"t/{stored_thread(thread, namespace)}".replace("}", "\x02").encode())


def registry_hash(namespace: str = "") -> int:
    """Ring position of a model registry: tag ``{registry}``, or
    ``{registry/<namespace>}`` for a tenant namespace's."""
    return tag_hash(f"registry/{namespace}".encode() if namespace else b"registry")


def _check_length(field: str, value: str, allow_empty: bool, max_size: int) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentError(field, f"must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidArgumentError(field, "must not be empty")
    size = len(value.encode("utf-8"))
    if size > max_size:
        raise InvalidArgumentError(field, f"at most {max_size} bytes, got {size}")


def _check_name(field: str, value: str, allow_empty: bool, forbidden: str, max_size: int = MAX_NAME) -> None:
    _check_length(field, value, allow_empty, max_size)
    for c in value:
        # Rust's char::is_control is the Unicode general category Cc.
        if unicodedata.category(c) == "Cc" or c in forbidden:
            raise InvalidArgumentError(
                field,
                f"must not contain {c!r} (control characters and {list(forbidden)!r} are not allowed)",
            )


def validate_conversation(namespace: str, conversation_id: str) -> None:
    """Checks a conversation's names as the server does (raises
    :class:`~ctxstore.errors.InvalidArgumentError`): namespace 1..=128 bytes without
    ``/``, ``}`` or control characters; id 1..=128 bytes without ``}`` or control
    characters."""
    _check_name("conversation.namespace", namespace, False, "/}")
    _check_name("conversation.id", conversation_id, False, "}")


def validate_queue(queue: str) -> None:
    """Checks a task queue's name as the server does: 1..=128 bytes without ``}`` or
    control characters."""
    _check_name("queue", queue, False, "}")


def validate_namespace(namespace: str) -> None:
    """Checks a conversation namespace as the server does."""
    _check_name("namespace", namespace, False, "/}")


def validate_thread(thread: str, ns: str | None = None, *, field: str = "thread.thread") -> None:
    """Checks a checkpoint thread (any string of 1..=16384 UTF-8 bytes) and, when
    given, its checkpoint namespace (0..=16384 bytes); the server then applies its
    configured length limits (1,024 bytes each by default)."""
    _check_length(field, thread, False, MAX_THREAD_CAP)
    if ns is not None:
        _check_length("thread.ns", ns, True, MAX_THREAD_CAP)


def validate_tenant_namespace(namespace: str, *, field: str = "namespace") -> None:
    """Checks a thread's or registry's tenant namespace: "" (the default one) or
    1..=128 bytes without ``/``, ``}`` or control characters."""
    if namespace != "":
        _check_name(field, namespace, False, "/}")


def validate_part(field: str, value: str) -> None:
    """Checks a checkpoint id, channel, version, task id or model name: 1..=128 bytes
    without control characters."""
    _check_name(field, value, False, "")
