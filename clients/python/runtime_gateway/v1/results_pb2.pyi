from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_KIND_UNSPECIFIED: _ClassVar[ResultKind]
    RESULT_KIND_SAMPLER: _ClassVar[ResultKind]
    RESULT_KIND_ESTIMATOR: _ClassVar[ResultKind]
    RESULT_KIND_UNKNOWN: _ClassVar[ResultKind]
RESULT_KIND_UNSPECIFIED: ResultKind
RESULT_KIND_SAMPLER: ResultKind
RESULT_KIND_ESTIMATOR: ResultKind
RESULT_KIND_UNKNOWN: ResultKind

class ResultOptions(_message.Message):
    __slots__ = ("typed", "counts", "int_counts")
    TYPED_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    INT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    typed: bool
    counts: bool
    int_counts: bool
    def __init__(self, typed: _Optional[bool] = ..., counts: _Optional[bool] = ..., int_counts: _Optional[bool] = ...) -> None: ...

class TypedResult(_message.Message):
    __slots__ = ("kind", "undecoded_reason", "pub_results", "metadata_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNDECODED_REASON_FIELD_NUMBER: _ClassVar[int]
    PUB_RESULTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: ResultKind
    undecoded_reason: str
    pub_results: _containers.RepeatedCompositeFieldContainer[TypedPubResult]
    metadata_json: str
    def __init__(self, kind: _Optional[_Union[ResultKind, str]] = ..., undecoded_reason: _Optional[str] = ..., pub_results: _Optional[_Iterable[_Union[TypedPubResult, _Mapping]]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class TypedPubResult(_message.Message):
    __slots__ = ("shape", "sampler", "estimator", "undecoded_fields", "metadata_json")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    UNDECODED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    sampler: SamplerPubData
    estimator: EstimatorPubData
    undecoded_fields: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., sampler: _Optional[_Union[SamplerPubData, _Mapping]] = ..., estimator: _Optional[_Union[EstimatorPubData, _Mapping]] = ..., undecoded_fields: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class SamplerPubData(_message.Message):
    __slots__ = ("registers",)
    REGISTERS_FIELD_NUMBER: _ClassVar[int]
    registers: _containers.RepeatedCompositeFieldContainer[RegisterData]
    def __init__(self, registers: _Optional[_Iterable[_Union[RegisterData, _Mapping]]] = ...) -> None: ...

class RegisterData(_message.Message):
    __slots__ = ("name", "num_shots", "num_bits", "packed_bits", "counts", "int_counts")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class IntCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_SHOTS_FIELD_NUMBER: _ClassVar[int]
    NUM_BITS_FIELD_NUMBER: _ClassVar[int]
    PACKED_BITS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    INT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_shots: int
    num_bits: int
    packed_bits: bytes
    counts: _containers.ScalarMap[str, int]
    int_counts: _containers.ScalarMap[int, int]
    def __init__(self, name: _Optional[str] = ..., num_shots: _Optional[int] = ..., num_bits: _Optional[int] = ..., packed_bits: _Optional[bytes] = ..., counts: _Optional[_Mapping[str, int]] = ..., int_counts: _Optional[_Mapping[int, int]] = ...) -> None: ...

class EstimatorPubData(_message.Message):
    __slots__ = ("evs", "stds", "ensemble_standard_error")
    EVS_FIELD_NUMBER: _ClassVar[int]
    STDS_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_STANDARD_ERROR_FIELD_NUMBER: _ClassVar[int]
    evs: _containers.RepeatedScalarFieldContainer[float]
    stds: _containers.RepeatedScalarFieldContainer[float]
    ensemble_standard_error: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, evs: _Optional[_Iterable[float]] = ..., stds: _Optional[_Iterable[float]] = ..., ensemble_standard_error: _Optional[_Iterable[float]] = ...) -> None: ...
