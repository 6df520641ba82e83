from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_KV: _ClassVar[ResourceKind]
    RESOURCE_KIND_CONVERSATION: _ClassVar[ResourceKind]
    RESOURCE_KIND_THREAD: _ClassVar[ResourceKind]
    RESOURCE_KIND_MODEL: _ClassVar[ResourceKind]

class Access(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_UNSPECIFIED: _ClassVar[Access]
    ACCESS_READ: _ClassVar[Access]
    ACCESS_WRITE: _ClassVar[Access]
    ACCESS_READWRITE: _ClassVar[Access]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_KV: ResourceKind
RESOURCE_KIND_CONVERSATION: ResourceKind
RESOURCE_KIND_THREAD: ResourceKind
RESOURCE_KIND_MODEL: ResourceKind
ACCESS_UNSPECIFIED: Access
ACCESS_READ: Access
ACCESS_WRITE: Access
ACCESS_READWRITE: Access

class Permission(_message.Message):
    __slots__ = ("kind", "prefix", "access")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    kind: ResourceKind
    prefix: bytes
    access: Access
    def __init__(self, kind: _Optional[_Union[ResourceKind, str]] = ..., prefix: _Optional[bytes] = ..., access: _Optional[_Union[Access, str]] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("name", "permissions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    permissions: _containers.RepeatedCompositeFieldContainer[Permission]
    def __init__(self, name: _Optional[str] = ..., permissions: _Optional[_Iterable[_Union[Permission, _Mapping]]] = ...) -> None: ...

class TokenRecord(_message.Message):
    __slots__ = ("id", "sha256", "created_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    sha256: bytes
    created_ms: int
    def __init__(self, id: _Optional[str] = ..., sha256: _Optional[bytes] = ..., created_ms: _Optional[int] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "roles", "tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenRecord]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., tokens: _Optional[_Iterable[_Union[TokenRecord, _Mapping]]] = ...) -> None: ...

class AuthStore(_message.Message):
    __slots__ = ("enabled", "revision", "users", "roles", "applied")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    revision: int
    users: _containers.RepeatedCompositeFieldContainer[User]
    roles: _containers.RepeatedCompositeFieldContainer[Role]
    applied: _containers.RepeatedCompositeFieldContainer[AppliedChange]
    def __init__(self, enabled: _Optional[bool] = ..., revision: _Optional[int] = ..., users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[Role, _Mapping]]] = ..., applied: _Optional[_Iterable[_Union[AppliedChange, _Mapping]]] = ...) -> None: ...

class AppliedChange(_message.Message):
    __slots__ = ("request_id", "revision", "token_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: bytes
    revision: int
    token_id: str
    def __init__(self, request_id: _Optional[bytes] = ..., revision: _Optional[int] = ..., token_id: _Optional[str] = ...) -> None: ...

class UserRole(_message.Message):
    __slots__ = ("user", "role")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class RolePermission(_message.Message):
    __slots__ = ("role", "permission")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    role: str
    permission: Permission
    def __init__(self, role: _Optional[str] = ..., permission: _Optional[_Union[Permission, _Mapping]] = ...) -> None: ...

class AuthChange(_message.Message):
    __slots__ = ("set_enabled", "add_user", "delete_user", "grant_role", "revoke_role", "add_role", "delete_role", "grant_permission", "revoke_permission", "create_token", "revoke_token")
    SET_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ADD_USER_FIELD_NUMBER: _ClassVar[int]
    DELETE_USER_FIELD_NUMBER: _ClassVar[int]
    GRANT_ROLE_FIELD_NUMBER: _ClassVar[int]
    REVOKE_ROLE_FIELD_NUMBER: _ClassVar[int]
    ADD_ROLE_FIELD_NUMBER: _ClassVar[int]
    DELETE_ROLE_FIELD_NUMBER: _ClassVar[int]
    GRANT_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    REVOKE_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    set_enabled: bool
    add_user: str
    delete_user: str
    grant_role: UserRole
    revoke_role: UserRole
    add_role: str
    delete_role: str
    grant_permission: RolePermission
    revoke_permission: RolePermission
    create_token: str
    revoke_token: str
    def __init__(self, set_enabled: _Optional[bool] = ..., add_user: _Optional[str] = ..., delete_user: _Optional[str] = ..., grant_role: _Optional[_Union[UserRole, _Mapping]] = ..., revoke_role: _Optional[_Union[UserRole, _Mapping]] = ..., add_role: _Optional[str] = ..., delete_role: _Optional[str] = ..., grant_permission: _Optional[_Union[RolePermission, _Mapping]] = ..., revoke_permission: _Optional[_Union[RolePermission, _Mapping]] = ..., create_token: _Optional[str] = ..., revoke_token: _Optional[str] = ...) -> None: ...

class AuthChangeRequest(_message.Message):
    __slots__ = ("change", "request_id", "more")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    change: AuthChange
    request_id: bytes
    more: _containers.RepeatedCompositeFieldContainer[AuthChange]
    def __init__(self, change: _Optional[_Union[AuthChange, _Mapping]] = ..., request_id: _Optional[bytes] = ..., more: _Optional[_Iterable[_Union[AuthChange, _Mapping]]] = ...) -> None: ...

class AuthChangeResponse(_message.Message):
    __slots__ = ("revision", "token", "nodes_behind")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODES_BEHIND_FIELD_NUMBER: _ClassVar[int]
    revision: int
    token: str
    nodes_behind: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, revision: _Optional[int] = ..., token: _Optional[str] = ..., nodes_behind: _Optional[_Iterable[int]] = ...) -> None: ...

class GetAuthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("auth_enabled", "name", "roles", "method")
    AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    auth_enabled: bool
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    method: str
    def __init__(self, auth_enabled: _Optional[bool] = ..., name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., method: _Optional[str] = ...) -> None: ...
