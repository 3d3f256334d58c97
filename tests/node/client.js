// A Node.js client of the runtime gateway: proof that other languages can use the API.
// Usage: node client.js ADDRESS PROTO_ROOT COMMAND
//   health   loads every runtime_gateway.v1 .proto, checks the services are defined, calls
//            grpc.health.v1.Health/Check and prints one JSON line with the results.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [address, protoRoot, command] = process.argv.slice(2);
if (!address || !protoRoot || !command) {
  console.error('usage: node client.js ADDRESS PROTO_ROOT COMMAND');
  process.exit(2);
}

const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

function loadApi() {
  const dir = path.join(protoRoot, 'runtime_gateway', 'v1');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.proto')).map((f) => path.join('runtime_gateway', 'v1', f));
  const definition = protoLoader.loadSync(files, { ...loaderOptions, includeDirs: [protoRoot] });
  return grpc.loadPackageDefinition(definition).runtime_gateway.v1;
}

function loadHealth() {
  const file = require.resolve('grpc-health-check/proto/health/v1/health.proto');
  const definition = protoLoader.loadSync(file, loaderOptions);
  return grpc.loadPackageDefinition(definition).grpc.health.v1;
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function health() {
  const api = loadApi();
  const services = {};
  for (const name of ['AccountService', 'BackendService', 'JobService']) {
    services[name] = Object.keys(api[name].service).sort();
  }
  const healthApi = loadHealth();
  const client = new healthApi.Health(address, grpc.credentials.createInsecure());
  const reply = await call(client, 'Check', { service: '' });
  client.close();
  return { status: reply.status, services };
}

// Lists backends through BackendService (the local channel: no credentials needed).
async function backends() {
  const api = loadApi();
  const client = new api.BackendService(address, grpc.credentials.createInsecure());
  const reply = await call(client, 'ListBackends', { filter: { min_num_qubits: 5 } });
  client.close();
  return { names: reply.backends.map((b) => b.name), qubits: Object.fromEntries(reply.backends.map((b) => [b.name, b.num_qubits])) };
}

// Runs a Bell-state Sampler job, waits for it, and returns its state and result.
async function run() {
  const api = loadApi();
  const client = new api.JobService(address, grpc.credentials.createInsecure());
  const qasm = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;';
  const inputs = JSON.stringify({ pubs: [[qasm, null, 256]], version: 2, options: {} });
  const submitted = await call(client, 'RunJob', {
    program_id: 'sampler', backend: 'ibmq_qasm_simulator', inputs_json: inputs, tags: ['from-node'],
  });
  const id = submitted.job.id;
  let state = submitted.job.state;
  for (let i = 0; i < 600 && !['JOB_STATE_COMPLETED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED'].includes(state); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    state = (await call(client, 'GetJob', { job_id: id })).job.state;
  }
  const result = await call(client, 'GetJobResult', { job_id: id });
  client.close();
  return { id, state, result_type: JSON.parse(result.result_json).__type__ };
}

const commands = { health, backends, run };

(async () => {
  if (!commands[command]) throw new Error(`unknown command ${command}`);
  const result = await commands[command]();
  process.stdout.write(JSON.stringify(result) + '\n');
})().catch((err) => {
  process.stderr.write(`error: ${err.code !== undefined ? `code ${err.code}: ` : ''}${err.message}\n`);
  process.exit(1);
});
