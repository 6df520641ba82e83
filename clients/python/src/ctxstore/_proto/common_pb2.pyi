from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_MODE_LEADER: _ClassVar[ReadMode]
    READ_MODE_FOLLOWER: _ClassVar[ReadMode]
    READ_MODE_BOUNDED: _ClassVar[ReadMode]
    READ_MODE_STALE: _ClassVar[ReadMode]
READ_MODE_LEADER: ReadMode
READ_MODE_FOLLOWER: ReadMode
READ_MODE_BOUNDED: ReadMode
READ_MODE_STALE: ReadMode

class RequestHeader(_message.Message):
    __slots__ = ("shard_id", "conf_ver", "ring_ver", "read_mode", "max_staleness_ms", "min_version")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    CONF_VER_FIELD_NUMBER: _ClassVar[int]
    RING_VER_FIELD_NUMBER: _ClassVar[int]
    READ_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    conf_ver: int
    ring_ver: int
    read_mode: ReadMode
    max_staleness_ms: int
    min_version: int
    def __init__(self, shard_id: _Optional[int] = ..., conf_ver: _Optional[int] = ..., ring_ver: _Optional[int] = ..., read_mode: _Optional[_Union[ReadMode, str]] = ..., max_staleness_ms: _Optional[int] = ..., min_version: _Optional[int] = ...) -> None: ...

class WatchMoved(_message.Message):
    __slots__ = ("shard_id", "at_version")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    AT_VERSION_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    at_version: int
    def __init__(self, shard_id: _Optional[int] = ..., at_version: _Optional[int] = ...) -> None: ...
