"""The runtime gateway server: a gRPC front for IBM Qiskit Runtime's REST API."""

__version__ = "0.1.0"
