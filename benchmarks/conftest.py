"""Shared setup of the benchmarks: one thread count for every tool, the QD-LLM circuit, and
the memory-traffic reference measured in the same run."""

from __future__ import annotations

import os

# OpenMP threads of one tool (lightning, torch) spin-wait after each parallel region by
# default and steal the cores of the next tool measured; make them sleep instead. This must be
# set before any OpenMP runtime starts, hence before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from qcompress.allocator import keep_freed_memory

THREADS = int(os.environ.get("QCOMPRESS_BENCH_THREADS", os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True, scope="session")
def _allocator():
    # as `qcompress bench` runs: freed blocks stay in the process (qcompress/allocator.py)
    keep_freed_memory()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = THREADS
    machine_info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
