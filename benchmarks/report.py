"""Turns a pytest-benchmark JSON into the Markdown tables of docs/benchmarks.md, with every
ratio taken between two measurements of the same run.

    python -m benchmarks.report benchmarks/results.json > docs/benchmarks.md
"""

from __future__ import annotations

import json
import sys

from benchmarks.floors import FLOOR_COPIES


def load(path: str) -> tuple[dict, list[dict]]:
    with open(path) as handle:
        data = json.load(handle)
    return data["machine_info"], data["benchmarks"]


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def main(path: str) -> None:
    machine, benchmarks = load(path)
    times: dict[tuple[str, int, str], float] = {}
    copies: dict[int, float] = {}
    fma: dict[str, int] = {}  # per sample, by mode
    fma_rates: dict[int, float] = {}  # multiply-adds per second, by thread count
    scaling = []
    threads_seconds: dict[tuple[int, str], dict[str, float]] = {}  # one step each in turn
    for b in benchmarks:
        info = b["extra_info"]
        median = b["stats"]["median"]
        # The floors' units come from their best round: a shared VM's slow spells lengthen
        # the median, and a floor measured slow would flatter the kernel measured against it.
        best = b["stats"]["min"]
        if info.get("implementation") == "fma-rate":
            fma_rates[info["threads"]] = info["fma"] / best
        elif info.get("implementation") == "state-copy":  # the fastest way of copying
            copies[info["batch"]] = min(best, copies.get(info["batch"], best))
        elif b["name"].startswith("test_torch_scaling"):
            scaling.append((info, median))
        elif info.get("implementation") == "torch-threads":
            threads_seconds[(info["batch"], info["mode"])] = info["median_seconds_by_threads"]
        else:
            times[(info["implementation"], info["batch"], info["mode"])] = median
            if "fma_per_sample" in info:
                fma[info["mode"]] = info["fma_per_sample"]

    threads = machine.get("torch_threads")
    fma_rate = fma_rates.get(threads)  # the benchmark's threads: what the floor divides by
    print("# Backend benchmarks\n")
    print(f"Machine: {describe_machine(machine)}, {threads} torch threads, "
          f"torch {machine.get('torch')}, CUDA: {machine.get('cuda')}. "
          "Medians; every ratio is between two measurements of the same run (the scaling "
          "rows may come from a separate run; each row's floor is measured with it).\n")
    print("On a shared 2-core VM the same case can vary between runs by up to 2-3x, so "
          "read ratios as orders of magnitude, and rerun before comparing close numbers. "
          "The run sets `OMP_WAIT_POLICY=PASSIVE` so that one tool's spinning OpenMP threads "
          "cannot steal the next one's cores; threads then sleep between parallel regions, "
          "which costs the short ones. `torch` is the torch backend as configured by "
          "default (its compiled CPU kernel); `torch-ops` is the same backend on torch "
          "operations (`kernel: torch`, what CUDA runs). Each step takes the other of two "
          "weight vectors, as each training step's weights differ from the last: the torch "
          "backend rebuilds its gate matrices and phase vectors for new weights, and is "
          "timed doing so.\n")

    print("## QD-LLM circuit (11 qubits, 2 layers, 144 weights)\n")
    implementations = sorted({k[0] for k in times if not k[0].startswith("torch-without")})
    print("| implementation | mode | batch 1 | batch 64 | batch 256 |")
    print("|---|---|---|---|---|")
    for name in implementations:
        for mode in ("forward", "forward+backward"):
            cells = [fmt(times[(name, b, mode)]) if (name, b, mode) in times else "—"
                     for b in (1, 64, 256)]
            print(f"| {name} | {mode} | {' | '.join(cells)} |")

    print("\n## Ratios at batch 64, forward+backward (goals in brackets)\n")
    torch_time = times.get(("torch", 64, "forward+backward"))
    refs = [("pennylane-default.qubit-backprop", "≥ 20x"),
            ("pennylane-lightning.qubit-adjoint", ""),
            ("qiskit-ml-EstimatorQNN-TorchConnector", "≥ 5000x"),
            ("torch-ops", ""),
            ("torch-backprop", "")]
    print("| reference | its time | torch backend | speed-up |")
    print("|---|---|---|---|")
    for name, goal in refs:
        t = times.get((name, 64, "forward+backward"))
        if t and torch_time:
            print(f"| {name} | {fmt(t)} | {fmt(torch_time)} | {t / torch_time:.1f}x "
                  f"{'[' + goal + ']' if goal else ''} |")

    qml = "qiskit-ml-EstimatorQNN-TorchConnector"
    keys = [(qml, 1, "forward+backward"), (qml, 1, "forward"), (qml, 64, "forward")]
    if torch_time and all(k in times for k in keys) and (qml, 64, "forward+backward") not in times:
        scale = times[(qml, 64, "forward")] / times[(qml, 1, "forward")]
        estimate = times[keys[0]] * scale
        print(f"| {qml}, estimated* | {fmt(estimate)} | {fmt(torch_time)} | "
              f"{estimate / torch_time:.0f}x [≥ 5000x] |")
        print(f"\n\\* Its forward+backward at batch 64 did not finish within 10 minutes here. "
              f"Measured at batch 1 ({fmt(times[keys[0]])}) and scaled by its own forward's "
              f"batch-1 → batch-64 factor in this run ({scale:.1f}x): EstimatorQNN evaluates "
              "every sample's shifted circuits separately, so its cost is linear in the batch.")

    print("\n## Against the floors\n")
    print("Two floors, written down in `benchmarks/floors.py`. **Memory**: the state-sized "
          "transfers the circuit cannot avoid ((2L+2) forward, 4L more backward, L = 2 "
          "layers), timed by the faster of two state copies into an existing buffer "
          "(torch's threads, one numpy memcpy; best round) in the same run. **Arithmetic**: "
          "the real "
          "multiply-adds (FMAs) the CPU kernel's algorithm needs per sample, counted from its "
          "compiled program, at the machine's FMA rate measured in the same run (best round)"
          + (f" ({fma_rate / 1e9:.0f} GFMA/s on {machine.get('torch_threads')} threads)"
             if fma_rate else "")
          + ". The binding floor is the larger of the two.\n")
    print("| batch | mode | state copy | memory floor | FMA / sample | arithmetic floor | "
          "binds | torch | torch / memory floor | torch / binding floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch in (1, 64, 256):
        for mode in ("forward", "forward+backward"):
            t = times.get(("torch", batch, mode))
            if not (t and batch in copies):
                continue
            memory = FLOOR_COPIES[mode] * copies[batch]
            arithmetic = fma[mode] * batch / fma_rate if fma_rate and mode in fma else 0.0
            arithmetic_cell = fmt(arithmetic) if arithmetic else "—"
            binds = "arithmetic" if arithmetic > memory else "memory"
            print(f"| {batch} | {mode} | {fmt(copies[batch])} | {fmt(memory)} | "
                  f"{fma.get(mode, 0):,} | {arithmetic_cell} | {binds} | {fmt(t)} | "
                  f"{t / memory:.1f}x | {t / max(memory, arithmetic):.1f}x |")

    memory64 = FLOOR_COPIES["forward+backward"] * copies.get(64, 0)
    if fma_rate and memory64 and "forward+backward" in fma:
        arithmetic64 = fma["forward+backward"] * 64 / fma_rate
        print(f"\nAt batch 64, forward+backward, the arithmetic floor alone is "
              f"{arithmetic64 / memory64:.1f}x the memory floor: a layer's ten rotations cost "
              "40 multiply-adds per amplitude while a state transfer moves its 8 bytes once, so "
              "a kernel within 3x of the memory floor would have to run this arithmetic at "
              f"{min(arithmetic64 / memory64 / 3, 9.99):.0%} of the machine's multiply-add "
              "rate.")
    print("\nWhat separates the kernel from the binding floor: measured on one chunk, its "
          "2x2 passes run close to the multiply-add rate; the rest is work the FMA count does "
          "not see (the product start state and its gradient, the readout and its cotangent, "
          "per-sample gate matrices, permutations, copying the kept final state), and per "
          "call a fixed cost (Python, numpy hand-offs, autograd, waking numba's threads, "
          "building the shared gate matrices and phase vectors when the weights change) that "
          "dominates at batch 1.")

    print_thread_scaling(threads_seconds, fma_rates, threads)

    print("\n## What each fusion buys (torch backend, CPU kernel, forward+backward)\n")
    print("| switched off | batch 1 | batch 64 | batch 256 |")
    print("|---|---|---|---|")
    fusions = sorted({k[0] for k in times if k[0].startswith("torch-without")})
    base = {b: times.get(("torch-without-all", b, "forward+backward")) for b in (1, 64, 256)}
    for name in fusions:
        cells = []
        for b in (1, 64, 256):
            t = times.get((name, b, "forward+backward"))
            cells.append(f"{fmt(t)} ({t / base[b]:.2f}x)" if t and base[b] else "—")
        label = "nothing" if name == "torch-without-all" else name.removeprefix("torch-without-")
        print(f"| {label} | {' | '.join(cells)} |")

    if scaling:
        print("\n## Scaling (torch, batch 64, forward+backward)\n")
        print("| qubits | time | state | peak memory of a step | state copy | "
              "time / memory floor | time / arithmetic floor |")
        print("|---|---|---|---|---|---|---|")
        for info, median in sorted(scaling, key=lambda s: s[0]["qubits"]):
            floor = FLOOR_COPIES["forward+backward"] * info["state_copy_seconds"]
            arithmetic = (info.get("fma_per_sample", 0) * 64 / fma_rate) if fma_rate else 0
            ratio = f"{median / arithmetic:.1f}x" if arithmetic else "—"
            print(f"| {info['qubits']} | {fmt(median)} | {info['state_mib']:.0f} MiB | "
                  f"{info['peak_memory_mib']:.0f} MiB | {fmt(info['state_copy_seconds'])} | "
                  f"{median / floor:.1f}x | {ratio} |")


def describe_machine(machine: dict) -> str:
    """The CPU, its logical CPUs, widest SIMD, data caches and memory, as far as the run
    recorded them (older runs lack the caches and memory)."""
    cpu = machine.get("cpu", {})
    flags = set(cpu.get("flags", []))
    simd = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                         ("neon", "NEON"), ("asimd", "NEON")) if flag in flags),
                None)
    details = [f"{cpu['count']} logical CPUs" if "count" in cpu else None,
               cpu.get("hz_advertised_friendly"), simd,
               ", ".join(machine.get("caches", [])) or None,
               f"{machine['memory_gib']:.0f} GiB memory" if machine.get("memory_gib") else None]
    details = [d for d in details if d]
    name = cpu.get("brand_raw", machine.get("processor") or "?")
    return f"{name} ({'; '.join(details)})" if details else name


