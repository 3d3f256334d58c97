from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_IBM_QUANTUM: _ClassVar[Channel]
    CHANNEL_IBM_CLOUD: _ClassVar[Channel]
    CHANNEL_IBM_QUANTUM_PLATFORM: _ClassVar[Channel]
    CHANNEL_LOCAL: _ClassVar[Channel]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_IBM_QUANTUM: Channel
CHANNEL_IBM_CLOUD: Channel
CHANNEL_IBM_QUANTUM_PLATFORM: Channel
CHANNEL_LOCAL: Channel

class ProxyConfiguration(_message.Message):
    __slots__ = ("urls", "username_ntlm", "password_ntlm")
    class UrlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URLS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_NTLM_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_NTLM_FIELD_NUMBER: _ClassVar[int]
    urls: _containers.ScalarMap[str, str]
    username_ntlm: str
    password_ntlm: str
    def __init__(self, urls: _Optional[_Mapping[str, str]] = ..., username_ntlm: _Optional[str] = ..., password_ntlm: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("name", "channel", "url", "token", "masked_token", "instance", "proxies", "verify", "channel_strategy", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MASKED_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel: Channel
    url: str
    token: str
    masked_token: str
    instance: str
    proxies: ProxyConfiguration
    verify: bool
    channel_strategy: str
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., url: _Optional[str] = ..., token: _Optional[str] = ..., masked_token: _Optional[str] = ..., instance: _Optional[str] = ..., proxies: _Optional[_Union[ProxyConfiguration, _Mapping]] = ..., verify: _Optional[bool] = ..., channel_strategy: _Optional[str] = ..., is_default: _Optional[bool] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("id", "name", "plan", "pricing_type", "tags", "is_default")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PRICING_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    plan: str
    pricing_type: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., plan: _Optional[str] = ..., pricing_type: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., is_default: _Optional[bool] = ...) -> None: ...

class SaveAccountRequest(_message.Message):
    __slots__ = ("account", "overwrite", "set_as_default")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    SET_AS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    overwrite: bool
    set_as_default: bool
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., overwrite: _Optional[bool] = ..., set_as_default: _Optional[bool] = ...) -> None: ...

class SaveAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("default", "channel", "name", "page_size", "page_token")
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    default: bool
    channel: Channel
    name: str
    page_size: int
    page_token: str
    def __init__(self, default: _Optional[bool] = ..., channel: _Optional[_Union[Channel, str]] = ..., name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteAccountRequest(_message.Message):
    __slots__ = ("name", "channel")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel: Channel
    def __init__(self, name: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ...) -> None: ...

class DeleteAccountResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class GetActiveAccountRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetActiveAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class VerifyAccountRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAccountResponse(_message.Message):
    __slots__ = ("account", "instance")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    account: Account
    instance: Instance
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., instance: _Optional[_Union[Instance, _Mapping]] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
