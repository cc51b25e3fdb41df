"""Shared setup of the benchmarks: one thread count for every tool, the QD-LLM circuit, and
the memory-traffic reference measured in the same run."""

from __future__ import annotations

import os
from pathlib import Path

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
    machine_info["caches"] = _caches()
    machine_info["memory_gib"] = _memory_gib()


def _caches() -> list[str]:
    """The first CPU's data caches as Linux lists them ("L2 1024K", "L3 32768K shared by
    0-1"): what a state of a given size fits in. py-cpuinfo's own figures were wrong on a VM
    (an L3 of 1 MiB where the kernel reports 32 MiB). Empty where sysfs has none."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size, shared = (
                (index / name).read_text().strip()
                for name in ("level", "type", "size", "shared_cpu_list"))
        except OSError:
            continue
        if kind != "Instruction":
            caches.append(f"L{level} {size}" + (f" shared by {shared}" if "-" in shared
                                                 or "," in shared else ""))
    return caches


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