def print_thread_scaling(threads_seconds: dict, fma_rates: dict[int, float],
                         threads: int | None) -> None:
    """What the benchmark's threads add to the machine's multiply-add rate and to the torch
    backend, both against one thread in the same run (the torch steps in turn, a few at a
    time)."""
    if not (threads and threads > 1 and 1 in fma_rates and threads in fma_rates):
        return
    print(f"\n## What {threads} threads buy (against one, same run)\n")
    print(f"| measured | 1 thread | {threads} threads | speed-up |")
    print("|---|---|---|---|")
    one, many = fma_rates[1], fma_rates[threads]
    print(f"| multiply-add rate | {one / 1e9:.0f} GFMA/s | {many / 1e9:.0f} GFMA/s | "
          f"{many / one:.2f}x |")
    for batch in (1, 64, 256):
        for mode in ("forward", "forward+backward"):
            pair = threads_seconds.get((batch, mode))
            if pair and "1" in pair and str(threads) in pair:
                single, default = pair["1"], pair[str(threads)]
                print(f"| torch, batch {batch}, {mode} | {fmt(single)} | {fmt(default)} | "
                      f"{single / default:.2f}x |")
    print("\nThe torch rows alternate a few steps on each thread count, round by round, so "
          "both see the same machine; at batch 1 both run the kernel's serial entry point. "
          f"Here the threads added {many / one:.2f}x to the multiply-add rate. A machine "
          f"with {threads} cores of its own adds close to {threads}x; hardware threads of one "
          "core share its multiply-add units and add next to nothing, and a shared VM's "
          "vCPUs can be either, or in between, from one hour to the next. The arithmetic "
          f"floor above divides by the {threads}-thread rate of this run, so it moves with "
          "it; the kernel, bound by arithmetic from batch 64, can gain at most what the "
          "rate gains, and less by the cost of waking its sleeping worker threads twice a "
          "step (with `OMP_WAIT_POLICY=PASSIVE`, on this VM about as much as a chunk's work: "
          "NOTES.md).")


if __name__ == "__main__":
    main(sys.argv[1])
