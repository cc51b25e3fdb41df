"""A whole benchmark on a tiny BERT and a tiny SST-2: ``qcompress bench`` writes one record per
cell and one for the teacher, the tables, and the terminal table; a rerun reuses every record; a
deleted record is recomputed alone; a cell whose loss goes NaN fails alone.

Everything is local (the fixtures build the model and the data); the module takes seconds."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from rich.console import Console

import qcompress.plugins
from qcompress import cli, hookimpl
from qcompress.cache import Cache, default_cache_dir
from qcompress.context import LocalRunContext
from qcompress.interfaces import Objective, PluginConfig
from qcompress.plugins import load_registry
from qcompress.progress import ProgressReporter
from qcompress.record import SCHEMA, parse_record
from qcompress.results import MANIFEST, read_record
from qcompress.runner import Runner
from qcompress.suite import load_suite

SUITE_NAME = "tiny-sst2"
TRAIN_ROWS, DEV_ROWS = 120, 40
LATENCY_SAMPLES = 3


def write_suite(
    directory: Path,
    tiny_bert_dir: Path,
    tiny_glue_dir: Path,
    name: str = SUITE_NAME,
    extra_students: list[dict[str, Any]] | None = None,
    seeds: list[int] | None = None,
) -> Path:
    student = {"name": "mlp", "encoder": str(tiny_bert_dir), "hidden": 8}
    suite = {
        "name": name,
        "data_dir": str(tiny_glue_dir),
        "device": "cpu",
        "task": {"name": "sst2"},
        "teacher": {"name": "hf", "model": str(tiny_bert_dir), "epochs": 1, "lr": 0.001},
        "objective": {"name": "kd", "temperature": 2.0, "alpha": 0.5},
        "students": [student, {**student, "objective": {"name": "ce"}}, *(extra_students or [])],
        "seeds": [0, 1] if seeds is None else seeds,
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.01},
        "measure": {"latency_samples": LATENCY_SAMPLES, "warmup": 1},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def bench(suite: Path, results: Path, cache: Path, *options: str) -> tuple[int, str, str]:
    """``qcompress bench`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    qcompress.plugins.reset_registry()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["bench", str(suite), "--results", str(results), "--cache-dir", str(cache),
                      *options])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def bench_records(
    root: Path, suite: dict[str, Any], expect_code: int = 0, results: str = "results"
) -> dict[str, Any]:
    """Write ``suite`` (a mapping) under ``root``, bench it (cache ``root/cache``) and return
    its records by label, after checking the exit code."""
    path = root / f"{suite['name']}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, _, err = bench(path, root / results, root / "cache")
    assert code == expect_code, err
    records = {}
    for file in (root / results / suite["name"]).glob("*.json"):
        record = read_record(file)
        if record is not None:
            records[record.run["label"]] = record
    return records


def bench_students(
    root: Path, tiny_bert_dir: Path, tiny_glue_dir: Path, name: str, students: list[dict],
    key: str = "label",
) -> dict[str, Any]:
    """Bench a tiny suite with ``students`` beside the two default ones (seed 0): the exit code,
    stdout, stderr and the student records by ``config[key]`` (``student`` keys by name)."""
    suite = write_suite(root, tiny_bert_dir, tiny_glue_dir, name=name,
                        extra_students=students, seeds=[0])
    code, out, err = bench(suite, root / "results", root / "cache")
    records = {}
    for path in (root / "results" / name).glob("*.json"):
        record = read_record(path)
        if record is not None and record.role == "student":
            config = record.run
            records[config["student"]["name"] if key == "student" else config[key]] = record
    return {"code": code, "out": out, "err": err, "records": records}


def record_files(results_dir: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(results_dir.glob("*.json"))
        if path.name != MANIFEST
    }


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> dict[str, Any]:
    """One cold run of the suite (empty cache), shared by the tests of this module; tests that
    rerun it work on a copy of its results and reuse its cache."""
    root = tmp_path_factory.mktemp("e2e")
    suite = write_suite(root, tiny_bert_dir, tiny_glue_dir)
    code, out, err = bench(suite, root / "results", root / "cache")
    return {
        "suite": suite,
        "results": root / "results",
        "cache": root / "cache",
        "code": code,
        "stdout": out,
        "stderr": err,
    }


@pytest.fixture
def run_dir(first_run: dict[str, Any]) -> Path:
    return first_run["results"] / SUITE_NAME


def records_by_role(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    records = [read_record(path) for path in sorted(run_dir.glob("*.json"))]
    records = [record for record in records if record is not None]
    teachers = [record for record in records if record.role == "teacher"]
    assert len(teachers) == 1
    return teachers[0], [record for record in records if record.role == "student"]


def encoder_parameters(tiny_bert_dir: Path) -> int:
    from transformers import AutoModel

    return sum(p.numel() for p in AutoModel.from_pretrained(tiny_bert_dir).parameters())


def check_inference_memory(memory: dict[str, float], weights_mb: float) -> None:
    """Inference memory: the exact weight size plus what predicting added."""
    assert set(memory) == {"weights_mb", "activations_avg_mb", "activations_max_mb", "max_mb"}
    assert memory["weights_mb"] == weights_mb > 0
    assert 0 <= memory["activations_avg_mb"] <= memory["activations_max_mb"]
    assert memory["max_mb"] == pytest.approx(weights_mb + memory["activations_max_mb"], abs=0.01)


# ---------------------------------------------------------------------------------------------
# The cold run


def test_bench_succeeds_and_reports(first_run: dict[str, Any]) -> None:
    assert first_run["code"] == 0, first_run["stderr"]
    err = first_run["stderr"]
    assert f"task sst2: {TRAIN_ROWS} training and {DEV_ROWS} evaluation texts, 2 classes" in err
    assert "4 cells ran, 0 reused, 0 failed" in err
    assert "error" not in err.lower()
    out = first_run["stdout"]
    assert f"qcompress: {SUITE_NAME}" in out  # the terminal table's title
    assert "teacher:hf" in out
    assert "mlp(" in out
    assert " kd " in out and " ce " in out


def test_one_record_per_cell_and_one_for_the_teacher(run_dir: Path) -> None:
    names = sorted(path.name for path in run_dir.iterdir())
    assert MANIFEST in names
    assert {"table.md", "table.csv"} <= set(names)
    teacher, students = records_by_role(run_dir)
    assert len(students) == 4  # 2 students x 2 seeds
    cells = {
        (record.run["objective"]["name"], record.run["seed"]) for record in students
    }
    assert cells == {("kd", 0), ("kd", 1), ("ce", 0), ("ce", 1)}
    assert len({record.cell_id for record in students}) == 4
    for record in [teacher, *students]:
        assert record.schema_ == SCHEMA
        assert record.status == "ok", record.error
        assert record.error is None
    manifest = json.loads((run_dir / MANIFEST).read_text())
    assert manifest["schema"] == "qcompress.manifest/1"
    assert (manifest["ran"], manifest["skipped"], manifest["failed"]) == (4, 0, 0)
    assert len(manifest["records"]) == 5
    assert manifest["records"][0].startswith("teacher-hf-")


def test_student_record_fields(run_dir: Path, tiny_bert_dir: Path) -> None:
    _, students = records_by_role(run_dir)
    encoder = encoder_parameters(tiny_bert_dir)
    head = 32 * 8 + 8 + 8 * 2 + 2  # Linear(32, 8) + Linear(8, 2)
    for record in students:
        config = record.run
        assert config["suite"] == SUITE_NAME
        assert config["task"]["name"] == "sst2"
        assert config["teacher"] == {**config["teacher"], "name": "hf", "epochs": 1, "lr": 0.001}
        assert config["student"]["name"] == "mlp"
        assert config["student"]["hidden"] == 8
        assert config["student"]["encoder"] == str(tiny_bert_dir)
        assert config["train"] == {"epochs": 3, "batch_size": 16, "lr": 0.01, "weight_decay": 0.0}
        assert config["label"].startswith("mlp(")

        metrics = record.measured.metrics
        assert set(metrics) == {
            "accuracy", "macro_f1", "weighted_f1", "agreement", "kl", "js", "ece", "ece_gap"}
        assert 0 <= metrics["accuracy"] <= 1
        assert 0 <= metrics["macro_f1"] <= 1 and 0 <= metrics["weighted_f1"] <= 1
        assert 0 <= metrics["agreement"] <= 1
        assert metrics["kl"] >= 0

        params = record.measured.params
        assert params["trainable"] == params["head"] == head
        assert params["encoder"] == encoder
        assert params["inference_total"] == head + encoder  # the frozen encoder is counted
        expected_mb = params["inference_total"] * 4 / 2**20
        assert params["inference_mb"] == pytest.approx(expected_mb, abs=0.005)

        memory = record.measured.memory_mb
        assert set(memory["train"]) == {"avg_mb", "max_mb", "baseline_mb"}
        assert 0 <= memory["train"]["avg_mb"] <= memory["train"]["max_mb"]
        check_inference_memory(memory["inference"], params["inference_mb"])

        latency = record.measured.latency_ms
        assert latency["samples"] == LATENCY_SAMPLES
        assert 0 < latency["p50"] <= latency["p95"]
        assert record.measured.throughput["batch_size"] == 16
        assert record.measured.throughput["items_per_s"] > 0
        assert {"prepare", "train", "evaluate", "total"} <= set(record.measured.timings_s)
        assert all(value >= 0 for value in record.measured.timings_s.values())

        assert len(record.measured.train_log["loss_per_epoch"]) == 3
        assert record.measured.train_log["steps"] == 3 * math.ceil(TRAIN_ROWS / 16)
        assert all(math.isfinite(loss) for loss in record.measured.train_log["loss_per_epoch"])
        assert record.measured.details["encoder"] == str(tiny_bert_dir)
        assert record.provenance.device == "cpu"
        assert set(record.provenance.fingerprints) == {"data", "teacher"}
        assert record.provenance.data["train"]["rows"] == TRAIN_ROWS
        assert record.provenance.data["eval"]["rows"] == DEV_ROWS
        assert record.provenance.started_at <= record.provenance.finished_at

        environment = record.provenance.environment
        assert {"qcompress", "torch", "transformers"} <= set(environment["packages"])
        assert "git" in environment
        if environment["git"] is not None:
            assert len(environment["git"]["commit"]) == 40


def test_teacher_record_fields(run_dir: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    teacher, students = records_by_role(run_dir)
    assert teacher.run["label"] == "teacher:hf"
    assert "seed" not in teacher.run
    metrics = teacher.measured.metrics
    assert 0 <= metrics["accuracy"] <= 1
    assert metrics["agreement"] is None and metrics["kl"] is None
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    total = sum(p.numel() for p in classifier.parameters())
    embeddings = sum(p.numel() for p in classifier.bert.embeddings.parameters())
    assert teacher.measured.params["inference_total"] == total
    assert teacher.measured.params["trainable"] == total - embeddings  # embeddings frozen
    assert teacher.measured.latency_ms["samples"] == LATENCY_SAMPLES
    assert 0 < teacher.measured.latency_ms["p50"] <= teacher.measured.latency_ms["p95"]
    assert teacher.measured.throughput["items_per_s"] > 0
    assert teacher.measured.timings_s["train"] > 0
    assert set(teacher.measured.memory_mb["train"]) == {"avg_mb", "max_mb", "baseline_mb"}
    check_inference_memory(
        teacher.measured.memory_mb["inference"], teacher.measured.params["inference_mb"]
    )
    assert teacher.measured.details["train_rows"] == TRAIN_ROWS
    assert len(teacher.measured.details["loss_per_epoch"]) == 1
    # Every student was scored against this teacher.
    prints = teacher.provenance.fingerprints
    assert {s.provenance.fingerprints["teacher"] for s in students} == {prints["teacher"]}
    assert {s.provenance.fingerprints["data"] for s in students} == {prints["data"]}


def test_tables_are_written(run_dir: Path) -> None:
    _, students = records_by_role(run_dir)
    table = pd.read_csv(run_dir / "table.csv")
    assert list(table["role"]) == ["teacher", "student", "student"]
    assert list(table["objective"]) == ["-", "kd", "ce"]
    assert list(table["seeds"]) == [1, 2, 2]
    assert list(table["failed"]) == [0, 0, 0]
    kd = [s.measured.metrics["accuracy"] for s in students if s.run["objective"]["name"] == "kd"]
    assert table.loc[1, "metrics.accuracy_mean"] == pytest.approx(sum(kd) / 2)
    markdown = (run_dir / "table.md").read_text()
    assert markdown.startswith(f"# {SUITE_NAME}\n")
    assert "| model | objective | seeds | accuracy ↑ | agreement ↑ | ece ↓ |" in markdown
    assert "teacher:hf" in markdown
    assert students[0].run["label"] in markdown


# ---------------------------------------------------------------------------------------------
# Reruns


def copy_of_run(first_run: dict[str, Any], tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(first_run["results"], results)
    return results


def test_rerun_reuses_every_record(first_run: dict[str, Any], tmp_path: Path) -> None:
    results = copy_of_run(first_run, tmp_path)
    before = record_files(results / SUITE_NAME)
    code, out, err = bench(first_run["suite"], results, first_run["cache"])
    assert code == 0, err
    assert "resuming: 4 of 4 cells already have records" in err
    assert "0 cells ran, 4 reused, 0 failed" in err
    assert record_files(results / SUITE_NAME) == before  # byte for byte: same finished_at
    assert "teacher:hf" in out  # the table is still printed
    manifest = json.loads((results / SUITE_NAME / MANIFEST).read_text())
    assert (manifest["ran"], manifest["skipped"]) == (0, 4)


def test_run_suite_from_python(first_run: dict[str, Any], tmp_path: Path) -> None:
    """``qcompress.run_suite`` runs a suite as ``bench`` does (here: every record reused) and
    returns its table; an invalid suite raises before any work."""
    import qcompress
    from qcompress.errors import SuiteError

    results = copy_of_run(first_run, tmp_path)
    before = record_files(results / SUITE_NAME)
    table = qcompress.run_suite(first_run["suite"], results=results, cache_dir=first_run["cache"])
    assert record_files(results / SUITE_NAME) == before
    assert next(iter(table.aggregated["model"])) == "teacher:hf"
    assert list(table.aggregated["seeds"]) == [1, 2, 2]
    shown = table.display()
    assert {"accuracy ↑", "kl ↓", "head ms"} <= set(shown.columns)
    with pytest.raises(SuiteError, match="no such suite file"):
        qcompress.run_suite(tmp_path / "missing.yaml", results=results)


def test_a_grid_of_teachers_runs_each_pair_into_its_own_folder(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A suite with ``teachers:`` (here the same tiny model fine-tuned for one epoch and used
    as it is) runs each pair: one results folder, teacher record and table per pair; a rerun
    reuses them all; ``run_suites`` gives a table per pair."""
    import qcompress

    path = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="grid", seeds=[0])
    suite = yaml.safe_load(path.read_text())
    teacher = suite.pop("teacher")
    suite["teachers"] = [{**teacher, "label": "tuned"}, {**teacher, "epochs": 0, "label": "as-is"}]
    suite["students"] = suite["students"][:1]
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    results, cache = tmp_path / "results", tmp_path / "cache"

    code, out, err = bench(path, results, cache)
    assert code == 0, err
    assert sorted(p.name for p in (results / "grid").iterdir()) == ["sst2-as-is", "sst2-tuned"]
    accuracies = {}
    for part in ("sst2-as-is", "sst2-tuned"):
        records = [read_record(p) for p in (results / "grid" / part).glob("*.json")]
        roles = sorted(r.role for r in records if r is not None)
        assert roles == ["student", "teacher"], part
        teacher_record = next(r for r in records if r is not None and r.role == "teacher")
        assert teacher_record.run["suite"] == f"grid/{part}"
        accuracies[part] = teacher_record.measured.metrics["accuracy"]
    assert "train" in str(out) and out.count("teacher:hf") >= 2
    assert err.count("1 cells ran, 0 reused, 0 failed") == 2

    code, _, err = bench(path, results, cache)
    assert code == 0 and err.count("0 cells ran, 1 reused, 0 failed") == 2
    tables = qcompress.run_suites(path, results=results, cache_dir=cache)
    assert list(tables) == ["grid/sst2-tuned", "grid/sst2-as-is"]
    for name, table in tables.items():
        measured = table.aggregated.set_index("model").loc["teacher:hf", "metrics.accuracy_mean"]
        assert measured == pytest.approx(accuracies[name.split("/")[1]])
    # Read together, the two teachers of one name stay two rows, each with its students.
    from qcompress.report import results_table
    from qcompress.results import read_records

    shown = results_table("grid", read_records(results / "grid").records).display()
    student = f"mlp(encoder={tiny_bert_dir},hidden=8)"
    assert list(zip(shown["suite"], shown["model"], strict=True)) == [
        ("grid/sst2-as-is", "teacher:hf"), ("grid/sst2-tuned", "teacher:hf"),
        ("grid/sst2-as-is", student), ("grid/sst2-tuned", student),
    ]
    assert all(seeds.startswith("1") for seeds in shown["seeds"])  # (a dirty tree says so)


def test_changed_code_reruns_only_the_cells_it_made(
    first_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record is reused only while the code of its components is the same: a new code
    identity of the ``ce`` objective reruns its two cells and nothing else; ``--reuse-stale``
    keeps such records on purpose and the table says so."""
    import qcompress.provenance
    from qcompress_plugins.objectives.kd import CrossEntropy

    results = copy_of_run(first_run, tmp_path)
    run_dir = results / SUITE_NAME
    before = record_files(run_dir)
    real = qcompress.provenance.code_identity

    def edited(version: str):
        def identity(thing: Any) -> str | None:
            return f"ce-edited-{version}" if thing is CrossEntropy else real(thing)

        return identity

    monkeypatch.setattr(qcompress.provenance, "code_identity", edited("1"))
    code, _, err = bench(first_run["suite"], results, first_run["cache"])
    assert code == 0, err
    assert "2 cells ran, 2 reused, 0 failed" in err
    after = record_files(run_dir)
    changed = {name for name in before if after[name] != before[name]}
    assert changed and all("-ce-seed" in name for name in changed) and len(changed) == 2
    for name in changed:
        record = parse_record(json.loads(after[name]))
        assert record.provenance.components["objective"].code == "ce-edited-1"

    code, _, err = bench(first_run["suite"], results, first_run["cache"])  # unchanged: reuse
    assert "0 cells ran, 4 reused, 0 failed" in err

    monkeypatch.setattr(qcompress.provenance, "code_identity", edited("2"))
    code, out, err = bench(first_run["suite"], results, first_run["cache"], "--reuse-stale")
    assert code == 0, err
    assert "0 cells ran, 4 reused, 0 failed" in err
    assert "(2 stale, kept on request)" in err
    assert record_files(run_dir) == after  # nothing rewritten
    row = next(line for line in out.splitlines() if "mlp(" in line and " ce " in line)
    assert "2 stale" in row


def test_deleted_record_is_the_only_cell_that_runs(
    first_run: dict[str, Any], tmp_path: Path
) -> None:
    results = copy_of_run(first_run, tmp_path)
    run_dir = results / SUITE_NAME
    before = record_files(run_dir)
    deleted = next(name for name in before if "-ce-seed1-" in name)
    old = parse_record(json.loads(before[deleted]))
    (run_dir / deleted).unlink()

    code, _, err = bench(first_run["suite"], results, first_run["cache"])
    assert code == 0, err
    assert "1 cells ran, 3 reused, 0 failed" in err
    after = record_files(run_dir)
    assert set(after) == set(before)
    assert {name: data for name, data in after.items() if name != deleted} == {
        name: data for name, data in before.items() if name != deleted
    }
    new = parse_record(json.loads(after[deleted]))
    assert new.status == "ok"
    assert new.cell_id == old.cell_id
    assert new.run == old.run
    # Same seed, same cached features and teacher: the same training losses.
    losses = old.measured.train_log["loss_per_epoch"]
    assert new.measured.train_log["loss_per_epoch"] == pytest.approx(losses)
    assert new.measured.metrics["accuracy"] == pytest.approx(old.measured.metrics["accuracy"])


# ---------------------------------------------------------------------------------------------
# Failure isolation


class NaNObjective(Objective):
    """An objective whose loss is always NaN."""

    Config = PluginConfig
    description = "always NaN"
    task_kinds = frozenset({"classification"})

    def __call__(self, student_logits, teacher_logits, labels):
        return student_logits.sum() * float("nan")


class NaNPlugin:
    @hookimpl
    def register_objectives(self, register):
        register("nan", NaNObjective)


def nan_suite(tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path) -> Path:
    student = {"name": "mlp", "encoder": str(tiny_bert_dir), "hidden": 4}
    student["objective"] = {"name": "nan"}
    return write_suite(
        tmp_path, tiny_bert_dir, tiny_glue_dir, name="nan", extra_students=[student], seeds=[0]
    )


def test_a_nan_cell_fails_alone(tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path) -> None:
    registry = load_registry(extra_plugins={"nan": NaNPlugin()})
    assert not registry.broken()
    suite = load_suite(nan_suite(tmp_path, tiny_bert_dir, tiny_glue_dir), registry)
    context = LocalRunContext(
        cache=Cache(default_cache_dir()),
        registry=registry,
        device=torch.device("cpu"),
        progress=ProgressReporter(enabled=False),
        data_dir=suite.data_dir,
    )
    console = Console(file=io.StringIO(), width=200)
    summary = Runner(suite, registry, tmp_path / "results", context, console).run()

    assert (summary.ran, summary.skipped, summary.failed) == (3, 0, 1)
    assert len(summary.failures) == 1 and summary.failures[0].endswith("seed 0")
    by_objective = {
        record.run["objective"]["name"]: record
        for record in summary.records
        if record.role == "student"
    }
    failed = by_objective["nan"]
    assert failed.status == "failed"
    assert failed.error.message.startswith("NonFiniteLossError: loss became nan")
    assert "NonFiniteLossError" in failed.error.traceback
    assert "total" in failed.measured.timings_s and failed.provenance.finished_at
    assert failed.measured.metrics == {}
    assert by_objective["kd"].status == by_objective["ce"].status == "ok"
    assert [r.role for r in summary.records].count("teacher") == 1
    assert all(r.status == "ok" for r in summary.records if r is not failed)
    assert read_record(tmp_path / "results" / "nan" / MANIFEST) is None  # not a record
    assert json.loads((tmp_path / "results" / "nan" / MANIFEST).read_text())["failed"] == 1
    assert "failed" in console.file.getvalue()

    # A rerun retries the failed cell only (it fails again: the loss is always NaN).
    again = Runner(suite, registry, tmp_path / "results", context, console).run()
    assert (again.ran, again.skipped, again.failed) == (1, 2, 1)


def test_bench_exits_1_when_a_cell_fails(
    tmp_path: Path,
    tiny_bert_dir: Path,
    tiny_glue_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI loads the process-wide registry; give it one with the NaN objective.
    monkeypatch.setattr(
        qcompress.plugins, "_registry", load_registry(extra_plugins={"nan": NaNPlugin()})
    )
    suite = nan_suite(tmp_path, tiny_bert_dir, tiny_glue_dir)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", str(suite), "--results", str(tmp_path / "results")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "3 cells ran, 0 reused, 1 failed" in err
    assert "1 cell(s) failed" in err
    assert "NonFiniteLossError" in err
    table = pd.read_csv(tmp_path / "results" / "nan" / "table.csv")
    assert list(table["failed"]) == [0, 0, 0, 1]
    assert list(table["seeds"]) == [1, 1, 1, 0]


# ---------------------------------------------------------------------------------------------
# Record file names


def test_record_file_names_stay_short_for_long_labels(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    deep = tmp_path / ("encoder-" + "x" * 200) / "model"  # validated, never loaded here
    student = {"name": "mlp", "encoder": str(deep), "hidden": 8}
    suite_file = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, extra_students=[student])
    cells = load_suite(suite_file, load_registry()).cells()
    assert len({cell.file_name for cell in cells}) == len(cells)
    # The record is written through a temporary ".<name>.<random>.tmp" beside it.
    assert all(len(f".{cell.file_name}.12345678.tmp".encode()) <= 255 for cell in cells)


def test_training_advice_is_shown_once_before_the_run(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    """Parameter shift on an exact simulator: the suite loader says so once, naming the line;
    the run does not repeat it as a raw Python warning."""
    import warnings

    student = {"name": "qdllm", "encoder": str(tiny_bert_dir), "qubits": 3, "layers": 1,
               "backend": {"name": "torch", "gradient": "parameter-shift"},
               "train": {"epochs": 1}}  # fmt: skip
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="shift",
                        extra_students=[student], seeds=[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = bench(suite, tmp_path / "results", tmp_path / "cache")
    assert code == 0, err
    assert " ".join(err.split()).count("gradient 'parameter-shift' on an exact") == 1
    assert not [w for w in caught if "parameter-shift" in str(w.message)]


@pytest.mark.parametrize("where", ["results", "cache"])
def test_an_unwritable_folder_is_refused_before_any_work(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path, where: str
) -> None:
    """A results or cache path that is a file (or read-only, or on a full disk) is found before
    the teacher is prepared: one message naming the path and the cause, exit 1."""
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="nowhere", seeds=[0])
    results, cache = tmp_path / "results", tmp_path / "cache"
    blocked = results if where == "results" else cache
    blocked.write_text("a file, not a folder")
    code, _, err = bench(suite, results, cache)
    assert code == 1
    message = " ".join(err.split())
    assert f"{blocked}" in message and "cannot be written" in message
    assert "Traceback" not in err and "task sst2" not in err  # no work started


def test_a_second_run_on_one_results_folder_waits_then_reuses(
    first_run: dict[str, Any], tmp_path: Path
) -> None:
    """While another process holds the results folder, bench says so and waits; then it finds
    the other's records and computes nothing twice."""
    import fcntl
    import threading

    from qcompress.locks import LOCK_FILE

    results = copy_of_run(first_run, tmp_path)
    handle = open(results / SUITE_NAME / LOCK_FILE, "a+")  # noqa: SIM115 (held across threads)
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write("pid 12345\n")
    handle.flush()
    release = threading.Timer(1.5, lambda: (fcntl.flock(handle, fcntl.LOCK_UN), handle.close()))
    release.start()
    code, _, err = bench(first_run["suite"], results, first_run["cache"])
    release.join()
    assert code == 0, err
    message = " ".join(err.split())
    assert "is in use by another qcompress run (pid 12345); waiting" in message
    assert "0 cells ran, 4 reused" in message


def test_temporary_files_left_by_a_killed_run_are_swept(
    first_run: dict[str, Any], tmp_path: Path
) -> None:
    results = copy_of_run(first_run, tmp_path)
    cache = tmp_path / "cache"
    shutil.copytree(first_run["cache"], cache)
    leftovers = [
        results / SUITE_NAME / ".mlp-kd-seed0-aaaaaaaa.json.k2j3.tmp",
        cache / "features" / "tmpx1y2z3.tmp",
        cache / "teachers" / ".0123456789abcdef-x1y2",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".tmp"):
            path.write_text("half")
        else:
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"\0" * 1024)
        os.utime(path, (time.time() - 7200, time.time() - 7200))  # two hours old
    young = cache / "features" / "tmp-being-written.tmp"
    young.write_text("a live writer's")  # not stale: another run may be writing it now
    code, _, err = bench(first_run["suite"], results, cache)
    assert code == 0, err
    assert not any(path.exists() for path in leftovers)
    assert young.exists()
    assert "removed 1 unfinished temporary file(s)" in err
    assert "removed 2 unfinished cache file(s)" in err


@pytest.mark.parametrize("damage", ["another cell's record", "wrong shape", "not JSON"])
def test_a_record_that_is_not_this_cells_is_set_aside_and_recomputed(
    first_run: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    results = copy_of_run(first_run, tmp_path)
    run_dir = results / SUITE_NAME
    names = sorted(name for name in record_files(run_dir) if "-seed" in name)
    target, other = run_dir / names[0], run_dir / names[1]
    original = target.read_bytes()
    if damage == "another cell's record":
        target.write_bytes(other.read_bytes())
    elif damage == "wrong shape":
        target.write_text(json.dumps({"schema": "qcompress.record/2", "role": "student",
                                      "status": "ok", "measured": []}))
    else:
        target.write_text('{"schema": "qcompress.rec')
    code, _, err = bench(first_run["suite"], results, first_run["cache"])
    assert code == 0, err
    message = " ".join(err.split())
    assert "1 cells ran, 3 reused" in message
    assert f"{target}:" in message and "set aside as" in message
    assert (run_dir / (target.name + ".invalid")).exists()
    recomputed = parse_record(json.loads(target.read_text()))
    assert recomputed.cell_id == parse_record(json.loads(original)).cell_id


class ExplodingObjective(Objective):
    """A loss that grows fourfold every step and stays finite (1e14 after 24 steps)."""

    Config = PluginConfig
    task_kinds = frozenset({"classification"})
    calls = 0

    def __call__(self, student_logits, teacher_logits, labels):
        ExplodingObjective.calls += 1
        scale = 4.0 ** ExplodingObjective.calls
        return torch.nn.functional.cross_entropy(student_logits, labels) * scale


class ExplodingPlugin:
    @hookimpl
    def register_objectives(self, register):
        register("exploding", ExplodingObjective)


def test_a_diverged_cell_is_marked(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    """A loss that exploded but stayed finite is not a silent 'ok': the record says why it
    diverged and the table counts the seed as diverged."""
    import qcompress as api

    registry = load_registry(extra_plugins={"exploding": ExplodingPlugin()})
    student = {"name": "mlp", "encoder": str(tiny_bert_dir), "hidden": 4,
               "objective": {"name": "exploding"}}
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="boom",
                        extra_students=[student], seeds=[0])
    table = api.run_suite(suite, results=tmp_path / "results", cache_dir=tmp_path / "cache",
                          registry=registry)
    shown = table.display()
    row = shown[shown["objective"] == "exploding"].iloc[0]
    assert "1 diverged" in row["seeds"]
    record = next(r for r in map(read_record, (tmp_path / "results" / "boom").glob("*.json"))
                  if r is not None and r.run.get("objective", {}).get("name") == "exploding")
    assert record.status == "ok" and "x the first's" in record.measured.train_log["diverged"]
    normal = shown[shown["objective"] == "kd"].iloc[0]
    assert "diverged" not in normal["seeds"]


def test_a_split_smaller_than_asked_is_warned_about(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="short", seeds=[0])
    text = yaml.safe_load(suite.read_text())
    text["task"]["train_size"] = 100_000
    suite.write_text(yaml.safe_dump(text, sort_keys=False))
    code, _, err = bench(suite, tmp_path / "results", tmp_path / "cache")
    assert code == 0, err
    message = " ".join(err.split())
    assert f"the training split has {TRAIN_ROWS} texts, fewer than train_size 100000" in message


def test_an_empty_split_is_refused_with_one_line(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    """A train.tsv holding only its header used to reach fine-tuning (a ZeroDivisionError)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_glue_dir, data)
    (data / "glue" / "sst2" / "train.tsv").write_text("sentence\tlabel\n")
    suite = write_suite(tmp_path, tiny_bert_dir, data, name="empty", seeds=[0])
    code, _, err = bench(suite, tmp_path / "results", tmp_path / "cache")
    assert code != 0 and "Traceback" not in err
    message = " ".join(err.split())
    assert "task sst2: the training split is empty; expected at least one text" in message
