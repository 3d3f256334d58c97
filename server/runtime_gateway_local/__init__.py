"""The local runtime: an emulator of IBM Qiskit Runtime's HTTP API that runs jobs for real.

It speaks both dialects the SDK uses (the legacy `ibm_quantum` auth API with its runtime,
and IAM + `/api/v1` for `ibm_cloud` / `ibm_quantum_platform`), serves real device
snapshots, and runs Sampler V2 / Estimator V2 jobs on Qiskit Aer with each device's noise
model. `docs/ibm-runtime-rest.md` is the contract it follows.
"""
