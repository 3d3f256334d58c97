"""Without qiskit-ibm-runtime, inputs are plain JSON and results decode to Python/NumPy."""

from __future__ import annotations

import base64
import io
import json
import zlib

import numpy as np
import pytest

from runtime_gateway import IBMInputValueError, service


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "_sdk_json", lambda: None)  # as if qiskit-ibm-runtime were absent


def _ndarray(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {
        "__type__": "ndarray",
        "__value__": base64.standard_b64encode(zlib.compress(buffer.getvalue())).decode(),
    }


def test_plain_inputs_encode_and_objects_are_refused(no_sdk) -> None:
    text = service.encode_inputs({"pubs": [["OPENQASM 3.0;", None, 1024]], "version": 2})
    assert json.loads(text)["pubs"][0][2] == 1024
    with pytest.raises(IBMInputValueError, match="install qiskit-ibm-runtime"):
        service.encode_inputs({"circuit": object()})


def test_results_decode_to_numpy_and_plain_structures(no_sdk) -> None:
    evs = np.array([1.0, 0.5])
    text = json.dumps({"__type__": "PrimitiveResult", "__value__": {"pub_results": [
        {"__type__": "PubResult", "__value__": {"data": {"__type__": "DataBin", "__value__": {
            "fields": {"evs": _ndarray(evs)}}}, "metadata": {"shots": 10}}}], "metadata": {"version": 2}}})  # fmt: skip
    decoded = service.decode_result(text)
    fields = decoded["__value__"]["pub_results"][0]["__value__"]["data"]["__value__"]["fields"]
    assert isinstance(fields["evs"], np.ndarray) and np.allclose(fields["evs"], evs)
    assert service.decode_result(
        json.dumps({"__type__": "complex", "__value__": [1, 2]})
    ) == complex(1, 2)
    assert service.decode_result("not json") == "not json"
    assert service.decode_result("") is None
