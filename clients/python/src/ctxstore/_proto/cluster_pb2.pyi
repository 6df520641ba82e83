from ctxstore._proto import kv_pb2 as _kv_pb2
from ctxstore._proto import common_pb2 as _common_pb2
from ctxstore._proto import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNKNOWN: _ClassVar[NodeState]
    NODE_STATE_UP: _ClassVar[NodeState]
    NODE_STATE_DOWN: _ClassVar[NodeState]
    NODE_STATE_DISCONNECTED: _ClassVar[NodeState]

class NodeAdmin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_ADMIN_SERVING: _ClassVar[NodeAdmin]
    NODE_ADMIN_DRAINING: _ClassVar[NodeAdmin]
    NODE_ADMIN_REMOVED: _ClassVar[NodeAdmin]
NODE_STATE_UNKNOWN: NodeState
NODE_STATE_UP: NodeState
NODE_STATE_DOWN: NodeState
NODE_STATE_DISCONNECTED: NodeState
NODE_ADMIN_SERVING: NodeAdmin
NODE_ADMIN_DRAINING: NodeAdmin
NODE_ADMIN_REMOVED: NodeAdmin

class RoutingTableRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStats(_message.Message):
    __slots__ = ("used_bytes", "free_bytes", "replicas", "leaders", "reads_per_sec", "writes_per_sec", "read_weight", "stopping")
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADERS_FIELD_NUMBER: _ClassVar[int]
    READS_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    WRITES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    READ_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    used_bytes: int
    free_bytes: int
    replicas: int
    leaders: int
    reads_per_sec: float
    writes_per_sec: float
    read_weight: int
    stopping: bool
    def __init__(self, used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., replicas: _Optional[int] = ..., leaders: _Optional[int] = ..., reads_per_sec: _Optional[float] = ..., writes_per_sec: _Optional[float] = ..., read_weight: _Optional[int] = ..., stopping: _Optional[bool] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "addr", "state", "admin", "stats", "last_seen_ms_ago", "has_run")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_AGO_FIELD_NUMBER: _ClassVar[int]
    HAS_RUN_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    addr: str
    state: NodeState
    admin: NodeAdmin
    stats: NodeStats
    last_seen_ms_ago: int
    has_run: bool
    def __init__(self, node_id: _Optional[int] = ..., addr: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., admin: _Optional[_Union[NodeAdmin, str]] = ..., stats: _Optional[_Union[NodeStats, _Mapping]] = ..., last_seen_ms_ago: _Optional[int] = ..., has_run: _Optional[bool] = ...) -> None: ...

class RoutingTable(_message.Message):
    __slots__ = ("shards", "ring_shards", "routing_version", "nodes", "source", "cluster_config", "auth_revision", "auth", "shards_hash", "shards_unchanged")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    RING_SHARDS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUTH_REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    SHARDS_HASH_FIELD_NUMBER: _ClassVar[int]
    SHARDS_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[_kv_pb2.ShardRoute]
    ring_shards: _containers.RepeatedScalarFieldContainer[int]
    routing_version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    source: str
    cluster_config: ClusterConfig
    auth_revision: int
    auth: _auth_pb2.AuthStore
    shards_hash: int
    shards_unchanged: bool
    def __init__(self, shards: _Optional[_Iterable[_Union[_kv_pb2.ShardRoute, _Mapping]]] = ..., ring_shards: _Optional[_Iterable[int]] = ..., routing_version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., source: _Optional[str] = ..., cluster_config: _Optional[_Union[ClusterConfig, _Mapping]] = ..., auth_revision: _Optional[int] = ..., auth: _Optional[_Union[_auth_pb2.AuthStore, _Mapping]] = ..., shards_hash: _Optional[int] = ..., shards_unchanged: _Optional[bool] = ...) -> None: ...

