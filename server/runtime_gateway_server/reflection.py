"""Server reflection under both protocol names, with the API's documentation.

The generated Python modules strip the protos' comments, so reflection served from them
shows none (`grpcurl describe` would print bare fields). `make proto` writes
`api_descriptor.binpb` (a FileDescriptorSet with source info, including errors.proto and
google/rpc); reflection answers from it, so `describe` shows the comments and every symbol
(for example `runtime_gateway.v1.ErrorReason`) resolves.

grpcio-reflection registers only `grpc.reflection.v1alpha.ServerReflection`, while newer
tools (grpcurl, Postman, evans) ask for `grpc.reflection.v1` first. The two protocols are
the same messages under another package name, so the v1 service reuses the v1alpha
servicer and message classes; a copy of the v1alpha file descriptor renamed to v1 is added
to the descriptor pool so that v1 itself can be described.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old_prefix = f".{proto.package}."
    proto.name = _V1_FILE
    proto.package = V1_PACKAGE
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = f".{V1_PACKAGE}." + field.type_name[len(old_prefix) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = f".{V1_PACKAGE}." + method.input_type[len(old_prefix) :]
            method.output_type = f".{V1_PACKAGE}." + method.output_type[len(old_prefix) :]
    pool.Add(proto)


API_DESCRIPTOR = "api_descriptor.binpb"


def documented_files() -> dict[str, bytes]:
    """File name -> serialized FileDescriptorProto (with source info), dependencies first."""
    data = resources.files("runtime_gateway_server").joinpath(API_DESCRIPTOR).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {f.name: f.SerializeToString() for f in files}


def _pool(documented: dict[str, bytes]) -> descriptor_pool.DescriptorPool:
    """A pool of the documented API files plus health and reflection (from their modules)."""
    pool = descriptor_pool.DescriptorPool()
    for serialized in documented.values():
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(serialized))
    for module in (health_pb2, reflection_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        if proto.name not in documented:
            pool.Add(proto)
    _add_v1_descriptor(pool)
    return pool


class DocumentedReflectionServicer(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """Answers with the documented descriptors where it has them.

    grpcio-reflection serializes files with `CopyToProto`, which drops source info; this
    servicer sends the stored bytes (comments included) instead."""

    def __init__(self, service_names: Iterable[str], documented: dict[str, bytes]) -> None:
        super().__init__(service_names, pool=_pool(documented))
        self._documented = documented

    def _respond(self, descriptor: Any, request: Any) -> Any:
        files: dict[str, Any] = {}
        pending = [descriptor]
        while pending:
            current = pending.pop()
            if current.name not in files:
                files[current.name] = current
                pending.extend(current.dependencies)
        serialized = []
        for name, file in files.items():
            if name in self._documented:
                serialized.append(self._documented[name])
            else:
                proto = descriptor_pb2.FileDescriptorProto()
                file.CopyToProto(proto)
                serialized.append(proto.SerializeToString())
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=serialized
            ),
            original_request=request,
        )

    # A file outside the documented set (a service registered later by other code) is
    # looked up in the default pool, as grpcio-reflection would, without comments.
    def _file_by_filename(self, request: Any, filename: str) -> Any:
        for pool in (self._pool, descriptor_pool.Default()):
            try:
                return self._respond(pool.FindFileByName(filename), request)
            except KeyError:
                pass
        return super()._file_by_filename(request, filename)  # its NOT_FOUND answer

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        for pool in (self._pool, descriptor_pool.Default()):
            try:
                return self._respond(pool.FindFileContainingSymbol(fully_qualified_name), request)
            except KeyError:
                pass
        return super()._file_containing_symbol(request, fully_qualified_name)


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves reflection (v1 and v1alpha) for `service_names` and for itself, from the
    documented descriptors (see the module docstring)."""
    names = (*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME)
    servicer = DocumentedReflectionServicer(names, documented_files())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1_handler,))
