"""Generated Protobuf and gRPC modules of the `runtime_gateway.v1` API (see `make proto`)."""
