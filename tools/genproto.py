"""Generates every client and descriptor from protos/, with one protoc (grpcio-tools').

python tools/genproto.py          # regenerate everything below
python tools/genproto.py --check  # exit 1 if anything committed differs from protos/

What it writes (all committed):
  clients/python/runtime_gateway/v1/       Python messages, gRPC services, .pyi type stubs
  server/runtime_gateway_server/api_descriptor.binpb
                                           FileDescriptorSet with source info (comments),
                                           served by reflection
  clients/go/runtimegatewayv1/             Go messages and gRPC services
                                           (Debian's protoc-gen-go, protoc-gen-go-grpc)
  clients/typescript/src/gen/              TypeScript messages and @grpc/grpc-js clients
                                           (ts-proto from clients/typescript/node_modules)

`make proto` installs the plugins first (`make proto-deps`).
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
WKT_INCLUDE = Path(protoc.__file__).parent / "_proto"  # well-known types shipped with grpcio-tools
API_PROTOS = sorted(
    p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.glob("runtime_gateway/v1/*.proto")
)
# Copies of googleapis' protos: what a client needs to decode `grpc-status-details-bin`.
RPC_PROTOS = ["google/rpc/code.proto", "google/rpc/error_details.proto", "google/rpc/status.proto"]
GO_MODULE = "runtime-gateway/clients/go"  # the prefix of the protos' go_package
TS_PLUGIN = ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "protoc-gen-ts_proto"
TS_OPTIONS = "outputServices=grpc-js,env=node,esModuleInterop=true,useDate=false"


class Target:
    """One generated output: a directory (or file) under the repository, made by protoc."""

    def __init__(self, name: str, committed: str, made: str, args: list[str], protos: list[str]):
        self.name = name
        self.committed = ROOT / committed  # where it lives in the repository
        self.made = made  # where it lands relative to the temporary output root
        self.args = args  # protoc output flags; `{out}` is the temporary output root
        self.protos = protos

    def generate(self, out: Path) -> Path:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{WKT_INCLUDE}"]
        args += [a.replace("{out}", str(out)) for a in self.args]
        if protoc.main([*args, *self.protos]) != 0:
            raise SystemExit(f"protoc failed for {self.name}")
        return out / self.made


def targets() -> list[Target]:
    return [
        Target(
            "python",
            "clients/python/runtime_gateway/v1",
            "runtime_gateway/v1",
            ["--python_out={out}", "--pyi_out={out}", "--grpc_python_out={out}"],
            API_PROTOS,
        ),
        Target(
            "descriptor set",
            "server/runtime_gateway_server/api_descriptor.binpb",
            "api_descriptor.binpb",
            [
                "--include_imports",
                "--include_source_info",
                "--descriptor_set_out={out}/api_descriptor.binpb",
            ],
            [*API_PROTOS, *RPC_PROTOS],
        ),
        Target(
            "go",
            "clients/go/runtimegatewayv1",
            "runtimegatewayv1",
            [
                f"--plugin=protoc-gen-go={_which('protoc-gen-go')}",
                f"--plugin=protoc-gen-go-grpc={_which('protoc-gen-go-grpc')}",
                "--go_out={out}",
                f"--go_opt=module={GO_MODULE}",
                "--go-grpc_out={out}",
                f"--go-grpc_opt=module={GO_MODULE}",
            ],
            API_PROTOS,
        ),
        Target(
            "typescript",
            "clients/typescript/src/gen",
            "gen",
            [
                f"--plugin=protoc-gen-ts_proto={TS_PLUGIN}",
                "--ts_proto_out={out}/gen",
                f"--ts_proto_opt={TS_OPTIONS}",
            ],
            [*API_PROTOS, "google/rpc/status.proto", "google/rpc/error_details.proto"],
        ),
    ]


def _which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed: run `make proto-deps`")
    return found


def _files(path: Path) -> dict[str, Path]:
    """Relative name -> path of every generated file under `path` (or `path` itself)."""
    if path.is_file():
        return {path.name: path}
    if not path.is_dir():
        return {}
    return {
        p.relative_to(path).as_posix(): p
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    if not TS_PLUGIN.exists():
        raise SystemExit(f"{TS_PLUGIN.relative_to(ROOT)} is missing: run `make proto-deps`")
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets():
            out = Path(tmp) / target.name.replace(" ", "_")
            (out / "gen").mkdir(parents=True)
            fresh = _files(target.generate(out))
            committed = _files(target.committed)
            if args.check:
                rel = target.committed.relative_to(ROOT)
                stale += [f"{rel}/{n}" for n in sorted(committed.keys() ^ fresh.keys())]
                stale += [
                    f"{rel}/{n}"
                    for n, p in fresh.items()
                    if n in committed and not filecmp.cmp(p, committed[n], shallow=False)
                ]
                continue
            if len(fresh) == 1 and target.committed.suffix:  # a single file
                shutil.copyfile(next(iter(fresh.values())), target.committed)
            else:
                for name in committed.keys() - fresh.keys():
                    committed[name].unlink()
                for name, path in fresh.items():
                    dest = target.committed / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, dest)
            print(
                f"{target.name}: wrote {len(fresh)} files to {target.committed.relative_to(ROOT)}"
            )
    if args.check:
        if stale:
            print(
                "generated code is out of date with protos/ (run `make proto`): "
                + ", ".join(sorted(set(stale))),
                file=sys.stderr,
            )
            return 1
        print("generated code is up to date (python, descriptor set, go, typescript)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
