"""Peak memory of one torch-backend forward+backward, measured in a fresh process (so memory
an earlier benchmark left in the allocator cannot hide it): the process's high-water mark
(``VmHWM``, which, unlike ``ru_maxrss``, starts afresh at exec) minus the resident set before
the step.

    python -m benchmarks.peak_memory QUBITS BATCH   ->  {"baseline_mib": ..., "peak_mib": ...}
"""

from __future__ import annotations

import json
import sys

import psutil
import torch

from qcompress.allocator import keep_freed_memory
from qcompress_plugins.backends.torch_sim.backend import TorchBackend
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit


def main(n_qubits: int, batch: int) -> None:
    keep_freed_memory()  # as `qcompress bench` runs
    circuit = qdllm_circuit(n_qubits, 2)
    x = torch.rand(batch, n_qubits) * 10
    w = torch.rand(circuit.n_weights, requires_grad=True)
    baseline = psutil.Process().memory_info().rss
    TorchBackend().expectations(circuit, x, w).sum().backward()
    peak = _high_water_mark()
    print(json.dumps({"baseline_mib": baseline / 2**20, "peak_mib": (peak - baseline) / 2**20}))


def _high_water_mark() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
