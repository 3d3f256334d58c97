// A Bell pair from TypeScript: list backends, run a Sampler job (OpenQASM 3), follow
// WatchJob to the terminal update, read the counts from the typed result, and read an
// error's reason. Usage: node dist/examples/bell.js HOST:PORT
import { credentials, ServiceError } from "@grpc/grpc-js";
import { backends, errorInfo, jobs, results } from "../src";

const address = process.argv[2] ?? "127.0.0.1:50051";
const backendService = new backends.BackendServiceClient(address, credentials.createInsecure());
const jobService = new jobs.JobServiceClient(address, credentials.createInsecure());

function call<T>(start: (done: (error: ServiceError | null, reply: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => start((error, reply) => (error ? reject(error) : resolve(reply))));
}

async function main(): Promise<void> {
  const listed = await call<backends.ListBackendsResponse>((done) =>
    backendService.listBackends(backends.ListBackendsRequest.fromPartial({}), done),
  );
  const bell = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;';
  const submitted = await call<jobs.RunJobResponse>((done) =>
    jobService.runJob(
      jobs.RunJobRequest.fromPartial({
        programId: "sampler",
        backend: "ibmq_qasm_simulator",
        inputsJson: JSON.stringify({ pubs: [[bell, null, 1000]], version: 2, options: {} }),
      }),
      done,
    ),
  );
  const jobId = submitted.job!.id;

  // The stream ends after the terminal update; with includeResult it carries the result.
  let last: jobs.JobStateUpdate | undefined;
  for await (const message of jobService.watchJob(jobs.WatchJobRequest.fromPartial({ jobId, includeResult: true }))) {
    const update = (message as jobs.WatchJobResponse).update?.state;
    if (update?.terminal) last = update;
  }
  const typed = last?.typedResult;
  if (typed?.kind !== results.ResultKind.RESULT_KIND_SAMPLER) throw new Error(`no sampler result: ${typed?.undecodedReason}`);
  const counts = typed.pubResults[0].sampler!.registers[0].counts; // for example { "00": 503, "11": 497 }

  let reason = "";
  try {
    await call<jobs.GetJobResponse>((done) => jobService.getJob(jobs.GetJobRequest.fromPartial({ jobId: "no-such-job" }), done));
  } catch (error) {
    reason = errorInfo(error as ServiceError)?.reason ?? ""; // "JOB_NOT_FOUND"
  }

  console.log(JSON.stringify({
    backends: listed.backends.map((b) => b.name),
    jobId,
    state: jobs.jobStateToJSON(last!.job!.state),
    counts,
    reason,
  }));
  backendService.close();
  jobService.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
