import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BackendView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_VIEW_UNSPECIFIED: _ClassVar[BackendView]
    BACKEND_VIEW_BASIC: _ClassVar[BackendView]
    BACKEND_VIEW_FULL: _ClassVar[BackendView]
BACKEND_VIEW_UNSPECIFIED: BackendView
BACKEND_VIEW_BASIC: BackendView
BACKEND_VIEW_FULL: BackendView

class Backend(_message.Message):
    __slots__ = ("name", "num_qubits", "simulator", "dynamic_circuits", "basis_gates", "max_shots", "backend_version", "status", "configuration")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_QUBITS_FIELD_NUMBER: _ClassVar[int]
    SIMULATOR_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    BASIS_GATES_FIELD_NUMBER: _ClassVar[int]
    MAX_SHOTS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_qubits: int
    simulator: bool
    dynamic_circuits: bool
    basis_gates: _containers.RepeatedScalarFieldContainer[str]
    max_shots: int
    backend_version: str
    status: BackendStatus
    configuration: BackendConfiguration
    def __init__(self, name: _Optional[str] = ..., num_qubits: _Optional[int] = ..., simulator: _Optional[bool] = ..., dynamic_circuits: _Optional[bool] = ..., basis_gates: _Optional[_Iterable[str]] = ..., max_shots: _Optional[int] = ..., backend_version: _Optional[str] = ..., status: _Optional[_Union[BackendStatus, _Mapping]] = ..., configuration: _Optional[_Union[BackendConfiguration, _Mapping]] = ...) -> None: ...

