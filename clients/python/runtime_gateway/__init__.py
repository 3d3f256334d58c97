"""Thin Python client of the runtime gateway.

The generated gRPC modules live in `runtime_gateway.v1`. Importing this package loads only
grpcio and protobuf: never qiskit, numpy, requests or structlog.
"""

__version__ = "0.1.0"
