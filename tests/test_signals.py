"""Stopping the command: Ctrl-C and SIGTERM at any moment give one line and the usual exit
code, never a traceback, and leave finished records as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_end_to_end import write_suite


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "qcompress", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def wait_for_handlers(process: subprocess.Popen[str], limit_s: float = 30.0) -> None:
    """Until ``qcompress.entry.main`` has installed its handlers (the kernel lists SIGTERM as
    caught). Before that, Python itself is starting, and an interrupt then is Python's to
    report: a fixed sleep raced with start-up on a loaded machine."""
    status = Path(f"/proc/{process.pid}/status")
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        caught = next(
            (line.split()[1] for line in status.read_text().splitlines()
             if line.startswith("SigCgt:")),
            "0",
        )  # fmt: skip
        if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)


def test_ctrl_c_while_importing_prints_one_line(tmp_path: Path) -> None:
    process = start(["plugins"], tmp_path)
    wait_for_handlers(process)  # then the command line's imports take seconds
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:  # the signal came after the command had finished
        return
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; finished records are kept" in err


def test_sigterm_during_a_run_prints_one_line_and_keeps_records(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="stop", seeds=[0, 1, 2])
    results, cache = tmp_path / "results", tmp_path / "cache"
    process = start(["bench", str(suite), "--results", str(results), "--cache-dir", str(cache)],
                    tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list((results / "stop").glob("mlp*.json")):
        time.sleep(0.05)  # until the first cell's record is written
    finished = {p.name: p.read_bytes() for p in (results / "stop").glob("*.json")}
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:  # the whole tiny suite finished first: nothing to test
        return
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert "terminated (SIGTERM); finished records are kept" in err
    for name, data in finished.items():
        if name != "manifest.json":
            assert (results / "stop" / name).read_bytes() == data
    leftovers = [p for p in (results / "stop").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_an_interrupt_waits_for_the_import_it_arrived_in(tmp_path: Path) -> None:
    """A module stopped half way stays broken in sys.modules; the handler lets the import
    finish and raises the interrupt right after it (SIGTERM arrives mid-import here)."""
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2)\n"
        "FINISHED = True\n"
    )
    script = (
        "import sys\n"
        "from qcompress import entry\n"
        "import signal\n"
        "signal.signal(signal.SIGTERM, entry._on_sigterm)\n"
        "signal.signal(signal.SIGALRM, entry._on_retry)\n"
        "try:\n"
        "    import slow_module\n"
        "    import time\n"
        "    time.sleep(5)\n"
        "    print('not interrupted')\n"
        "except entry.Terminated:\n"
        "    print('terminated after import:', sys.modules['slow_module'].FINISHED)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, text=True, capture_output=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.stdout.strip() == "terminated after import: True", done.stderr
