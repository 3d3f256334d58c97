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

const commands = { health };

(async () => {
  if (!commands[command]) throw new Error(`unknown command ${command}`);
  const result = await commands[command]();
  process.stdout.write(JSON.stringify(result) + '\n');
})().catch((err) => {
  process.stderr.write(`error: ${err.code !== undefined ? `code ${err.code}: ` : ''}${err.message}\n`);
  process.exit(1);
});
