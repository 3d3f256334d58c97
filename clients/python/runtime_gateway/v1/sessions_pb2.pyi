import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_MODE_UNSPECIFIED: _ClassVar[SessionMode]
    SESSION_MODE_DEDICATED: _ClassVar[SessionMode]
    SESSION_MODE_BATCH: _ClassVar[SessionMode]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_OPEN: _ClassVar[SessionState]
    SESSION_STATE_ACTIVE: _ClassVar[SessionState]
    SESSION_STATE_INACTIVE: _ClassVar[SessionState]
    SESSION_STATE_CLOSED: _ClassVar[SessionState]
SESSION_MODE_UNSPECIFIED: SessionMode
SESSION_MODE_DEDICATED: SessionMode
SESSION_MODE_BATCH: SessionMode
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_ACTIVE: SessionState
SESSION_STATE_INACTIVE: SessionState
SESSION_STATE_CLOSED: SessionState

class Session(_message.Message):
    __slots__ = ("id", "backend", "mode", "state", "state_reason", "accepting_jobs", "max_ttl", "interactive_ttl", "active_ttl", "start_time", "activate_time", "close_time", "last_job_start_time", "last_job_complete_time", "usage_seconds", "instance", "raw_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    ACCEPTING_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_TTL_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_TTL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TTL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_START_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    USAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    backend: str
    mode: SessionMode
    state: SessionState
    state_reason: str
    accepting_jobs: bool
    max_ttl: _duration_pb2.Duration
    interactive_ttl: _duration_pb2.Duration
    active_ttl: _duration_pb2.Duration
    start_time: _timestamp_pb2.Timestamp
    activate_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    last_job_start_time: _timestamp_pb2.Timestamp
    last_job_complete_time: _timestamp_pb2.Timestamp
    usage_seconds: float
    instance: str
    raw_json: str
    def __init__(self, id: _Optional[str] = ..., backend: _Optional[str] = ..., mode: _Optional[_Union[SessionMode, str]] = ..., state: _Optional[_Union[SessionState, str]] = ..., state_reason: _Optional[str] = ..., accepting_jobs: _Optional[bool] = ..., max_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., interactive_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., active_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_seconds: _Optional[float] = ..., instance: _Optional[str] = ..., raw_json: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("backend", "mode", "max_ttl", "instance")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_TTL_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    mode: SessionMode
    max_ttl: _duration_pb2.Duration
    instance: str
    def __init__(self, backend: _Optional[str] = ..., mode: _Optional[_Union[SessionMode, str]] = ..., max_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., instance: _Optional[str] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class CancelSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CancelSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("instance", "usage_consumed_seconds", "usage_limit_seconds", "usage_allocation_seconds", "usage_remaining_seconds", "usage_limit_reached", "period_start_time", "period_end_time")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_CONSUMED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_ALLOCATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_LIMIT_REACHED_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    instance: str
    usage_consumed_seconds: float
    usage_limit_seconds: float
    usage_allocation_seconds: float
    usage_remaining_seconds: float
    usage_limit_reached: bool
    period_start_time: _timestamp_pb2.Timestamp
    period_end_time: _timestamp_pb2.Timestamp
    def __init__(self, instance: _Optional[str] = ..., usage_consumed_seconds: _Optional[float] = ..., usage_limit_seconds: _Optional[float] = ..., usage_allocation_seconds: _Optional[float] = ..., usage_remaining_seconds: _Optional[float] = ..., usage_limit_reached: _Optional[bool] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
