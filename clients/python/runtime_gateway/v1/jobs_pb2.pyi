import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from runtime_gateway.v1 import results_pb2 as _results_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_VIEW_UNSPECIFIED: _ClassVar[JobView]
    JOB_VIEW_BASIC: _ClassVar[JobView]
    JOB_VIEW_FULL: _ClassVar[JobView]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_VIEW_UNSPECIFIED: JobView
JOB_VIEW_BASIC: JobView
JOB_VIEW_FULL: JobView

class Job(_message.Message):
    __slots__ = ("id", "program_id", "backend", "state", "status_reason", "status_reason_code", "create_time", "session_id", "tags", "instance", "inputs_json", "private", "estimated_running_time_seconds", "usage_seconds", "raw_json", "usage_quantum_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_RUNNING_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    USAGE_QUANTUM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    program_id: str
    backend: str
    state: JobState
    status_reason: str
    status_reason_code: int
    create_time: _timestamp_pb2.Timestamp
    session_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    instance: str
    inputs_json: str
    private: bool
    estimated_running_time_seconds: float
    usage_seconds: float
    raw_json: str
    usage_quantum_seconds: float
    def __init__(self, id: _Optional[str] = ..., program_id: _Optional[str] = ..., backend: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., status_reason: _Optional[str] = ..., status_reason_code: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., instance: _Optional[str] = ..., inputs_json: _Optional[str] = ..., private: _Optional[bool] = ..., estimated_running_time_seconds: _Optional[float] = ..., usage_seconds: _Optional[float] = ..., raw_json: _Optional[str] = ..., usage_quantum_seconds: _Optional[float] = ...) -> None: ...

class RunJobRequest(_message.Message):
    __slots__ = ("program_id", "inputs_json", "backend", "session_id", "start_session", "session_time", "tags", "log_level", "max_execution_time", "image", "private", "instance", "channel_strategy", "request_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    inputs_json: str
    backend: str
    session_id: str
    start_session: bool
    session_time: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    log_level: str
    max_execution_time: int
    image: str
    private: bool
    instance: str
    channel_strategy: str
    request_id: str
    def __init__(self, program_id: _Optional[str] = ..., inputs_json: _Optional[str] = ..., backend: _Optional[str] = ..., session_id: _Optional[str] = ..., start_session: _Optional[bool] = ..., session_time: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., log_level: _Optional[str] = ..., max_execution_time: _Optional[int] = ..., image: _Optional[str] = ..., private: _Optional[bool] = ..., instance: _Optional[str] = ..., channel_strategy: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RunJobResponse(_message.Message):
    __slots__ = ("job", "replayed")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    replayed: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "view")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    view: JobView
    def __init__(self, job_id: _Optional[str] = ..., view: _Optional[_Union[JobView, str]] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "skip", "backend", "pending", "program_id", "instance", "tags", "session_id", "created_after", "created_before", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    skip: int
    backend: str
    pending: bool
    program_id: str
    instance: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., skip: _Optional[int] = ..., backend: _Optional[str] = ..., pending: _Optional[bool] = ..., program_id: _Optional[str] = ..., instance: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token", "total_size")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    total_size: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobResultRequest(_message.Message):
    __slots__ = ("job_id", "result_options")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    result_options: _results_pb2.ResultOptions
    def __init__(self, job_id: _Optional[str] = ..., result_options: _Optional[_Union[_results_pb2.ResultOptions, _Mapping]] = ...) -> None: ...

class GetJobResultResponse(_message.Message):
    __slots__ = ("result_json", "typed_result")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    TYPED_RESULT_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    typed_result: _results_pb2.TypedResult
    def __init__(self, result_json: _Optional[str] = ..., typed_result: _Optional[_Union[_results_pb2.TypedResult, _Mapping]] = ...) -> None: ...

class GetJobLogsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobLogsResponse(_message.Message):
    __slots__ = ("logs",)
    LOGS_FIELD_NUMBER: _ClassVar[int]
    logs: str
    def __init__(self, logs: _Optional[str] = ...) -> None: ...

class GetJobMetricsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobMetricsResponse(_message.Message):
    __slots__ = ("create_time", "run_time", "finish_time", "usage_seconds", "metrics_json")
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    USAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    run_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    usage_seconds: float
    metrics_json: str
    def __init__(self, create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_seconds: _Optional[float] = ..., metrics_json: _Optional[str] = ...) -> None: ...

class UpdateJobTagsRequest(_message.Message):
    __slots__ = ("job_id", "tags")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateJobTagsResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "include_result", "include_interim", "resume_after_revision", "resume_epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INTERIM_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    RESUME_EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    include_result: bool
    include_interim: bool
    resume_after_revision: int
    resume_epoch: str
    def __init__(self, job_id: _Optional[str] = ..., include_result: _Optional[bool] = ..., include_interim: _Optional[bool] = ..., resume_after_revision: _Optional[int] = ..., resume_epoch: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("update",)
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    update: JobUpdate
    def __init__(self, update: _Optional[_Union[JobUpdate, _Mapping]] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("job_ids", "tags", "session_id", "backend", "include_result", "resume_after_revisions", "resume_epochs")
    class ResumeAfterRevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ResumeEpochsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    RESUME_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    backend: str
    include_result: bool
    resume_after_revisions: _containers.ScalarMap[str, int]
    resume_epochs: _containers.ScalarMap[str, str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., backend: _Optional[str] = ..., include_result: _Optional[bool] = ..., resume_after_revisions: _Optional[_Mapping[str, int]] = ..., resume_epochs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ("update",)
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    update: JobUpdate
    def __init__(self, update: _Optional[_Union[JobUpdate, _Mapping]] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("job_id", "revision", "observe_time", "state", "interim_result", "log", "heartbeat", "error", "epoch", "reset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    revision: int
    observe_time: _timestamp_pb2.Timestamp
    state: JobStateUpdate
    interim_result: JobInterimResult
    log: JobLogChunk
    heartbeat: JobHeartbeat
    error: JobStreamError
    epoch: str
    reset: bool
    def __init__(self, job_id: _Optional[str] = ..., revision: _Optional[int] = ..., observe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobStateUpdate, _Mapping]] = ..., interim_result: _Optional[_Union[JobInterimResult, _Mapping]] = ..., log: _Optional[_Union[JobLogChunk, _Mapping]] = ..., heartbeat: _Optional[_Union[JobHeartbeat, _Mapping]] = ..., error: _Optional[_Union[JobStreamError, _Mapping]] = ..., epoch: _Optional[str] = ..., reset: _Optional[bool] = ...) -> None: ...

class JobStateUpdate(_message.Message):
    __slots__ = ("job", "terminal", "result_json", "typed_result")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    TYPED_RESULT_FIELD_NUMBER: _ClassVar[int]
    job: Job
    terminal: bool
    result_json: str
    typed_result: _results_pb2.TypedResult
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., terminal: _Optional[bool] = ..., result_json: _Optional[str] = ..., typed_result: _Optional[_Union[_results_pb2.TypedResult, _Mapping]] = ...) -> None: ...

class JobInterimResult(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...

class JobLogChunk(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class JobHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobStreamError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
