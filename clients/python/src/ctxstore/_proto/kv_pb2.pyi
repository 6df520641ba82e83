from ctxstore._proto import common_pb2 as _common_pb2
from ctxstore._proto import context_pb2 as _context_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from ctxstore._proto.common_pb2 import RequestHeader as RequestHeader
from ctxstore._proto.common_pb2 import WatchMoved as WatchMoved
from ctxstore._proto.common_pb2 import ReadMode as ReadMode

DESCRIPTOR: _descriptor.FileDescriptor
READ_MODE_LEADER: _common_pb2.ReadMode
READ_MODE_FOLLOWER: _common_pb2.ReadMode
READ_MODE_BOUNDED: _common_pb2.ReadMode
READ_MODE_STALE: _common_pb2.ReadMode

class ReplicaRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICA_ROLE_VOTER: _ClassVar[ReplicaRole]
    REPLICA_ROLE_LEARNER: _ClassVar[ReplicaRole]
REPLICA_ROLE_VOTER: ReplicaRole
REPLICA_ROLE_LEARNER: ReplicaRole

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "version", "create_version", "expires_at_ms", "lease_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    version: int
    create_version: int
    expires_at_ms: int
    lease_id: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., create_version: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., lease_id: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("header", "key", "stale")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    stale: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("kv",)
    KV_FIELD_NUMBER: _ClassVar[int]
    kv: KeyValue
    def __init__(self, kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("header", "key", "value", "ttl_ms", "request_id", "lease_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    value: bytes
    ttl_ms: int
    request_id: bytes
    lease_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ..., lease_id: _Optional[int] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("version", "create_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    create_version: int
    def __init__(self, version: _Optional[int] = ..., create_version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("header", "key", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    version: int
    def __init__(self, deleted: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class CompareAndSwapRequest(_message.Message):
    __slots__ = ("header", "key", "expected_version", "value", "ttl_ms", "delete", "request_id", "lease_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    expected_version: int
    value: bytes
    ttl_ms: int
    delete: bool
    request_id: bytes
    lease_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ..., delete: _Optional[bool] = ..., request_id: _Optional[bytes] = ..., lease_id: _Optional[int] = ...) -> None: ...

class CompareAndSwapResponse(_message.Message):
    __slots__ = ("version", "create_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    create_version: int
    def __init__(self, version: _Optional[int] = ..., create_version: _Optional[int] = ...) -> None: ...

class BatchOp(_message.Message):
    __slots__ = ("put", "delete", "check")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    put: PutOp
    delete: DeleteOp
    check: CheckOp
    def __init__(self, put: _Optional[_Union[PutOp, _Mapping]] = ..., delete: _Optional[_Union[DeleteOp, _Mapping]] = ..., check: _Optional[_Union[CheckOp, _Mapping]] = ...) -> None: ...

class PutOp(_message.Message):
    __slots__ = ("key", "value", "ttl_ms", "lease_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_ms: int
    lease_id: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ..., lease_id: _Optional[int] = ...) -> None: ...

class DeleteOp(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class CheckOp(_message.Message):
    __slots__ = ("key", "expected_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    expected_version: int
    def __init__(self, key: _Optional[bytes] = ..., expected_version: _Optional[int] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("header", "ops", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    ops: _containers.RepeatedCompositeFieldContainer[BatchOp]
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., ops: _Optional[_Iterable[_Union[BatchOp, _Mapping]]] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("header", "prefix", "start_after", "limit", "stale")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    prefix: bytes
    start_after: bytes
    limit: int
    stale: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., prefix: _Optional[bytes] = ..., start_after: _Optional[bytes] = ..., limit: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("kvs", "more")
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    kvs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    def __init__(self, kvs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class BatchCommandsRequest(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[BatchCommand]
    def __init__(self, commands: _Optional[_Iterable[_Union[BatchCommand, _Mapping]]] = ...) -> None: ...

class BatchCommand(_message.Message):
    __slots__ = ("id", "traceparent", "get", "put", "append", "read", "put_checkpoint", "put_writes", "get_checkpoint")
    ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    PUT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PUT_WRITES_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    id: int
    traceparent: str
    get: GetRequest
    put: PutRequest
    append: _context_pb2.AppendRequest
    read: _context_pb2.ReadRequest
    put_checkpoint: _context_pb2.PutCheckpointRequest
    put_writes: _context_pb2.PutWritesRequest
    get_checkpoint: _context_pb2.GetCheckpointRequest
    def __init__(self, id: _Optional[int] = ..., traceparent: _Optional[str] = ..., get: _Optional[_Union[GetRequest, _Mapping]] = ..., put: _Optional[_Union[PutRequest, _Mapping]] = ..., append: _Optional[_Union[_context_pb2.AppendRequest, _Mapping]] = ..., read: _Optional[_Union[_context_pb2.ReadRequest, _Mapping]] = ..., put_checkpoint: _Optional[_Union[_context_pb2.PutCheckpointRequest, _Mapping]] = ..., put_writes: _Optional[_Union[_context_pb2.PutWritesRequest, _Mapping]] = ..., get_checkpoint: _Optional[_Union[_context_pb2.GetCheckpointRequest, _Mapping]] = ...) -> None: ...

class BatchCommandsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchCommandResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchCommandResult, _Mapping]]] = ...) -> None: ...

class BatchCommandResult(_message.Message):
    __slots__ = ("id", "get", "put", "error", "append", "read", "put_checkpoint", "put_writes", "get_checkpoint")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    PUT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PUT_WRITES_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    id: int
    get: GetResponse
    put: PutResponse
    error: CallStatus
    append: _context_pb2.AppendResponse
    read: _context_pb2.ReadResponse
    put_checkpoint: _context_pb2.PutCheckpointResponse
    put_writes: _context_pb2.PutWritesResponse
    get_checkpoint: _context_pb2.GetCheckpointResponse
    def __init__(self, id: _Optional[int] = ..., get: _Optional[_Union[GetResponse, _Mapping]] = ..., put: _Optional[_Union[PutResponse, _Mapping]] = ..., error: _Optional[_Union[CallStatus, _Mapping]] = ..., append: _Optional[_Union[_context_pb2.AppendResponse, _Mapping]] = ..., read: _Optional[_Union[_context_pb2.ReadResponse, _Mapping]] = ..., put_checkpoint: _Optional[_Union[_context_pb2.PutCheckpointResponse, _Mapping]] = ..., put_writes: _Optional[_Union[_context_pb2.PutWritesResponse, _Mapping]] = ..., get_checkpoint: _Optional[_Union[_context_pb2.GetCheckpointResponse, _Mapping]] = ...) -> None: ...

class CallStatus(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: bytes
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[bytes] = ...) -> None: ...

class LeaseGrantRequest(_message.Message):
    __slots__ = ("header", "key", "ttl_ms", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    ttl_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class LeaseGrantResponse(_message.Message):
    __slots__ = ("id", "ttl_ms", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl_ms: int
    version: int
    def __init__(self, id: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class LeaseRevokeRequest(_message.Message):
    __slots__ = ("header", "key", "id", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    id: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., id: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class LeaseRevokeResponse(_message.Message):
    __slots__ = ("revoked", "keys_deleted", "version")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    KEYS_DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    keys_deleted: int
    version: int
    def __init__(self, revoked: _Optional[bool] = ..., keys_deleted: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class LeaseKeepAliveRequest(_message.Message):
    __slots__ = ("header", "key", "id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., id: _Optional[int] = ...) -> None: ...

class LeaseKeepAliveResponse(_message.Message):
    __slots__ = ("id", "ttl_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl_ms: int
    def __init__(self, id: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseInfoRequest(_message.Message):
    __slots__ = ("header", "key", "id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., id: _Optional[int] = ...) -> None: ...

class LeaseInfoResponse(_message.Message):
    __slots__ = ("found", "ttl_ms", "remaining_ms", "keys")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    ttl_ms: int
    remaining_ms: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, found: _Optional[bool] = ..., ttl_ms: _Optional[int] = ..., remaining_ms: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EnqueueRequest(_message.Message):
    __slots__ = ("header", "queue", "payload", "priority", "delay_ms", "idempotency_key", "max_attempts", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    payload: bytes
    priority: int
    delay_ms: int
    idempotency_key: str
    max_attempts: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ..., payload: _Optional[bytes] = ..., priority: _Optional[int] = ..., delay_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., max_attempts: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class EnqueueResponse(_message.Message):
    __slots__ = ("task_id", "duplicate", "version")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    duplicate: bool
    version: int
    def __init__(self, task_id: _Optional[int] = ..., duplicate: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class QueueTask(_message.Message):
    __slots__ = ("task_id", "payload", "priority", "attempts", "lease_token", "visible_at_ms", "idempotency_key", "enqueued_at_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    payload: bytes
    priority: int
    attempts: int
    lease_token: int
    visible_at_ms: int
    idempotency_key: str
    enqueued_at_ms: int
    def __init__(self, task_id: _Optional[int] = ..., payload: _Optional[bytes] = ..., priority: _Optional[int] = ..., attempts: _Optional[int] = ..., lease_token: _Optional[int] = ..., visible_at_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., enqueued_at_ms: _Optional[int] = ...) -> None: ...

class QueueLeaseRequest(_message.Message):
    __slots__ = ("header", "queue", "max_tasks", "visibility_ms", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    max_tasks: int
    visibility_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ..., max_tasks: _Optional[int] = ..., visibility_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class QueueLeaseResponse(_message.Message):
    __slots__ = ("tasks", "version")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[QueueTask]
    version: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[QueueTask, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class QueueAckRequest(_message.Message):
    __slots__ = ("header", "queue", "task_id", "lease_token", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    task_id: int
    lease_token: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ..., task_id: _Optional[int] = ..., lease_token: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class QueueAckResponse(_message.Message):
    __slots__ = ("acked", "version")
    ACKED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    acked: bool
    version: int
    def __init__(self, acked: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class QueueNackRequest(_message.Message):
    __slots__ = ("header", "queue", "task_id", "lease_token", "retry_after_ms", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    task_id: int
    lease_token: int
    retry_after_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ..., task_id: _Optional[int] = ..., lease_token: _Optional[int] = ..., retry_after_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class QueueNackResponse(_message.Message):
    __slots__ = ("released", "dead_lettered", "version")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    released: bool
    dead_lettered: bool
    version: int
    def __init__(self, released: _Optional[bool] = ..., dead_lettered: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class QueueExtendRequest(_message.Message):
    __slots__ = ("header", "queue", "task_id", "lease_token", "visibility_ms", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    task_id: int
    lease_token: int
    visibility_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ..., task_id: _Optional[int] = ..., lease_token: _Optional[int] = ..., visibility_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class QueueExtendResponse(_message.Message):
    __slots__ = ("extended", "visible_at_ms", "version")
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    extended: bool
    visible_at_ms: int
    version: int
    def __init__(self, extended: _Optional[bool] = ..., visible_at_ms: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ("header", "queue")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    queue: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., queue: _Optional[str] = ...) -> None: ...

class QueueStatsResponse(_message.Message):
    __slots__ = ("ready", "delayed", "leased", "dead", "enqueued_total", "acked_total")
    READY_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACKED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ready: int
    delayed: int
    leased: int
    dead: int
    enqueued_total: int
    acked_total: int
    def __init__(self, ready: _Optional[int] = ..., delayed: _Optional[int] = ..., leased: _Optional[int] = ..., dead: _Optional[int] = ..., enqueued_total: _Optional[int] = ..., acked_total: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("header", "key", "prefix", "from_version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    key: bytes
    prefix: bytes
    from_version: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., key: _Optional[bytes] = ..., prefix: _Optional[bytes] = ..., from_version: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "version", "kv")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUT: _ClassVar[WatchEvent.Kind]
        DELETE: _ClassVar[WatchEvent.Kind]
    PUT: WatchEvent.Kind
    DELETE: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    version: int
    kv: KeyValue
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., version: _Optional[int] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("events", "progress_version", "moved")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    progress_version: int
    moved: _common_pb2.WatchMoved
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., progress_version: _Optional[int] = ..., moved: _Optional[_Union[_common_pb2.WatchMoved, _Mapping]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("not_leader", "stale_epoch", "wrong_shard", "shard_unavailable", "invalid_argument", "version_mismatch", "limit_exceeded", "node_not_ready", "sequence_mismatch", "watch_compacted", "not_found", "failed_precondition", "replica_too_stale")
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    STALE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    WRONG_SHARD_FIELD_NUMBER: _ClassVar[int]
    SHARD_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    INVALID_ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    NODE_NOT_READY_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    WATCH_COMPACTED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    FAILED_PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_TOO_STALE_FIELD_NUMBER: _ClassVar[int]
    not_leader: NotLeader
    stale_epoch: StaleEpoch
    wrong_shard: WrongShard
    shard_unavailable: ShardUnavailable
    invalid_argument: InvalidArgument
    version_mismatch: VersionMismatch
    limit_exceeded: LimitExceeded
    node_not_ready: NodeNotReady
    sequence_mismatch: SequenceMismatch
    watch_compacted: WatchCompacted
    not_found: NotFound
    failed_precondition: FailedPrecondition
    replica_too_stale: ReplicaTooStale
    def __init__(self, not_leader: _Optional[_Union[NotLeader, _Mapping]] = ..., stale_epoch: _Optional[_Union[StaleEpoch, _Mapping]] = ..., wrong_shard: _Optional[_Union[WrongShard, _Mapping]] = ..., shard_unavailable: _Optional[_Union[ShardUnavailable, _Mapping]] = ..., invalid_argument: _Optional[_Union[InvalidArgument, _Mapping]] = ..., version_mismatch: _Optional[_Union[VersionMismatch, _Mapping]] = ..., limit_exceeded: _Optional[_Union[LimitExceeded, _Mapping]] = ..., node_not_ready: _Optional[_Union[NodeNotReady, _Mapping]] = ..., sequence_mismatch: _Optional[_Union[SequenceMismatch, _Mapping]] = ..., watch_compacted: _Optional[_Union[WatchCompacted, _Mapping]] = ..., not_found: _Optional[_Union[NotFound, _Mapping]] = ..., failed_precondition: _Optional[_Union[FailedPrecondition, _Mapping]] = ..., replica_too_stale: _Optional[_Union[ReplicaTooStale, _Mapping]] = ...) -> None: ...

class FailedPrecondition(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class SequenceMismatch(_message.Message):
    __slots__ = ("conversation", "expected_last_seq", "actual_last_seq")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    expected_last_seq: int
    actual_last_seq: int
    def __init__(self, conversation: _Optional[str] = ..., expected_last_seq: _Optional[int] = ..., actual_last_seq: _Optional[int] = ...) -> None: ...

class WatchCompacted(_message.Message):
    __slots__ = ("requested", "retained_after")
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RETAINED_AFTER_FIELD_NUMBER: _ClassVar[int]
    requested: int
    retained_after: int
    def __init__(self, requested: _Optional[int] = ..., retained_after: _Optional[int] = ...) -> None: ...

class NotFound(_message.Message):
    __slots__ = ("what",)
    WHAT_FIELD_NUMBER: _ClassVar[int]
    what: str
    def __init__(self, what: _Optional[str] = ...) -> None: ...

class NotLeader(_message.Message):
    __slots__ = ("shard_id", "leader_hint")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    leader_hint: ReplicaInfo
    def __init__(self, shard_id: _Optional[int] = ..., leader_hint: _Optional[_Union[ReplicaInfo, _Mapping]] = ...) -> None: ...

class StaleEpoch(_message.Message):
    __slots__ = ("shard_id", "conf_ver", "ring_ver", "current")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    CONF_VER_FIELD_NUMBER: _ClassVar[int]
    RING_VER_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    conf_ver: int
    ring_ver: int
    current: _containers.RepeatedCompositeFieldContainer[ShardRoute]
    def __init__(self, shard_id: _Optional[int] = ..., conf_ver: _Optional[int] = ..., ring_ver: _Optional[int] = ..., current: _Optional[_Iterable[_Union[ShardRoute, _Mapping]]] = ...) -> None: ...

class WrongShard(_message.Message):
    __slots__ = ("shard_id",)
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    def __init__(self, shard_id: _Optional[int] = ...) -> None: ...

class ShardUnavailable(_message.Message):
    __slots__ = ("shard_id", "reason", "outcome_unknown")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    reason: str
    outcome_unknown: bool
    def __init__(self, shard_id: _Optional[int] = ..., reason: _Optional[str] = ..., outcome_unknown: _Optional[bool] = ...) -> None: ...

class InvalidArgument(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VersionMismatch(_message.Message):
    __slots__ = ("key", "expected_version", "actual_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    expected_version: int
    actual_version: int
    def __init__(self, key: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., actual_version: _Optional[int] = ...) -> None: ...

class LimitExceeded(_message.Message):
    __slots__ = ("limit", "max", "actual")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    limit: str
    max: int
    actual: int
    def __init__(self, limit: _Optional[str] = ..., max: _Optional[int] = ..., actual: _Optional[int] = ...) -> None: ...

class NodeNotReady(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ReplicaTooStale(_message.Message):
    __slots__ = ("shard_id", "applied", "contact_age_ms")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONTACT_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    applied: int
    contact_age_ms: int
    def __init__(self, shard_id: _Optional[int] = ..., applied: _Optional[int] = ..., contact_age_ms: _Optional[int] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("replica_id", "node_id", "addr", "role", "started")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    replica_id: int
    node_id: int
    addr: str
    role: ReplicaRole
    started: bool
    def __init__(self, replica_id: _Optional[int] = ..., node_id: _Optional[int] = ..., addr: _Optional[str] = ..., role: _Optional[_Union[ReplicaRole, str]] = ..., started: _Optional[bool] = ...) -> None: ...

class ShardDescriptor(_message.Message):
    __slots__ = ("shard_id", "replicas", "conf_ver", "ring_ver", "next_replica_id", "ring_shards", "arcs", "split_from", "split_index")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CONF_VER_FIELD_NUMBER: _ClassVar[int]
    RING_VER_FIELD_NUMBER: _ClassVar[int]
    NEXT_REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    RING_SHARDS_FIELD_NUMBER: _ClassVar[int]
    ARCS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FROM_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    conf_ver: int
    ring_ver: int
    next_replica_id: int
    ring_shards: _containers.RepeatedScalarFieldContainer[int]
    arcs: _containers.RepeatedCompositeFieldContainer[HashRange]
    split_from: int
    split_index: int
    def __init__(self, shard_id: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., conf_ver: _Optional[int] = ..., ring_ver: _Optional[int] = ..., next_replica_id: _Optional[int] = ..., ring_shards: _Optional[_Iterable[int]] = ..., arcs: _Optional[_Iterable[_Union[HashRange, _Mapping]]] = ..., split_from: _Optional[int] = ..., split_index: _Optional[int] = ...) -> None: ...

class HashRange(_message.Message):
    __slots__ = ("lo", "hi")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    lo: int
    hi: int
    def __init__(self, lo: _Optional[int] = ..., hi: _Optional[int] = ...) -> None: ...

class ShardRoute(_message.Message):
    __slots__ = ("descriptor", "leader", "leader_term")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_TERM_FIELD_NUMBER: _ClassVar[int]
    descriptor: ShardDescriptor
    leader: ReplicaInfo
    leader_term: int
    def __init__(self, descriptor: _Optional[_Union[ShardDescriptor, _Mapping]] = ..., leader: _Optional[_Union[ReplicaInfo, _Mapping]] = ..., leader_term: _Optional[int] = ...) -> None: ...

class ReplicaInfo(_message.Message):
    __slots__ = ("replica_id", "node_id", "addr")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    replica_id: int
    node_id: int
    addr: str
    def __init__(self, replica_id: _Optional[int] = ..., node_id: _Optional[int] = ..., addr: _Optional[str] = ...) -> None: ...
