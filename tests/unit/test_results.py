"""The typed-result decoder against results the real SDK encodes.

Each result is built with Qiskit, encoded with qiskit-ibm-runtime's RuntimeEncoder, decoded
by runtime_gateway_server.results (NumPy only), and compared with what RuntimeDecoder makes
of the same JSON: counts, integer counts, packed bits, evs, stds and shapes agree exactly.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qiskit.primitives import (
    DataBin,
    PrimitiveResult,
    PubResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime import RuntimeDecoder, RuntimeEncoder

from runtime_gateway.v1 import results_pb2
from runtime_gateway_local.programs import to_portable_result
from runtime_gateway_server import results
from runtime_gateway_server.limits import MAX_RESULT_DECODED_BYTES


def encode(result: object) -> str:
    return json.dumps(result, cls=RuntimeEncoder)


def sampler_result() -> PrimitiveResult:
    """Two pubs: a Bell pair over two registers (3 and 10 bits), and a parameter sweep."""
    a, b = ClassicalRegister(3, "alpha"), ClassicalRegister(10, "beta")
    q = QuantumRegister(3)
    bell = QuantumCircuit(q, a, b)
    bell.h(0)
    bell.cx(0, 1)
    bell.x(2)
    bell.measure([0, 1, 2], [0, 1, 2])
    bell.measure([0, 1, 2], [3, 9, 5])
    theta = Parameter("t")
    sweep = QuantumCircuit(1)
    sweep.ry(theta, 0)
    sweep.measure_all()
    values = np.linspace(0, np.pi, 6).reshape(2, 3)
    return StatevectorSampler(seed=11).run([(bell, None, 300), (sweep, values, 50)]).result()


def estimator_result() -> PrimitiveResult:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    theta = Parameter("t")
    rotated = QuantumCircuit(1)
    rotated.ry(theta, 0)
    observables = [[SparsePauliOp("ZZ")], [SparsePauliOp("XX")], [SparsePauliOp("IZ")]]
    return (
        StatevectorEstimator(seed=5)
        .run(
            [
                (circuit, observables, None, 0.05),
                (rotated, [SparsePauliOp("Z"), SparsePauliOp("X")], [[0.1], [0.7]]),
            ]
        )
        .result()
    )


def test_sampler_counts_and_bits_agree_with_the_sdk() -> None:
    text = encode(sampler_result())
    typed = results.decode(text, counts=True, int_counts=True)
    sdk = json.loads(text, cls=RuntimeDecoder)
    assert typed.kind == results_pb2.RESULT_KIND_SAMPLER
    assert len(typed.pub_results) == len(sdk) == 2
    for pub, expected in zip(typed.pub_results, sdk, strict=True):
        assert pub.WhichOneof("data") == "sampler" and not pub.undecoded_fields
        assert tuple(pub.shape) == expected.data.shape
        assert [r.name for r in pub.sampler.registers] == list(expected.data)
        for register in pub.sampler.registers:
            bits = expected.data[register.name]
            assert register.num_bits == bits.num_bits
            assert register.num_shots == bits.num_shots
            assert register.packed_bits == bits.array.tobytes()
            assert dict(register.counts) == bits.get_counts()
            assert dict(register.int_counts) == bits.get_int_counts()
        assert json.loads(pub.metadata_json) == expected.metadata
    assert set(typed.pub_results[0].sampler.registers[0].counts) == {"100", "111"}
    assert json.loads(typed.metadata_json) == json.loads(text)["__value__"]["metadata"]


def test_counts_only_when_asked() -> None:
    typed = results.decode(encode(sampler_result()))
    register = typed.pub_results[0].sampler.registers[0]
    assert register.packed_bits and not register.counts and not register.int_counts


def test_estimator_evs_stds_and_shapes_agree_with_the_sdk() -> None:
    text = encode(estimator_result())
    typed = results.decode(text)
    sdk = json.loads(text, cls=RuntimeDecoder)
    assert typed.kind == results_pb2.RESULT_KIND_ESTIMATOR
    for pub, expected in zip(typed.pub_results, sdk, strict=True):
        assert pub.WhichOneof("data") == "estimator" and not pub.undecoded_fields
        assert tuple(pub.shape) == expected.data.shape
        assert list(pub.estimator.evs) == expected.data.evs.ravel().tolist()
        assert list(pub.estimator.stds) == expected.data.stds.ravel().tolist()
        assert not pub.estimator.ensemble_standard_error
    assert tuple(typed.pub_results[0].shape) == (3, 1)


def test_ensemble_standard_error_and_unknown_fields() -> None:
    evs = np.array([[0.5, -0.25]])
    data = DataBin(
        evs=evs,
        stds=np.array([[0.01, 0.02]]),
        ensemble_standard_error=np.array([[0.03, 0.04]]),
        evs_extrapolated=np.zeros((1, 2, 3)),
        shape=(1, 2),
    )
    text = encode(PrimitiveResult([PubResult(data, metadata={"x": 1})], metadata={"v": 2}))
    typed = results.decode(text)
    sdk = json.loads(text, cls=RuntimeDecoder)[0].data
    pub = typed.pub_results[0]
    assert typed.kind == results_pb2.RESULT_KIND_ESTIMATOR
    assert list(pub.estimator.evs) == sdk.evs.ravel().tolist()
    assert list(pub.estimator.ensemble_standard_error) == [0.03, 0.04]
    assert list(pub.undecoded_fields) == ["evs_extrapolated"]


def test_the_local_runtimes_portable_form_decodes_the_same() -> None:
    """PubResult instead of SamplerPubResult, and DataBins with field_types (0.21's form)."""
    text = encode(sampler_result())
    portable = to_portable_result(text)
    assert '"SamplerPubResult"' not in portable
    assert results.decode(portable, counts=True) == results.decode(text, counts=True)
    text = encode(estimator_result())
    assert results.decode(to_portable_result(text)) == results.decode(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[" * 100_000, "could not be decoded (RecursionError)"),
        ('{"results": []}', "the result is a JSON dict, not PrimitiveResult"),
        ('{"__type__": "NoiseLearnerResult", "__value__": {}}', "a NoiseLearnerResult"),
        ('{"__type__": "PrimitiveResult", "__value__": {"pub_results": []}}', "no pub results"),
        (
            '{"__type__": "PrimitiveResult", "__value__": {"pub_results": [{"__type__": '
            '"PubResult", "__value__": {"data": {"__type__": "DataBin", "__value__": '
            '{"shape": [], "fields": {"x": 1}}}}}]}}',
            "neither BitArrays nor evs",
        ),
    ],
)
def test_results_it_does_not_know_are_reported_not_guessed(text: str, reason: str) -> None:
    typed = results.decode(text, counts=True)
    assert typed.kind == results_pb2.RESULT_KIND_UNKNOWN
    assert reason in typed.undecoded_reason
    assert not typed.pub_results


def test_mixed_and_complex_results_are_unknown() -> None:
    sampler = sampler_result()
    estimator = estimator_result()
    mixed = encode(PrimitiveResult([sampler[0], estimator[0]], metadata={}))
    assert results.decode(mixed).kind == results_pb2.RESULT_KIND_UNKNOWN
    complex_evs = DataBin(evs=np.array([1 + 1j]), stds=np.array([0.1]), shape=(1,))
    typed = results.decode(encode(PrimitiveResult([PubResult(complex_evs)])))
    assert list(typed.pub_results[0].undecoded_fields) == ["evs"]


def test_a_zlib_bomb_stops_at_the_bound() -> None:
    huge = np.zeros(MAX_RESULT_DECODED_BYTES + 1024, dtype=np.uint8).reshape(-1, 1)
    text = encode(PrimitiveResult([PubResult(DataBin(evs=huge[:, 0], shape=huge[:, 0].shape))]))
    assert len(text) < 1_000_000  # zeros compress about 1000:1
    typed = results.decode(text)
    assert list(typed.pub_results[0].undecoded_fields) == ["evs"]
    assert not typed.pub_results[0].estimator.evs


def test_pickled_arrays_are_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
    node = {"__type__": "ndarray", "__value__": value}
    data = {"__type__": "DataBin", "__value__": {"shape": [1], "fields": {"evs": node}}}
    pub = {"__type__": "PubResult", "__value__": {"data": data, "metadata": {}}}
    text = json.dumps({"__type__": "PrimitiveResult", "__value__": {"pub_results": [pub]}})
    typed = results.decode(text)
    assert list(typed.pub_results[0].undecoded_fields) == ["evs"]


def test_the_decoder_does_not_import_qiskit() -> None:
    code = (
        "import sys, runtime_gateway_server.results as r; "
        "assert not [m for m in sys.modules if m.startswith(('qiskit', 'qiskit_ibm_runtime'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_counts_too_large_for_a_message_are_left_out_and_reported() -> None:
    """A wide random register has about one outcome per shot: its counts would be many times
    its packed bits (a 9 MB result became a stream message over gRPC's 64 MiB limit). They
    are left out, named in `undecoded_fields`; the packed bits are still there."""
    from qiskit.primitives.containers import BitArray

    rng = np.random.default_rng(5)
    bits = rng.integers(0, 256, size=(60_000, 13), dtype=np.uint8)  # 100 bits, random
    wide = PubResult(DataBin(meas=BitArray(bits, 100)))
    typed = results.decode(encode(PrimitiveResult([wide])), counts=True, int_counts=True)
    pub = typed.pub_results[0]
    register = pub.sampler.registers[0]
    assert register.packed_bits == bits.tobytes()
    assert not register.counts and not register.int_counts
    assert list(pub.undecoded_fields) == ["meas.counts"]
    narrow = results.decode(encode(sampler_result()), counts=True)
    assert all(not p.undecoded_fields for p in narrow.pub_results)


def test_wide_registers_count_as_qiskit_does() -> None:
    """Registers over 64 bits are counted as opaque rows (a 2,000-bit register of 100,000
    identical shots took 12 s the old way, holding the event loop); same counts as Qiskit's."""
    from qiskit.primitives.containers import BitArray

    rng = np.random.default_rng(9)
    choices = rng.integers(0, 256, size=(5, 13), dtype=np.uint8)
    bits = choices[rng.integers(0, 5, size=2000)]  # 100 bits, 5 distinct outcomes
    typed = results.decode(encode(PrimitiveResult([PubResult(DataBin(c=BitArray(bits, 100)))])),
                           counts=True)  # fmt: skip
    assert (
        dict(typed.pub_results[0].sampler.registers[0].counts) == BitArray(bits, 100).get_counts()
    )
    same = np.zeros((100_000, 250), dtype=np.uint8)
    same[:, -1] = 1
    wide = results.decode(
        encode(PrimitiveResult([PubResult(DataBin(c=BitArray(same, 2000)))])), counts=True
    )
    assert dict(wide.pub_results[0].sampler.registers[0].counts) == {"0" * 1999 + "1": 100_000}
