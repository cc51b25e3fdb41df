"""qcompress.measure: latency percentiles, throughput, and the memory sampler.

Timing-dependent assertions are about structure and ordering only, never about thresholds."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence

import pytest
import torch

from qcompress import measure


class SleepingPredict:
    """A fake model: sleeps a known time per call and records the batches it was given."""

    def __init__(self, delays_s: Sequence[float]) -> None:
        self.delays_s = list(delays_s)
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> None:
        delay = self.delays_s[len(self.calls) % len(self.delays_s)]
        self.calls.append(list(texts))
        time.sleep(delay)


def test_latency_percentiles_and_sample_count() -> None:
    predict = SleepingPredict([0.001, 0.001, 0.001, 0.001, 0.02])
    result = measure.latency(predict, ["a", "b", "c"], samples=10, warmup=0)
    assert set(result) == {"p50", "p95", "mean", "samples"}
    assert result["samples"] == 10
    assert 0 < result["p50"] <= result["p95"]
    # Two of ten calls sleep 20 ms: the 95th percentile sits above the median.
    assert result["p50"] < result["p95"]
    assert result["mean"] > 0


def test_latency_warms_up_untimed_and_predicts_one_text_at_a_time() -> None:
    predict = SleepingPredict([0.0])
    texts = ["first", "second"]
    result = measure.latency(predict, texts, samples=3, warmup=2)
    assert result["samples"] == 3
    assert len(predict.calls) == 5  # 2 warm-up calls + 3 timed calls
    assert all(len(batch) == 1 for batch in predict.calls)
    # Texts are cycled through when there are fewer texts than samples.
    assert [batch[0] for batch in predict.calls] == ["first", "second", "first", "second", "first"]


def test_latency_needs_a_text() -> None:
    with pytest.raises(ValueError, match="at least one text"):
        measure.latency(SleepingPredict([0.0]), [], samples=3, warmup=0)


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8),
        ([0.0, 10.0], 95, 9.5),
        ([1.0, 2.0, 3.0], 100, 3.0),
        ([1.0, 2.0, 3.0], 0, 1.0),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], percent: float, expected: float):
    # numpy's default ("linear") method: numpy.percentile(values, percent).
    assert measure._percentile(values, percent) == pytest.approx(expected)


def test_throughput_batches_every_text() -> None:
    predict = SleepingPredict([0.001])
    texts = [f"text {index}" for index in range(10)]
    result = measure.throughput(predict, texts, batch_size=4)
    assert set(result) == {"batch_size", "items_per_s"}
    assert result["batch_size"] == 4
    assert result["items_per_s"] > 0
    assert [len(batch) for batch in predict.calls] == [4, 4, 2]
    assert [text for batch in predict.calls for text in batch] == texts


def test_memory_sampler_sees_a_large_allocation() -> None:
    with measure.MemorySampler("cpu", interval_s=0.001) as memory:
        block = torch.ones(50_000_000)  # 200 MB of float32, every page written
        time.sleep(0.05)
        assert block[-1].item() == 1.0
    result = memory.result()
    del block
    assert set(result) == {"avg_mb", "max_mb", "baseline_mb"}
    assert result["max_mb"] > 100
    assert 0 <= result["avg_mb"] <= result["max_mb"]
    assert result["baseline_mb"] > 0


def test_memory_sampler_reports_what_the_phase_added_not_the_baseline() -> None:
    with measure.MemorySampler("cpu") as memory:
        pass
    result = memory.result()
    assert result["max_mb"] < 50  # nothing was allocated: far below the process's size
    assert result["baseline_mb"] > result["max_mb"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_memory_sampler_on_cuda_sees_a_large_allocation() -> None:
    with measure.MemorySampler("cuda") as memory:
        block = torch.ones(50_000_000, device="cuda")
        torch.cuda.synchronize()
        del block
    # The allocator's peak is kept even though the tensor is freed before the phase ends.
    assert memory.result()["max_mb"] > 100


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc keeps freed memory")
def test_a_phase_is_billed_the_same_whatever_ran_before() -> None:
    """With freed memory kept in the process (as ``qcompress bench`` keeps it), a second
    phase would reuse the first one's blocks unseen and read ~0: each phase starts by handing
    kept memory back, so both read the memory they use."""
    from qcompress.allocator import keep_freed_memory

    keep_freed_memory()

    def phase() -> float:
        with measure.MemorySampler("cpu") as memory:
            blocks = [torch.ones(1 << 20) for _ in range(8)]  # 8 x 4 MiB, heap-allocated
            time.sleep(0.05)  # held across several samples
            del blocks
        return memory.result()["max_mb"]

    first, second = phase(), phase()
    assert first >= 24 and second >= 24, (first, second)


def test_token_rate_counts_what_was_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    from qcompress import measure

    clock = iter([10.0, 10.5, 20.0, 21.5])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    rate = measure.TokenRate()
    assert rate.summary() == {}
    with rate.batch(texts=4, tokens=100):
        pass
    with rate.batch(texts=6, tokens=300):
        pass
    assert rate.summary() == {
        "tokens_per_s": 200.0, "ms_per_text": 200.0, "tokens_per_text": 40.0, "texts_timed": 10
    }
