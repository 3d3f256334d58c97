// The runtime gateway's TypeScript client: the generated messages and @grpc/grpc-js clients
// (src/gen, from protos/ by `make proto`; do not edit them), and how to read a rich error.
import type { ServiceError } from "@grpc/grpc-js";
import { ErrorInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

export * as accounts from "./gen/runtime_gateway/v1/accounts";
export * as backends from "./gen/runtime_gateway/v1/backends";
export * as errors from "./gen/runtime_gateway/v1/errors";
export * as jobs from "./gen/runtime_gateway/v1/jobs";
export * as results from "./gen/runtime_gateway/v1/results";
export * as rpc from "./gen/google/rpc/error_details";
export * as rpcStatus from "./gen/google/rpc/status";

/**
 * The `google.rpc.ErrorInfo` of a gateway error (from the `grpc-status-details-bin`
 * trailer), or undefined if the error carries none. `reason` is an `ErrorReason` name
 * without its `ERROR_REASON_` prefix, for example `JOB_NOT_FOUND`; the domain is
 * `runtime-gateway`. The same reason is also in the `runtime-gateway-reason` trailer.
 */
export function errorInfo(error: ServiceError): ErrorInfo | undefined {
  const [details] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!(details instanceof Buffer)) return undefined;
  for (const any of Status.decode(details).details) {
    if (any.typeUrl === "type.googleapis.com/google.rpc.ErrorInfo") return ErrorInfo.decode(any.value);
  }
  return undefined;
}
