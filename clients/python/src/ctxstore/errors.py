"""Typed exceptions mirroring the server's error kinds (``docs/api.md``, "Errors").

The server sends a typed detail with every error it can name: an encoded
``ctxstore.v1.ErrorDetail`` message (not a ``google.rpc.Status``) in the
``grpc-status-details-bin`` trailer. :func:`from_rpc_error` decodes it into one
subclass of :class:`CtxstoreError` per ``ErrorDetail`` kind; a status without a
detail becomes :class:`TransportError` (a connection failure) or :class:`RpcError`.
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = [
    "CtxstoreError",
    "NotLeaderError",
    "StaleEpochError",
    "WrongShardError",
    "ShardUnavailableError",
    "ReplicaTooStaleError",
    "InvalidArgumentError",
    "VersionMismatchError",
    "LimitExceededError",
    "NodeNotReadyError",
    "SequenceMismatchError",
    "WatchCompactedError",
    "NotFoundError",
    "FailedPreconditionError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "TransportError",
    "DeadlineExceededError",
    "RpcError",
    "from_rpc_error",
    "from_status",
    "DETAILS_KEY",
    "DETAIL_TYPE_URL",
]

#: The trailer that carries the encoded ``ErrorDetail``.
DETAILS_KEY = "grpc-status-details-bin"


class CtxstoreError(Exception):
    """Base of every error this package raises for a failed call.

    Attributes:
        code: the gRPC status code (``None`` for errors made by the client itself,
            such as a local argument check).
        message: the server's (or client's) message.
        detail: the decoded ``ErrorDetail`` protobuf message, if the server sent one.
    """

    #: Whether retrying the same request elsewhere or later can succeed (the client
    #: retries these itself within the deadline).
    retryable: bool = False

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class NotLeaderError(CtxstoreError):
    """The replica does not lead the shard; ``leader_hint`` (a ``ReplicaInfo`` or
    ``None``) names the leader it knows."""

    retryable = True

    def __init__(self, message: str, *, shard_id: int = 0, leader_hint: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.shard_id = shard_id
        self.leader_hint = leader_hint


class StaleEpochError(CtxstoreError):
    """The request was routed with an older ``ring_ver`` than the shard's, or to a
    shard that no longer owns the key. Nothing was applied; ``current`` holds the
    ``ShardRoute`` s the answering node knows now."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        shard_id: int = 0,
        conf_ver: int = 0,
        ring_ver: int = 0,
        current: list | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.shard_id = shard_id
        self.conf_ver = conf_ver
        self.ring_ver = ring_ver
        self.current = list(current or [])


