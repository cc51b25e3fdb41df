"""A third-party plugin package, installed with pip, drives a whole `qcompress bench` run:
its task, teacher, student and metric beside the first-party objectives and metrics.

Nothing is downloaded: pip installs from the local folder without dependencies or build
isolation, the task is built in code, and the teacher has no weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qcompress.record import SCHEMA
from qcompress.results import read_record

SAMPLE = Path(__file__).resolve().parent / "plugins" / "qcompress_sample"

SUITE = """\
name: sample
description: the sample third-party plugin end to end
task: {name: tiny-sentiment, train_count: 80, eval_count: 40}
teacher: {name: keyword}
objective: {name: kd, temperature: 2.0, alpha: 0.5}
train: {epochs: 15, batch_size: 20, lr: 0.1}
seeds: [0, 1]
device: cpu
students:
  - {name: bow}
  - {name: bow, objective: {name: ce}}
metrics: [accuracy, error_rate]
reports: [terminal, markdown]
measure: {latency_samples: 5, warmup: 1}
"""


def qcompress_command() -> list[str]:
    script = Path(sys.executable).with_name("qcompress")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from qcompress.cli import main; main(sys.argv[1:])"]


@pytest.fixture(scope="session")
def sample_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a shell where the sample package is pip-installed."""
    root = tmp_path_factory.mktemp("third-party")
    source = root / "source"  # builds write build/ and *.egg-info: keep them out of the repo
    shutil.copytree(SAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("QCOMPRESS_") and key != "PYTHONPATH"
    }
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INDEX="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",  # a tiny model; thread hand-offs would dominate
    )
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (site / "qcompress_sample" / "__init__.py").is_file()
    env.update(PYTHONPATH=str(site), QCOMPRESS_CACHE_DIR=str(root / "cache"))
    return env


def run_qcompress(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*qcompress_command(), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_plugins_lists_the_sample(sample_env, tmp_path):
    listed = run_qcompress(sample_env, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    sample = plugins["sample"]
    assert sample["error"] is None
    assert sample["module"] == "qcompress_sample"
    assert sample["version"] == "0.1.0"
    assert sample["registers"] == {
        "task": ["tiny-sentiment"],
        "teacher": ["keyword"],
        "student": ["bow"],
        "metric": ["error_rate"],
    }
    assert {"feature-mlp", "kd-objectives", "classification-metrics"} <= set(plugins)

    table = run_qcompress(sample_env, tmp_path, "plugins")
    assert table.returncode == 0, table.stderr
    assert "sample" in table.stdout and "tiny-sentiment" in table.stdout


def test_bench_runs_the_sample_suite(sample_env, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results"

    validated = run_qcompress(sample_env, tmp_path, "validate", str(suite))
    assert validated.returncode == 0, validated.stderr
    assert "2 students x 2 seeds = 4 cells" in validated.stdout

    run = run_qcompress(sample_env, tmp_path, "bench", str(suite), "--results", str(results))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "4 cells ran, 0 reused, 0 failed" in run.stderr

    out_dir = results / "sample"
    records = {}
    for path in out_dir.glob("*.json"):
        if path.name != "manifest.json":
            records[path.name] = read_record(path)
    teachers = [r for r in records.values() if r.role == "teacher"]
    students = [r for r in records.values() if r.role == "student"]
    assert len(teachers) == 1 and len(students) == 4
    for record in records.values():
        assert record.schema_ == SCHEMA
        # Which distribution and version made each part, and the code's identity.
        task = record.provenance.components["task"]
        assert (task.plugin, task.distribution, task.version) == (
            "sample", "qcompress-sample", "0.1.0")
        assert task.code and record.provenance.code_identity
        assert record.status == "ok", record.error
        metrics = record.measured.metrics
        assert metrics["accuracy"] > 0.75  # chance is 0.5
        assert metrics["error_rate"] == pytest.approx(1 - metrics["accuracy"], abs=1e-5)

    teacher = teachers[0]
    assert teacher.run["teacher"]["name"] == "keyword"
    params, data = teacher.measured.params, teacher.provenance.data
    assert params["trainable"] == 0 and params["inference_total"] == 0
    assert data["train"]["rows"] == 80 and data["eval"]["rows"] == 40

    cells = {(r.run["objective"]["name"], r.run["seed"]) for r in students}
    assert cells == {("kd", 0), ("kd", 1), ("ce", 0), ("ce", 1)}
    assert len({r.cell_id for r in students}) == 4
    for record in students:
        assert record.run["student"]["name"] == "bow"
        assert record.measured.params["trainable"] > 0
        assert len(record.measured.train_log["loss_per_epoch"]) == 15
        assert record.measured.details["vocabulary"] > 10

    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["ran"] == 4 and manifest["failed"] == 0
    assert sorted(manifest["records"]) == sorted(records)

    assert "bow" in run.stdout
    assert "error_rate ↓" in run.stdout and "accuracy ↑" in run.stdout
    assert "teacher:keyword" in run.stdout
    # The student's own column, declared by the plugin, with the core naming none of it.
    table = (out_dir / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert "| vocabulary |" in header
    bow_row = next(line for line in table.splitlines() if line.startswith("| bow | kd"))
    vocabulary = students[0].measured.details["vocabulary"]
    assert f"| {vocabulary:,} |" in bow_row

    # The leaderboard ranks by the task kind's headline metric; the plugin's metric keeps its
    # direction in the records (lower error is better).
    board = tmp_path / "board.csv"
    ranked = run_qcompress(sample_env, tmp_path, "leaderboard", str(results), "-o", str(board))
    assert ranked.returncode == 0, ranked.stderr
    frame = pd.read_csv(board)
    assert set(frame["ranked_by"]) == {"accuracy (higher is better)"}
    best = frame.sort_values("rank").iloc[0]
    assert best["metrics.accuracy_mean"] == frame["metrics.accuracy_mean"].max()
    assert best["metrics.error_rate_mean"] == frame["metrics.error_rate_mean"].min()
    assert students[0].measured.metric_info["error_rate"].higher_is_better is False

    # A second run reuses every record.
    again = run_qcompress(sample_env, tmp_path, "bench", str(suite), "--results", str(results))
    assert again.returncode == 0, again.stderr
    assert "0 cells ran, 4 reused, 0 failed" in again.stderr


def test_sample_suite_errors_name_the_plugin_keys(sample_env, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.replace("{name: bow}", "{name: bow, min_cont: 2}"))
    checked = run_qcompress(sample_env, tmp_path, "validate", str(suite))
    assert checked.returncode == 2
    assert "Traceback" not in checked.stderr
    message = " ".join(checked.stderr.split())
    expected = (
        f"{suite}:10: students[0].min_cont: unknown key; "
        "expected one of: binary, label, min_count, objective, seeds, train"
    )
    assert expected in message
