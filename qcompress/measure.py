"""Measurements: peak and average memory of a phase, latency percentiles, throughput.

Memory on the CPU is the process's resident set size sampled by a background thread, reported
above the level at the start of the phase (what the phase added); on CUDA it is PyTorch's
allocator statistics. Both are reported as ``avg`` and ``max`` in MiB.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
import torch

from qcompress.allocator import release_free_memory
from qcompress.record import Column

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
            # Start from no kept free memory: an earlier phase's freed blocks would otherwise
            # serve this phase unseen, billing the first phase of a process for both.
            release_free_memory()
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


class TokenRate:
    """Tokens and texts a model processed, and the seconds it took: a language model's own
    speed over everything it predicted in a run (its prompts or inputs as tokenized, padding
    excluded), beside the scorer's texts per second at a fixed batch size.

        rate = TokenRate()
        with rate.batch(texts=len(rows), tokens=int(mask.sum())):
            model(**tokens)
        rate.summary()   # {"tokens_per_s": .., "ms_per_text": .., "tokens_per_text": ..}
    """

    def __init__(self) -> None:
        self.tokens = 0
        self.texts = 0
        self.seconds = 0.0

    def batch(self, texts: int, tokens: int) -> _Timed:
        self.texts += texts
        self.tokens += tokens
        return _Timed(self)

    def summary(self) -> dict[str, float]:
        """Empty until something was timed."""
        if not self.texts or self.seconds <= 0:
            return {}
        return {
            "tokens_per_s": round(self.tokens / self.seconds, 1),
            "ms_per_text": round(1000 * self.seconds / self.texts, 2),
            "tokens_per_text": round(self.tokens / self.texts, 1),
            "texts_timed": self.texts,
        }


class _Timed:
    def __init__(self, rate: TokenRate) -> None:
        self.rate = rate

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.rate.seconds += time.perf_counter() - self.start


def token_rate_columns() -> tuple[Column, ...]:
    """The table columns of a model that reports its :class:`TokenRate` and load time in its
    ``describe()`` (the Hugging Face and LLM teachers)."""
    return (
        Column("details.load_s", "load s", "{:.1f}"),
        Column("details.tokens_per_s", "tokens/s", "{:.0f}"),
    )


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    position = (len(sorted_values) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class MachineLoad:
    """What else ran on the machine during a phase: the CPU time other processes took (in
    cores, from ``/proc/stat`` less this process's own CPU time) and the share of time the
    hypervisor gave to other guests (steal). Timings taken under load are not comparable with
    timings taken on a quiet machine; records keep this beside every timing.

    ``with MachineLoad() as load: ...`` then ``load.result()`` (empty where ``/proc/stat``
    cannot be read)."""

    # Above these, a table marks the row's timings as taken under load.
    OTHERS_CORES_LIMIT = 0.5
    STEAL_LIMIT = 0.05

    def __enter__(self) -> MachineLoad:
        self._start = self._read()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float, float] | None:
        try:
            with open("/proc/stat") as handle:
                fields = [float(value) for value in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = float(os.sysconf("SC_CLK_TCK"))
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
        busy = (user + nice + system + irq + softirq) / tick
        total = (user + nice + system + idle + iowait + irq + softirq + steal) / tick
        own = psutil.Process().cpu_times()
        return time.perf_counter(), busy, total, steal / tick, own.user + own.system

    def result(self) -> dict[str, Any]:
        if self._start is None or self._end is None:
            return {}
        wall = self._end[0] - self._start[0]
        busy, total, steal, own = (end - start for start, end in zip(
            self._start[1:], self._end[1:], strict=True))
        others = max(0.0, busy - own) / wall if wall > 0 else 0.0
        steal_share = steal / total if total > 0 else 0.0
        return {
            "others_cores": round(others, 3),
            "steal": round(steal_share, 4),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
            "loaded": others > self.OTHERS_CORES_LIMIT or steal_share > self.STEAL_LIMIT,
        }