class CouplingEdge(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: int
    target: int
    def __init__(self, source: _Optional[int] = ..., target: _Optional[int] = ...) -> None: ...

class BackendConfiguration(_message.Message):
    __slots__ = ("backend_name", "backend_version", "n_qubits", "basis_gates", "coupling_map", "simulator", "local", "conditional", "open_pulse", "memory", "max_shots", "max_experiments", "supported_instructions", "supported_features", "processor_family", "raw_json")
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    N_QUBITS_FIELD_NUMBER: _ClassVar[int]
    BASIS_GATES_FIELD_NUMBER: _ClassVar[int]
    COUPLING_MAP_FIELD_NUMBER: _ClassVar[int]
    SIMULATOR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_PULSE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MAX_SHOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_FAMILY_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    backend_name: str
    backend_version: str
    n_qubits: int
    basis_gates: _containers.RepeatedScalarFieldContainer[str]
    coupling_map: _containers.RepeatedCompositeFieldContainer[CouplingEdge]
    simulator: bool
    local: bool
    conditional: bool
    open_pulse: bool
    memory: bool
    max_shots: int
    max_experiments: int
    supported_instructions: _containers.RepeatedScalarFieldContainer[str]
    supported_features: _containers.RepeatedScalarFieldContainer[str]
    processor_family: str
    raw_json: str
    def __init__(self, backend_name: _Optional[str] = ..., backend_version: _Optional[str] = ..., n_qubits: _Optional[int] = ..., basis_gates: _Optional[_Iterable[str]] = ..., coupling_map: _Optional[_Iterable[_Union[CouplingEdge, _Mapping]]] = ..., simulator: _Optional[bool] = ..., local: _Optional[bool] = ..., conditional: _Optional[bool] = ..., open_pulse: _Optional[bool] = ..., memory: _Optional[bool] = ..., max_shots: _Optional[int] = ..., max_experiments: _Optional[int] = ..., supported_instructions: _Optional[_Iterable[str]] = ..., supported_features: _Optional[_Iterable[str]] = ..., processor_family: _Optional[str] = ..., raw_json: _Optional[str] = ...) -> None: ...

class BackendStatus(_message.Message):
    __slots__ = ("backend_name", "backend_version", "operational", "pending_jobs", "status_msg", "raw_json")
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATIONAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_JOBS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MSG_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    backend_name: str
    backend_version: str
    operational: bool
    pending_jobs: int
    status_msg: str
    raw_json: str
    def __init__(self, backend_name: _Optional[str] = ..., backend_version: _Optional[str] = ..., operational: _Optional[bool] = ..., pending_jobs: _Optional[int] = ..., status_msg: _Optional[str] = ..., raw_json: _Optional[str] = ...) -> None: ...

class QubitProperties(_message.Message):
    __slots__ = ("qubit", "t1", "t2", "frequency", "readout_error")
    QUBIT_FIELD_NUMBER: _ClassVar[int]
    T1_FIELD_NUMBER: _ClassVar[int]
    T2_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    READOUT_ERROR_FIELD_NUMBER: _ClassVar[int]
    qubit: int
    t1: float
    t2: float
    frequency: float
    readout_error: float
    def __init__(self, qubit: _Optional[int] = ..., t1: _Optional[float] = ..., t2: _Optional[float] = ..., frequency: _Optional[float] = ..., readout_error: _Optional[float] = ...) -> None: ...

class GateProperties(_message.Message):
    __slots__ = ("gate", "qubits", "gate_error", "gate_length")
    GATE_FIELD_NUMBER: _ClassVar[int]
    QUBITS_FIELD_NUMBER: _ClassVar[int]
    GATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    GATE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    gate: str
    qubits: _containers.RepeatedScalarFieldContainer[int]
    gate_error: float
    gate_length: float
    def __init__(self, gate: _Optional[str] = ..., qubits: _Optional[_Iterable[int]] = ..., gate_error: _Optional[float] = ..., gate_length: _Optional[float] = ...) -> None: ...

class BackendProperties(_message.Message):
    __slots__ = ("backend_name", "backend_version", "last_update_time", "qubits", "gates", "raw_json")
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    QUBITS_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    backend_name: str
    backend_version: str
    last_update_time: _timestamp_pb2.Timestamp
    qubits: _containers.RepeatedCompositeFieldContainer[QubitProperties]
    gates: _containers.RepeatedCompositeFieldContainer[GateProperties]
    raw_json: str
    def __init__(self, backend_name: _Optional[str] = ..., backend_version: _Optional[str] = ..., last_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., qubits: _Optional[_Iterable[_Union[QubitProperties, _Mapping]]] = ..., gates: _Optional[_Iterable[_Union[GateProperties, _Mapping]]] = ..., raw_json: _Optional[str] = ...) -> None: ...

class BackendFilter(_message.Message):
    __slots__ = ("name", "min_num_qubits", "instance", "dynamic_circuits", "simulator", "operational", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_NUM_QUBITS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    SIMULATOR_FIELD_NUMBER: _ClassVar[int]
    OPERATIONAL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_num_qubits: int
    instance: str
    dynamic_circuits: bool
    simulator: bool
    operational: bool
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., min_num_qubits: _Optional[int] = ..., instance: _Optional[str] = ..., dynamic_circuits: _Optional[bool] = ..., simulator: _Optional[bool] = ..., operational: _Optional[bool] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListBackendsRequest(_message.Message):
    __slots__ = ("filter", "view", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: BackendFilter
    view: BackendView
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[BackendFilter, _Mapping]] = ..., view: _Optional[_Union[BackendView, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBackendsResponse(_message.Message):
    __slots__ = ("backends", "next_page_token")
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    next_page_token: str
    def __init__(self, backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBackendRequest(_message.Message):
    __slots__ = ("name", "instance", "view")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    name: str
    instance: str
    view: BackendView
    def __init__(self, name: _Optional[str] = ..., instance: _Optional[str] = ..., view: _Optional[_Union[BackendView, str]] = ...) -> None: ...

class GetBackendResponse(_message.Message):
    __slots__ = ("backend",)
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    backend: Backend
    def __init__(self, backend: _Optional[_Union[Backend, _Mapping]] = ...) -> None: ...

class GetBackendStatusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBackendStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: BackendStatus
    def __init__(self, status: _Optional[_Union[BackendStatus, _Mapping]] = ...) -> None: ...

class GetBackendPropertiesRequest(_message.Message):
    __slots__ = ("name", "updated_before")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    updated_before: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., updated_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBackendPropertiesResponse(_message.Message):
    __slots__ = ("properties",)
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    properties: BackendProperties
    def __init__(self, properties: _Optional[_Union[BackendProperties, _Mapping]] = ...) -> None: ...

class GetLeastBusyBackendRequest(_message.Message):
    __slots__ = ("filter", "view")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    filter: BackendFilter
    view: BackendView
    def __init__(self, filter: _Optional[_Union[BackendFilter, _Mapping]] = ..., view: _Optional[_Union[BackendView, str]] = ...) -> None: ...

class GetLeastBusyBackendResponse(_message.Message):
    __slots__ = ("backend",)
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    backend: Backend
    def __init__(self, backend: _Optional[_Union[Backend, _Mapping]] = ...) -> None: ...
