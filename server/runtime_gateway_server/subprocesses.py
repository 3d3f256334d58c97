"""How the gateway starts Python child processes (workers, the embedded local runtime, and the
local runtime's simulation workers).

`python -m module` puts the current directory first on the module search path, so a file
named like a standard module (`secrets.py`, say) in the directory the gateway was started
from would run inside the children. They are started with the current directory off the
path: `-P` (Python 3.11+), or on 3.10 a bootstrap that drops it before running the module.
"""

from __future__ import annotations

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
