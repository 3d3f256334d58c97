"""Decodes a job's result (qiskit-ibm-runtime's `RuntimeEncoder` JSON) into TypedResult messages.

No Qiskit here: the wire format is read as qiskit_ibm_runtime/json.py writes it, and arrays
are decoded with NumPy alone.

Wire format (what `RuntimeEncoder` writes for V2 primitives):
  {"__type__": "PrimitiveResult", "__value__": {"pub_results": [PUB...], "metadata": {...}}}
  PUB      {"__type__": "SamplerPubResult" | "EstimatorPubResult" | "PubResult",
            "__value__": {"data": DATABIN, "metadata": {...}}}
  DATABIN  {"__type__": "DataBin", "__value__": {"field_names": [...], "shape": [...],
            "fields": {name: value}, ("field_types": [...] in older encoders)}}
  BitArray {"__type__": "BitArray", "__value__": {"array": NDARRAY, "num_bits": int}}
  NDARRAY  {"__type__": "ndarray", "__value__": base64(zlib(np.save(array)))}, or a plain
            JSON list/number for object arrays.

The local runtime (and older SDKs) write `PubResult` for both kinds; the kind then follows
from the fields (BitArrays: Sampler; `evs`: Estimator). Whatever does not fit is reported
(`RESULT_KIND_UNKNOWN` with a reason, or a pub's `undecoded_fields`), never guessed.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import zlib
from typing import Any, TypeGuard

import numpy as np

from runtime_gateway.v1 import results_pb2
from runtime_gateway_server.limits import MAX_RESULT_DECODED_BYTES

_PUB_TYPES = {"PubResult", "SamplerPubResult", "EstimatorPubResult"}
_ESTIMATOR_FIELDS = ("evs", "stds", "ensemble_standard_error")


class Undecodable(ValueError):
    """The result (or one part of it) is not in a form this module knows."""


class _Budget:
    """Bytes of decompressed arrays left for one result (a zlib bomb stops here)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def inflate(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, self.left + 1)
        except zlib.error as exc:
            raise Undecodable(f"an ndarray is not zlib data ({exc})") from None
        if len(out) > self.left or inflater.unconsumed_tail:
            raise Undecodable(f"arrays larger than {MAX_RESULT_DECODED_BYTES} bytes in total")
        self.left -= len(out)
        return out


def decode(
    result_json: str, *, counts: bool = False, int_counts: bool = False
) -> results_pb2.TypedResult:
    """The result in typed form; `kind` is RESULT_KIND_UNKNOWN (with a reason) if it is not
    a Sampler V2 or Estimator V2 PrimitiveResult. Never raises for bad input."""
    try:
        return _decode(result_json, counts=counts, int_counts=int_counts)
    except Undecodable as exc:
        reason = str(exc)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # A shape of the wire format this module did not foresee: still no guess.
        reason = f"the result could not be decoded ({type(exc).__name__})"
    return results_pb2.TypedResult(kind=results_pb2.RESULT_KIND_UNKNOWN, undecoded_reason=reason)


def _decode(result_json: str, *, counts: bool, int_counts: bool) -> results_pb2.TypedResult:
    try:
        root = json.loads(result_json)
    except ValueError:
        raise Undecodable("result_json is not JSON") from None
    value = _typed(root, {"PrimitiveResult"}, "the result")
    pubs = value.get("pub_results")
    if not isinstance(pubs, list):
        raise Undecodable("the PrimitiveResult has no pub_results list")
    budget = _Budget(MAX_RESULT_DECODED_BYTES)
    result = results_pb2.TypedResult(metadata_json=_metadata(value))
    kinds = set()
    for index, pub in enumerate(pubs):
        message = _pub(pub, f"pub_results[{index}]", budget, counts, int_counts)
        kinds.add(message.WhichOneof("data"))
        result.pub_results.append(message)
    if kinds == {"sampler"}:
        result.kind = results_pb2.RESULT_KIND_SAMPLER
    elif kinds == {"estimator"}:
        result.kind = results_pb2.RESULT_KIND_ESTIMATOR
    elif not kinds:
        raise Undecodable("the PrimitiveResult has no pub results")
    else:
        raise Undecodable("the pub results mix Sampler and Estimator data")
    return result


def _typed(node: Any, types: set[str], where: str) -> dict[str, Any]:
    """The `__value__` of an encoded object whose `__type__` is one of `types`."""
    kind = node.get("__type__") if isinstance(node, dict) else None
    if kind not in types:
        found = f"a {kind!s}" if isinstance(kind, str) else f"a JSON {type(node).__name__}"
        raise Undecodable(f"{where} is {found}, not {' or '.join(sorted(types))}")
    value = node.get("__value__")
    if not isinstance(value, dict):
        raise Undecodable(f"{where} has no object __value__")
    return value


def _metadata(value: dict[str, Any]) -> str:
    return json.dumps(value.get("metadata") or {}, separators=(",", ":"))