class WrongShardError(CtxstoreError):
    """The node hosts no replica of the named shard."""

    retryable = True

    def __init__(self, message: str, *, shard_id: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.shard_id = shard_id


class ShardUnavailableError(CtxstoreError):
    """No leader right now, or a proposal lost. ``outcome_unknown`` tells the two
    cases apart: ``False``, the command was not applied and never will be;
    ``True``, it was proposed and may have been applied. The client retries either
    with the same request id, which the store answers with the first outcome."""

    retryable = True

    def __init__(
        self, message: str, *, shard_id: int = 0, reason: str = "", outcome_unknown: bool = False, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.shard_id = shard_id
        self.reason = reason
        self.outcome_unknown = outcome_unknown


class ReplicaTooStaleError(CtxstoreError):
    """A bounded-staleness read reached a follower that does not qualify."""

    retryable = True

    def __init__(
        self, message: str, *, shard_id: int = 0, applied: int = 0, contact_age_ms: int | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.shard_id = shard_id
        self.applied = applied
        self.contact_age_ms = contact_age_ms


class InvalidArgumentError(CtxstoreError, ValueError):
    """A request field is malformed; nothing was written. ``field`` names it."""

    def __init__(self, field: str, reason: str, message: str | None = None, **kw: Any) -> None:
        kw.setdefault("code", grpc.StatusCode.INVALID_ARGUMENT)
        super().__init__(message or f"invalid argument `{field}`: {reason}", **kw)
        self.field = field
        self.reason = reason


class VersionMismatchError(CtxstoreError):
    """A compare-and-swap, batch check or conditional model write found another
    version (``actual``, 0 = absent) than ``expected``; nothing was written."""

    def __init__(self, message: str, *, key: bytes = b"", expected: int = 0, actual: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.key = key
        self.expected = expected
        self.actual = actual


class LimitExceededError(CtxstoreError):
    """A size or count limit (``limit``, as in the config file) was exceeded; nothing
    was written."""

    def __init__(self, message: str, *, limit: str = "", max: int = 0, actual: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit = limit
        self.max = max
        self.actual = actual


class NodeNotReadyError(CtxstoreError):
    """The node hosts no replica yet, or is shutting down."""

    retryable = True

    def __init__(self, message: str, *, reason: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class SequenceMismatchError(CtxstoreError):
    """An append or compact found another ``last_seq`` than ``expected_last_seq``;
    nothing was written."""

    def __init__(
        self, message: str, *, conversation: str = "", expected: int = 0, actual: int = 0, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.conversation = conversation
        self.expected = expected
        self.actual = actual


class WatchCompactedError(CtxstoreError):
    """A watch asked for changes the server no longer retains: re-read, then watch
    from the version read."""

    def __init__(self, message: str, *, requested: int = 0, retained_after: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.requested = requested
        self.retained_after = retained_after


class NotFoundError(CtxstoreError):
    """The conversation, thread, checkpoint or model does not exist."""

    def __init__(self, message: str, *, what: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.what = what


class FailedPreconditionError(CtxstoreError):
    """The request cannot be carried out in the cluster's current state; nothing
    changed."""

    def __init__(self, message: str, *, reason: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class UnauthenticatedError(CtxstoreError):
    """Auth is on and the call had no credentials, or ones the cluster does not know
    (an unknown token and a wrong secret look the same)."""


class PermissionDeniedError(CtxstoreError):
    """The caller's roles do not allow the call; says nothing about whether the
    target exists."""


class TransportError(CtxstoreError):
    """A node could not be reached, or the connection broke under the request (a
    status without a detail: UNAVAILABLE, UNKNOWN, CANCELLED). Retried by the
    client; writes carry request ids, so a retry never applies twice."""

    retryable = True


class DeadlineExceededError(CtxstoreError, TimeoutError):
    """The call's deadline passed while retrying. ``last_error`` is the error of the
    last attempt (``None`` when the last attempt got no answer at all)."""

    def __init__(self, timeout: float, last_error: CtxstoreError | None) -> None:
        super().__init__(
            f"deadline of {timeout:g} s exceeded; last error: {last_error}",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        self.timeout = timeout
        self.last_error = last_error


class RpcError(CtxstoreError):
    """A gRPC status without a typed detail (for example INTERNAL)."""


def _details_bytes(err: grpc.RpcError) -> bytes | None:
    try:
        md = err.trailing_metadata() or ()
    except Exception:  # not a call object
        return None
    for item in md:
        key, value = item[0], item[1]
        if key == DETAILS_KEY:
            return value if isinstance(value, bytes) else None
    return None


#: The ``type_url`` of the ``Any`` that carries an ``ErrorDetail`` in a
#: ``google.rpc.Status``.
DETAIL_TYPE_URL = "type.googleapis.com/ctxstore.v1.ErrorDetail"


def _error_detail(details: bytes) -> Any:
    """The ``ErrorDetail`` in a status's details: the ``Any`` of type
    :data:`DETAIL_TYPE_URL` in a ``google.rpc.Status`` (the standard rich form), or,
    from servers before it, the bare message; ``None`` when neither parses."""
    from google.rpc import status_pb2

    from ._proto import kv_pb2

    d = kv_pb2.ErrorDetail()
    try:
        rich = status_pb2.Status()
        rich.ParseFromString(details)
        for any_ in rich.details:
            if any_.type_url == DETAIL_TYPE_URL:
                d.ParseFromString(any_.value)
                return d
    except Exception:
        pass
    try:
        d.ParseFromString(details)
    except Exception:
        return None
    return d


def from_status(code: grpc.StatusCode, message: str, details: bytes | None) -> CtxstoreError:
    """Decodes a status (code, message, ``grpc-status-details-bin`` bytes) into the
    matching exception, as ``crates/api/src/status.rs`` does."""
    kw: dict[str, Any] = {"code": code}
    if details:
        d = _error_detail(details)
        kind = d.WhichOneof("kind") if d is not None else None
        if kind is not None:
            kw["detail"] = d
            v = getattr(d, kind)
            if kind == "not_leader":
                hint = v.leader_hint if v.HasField("leader_hint") else None
                return NotLeaderError(message, shard_id=v.shard_id, leader_hint=hint, **kw)
            if kind == "stale_epoch":
                return StaleEpochError(
                    message, shard_id=v.shard_id, conf_ver=v.conf_ver, ring_ver=v.ring_ver, current=list(v.current), **kw
                )
            if kind == "wrong_shard":
                return WrongShardError(message, shard_id=v.shard_id, **kw)
            if kind == "shard_unavailable":
                return ShardUnavailableError(
                    message, shard_id=v.shard_id, reason=v.reason, outcome_unknown=v.outcome_unknown, **kw
                )
            if kind == "replica_too_stale":
                age = v.contact_age_ms if v.HasField("contact_age_ms") else None
                return ReplicaTooStaleError(message, shard_id=v.shard_id, applied=v.applied, contact_age_ms=age, **kw)
            if kind == "invalid_argument":
                return InvalidArgumentError(v.field, v.reason, message, **kw)
            if kind == "version_mismatch":
                return VersionMismatchError(
                    message, key=bytes(v.key), expected=v.expected_version, actual=v.actual_version, **kw
                )
            if kind == "limit_exceeded":
                return LimitExceededError(message, limit=v.limit, max=v.max, actual=v.actual, **kw)
            if kind == "node_not_ready":
                return NodeNotReadyError(message, reason=v.reason, **kw)
            if kind == "sequence_mismatch":
                return SequenceMismatchError(
                    message,
                    conversation=v.conversation,
                    expected=v.expected_last_seq,
                    actual=v.actual_last_seq,
                    **kw,
                )
            if kind == "watch_compacted":
                return WatchCompactedError(message, requested=v.requested, retained_after=v.retained_after, **kw)
            if kind == "not_found":
                return NotFoundError(message, what=v.what, **kw)
            if kind == "failed_precondition":
                return FailedPreconditionError(message, reason=v.reason, **kw)
    # No (known) detail: refused credentials, a connection-level failure, or a
    # bare status.
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UnauthenticatedError(message.removeprefix("unauthenticated: "), code=code)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(message.removeprefix("permission denied: "), code=code)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED) and not details:
        return TransportError(message or code.name, code=code)
    if code == grpc.StatusCode.INTERNAL and not details and ("RST_STREAM" in message or "protocol error" in message):
        # The connection broke under the request (the server process stopping).
        return TransportError(message, code=code)
    return RpcError(f"rpc error {code.name if code else '?'}: {message}", code=code)


def from_rpc_error(err: grpc.RpcError) -> CtxstoreError:
    """The typed exception for a failed gRPC call (sync or asyncio)."""
    try:
        code = err.code()
    except Exception:
        code = grpc.StatusCode.UNKNOWN
    try:
        message = err.details() or ""
    except Exception:
        message = str(err)
    return from_status(code, message, _details_bytes(err))
