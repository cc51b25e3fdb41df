"""The benchmark report (``python -m benchmarks.report``, which writes docs/benchmarks.md):
every ratio it prints is between two measurements of the same run."""

from __future__ import annotations

import json

from benchmarks.report import main


def _case(name: str, median: float, **info) -> dict:
    return {"name": name, "stats": {"median": median, "min": median}, "extra_info": info}


def test_report_takes_floors_and_speed_ups_from_the_run_given(tmp_path, capsys):
    fwd_bwd = {"batch": 64, "mode": "forward+backward"}
    results = {
        "machine_info": {"torch_threads": 2, "torch": "2.13.0", "cuda": None,
                         "cpu": {"brand_raw": "Test CPU", "count": 2, "flags": ["fma", "avx2"]},
                         "caches": ["L2 1024K", "L3 32768K shared by 0-1"], "memory_gib": 23.5},
        "benchmarks": [
            # 1e9 multiply-adds: 50 GFMA/s on one thread, 100 on two
            _case("test_fma_rate_reference[1]", 0.02, implementation="fma-rate", threads=1,
                  fma=10**9),
            _case("test_fma_rate_reference[2]", 0.01, implementation="fma-rate", threads=2,
                  fma=10**9),
            _case("test_state_copy_reference[64]", 1e-5, implementation="state-copy", batch=64),
            _case("test_qdllm_circuit[torch]", 2e-3, implementation="torch",
                  fma_per_sample=712_704, **fwd_bwd),
            _case("test_torch_threads", 5e-3, implementation="torch-threads",
                  median_seconds_by_threads={"1": 3e-3, "2": 2e-3}, **fwd_bwd),
            _case("test_qdllm_circuit[pl]", 0.5,
                  implementation="pennylane-default.qubit-backprop", **fwd_bwd),
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    main(str(path))
    out = capsys.readouterr().out

    assert ("Machine: Test CPU (2 logical CPUs; AVX2; L2 1024K, L3 32768K shared by 0-1; "
            "24 GiB memory), 2 torch threads") in out
    assert "| pennylane-default.qubit-backprop | 500.00 ms | 2.00 ms | 250.0x [≥ 20x] |" in out
    # memory floor: (6L + 2) / 2 = 7 copies of 10 µs; arithmetic: 712,704 x 64 at 100 GFMA/s
    assert ("| 64 | forward+backward | 10 µs | 70 µs | 712,704 | 456 µs | arithmetic | "
            "2.00 ms | 28.6x | 4.4x |") in out
    assert "| multiply-add rate | 50 GFMA/s | 100 GFMA/s | 2.00x |" in out
    assert "| torch, batch 64, forward+backward | 3.00 ms | 2.00 ms | 1.50x |" in out
    assert "torch-threads" not in out  # its rounds time one step on each count: not a row
