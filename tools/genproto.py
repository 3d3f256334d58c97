"""Generates the Python stubs (messages, gRPC services, .pyi type stubs) from protos/.

python tools/genproto.py          # regenerate clients/python/runtime_gateway/v1
python tools/genproto.py --check  # exit 1 if the committed stubs differ from protos/
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "clients" / "python"
PACKAGE_DIR = Path("runtime_gateway") / "v1"
HAND_WRITTEN = {"__init__.py"}


def generate(out_root: Path) -> list[Path]:
    protos = sorted(PROTO_ROOT.glob("runtime_gateway/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # well-known types shipped with grpcio-tools
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / PACKAGE_DIR).iterdir() if p.name not in HAND_WRITTEN)


def generated_files(directory: Path) -> set[str]:
    return {
        p.name
        for p in directory.iterdir()
        if p.is_file() and p.name not in HAND_WRITTEN and p.suffix in {".py", ".pyi"}
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    target = OUT_ROOT / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        fresh_names = {p.name for p in fresh}
        if args.check:
            committed = generated_files(target)
            stale = sorted(committed ^ fresh_names)
            stale += [
                p.name
                for p in fresh
                if p.name in committed and not filecmp.cmp(p, target / p.name, shallow=False)
            ]
            if stale:
                print(
                    "generated stubs are out of date with protos/ (run `make proto`): "
                    + ", ".join(sorted(set(stale))),
                    file=sys.stderr,
                )
                return 1
            print(f"generated stubs are up to date ({len(fresh)} files)")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for name in generated_files(target) - fresh_names:
            (target / name).unlink()
        for path in fresh:
            shutil.copyfile(path, target / path.name)
        print(f"wrote {len(fresh)} files to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