class NodeHeartbeat(_message.Message):
    __slots__ = ("node_id", "addr", "leading", "stats", "loads", "auth_revision", "auth_transport_ok", "known_shards_hash")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADING_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTH_TRANSPORT_OK_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SHARDS_HASH_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    addr: str
    leading: _containers.RepeatedCompositeFieldContainer[_kv_pb2.ShardRoute]
    stats: NodeStats
    loads: _containers.RepeatedCompositeFieldContainer[ShardLoad]
    auth_revision: int
    auth_transport_ok: bool
    known_shards_hash: int
    def __init__(self, node_id: _Optional[int] = ..., addr: _Optional[str] = ..., leading: _Optional[_Iterable[_Union[_kv_pb2.ShardRoute, _Mapping]]] = ..., stats: _Optional[_Union[NodeStats, _Mapping]] = ..., loads: _Optional[_Iterable[_Union[ShardLoad, _Mapping]]] = ..., auth_revision: _Optional[int] = ..., auth_transport_ok: _Optional[bool] = ..., known_shards_hash: _Optional[int] = ...) -> None: ...

class ShardLoad(_message.Message):
    __slots__ = ("shard_id", "approx_bytes", "approx_keys", "writes_per_sec", "reads_per_sec", "caught_up", "conf_ver")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    APPROX_BYTES_FIELD_NUMBER: _ClassVar[int]
    APPROX_KEYS_FIELD_NUMBER: _ClassVar[int]
    WRITES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    READS_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    CONF_VER_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    approx_bytes: int
    approx_keys: int
    writes_per_sec: float
    reads_per_sec: float
    caught_up: _containers.RepeatedScalarFieldContainer[int]
    conf_ver: int
    def __init__(self, shard_id: _Optional[int] = ..., approx_bytes: _Optional[int] = ..., approx_keys: _Optional[int] = ..., writes_per_sec: _Optional[float] = ..., reads_per_sec: _Optional[float] = ..., caught_up: _Optional[_Iterable[int]] = ..., conf_ver: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("with_digests",)
    WITH_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    with_digests: bool
    def __init__(self, with_digests: _Optional[bool] = ...) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("descriptor", "replica_id", "leader_id", "term", "commit_index", "applied_index", "first_index", "last_index", "role", "progress", "approx_bytes", "approx_keys", "writes_per_sec", "write_bytes_per_sec", "reads_per_sec", "hot_hash", "splitting", "digest", "digest_index", "caught_up", "pending_proposals", "hibernating")
    class ProgressEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    APPROX_BYTES_FIELD_NUMBER: _ClassVar[int]
    APPROX_KEYS_FIELD_NUMBER: _ClassVar[int]
    WRITES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    READS_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    HOT_HASH_FIELD_NUMBER: _ClassVar[int]
    SPLITTING_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    PENDING_PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    HIBERNATING_FIELD_NUMBER: _ClassVar[int]
    descriptor: _kv_pb2.ShardDescriptor
    replica_id: int
    leader_id: int
    term: int
    commit_index: int
    applied_index: int
    first_index: int
    last_index: int
    role: str
    progress: _containers.ScalarMap[int, int]
    approx_bytes: int
    approx_keys: int
    writes_per_sec: float
    write_bytes_per_sec: float
    reads_per_sec: float
    hot_hash: int
    splitting: bool
    digest: int
    digest_index: int
    caught_up: _containers.RepeatedScalarFieldContainer[int]
    pending_proposals: int
    hibernating: bool
    def __init__(self, descriptor: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ..., replica_id: _Optional[int] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., first_index: _Optional[int] = ..., last_index: _Optional[int] = ..., role: _Optional[str] = ..., progress: _Optional[_Mapping[int, int]] = ..., approx_bytes: _Optional[int] = ..., approx_keys: _Optional[int] = ..., writes_per_sec: _Optional[float] = ..., write_bytes_per_sec: _Optional[float] = ..., reads_per_sec: _Optional[float] = ..., hot_hash: _Optional[int] = ..., splitting: _Optional[bool] = ..., digest: _Optional[int] = ..., digest_index: _Optional[int] = ..., caught_up: _Optional[_Iterable[int]] = ..., pending_proposals: _Optional[int] = ..., hibernating: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "addr", "shards", "wal_syncs", "bootstrapped", "nodes_that_ran", "expired_waiting")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    WAL_SYNCS_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAPPED_FIELD_NUMBER: _ClassVar[int]
    NODES_THAT_RAN_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_WAITING_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    addr: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    wal_syncs: int
    bootstrapped: bool
    nodes_that_ran: _containers.RepeatedScalarFieldContainer[int]
    expired_waiting: int
    def __init__(self, node_id: _Optional[int] = ..., addr: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., wal_syncs: _Optional[int] = ..., bootstrapped: _Optional[bool] = ..., nodes_that_ran: _Optional[_Iterable[int]] = ..., expired_waiting: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("shard_id", "node_id", "addr", "expected_conf_ver")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CONF_VER_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    node_id: int
    addr: str
    expected_conf_ver: int
    def __init__(self, shard_id: _Optional[int] = ..., node_id: _Optional[int] = ..., addr: _Optional[str] = ..., expected_conf_ver: _Optional[int] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("replica", "descriptor")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    replica: _kv_pb2.Replica
    descriptor: _kv_pb2.ShardDescriptor
    def __init__(self, replica: _Optional[_Union[_kv_pb2.Replica, _Mapping]] = ..., descriptor: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("shard_id", "node_id", "expected_conf_ver")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CONF_VER_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    node_id: int
    expected_conf_ver: int
    def __init__(self, shard_id: _Optional[int] = ..., node_id: _Optional[int] = ..., expected_conf_ver: _Optional[int] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("descriptor",)
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    descriptor: _kv_pb2.ShardDescriptor
    def __init__(self, descriptor: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("shard_id", "node_id")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    node_id: int
    def __init__(self, shard_id: _Optional[int] = ..., node_id: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SplitShardRequest(_message.Message):
    __slots__ = ("shard_id", "at_hash")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    AT_HASH_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    at_hash: int
    def __init__(self, shard_id: _Optional[int] = ..., at_hash: _Optional[int] = ...) -> None: ...

class SplitShardResponse(_message.Message):
    __slots__ = ("parent", "child")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CHILD_FIELD_NUMBER: _ClassVar[int]
    parent: _kv_pb2.ShardDescriptor
    child: _kv_pb2.ShardDescriptor
    def __init__(self, parent: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ..., child: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ...) -> None: ...

class AllocShardRequest(_message.Message):
    __slots__ = ("parent_shard", "parent_ring_ver", "parent_arcs")
    PARENT_SHARD_FIELD_NUMBER: _ClassVar[int]
    PARENT_RING_VER_FIELD_NUMBER: _ClassVar[int]
    PARENT_ARCS_FIELD_NUMBER: _ClassVar[int]
    parent_shard: int
    parent_ring_ver: int
    parent_arcs: _containers.RepeatedCompositeFieldContainer[_kv_pb2.HashRange]
    def __init__(self, parent_shard: _Optional[int] = ..., parent_ring_ver: _Optional[int] = ..., parent_arcs: _Optional[_Iterable[_Union[_kv_pb2.HashRange, _Mapping]]] = ...) -> None: ...

class AllocShardResponse(_message.Message):
    __slots__ = ("child_shard",)
    CHILD_SHARD_FIELD_NUMBER: _ClassVar[int]
    child_shard: int
    def __init__(self, child_shard: _Optional[int] = ...) -> None: ...

class SetNodeAdminRequest(_message.Message):
    __slots__ = ("node_id", "admin", "min_serving")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    MIN_SERVING_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    admin: NodeAdmin
    min_serving: int
    def __init__(self, node_id: _Optional[int] = ..., admin: _Optional[_Union[NodeAdmin, str]] = ..., min_serving: _Optional[int] = ...) -> None: ...

class SetNodeAdminResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class PdStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PdOperator(_message.Message):
    __slots__ = ("shard_id", "kind", "from_node", "to_node", "lead_node", "step", "age_ms")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    LEAD_NODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    kind: str
    from_node: int
    to_node: int
    lead_node: int
    step: str
    age_ms: int
    def __init__(self, shard_id: _Optional[int] = ..., kind: _Optional[str] = ..., from_node: _Optional[int] = ..., to_node: _Optional[int] = ..., lead_node: _Optional[int] = ..., step: _Optional[str] = ..., age_ms: _Optional[int] = ...) -> None: ...

class PdStatusResponse(_message.Message):
    __slots__ = ("enabled", "paused", "meta_leader", "operators", "under_replicated", "unavailable", "finished", "cancelled", "nodes", "warming_up")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    META_LEADER_FIELD_NUMBER: _ClassVar[int]
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    WARMING_UP_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    paused: bool
    meta_leader: int
    operators: _containers.RepeatedCompositeFieldContainer[PdOperator]
    under_replicated: _containers.RepeatedScalarFieldContainer[int]
    unavailable: _containers.RepeatedScalarFieldContainer[int]
    finished: int
    cancelled: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    warming_up: bool
    def __init__(self, enabled: _Optional[bool] = ..., paused: _Optional[bool] = ..., meta_leader: _Optional[int] = ..., operators: _Optional[_Iterable[_Union[PdOperator, _Mapping]]] = ..., under_replicated: _Optional[_Iterable[int]] = ..., unavailable: _Optional[_Iterable[int]] = ..., finished: _Optional[int] = ..., cancelled: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., warming_up: _Optional[bool] = ...) -> None: ...

class SetPdPausedRequest(_message.Message):
    __slots__ = ("paused",)
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    def __init__(self, paused: _Optional[bool] = ...) -> None: ...

class SetPdPausedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterConfig(_message.Message):
    __slots__ = ("version", "settings")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    version: int
    settings: _containers.ScalarMap[str, str]
    def __init__(self, version: _Optional[int] = ..., settings: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ConfigChange(_message.Message):
    __slots__ = ("key", "value", "unset")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    unset: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., unset: _Optional[bool] = ...) -> None: ...

class SetConfigRequest(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ...) -> None: ...

class SetConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: ClusterConfig
    def __init__(self, config: _Optional[_Union[ClusterConfig, _Mapping]] = ...) -> None: ...

class BackupShardRequest(_message.Message):
    __slots__ = ("shard_id",)
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    def __init__(self, shard_id: _Optional[int] = ...) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("data", "done")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    done: BackupShardInfo
    def __init__(self, data: _Optional[bytes] = ..., done: _Optional[_Union[BackupShardInfo, _Mapping]] = ...) -> None: ...

class BackupShardInfo(_message.Message):
    __slots__ = ("shard_id", "applied_index", "applied_term", "size", "xxh3", "keys", "data_digest", "descriptor")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    XXH3_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    DATA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    applied_index: int
    applied_term: int
    size: int
    xxh3: int
    keys: int
    data_digest: int
    descriptor: _kv_pb2.ShardDescriptor
    def __init__(self, shard_id: _Optional[int] = ..., applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., size: _Optional[int] = ..., xxh3: _Optional[int] = ..., keys: _Optional[int] = ..., data_digest: _Optional[int] = ..., descriptor: _Optional[_Union[_kv_pb2.ShardDescriptor, _Mapping]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfigValue(_message.Message):
    __slots__ = ("key", "value", "source", "dynamic")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    source: str
    dynamic: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., source: _Optional[str] = ..., dynamic: _Optional[bool] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("node_id", "cluster", "effective")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    cluster: ClusterConfig
    effective: _containers.RepeatedCompositeFieldContainer[ConfigValue]
    def __init__(self, node_id: _Optional[int] = ..., cluster: _Optional[_Union[ClusterConfig, _Mapping]] = ..., effective: _Optional[_Iterable[_Union[ConfigValue, _Mapping]]] = ...) -> None: ...
