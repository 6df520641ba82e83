from ctxstore._proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConversationRef(_message.Message):
    __slots__ = ("namespace", "id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content", "token_count", "metadata", "created_at_ms", "seq")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    token_count: int
    metadata: _containers.ScalarMap[str, str]
    created_at_ms: int
    seq: int
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ..., token_count: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at_ms: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class ConversationInfo(_message.Message):
    __slots__ = ("conversation", "created_at_ms", "updated_at_ms", "message_count", "token_total", "first_seq", "last_seq", "metadata", "metadata_version", "idle_ttl_ms", "expires_at_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    conversation: ConversationRef
    created_at_ms: int
    updated_at_ms: int
    message_count: int
    token_total: int
    first_seq: int
    last_seq: int
    metadata: _containers.ScalarMap[str, str]
    metadata_version: int
    idle_ttl_ms: int
    expires_at_ms: int
    def __init__(self, conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., message_count: _Optional[int] = ..., token_total: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., metadata_version: _Optional[int] = ..., idle_ttl_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("header", "conversation", "messages", "expected_last_seq", "idempotency_key", "idle_ttl_ms", "request_id", "lease_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    expected_last_seq: int
    idempotency_key: str
    idle_ttl_ms: int
    request_id: bytes
    lease_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., expected_last_seq: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., idle_ttl_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ..., lease_id: _Optional[int] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("first_seq", "last_seq", "version", "replayed")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    version: int
    replayed: bool
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., version: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SeqRange(_message.Message):
    __slots__ = ("from_seq", "to_seq")
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    from_seq: int
    to_seq: int
    def __init__(self, from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ...) -> None: ...

class TokenBudget(_message.Message):
    __slots__ = ("max_tokens", "include_pinned")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PINNED_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    include_pinned: bool
    def __init__(self, max_tokens: _Optional[int] = ..., include_pinned: _Optional[bool] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("header", "conversation", "last_n", "range", "token_budget", "limit", "after_seq", "stale", "refresh_ttl")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LAST_N_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TTL_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    last_n: int
    range: SeqRange
    token_budget: TokenBudget
    limit: int
    after_seq: int
    stale: bool
    refresh_ttl: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., last_n: _Optional[int] = ..., range: _Optional[_Union[SeqRange, _Mapping]] = ..., token_budget: _Optional[_Union[TokenBudget, _Mapping]] = ..., limit: _Optional[int] = ..., after_seq: _Optional[int] = ..., stale: _Optional[bool] = ..., refresh_ttl: _Optional[bool] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("messages", "info", "next_seq", "total_tokens")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    info: ConversationInfo
    next_seq: int
    total_tokens: int
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., info: _Optional[_Union[ConversationInfo, _Mapping]] = ..., next_seq: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class TrimRequest(_message.Message):
    __slots__ = ("header", "conversation", "before_seq", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    before_seq: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., before_seq: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class TrimResponse(_message.Message):
    __slots__ = ("removed", "version")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed: int
    version: int
    def __init__(self, removed: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("header", "conversation", "from_seq", "to_seq", "summary", "expected_last_seq", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    from_seq: int
    to_seq: int
    summary: ChatMessage
    expected_last_seq: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ..., summary: _Optional[_Union[ChatMessage, _Mapping]] = ..., expected_last_seq: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("removed", "summary_seq", "version")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed: int
    summary_seq: int
    version: int
    def __init__(self, removed: _Optional[int] = ..., summary_seq: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteConversationRequest(_message.Message):
    __slots__ = ("header", "conversation", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class DeleteConversationResponse(_message.Message):
    __slots__ = ("deleted", "version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    version: int
    def __init__(self, deleted: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("header", "conversation", "stale")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    stale: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: ConversationInfo
    def __init__(self, info: _Optional[_Union[ConversationInfo, _Mapping]] = ...) -> None: ...

class SetConversationMetadataRequest(_message.Message):
    __slots__ = ("header", "conversation", "metadata", "expected_metadata_version", "idle_ttl_ms", "request_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_METADATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    metadata: _containers.ScalarMap[str, str]
    expected_metadata_version: int
    idle_ttl_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., expected_metadata_version: _Optional[int] = ..., idle_ttl_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class SetConversationMetadataResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: ConversationInfo
    def __init__(self, info: _Optional[_Union[ConversationInfo, _Mapping]] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("header", "namespace", "after_id", "limit")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    namespace: str
    after_id: str
    limit: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., namespace: _Optional[str] = ..., after_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListConversationsResponse(_message.Message):
    __slots__ = ("conversations", "more")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationInfo]
    more: bool
    def __init__(self, conversations: _Optional[_Iterable[_Union[ConversationInfo, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class WatchConversationRequest(_message.Message):
    __slots__ = ("header", "conversation", "from_version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    conversation: ConversationRef
    from_version: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., conversation: _Optional[_Union[ConversationRef, _Mapping]] = ..., from_version: _Optional[int] = ...) -> None: ...

class ConversationEvent(_message.Message):
    __slots__ = ("version", "seq", "message")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    version: int
    seq: int
    message: ChatMessage
    def __init__(self, version: _Optional[int] = ..., seq: _Optional[int] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ...) -> None: ...

class WatchConversationResponse(_message.Message):
    __slots__ = ("events", "progress_version", "moved")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ConversationEvent]
    progress_version: int
    moved: _common_pb2.WatchMoved
    def __init__(self, events: _Optional[_Iterable[_Union[ConversationEvent, _Mapping]]] = ..., progress_version: _Optional[int] = ..., moved: _Optional[_Union[_common_pb2.WatchMoved, _Mapping]] = ...) -> None: ...

class ThreadRef(_message.Message):
    __slots__ = ("thread", "ns", "namespace")
    THREAD_FIELD_NUMBER: _ClassVar[int]
    NS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    thread: str
    ns: str
    namespace: str
    def __init__(self, thread: _Optional[str] = ..., ns: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ChannelBlob(_message.Message):
    __slots__ = ("channel", "version", "value")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    version: str
    value: bytes
    def __init__(self, channel: _Optional[str] = ..., version: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class PendingWrite(_message.Message):
    __slots__ = ("task_id", "channel", "value", "task_path", "idx")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TASK_PATH_FIELD_NUMBER: _ClassVar[int]
    IDX_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    channel: str
    value: bytes
    task_path: str
    idx: int
    def __init__(self, task_id: _Optional[str] = ..., channel: _Optional[str] = ..., value: _Optional[bytes] = ..., task_path: _Optional[str] = ..., idx: _Optional[int] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("checkpoint_id", "parent_id", "checkpoint", "metadata", "channel_versions", "created_at_ms", "metadata_json")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ChannelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    parent_id: str
    checkpoint: bytes
    metadata: _containers.ScalarMap[str, str]
    channel_versions: _containers.ScalarMap[str, str]
    created_at_ms: int
    metadata_json: str
    def __init__(self, checkpoint_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., checkpoint: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., channel_versions: _Optional[_Mapping[str, str]] = ..., created_at_ms: _Optional[int] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class CheckpointTuple(_message.Message):
    __slots__ = ("thread", "checkpoint", "blobs", "pending_writes")
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    PENDING_WRITES_FIELD_NUMBER: _ClassVar[int]
    thread: ThreadRef
    checkpoint: Checkpoint
    blobs: _containers.RepeatedCompositeFieldContainer[ChannelBlob]
    pending_writes: _containers.RepeatedCompositeFieldContainer[PendingWrite]
    def __init__(self, thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., blobs: _Optional[_Iterable[_Union[ChannelBlob, _Mapping]]] = ..., pending_writes: _Optional[_Iterable[_Union[PendingWrite, _Mapping]]] = ...) -> None: ...

class PutCheckpointRequest(_message.Message):
    __slots__ = ("header", "thread", "checkpoint", "blobs", "idle_ttl_ms", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: ThreadRef
    checkpoint: Checkpoint
    blobs: _containers.RepeatedCompositeFieldContainer[ChannelBlob]
    idle_ttl_ms: int
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., blobs: _Optional[_Iterable[_Union[ChannelBlob, _Mapping]]] = ..., idle_ttl_ms: _Optional[int] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class PutCheckpointResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class PutWritesRequest(_message.Message):
    __slots__ = ("header", "thread", "checkpoint_id", "task_id", "task_path", "writes", "request_id", "keep_idx")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_PATH_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_IDX_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: ThreadRef
    checkpoint_id: str
    task_id: str
    task_path: str
    writes: _containers.RepeatedCompositeFieldContainer[PendingWrite]
    request_id: bytes
    keep_idx: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., checkpoint_id: _Optional[str] = ..., task_id: _Optional[str] = ..., task_path: _Optional[str] = ..., writes: _Optional[_Iterable[_Union[PendingWrite, _Mapping]]] = ..., request_id: _Optional[bytes] = ..., keep_idx: _Optional[bool] = ...) -> None: ...

class PutWritesResponse(_message.Message):
    __slots__ = ("stored", "version")
    STORED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    stored: int
    version: int
    def __init__(self, stored: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("header", "thread", "checkpoint_id", "stale", "refresh_ttl")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TTL_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: ThreadRef
    checkpoint_id: str
    stale: bool
    refresh_ttl: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., checkpoint_id: _Optional[str] = ..., stale: _Optional[bool] = ..., refresh_ttl: _Optional[bool] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("tuple",)
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    tuple: CheckpointTuple
    def __init__(self, tuple: _Optional[_Union[CheckpointTuple, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("header", "thread", "before", "limit", "filter", "stale", "filter_json")
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: ThreadRef
    before: str
    limit: int
    filter: _containers.ScalarMap[str, str]
    stale: bool
    filter_json: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., before: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Mapping[str, str]] = ..., stale: _Optional[bool] = ..., filter_json: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("tuples",)
    TUPLES_FIELD_NUMBER: _ClassVar[int]
    tuples: _containers.RepeatedCompositeFieldContainer[CheckpointTuple]
    def __init__(self, tuples: _Optional[_Iterable[_Union[CheckpointTuple, _Mapping]]] = ...) -> None: ...

class PruneCheckpointsRequest(_message.Message):
    __slots__ = ("header", "thread", "keep_latest", "older_than_ms", "remove_id", "request_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    KEEP_LATEST_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_MS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: ThreadRef
    keep_latest: int
    older_than_ms: int
    remove_id: str
    request_id: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[_Union[ThreadRef, _Mapping]] = ..., keep_latest: _Optional[int] = ..., older_than_ms: _Optional[int] = ..., remove_id: _Optional[str] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class PruneCheckpointsResponse(_message.Message):
    __slots__ = ("removed_checkpoints", "removed_blobs", "version")
    REMOVED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BLOBS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed_checkpoints: int
    removed_blobs: int
    version: int
    def __init__(self, removed_checkpoints: _Optional[int] = ..., removed_blobs: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class ListAllCheckpointsRequest(_message.Message):
    __slots__ = ("header", "after", "limit", "filter", "filter_json")
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    after: bytes
    limit: int
    filter: _containers.ScalarMap[str, str]
    filter_json: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., after: _Optional[bytes] = ..., limit: _Optional[int] = ..., filter: _Optional[_Mapping[str, str]] = ..., filter_json: _Optional[str] = ...) -> None: ...

class ListAllCheckpointsResponse(_message.Message):
    __slots__ = ("tuples", "more", "next")
    TUPLES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    tuples: _containers.RepeatedCompositeFieldContainer[CheckpointTuple]
    more: bool
    next: bytes
    def __init__(self, tuples: _Optional[_Iterable[_Union[CheckpointTuple, _Mapping]]] = ..., more: _Optional[bool] = ..., next: _Optional[bytes] = ...) -> None: ...

class ListCheckpointNamespacesRequest(_message.Message):
    __slots__ = ("header", "thread", "namespace", "stale")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: str
    namespace: str
    stale: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[str] = ..., namespace: _Optional[str] = ..., stale: _Optional[bool] = ...) -> None: ...

class ListCheckpointNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespaces: _Optional[_Iterable[str]] = ...) -> None: ...

class ListThreadsRequest(_message.Message):
    __slots__ = ("header", "namespace", "after_thread", "limit")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_THREAD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    namespace: str
    after_thread: str
    limit: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., namespace: _Optional[str] = ..., after_thread: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ThreadInfo(_message.Message):
    __slots__ = ("namespace", "thread", "created_at_ms", "updated_at_ms", "idle_ttl_ms")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    thread: str
    created_at_ms: int
    updated_at_ms: int
    idle_ttl_ms: int
    def __init__(self, namespace: _Optional[str] = ..., thread: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., idle_ttl_ms: _Optional[int] = ...) -> None: ...

class ListThreadsResponse(_message.Message):
    __slots__ = ("threads", "more")
    THREADS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    threads: _containers.RepeatedCompositeFieldContainer[ThreadInfo]
    more: bool
    def __init__(self, threads: _Optional[_Iterable[_Union[ThreadInfo, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class DeleteForRunsRequest(_message.Message):
    __slots__ = ("header", "run_ids")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteForRunsResponse(_message.Message):
    __slots__ = ("removed_checkpoints", "removed_blobs")
    REMOVED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BLOBS_FIELD_NUMBER: _ClassVar[int]
    removed_checkpoints: int
    removed_blobs: int
    def __init__(self, removed_checkpoints: _Optional[int] = ..., removed_blobs: _Optional[int] = ...) -> None: ...

class CopyThreadRequest(_message.Message):
    __slots__ = ("header", "thread", "namespace", "target_thread", "target_namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TARGET_THREAD_FIELD_NUMBER: _ClassVar[int]
    TARGET_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: str
    namespace: str
    target_thread: str
    target_namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[str] = ..., namespace: _Optional[str] = ..., target_thread: _Optional[str] = ..., target_namespace: _Optional[str] = ...) -> None: ...

class CopyThreadResponse(_message.Message):
    __slots__ = ("copied_checkpoints", "copied_writes")
    COPIED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    COPIED_WRITES_FIELD_NUMBER: _ClassVar[int]
    copied_checkpoints: int
    copied_writes: int
    def __init__(self, copied_checkpoints: _Optional[int] = ..., copied_writes: _Optional[int] = ...) -> None: ...

class DeleteThreadRequest(_message.Message):
    __slots__ = ("header", "thread", "request_id", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    thread: str
    request_id: bytes
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., thread: _Optional[str] = ..., request_id: _Optional[bytes] = ..., namespace: _Optional[str] = ...) -> None: ...

class DeleteThreadResponse(_message.Message):
    __slots__ = ("deleted", "version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    version: int
    def __init__(self, deleted: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "provider", "context_window", "tokenizer", "input_price_per_mtok", "output_price_per_mtok", "endpoint", "metadata", "version")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    context_window: int
    tokenizer: str
    input_price_per_mtok: float
    output_price_per_mtok: float
    endpoint: str
    metadata: _containers.ScalarMap[str, str]
    version: int
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., context_window: _Optional[int] = ..., tokenizer: _Optional[str] = ..., input_price_per_mtok: _Optional[float] = ..., output_price_per_mtok: _Optional[float] = ..., endpoint: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ...) -> None: ...

class PutModelRequest(_message.Message):
    __slots__ = ("header", "model", "expected_version", "request_id", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    model: Model
    expected_version: int
    request_id: bytes
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., model: _Optional[_Union[Model, _Mapping]] = ..., expected_version: _Optional[int] = ..., request_id: _Optional[bytes] = ..., namespace: _Optional[str] = ...) -> None: ...

class PutModelResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("header", "name", "consistent", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    name: str
    consistent: bool
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., name: _Optional[str] = ..., consistent: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("header", "consistent", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    consistent: bool
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., consistent: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("header", "name", "request_id", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    name: str
    request_id: bytes
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., name: _Optional[str] = ..., request_id: _Optional[bytes] = ..., namespace: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("deleted", "version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    version: int
    def __init__(self, deleted: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class WatchModelsRequest(_message.Message):
    __slots__ = ("header", "from_version", "namespace")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    from_version: int
    namespace: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., from_version: _Optional[int] = ..., namespace: _Optional[str] = ...) -> None: ...

class ModelEvent(_message.Message):
    __slots__ = ("version", "name", "model")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    version: int
    name: str
    model: Model
    def __init__(self, version: _Optional[int] = ..., name: _Optional[str] = ..., model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class WatchModelsResponse(_message.Message):
    __slots__ = ("events", "progress_version", "moved")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ModelEvent]
    progress_version: int
    moved: _common_pb2.WatchMoved
    def __init__(self, events: _Optional[_Iterable[_Union[ModelEvent, _Mapping]]] = ..., progress_version: _Optional[int] = ..., moved: _Optional[_Union[_common_pb2.WatchMoved, _Mapping]] = ...) -> None: ...
