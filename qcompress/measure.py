"""Measurements: peak and average memory of a phase, latency percentiles, throughput.

Memory on the CPU is the process's resident set size sampled by a background thread, reported
above the level at the start of the phase (what the phase added); on CUDA it is PyTorch's
allocator statistics. Both are reported as ``avg`` and ``max`` in MiB.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
import torch

MIB = 1024 * 1024


class MemorySampler:
    """``with MemorySampler(device) as memory: ...`` then ``memory.result()``."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._baseline = 0

    def __enter__(self) -> MemorySampler:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            self._baseline = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._samples.append(self._read())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._samples.append(self._read())
        if self.device.type == "cuda":
            self._samples.append(torch.cuda.max_memory_allocated(self.device))

    def result(self) -> dict[str, float]:
        """``avg_mb`` and ``max_mb`` above the phase's starting level, and ``baseline_mb``."""
        above = [max(0, sample - self._baseline) for sample in self._samples] or [0]
        return {
            "avg_mb": round(statistics.fmean(above) / MIB, 2),
            "max_mb": round(max(above) / MIB, 2),
            "baseline_mb": round(self._baseline / MIB, 2),
        }


def latency(
    predict: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    samples: int,
    warmup: int,
) -> dict[str, float]:
    """Batch-1 latency percentiles (ms) over ``samples`` texts, after ``warmup`` untimed calls."""
    if not texts:
        raise ValueError("latency needs at least one text")
    for index in range(warmup):
        predict([texts[index % len(texts)]])
    timings = []
    for index in range(samples):
        start = time.perf_counter()
        predict([texts[index % len(texts)]])
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return {
        "p50": round(_percentile(timings, 50), 4),
        "p95": round(_percentile(timings, 95), 4),
        "mean": round(statistics.fmean(timings), 4),
        "samples": samples,
    }


def throughput(
    predict: Callable[[Sequence[str]], Any], texts: Sequence[str], batch_size: int
) -> dict[str, float]:
    """Texts per second when predicting ``texts`` in batches of ``batch_size``."""
    start = time.perf_counter()
    for offset in range(0, len(texts), batch_size):
        predict(texts[offset : offset + batch_size])
    elapsed = time.perf_counter() - start
    return {"batch_size": batch_size, "items_per_s": round(len(texts) / elapsed, 2)}


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    position = (len(sorted_values) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)
