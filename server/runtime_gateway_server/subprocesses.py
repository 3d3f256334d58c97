"""How the gateway starts Python child processes (workers, the embedded local runtime, and the
local runtime's simulation workers).

`python -m module` puts the current directory first on the module search path, so a file
named like a standard module (`secrets.py`, say) in the directory the gateway was started
from would run inside the children. They are started with the current directory off the
path: `-P` (Python 3.11+), or on 3.10 a bootstrap that drops it before running the module.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_BOOTSTRAP = (
    "import runpy, sys; del sys.path[0]; "
    "sys.argv[0] = {module!r}; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def python_module(module: str) -> list[str]:
    """The argv prefix that runs `module` as `python -m module` would, without the current
    directory on `sys.path`."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module]
    return [sys.executable, "-c", _BOOTSTRAP.format(module=module)]


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Asks Linux to send `sig` to this process when its parent thread ends; elsewhere a no-op.

    The signal fires when the *thread* that started this process ends, so parents start
    these processes from long-lived threads only. If the parent already died before the
    request (a race), this process exits now.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
