"""A simulation worker process of the local runtime: `python -m runtime_gateway_local.worker`.

The local runtime runs every job's decoding and Aer simulation in one of these processes,
never in its own (see `execution.py`): a heavy simulation then costs the HTTP server no GIL
time, and cancelling a job or exceeding its memory bound kills the process, at once.

Protocol, over two inherited pipes (fds given as arguments; stdout is not used, so that a
library printing to it cannot corrupt a frame): frames of a 4-byte big-endian length and
UTF-8 JSON.
- worker → parent, once warm: `{"ready": true}`
- parent → worker: `{"program_id", "params" (JSON text), "backend", "max_memory_mb"}`
- worker → parent: `{"ok": true, "result", "seconds", "lines"}` or
  `{"ok": false, "kind": "memory" | "invalid" | "error", "message"}`
The worker exits on EOF of its task pipe, and with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from typing import Any, BinaryIO

from runtime_gateway_server.subprocesses import die_with_parent

_HEADER = struct.Struct(">I")
# Aer's refusals when a circuit needs more than `max_memory_mb`: "Insufficient memory to run
# circuit ... Required memory: ..." (method chosen by name), and qiskit-aer 0.18's "a circuit
# requires more memory than max_memory_mb" (method "automatic").
AER_MEMORY_MARKERS = ("insufficient memory", "requires more memory than max_memory_mb")


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame, or None at EOF."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    message: dict[str, Any] = json.loads(data)
    return message


def run_task(task: dict[str, Any], catalog: Any) -> dict[str, Any]:
    """Decodes, validates and runs one job; never raises."""
    from runtime_gateway_local import programs, simulation

    try:
        entry = catalog.get(task["backend"])
        if entry is None:
            raise RuntimeError(f"backend {task['backend']} is no longer available")
        prepared = programs.prepare(task["program_id"], task["params"], entry)
        limit = task.get("max_memory_mb")
        if limit:  # Aer refuses circuits whose state would need more (its own estimate)
            entry.aer_simulator.set_options(max_memory_mb=int(limit))
        outcome = programs.execute(prepared, entry, int(limit) if limit else None)
    except programs.InvalidParams as error:
        return {"ok": False, "kind": "invalid", "message": str(error)}
    except simulation.TooLarge as error:
        return {"ok": False, "kind": "memory", "message": str(error)}
    except MemoryError:
        return {"ok": False, "kind": "memory", "message": "the simulation ran out of memory"}
    except Exception as error:
        message = str(error) or type(error).__name__
        lowered = message.lower()
        kind = "memory" if any(m in lowered for m in AER_MEMORY_MARKERS) else "error"
        return {"ok": False, "kind": kind, "message": message}
    return {
        "ok": True,
        "result": outcome.result_json,
        "seconds": outcome.quantum_seconds,
        "lines": outcome.log_lines,
    }


def main(argv: list[str]) -> int:
    tasks_fd, results_fd, parent_pid = int(argv[0]), int(argv[1]), int(argv[2])
    devices = json.loads(argv[3]) if len(argv) > 3 and argv[3] != "null" else None
    die_with_parent(signal.SIGKILL, parent_pid)
    # Warm up before announcing readiness: imports take seconds, jobs then start at once.
    import qiskit_aer.primitives  # noqa: F401
    import qiskit_ibm_runtime.json  # noqa: F401

    from runtime_gateway_local.backends import BackendCatalog

    catalog = BackendCatalog(devices)
    with os.fdopen(tasks_fd, "rb") as tasks, os.fdopen(results_fd, "wb") as results:
        write_frame(results, {"ready": True})
        while True:
            task = read_frame(tasks)
            if task is None:
                return 0
            write_frame(results, run_task(task, catalog))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
