"""The 0.21 SDK's ibm_quantum flow against a local runtime; run inside .venv-sdk021.

Usage: python flow.py BASE_URL TOKEN   (prints one JSON document with what it observed)
"""

import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2, __version__  # noqa: E402
from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound  # noqa: E402

base, token = sys.argv[1], sys.argv[2]
out = {"sdk_version": __version__}

service = QiskitRuntimeService(channel="ibm_quantum", url=f"{base}/api", token=token)
out["instances"] = service.instances()
out["backends"] = sorted(b.name for b in service.backends())
out["big_backends"] = sorted(b.name for b in service.backends(min_num_qubits=100))
out["least_busy"] = service.least_busy(simulator=False).name

bell = QuantumCircuit(2)
bell.h(0)
bell.cx(0, 1)
bell.measure_all()

# service.run with Sampler V2 inputs, as the 0.21 docs show for the runtime API.
job = service.run(
    program_id="sampler",
    inputs={"pubs": [(bell, None, 1000)], "version": 2},
    options={"backend": "ibmq_qasm_simulator", "job_tags": ["compat-021"]},
)
result = job.result()
out["run_counts"] = result[0].data.meas.get_counts()
out["run_job_id"] = job.job_id()
out["run_status"] = str(job.status())

# The SamplerV2 primitive of 0.21.
backend = service.backend("ibmq_qasm_simulator")
v2 = SamplerV2(backend=backend).run([bell], shots=500)
out["sampler_v2_counts"] = v2.result()[0].data.meas.get_counts()

out["jobs_tagged"] = [j.job_id() for j in service.jobs(job_tags=["compat-021"])]
out["job_lookup_status"] = str(service.job(job.job_id()).status())
out["logs_have_start"] = "Job started" in job.logs()

service.delete_job(job.job_id())
try:
    service.job(job.job_id())
    out["deleted"] = False
except RuntimeJobNotFound:
    out["deleted"] = True

started = time.monotonic()
print(json.dumps(out))