def _pub(
    node: Any, where: str, budget: _Budget, counts: bool, int_counts: bool
) -> results_pb2.TypedPubResult:
    pub_type = node.get("__type__") if isinstance(node, dict) else None
    value = _typed(node, _PUB_TYPES, where)
    data = _typed(value.get("data"), {"DataBin"}, f"{where}.data")
    shape = data.get("shape")
    fields = data.get("fields")
    if shape is None:
        shape = []
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise Undecodable(f"{where}.data has no shape")
    if not isinstance(fields, dict):
        raise Undecodable(f"{where}.data has no fields")
    names = data.get("field_names")
    order = [n for n in names if n in fields] if isinstance(names, list) else list(fields)
    message = results_pb2.TypedPubResult(shape=shape, metadata_json=_metadata(value))
    is_sampler = pub_type == "SamplerPubResult" or (
        pub_type == "PubResult" and any(_is_type(fields[n], "BitArray") for n in order)
    )
    is_estimator = pub_type == "EstimatorPubResult" or (pub_type == "PubResult" and "evs" in fields)
    if is_sampler:
        sampler = message.sampler
        sampler.SetInParent()
        for name in order:
            try:
                register, counted = _register(name, fields[name], shape, budget, counts, int_counts)
                sampler.registers.append(register)
                if (counts or int_counts) and not counted:
                    # Too many distinct outcomes to count in a message: read `packed_bits`.
                    message.undecoded_fields.append(f"{name}.counts")
            except Undecodable:
                message.undecoded_fields.append(name)
    elif is_estimator:
        estimator = message.estimator
        estimator.SetInParent()
        for name in order:
            try:
                if name not in _ESTIMATOR_FIELDS:
                    raise Undecodable(name)
                values = _floats(fields[name], shape, budget)
            except Undecodable:
                message.undecoded_fields.append(name)
                continue
            getattr(estimator, name).extend(values)
    else:
        raise Undecodable(f"{where} holds neither BitArrays nor evs")
    return message


# Bytes the counts of one register may take in a message (bitstring keys and varints).
MAX_COUNTS_BYTES = 4 * 1024 * 1024


def _register(
    name: str,
    node: Any,
    shape: list[int],
    budget: _Budget,
    counts: bool,
    int_counts: bool,
) -> tuple[results_pb2.RegisterData, bool]:
    """The register, and whether its counts (when asked for) are in it."""
    value = _typed(node, {"BitArray"}, name)
    num_bits = value.get("num_bits")
    if not _is_count(num_bits):
        raise Undecodable(f"{name} has no num_bits")
    array = _ndarray(value.get("array"), budget)
    num_bytes = math.ceil(num_bits / 8)
    if array.dtype != np.uint8 or list(array.shape[: len(shape)]) != shape:
        raise Undecodable(f"{name} is not a uint8 array of the pub's shape")
    if array.ndim != len(shape) + 2 or array.shape[-1] != num_bytes:
        raise Undecodable(f"{name} is not (*shape, shots, ceil(num_bits / 8))")
    register = results_pb2.RegisterData(
        name=name,
        num_shots=array.shape[-2],
        num_bits=num_bits,
        packed_bits=np.ascontiguousarray(array).tobytes(),
    )
    if counts or int_counts:
        outcomes = _int_counts(array.reshape(math.prod(array.shape[:-1]), num_bytes), num_bits)
        if len(outcomes) * (num_bits + 12) > MAX_COUNTS_BYTES:
            # A wide, random register has about one outcome per shot: its counts would be
            # several times the packed bits (and could pass gRPC's message limit), so they
            # are left out and reported in `undecoded_fields` rather than sent.
            return register, False
        if counts:
            spec = f"0{num_bits}b"  # bit 0 rightmost, as Qiskit's BitArray.get_counts() keys
            if num_bits:
                register.counts.update({format(k, spec): v for k, v in outcomes.items()})
            else:
                register.counts[""] = sum(outcomes.values())
        if int_counts and num_bits <= 64:
            register.int_counts.update(outcomes)
    return register, True


def _int_counts(rows: np.ndarray, num_bits: int) -> dict[int, int]:
    """Outcome (as an integer, bits above `num_bits` masked as Qiskit does) -> shots."""
    mask = (1 << num_bits) - 1
    out: dict[int, int] = {}
    if rows.shape[0] == 0:
        return out
    if rows.shape[1] <= 8:  # up to 64 bits: one big-endian uint64 per shot, counted in NumPy
        padded = np.zeros((rows.shape[0], 8), dtype=np.uint8)
        padded[:, 8 - rows.shape[1] :] = rows
        values = padded.view(">u8").ravel() & np.uint64(mask)
        unique_values, tally = np.unique(values, return_counts=True)
        return dict(zip(unique_values.tolist(), tally.tolist(), strict=True))
    # Wider: each row as one opaque value. `np.unique(axis=0)` compares rows column by column
    # in Python-visible ways and took 12 s for 100,000 rows of 250 bytes; a sort of void
    # scalars (memcmp) takes milliseconds.
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
    unique, tally = np.unique(keys, return_counts=True)
    for row, count in zip(unique, tally, strict=True):
        outcome = int.from_bytes(bytes(row), "big") & mask
        out[outcome] = out.get(outcome, 0) + int(count)
    return out


def _floats(node: Any, shape: list[int], budget: _Budget) -> list[float]:
    array = _ndarray(node, budget)
    if array.dtype.kind not in "fiu" or list(array.shape) != shape:
        raise Undecodable("not a real array of the pub's shape")
    return [float(x) for x in array.astype(np.float64).ravel(order="C")]


def _ndarray(node: Any, budget: _Budget) -> np.ndarray:
    if not _is_type(node, "ndarray"):
        raise Undecodable("not an ndarray")
    value = node.get("__value__")
    if isinstance(value, (int, float, list)) and not isinstance(value, bool):
        # RuntimeEncoder writes object arrays as plain JSON; RuntimeDecoder uses np.array.
        try:
            return np.array(value)
        except ValueError:
            raise Undecodable("a ragged ndarray") from None
    if not isinstance(value, str):
        raise Undecodable("an ndarray of unknown encoding")
    try:
        packed = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Undecodable("an ndarray is not base64") from None
    try:
        array = np.load(io.BytesIO(budget.inflate(packed)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise Undecodable(f"an ndarray is not a .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise Undecodable("an ndarray is not a single array")
    return array


def _is_type(node: Any, kind: str) -> bool:
    return isinstance(node, dict) and node.get("__type__") == kind


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
