"""qcompress.results: atomic JSON records, reading them back, flattening and aggregating over
seeds; and the ``qcompress leaderboard`` command built on them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qcompress import cli
from qcompress.record import SCHEMA, SCHEMA_V1, MetricInfo, Record, parse_record
from qcompress.results import (
    aggregate,
    environment,
    flatten,
    is_finished,
    read_record,
    read_records,
    write_json_atomic,
)


def v1_record(
    role: str = "student",
    label: str = "mlp(hidden=8)",
    objective: str | None = "kd",
    seed: int | None = 0,
    status: str = "ok",
    accuracy: float = 0.5,
    trainable: int = 100,
) -> dict[str, Any]:
    """A record as the runner wrote it before schema /2 (flat; only the parts tables read)."""
    config: dict[str, Any] = {
        "suite": "tiny",
        "task": {"name": "sst2", "seed": 0},
        "teacher": {"name": "hf", "model": "tiny"},
    }
    if role == "student":
        config.update(label=label, objective={"name": objective}, seed=seed)
    else:
        config.update(label="teacher:hf")
    value: dict[str, Any] = {
        "schema": SCHEMA_V1,
        "role": role,
        "status": status,
        "error": None if status == "ok" else "NonFiniteLossError: loss became nan",
        "config": config,
        "timings_s": {"total": 1.0},
        "finished_at": f"2026-01-01T00:00:{seed or 0:02d}+00:00",
    }
    if status == "ok":
        value.update(
            metrics={"accuracy": accuracy, "agreement": None if role == "teacher" else accuracy},
            params={"trainable": trainable, "inference_total": trainable + 1000},
            memory_mb={"train": {"max_mb": 5.0, "avg_mb": 2.0}, "inference": None},
            latency_ms={"p50": 1.0, "p95": 2.0, "mean": 1.2, "samples": 3},
            throughput={"batch_size": 16, "items_per_s": 100.0},
            details={"flag": True},
        )
    return value


def record(*args: Any, **kwargs: Any) -> Record:
    """The same record in schema /2, as the runner writes it now (with metric directions and
    the task kind's headline metric)."""
    value = parse_record(v1_record(*args, **kwargs))
    value.cell_id = f"{value.label}-{value.seed}"
    value.measured.headline = "accuracy"
    value.measured.metric_info = {
        "accuracy": MetricInfo(higher_is_better=True),
        "agreement": MetricInfo(higher_is_better=True),
    }
    return Record.model_validate(value.to_json())


# ---------------------------------------------------------------------------------------------
# Writing and reading records


def test_write_json_atomic_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "record.json"
    write_json_atomic(path, {"a": 1, "path": tmp_path})  # parents made; non-JSON via str()
    assert json.loads(path.read_text()) == {"a": 1, "path": str(tmp_path)}
    write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert path.read_text().endswith("}\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]  # no temp files


def test_write_json_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"old": True})
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        write_json_atomic(path, circular)
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_read_record_and_is_finished(tmp_path: Path) -> None:
    ok, failed = tmp_path / "ok.json", tmp_path / "failed.json"
    write_json_atomic(ok, record().to_json())
    write_json_atomic(failed, record(status="failed").to_json())
    assert read_record(ok) == record()
    assert is_finished(ok)
    assert not is_finished(failed)
    assert read_record(tmp_path / "missing.json") is None
    assert not is_finished(tmp_path / "missing.json")


def test_read_records_skips_what_is_not_a_record_and_says_which(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "b.json", record(seed=1).to_json())
    write_json_atomic(tmp_path / "sub" / "a.json", record(seed=2).to_json())
    write_json_atomic(tmp_path / "a.json", v1_record(seed=0))  # an old record is still read
    write_json_atomic(tmp_path / "manifest.json", {"schema": "qcompress.manifest/1"})
    write_json_atomic(tmp_path / "other.json", {"schema": "qcompress.record/999"})
    write_json_atomic(tmp_path / "shape.json", {"schema": SCHEMA, "role": "student"})
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text('{"schema": "qcompress.rec')
    (tmp_path / "table.csv").write_text("a,b\n")
    (tmp_path / "record.txt").write_text(json.dumps(record(seed=9).to_json()))
    found = read_records(tmp_path)
    # Path order: a.json, b.json, sub/a.json.
    assert [r.run["seed"] for r in found.records] == [0, 1, 2]
    assert found.records[0].schema_ == SCHEMA  # upgraded on reading
    assert sorted(Path(path).name for path in found.unreadable) == [
        "broken.json", "other.json", "shape.json"]
    assert "run" in found.unreadable[str(tmp_path / "shape.json")]  # the missing part


def test_a_newer_record_of_the_same_model_and_seed_supersedes_an_older_one(
    tmp_path: Path,
) -> None:
    """A changed default gives a cell a new id; the old record stays in the folder. Reports
    count each (model, seed) once: the newest record, naming the others."""
    old = record(seed=0, accuracy=0.4)
    old.provenance.finished_at = "2026-01-01T00:00:00+00:00"
    new = record(seed=0, accuracy=0.6)
    new.provenance.finished_at = "2026-02-01T00:00:00+00:00"
    write_json_atomic(tmp_path / "mlp-kd-seed0-aaaaaaaa.json", new.to_json())
    write_json_atomic(tmp_path / "mlp-kd-seed0-bbbbbbbb.json", old.to_json())
    write_json_atomic(tmp_path / "mlp-kd-seed1-cccccccc.json", record(seed=1).to_json())
    found = read_records(tmp_path)
    assert [(r.seed, r.measured.metrics["accuracy"]) for r in found.records] == [
        (0, 0.6), (1, 0.5)]
    assert [Path(path).name for path in found.superseded] == ["mlp-kd-seed0-bbbbbbbb.json"]
    assert list(aggregate(found.records)["seeds"]) == [2]


def test_environment_names_packages_and_source() -> None:
    env = environment()
    assert {"python", "platform", "cpu", "packages", "git", "torch_threads"} <= set(env)
    assert {"qcompress", "torch", "transformers"} <= set(env["packages"])
    if env["git"] is not None:
        assert len(env["git"]["commit"]) == 40
        assert isinstance(env["git"]["dirty"], bool)


# ---------------------------------------------------------------------------------------------
# Tables


def test_flatten_makes_dotted_columns_of_numbers() -> None:
    row = flatten(record(accuracy=0.75))
    assert row["task"] == "sst2"
    assert row["teacher"] == "hf"
    assert (row["role"], row["model"], row["objective"], row["seed"]) == (
        "student",
        "mlp(hidden=8)",
        "kd",
        0,
    )
    assert row["metrics.accuracy"] == 0.75
    assert row["memory_mb.train.max_mb"] == 5.0
    assert row["latency_ms.p95"] == 2.0
    assert row["throughput.items_per_s"] == 100.0
    assert "memory_mb.inference" in row and row["memory_mb.inference"] is None
    assert not any(key.startswith("details") for key in row)  # not a measured section


def test_flatten_teacher_row() -> None:
    row = flatten(record(role="teacher"))
    assert (row["model"], row["objective"], row["seed"]) == ("teacher:hf", "-", None)
    assert row["metrics.agreement"] is None


def test_aggregate_mean_std_seeds_and_failures_teacher_first() -> None:
    records = [
        record(role="teacher", accuracy=0.9, trainable=5000),
        record(seed=0, accuracy=0.6),
        record(label="mlp(hidden=0)", seed=0, accuracy=0.5, trainable=10),
        record(seed=1, accuracy=0.8),
        record(seed=2, status="failed"),
        record(label="broken", objective="ce", seed=0, status="failed"),
    ]
    table = aggregate(records)
    assert list(table["model"]) == ["teacher:hf", "mlp(hidden=8)", "mlp(hidden=0)", "broken"]
    assert list(table["role"]) == ["teacher", "student", "student", "student"]
    assert list(table["seeds"]) == [1, 2, 1, 0]
    assert list(table["failed"]) == [0, 1, 0, 1]
    mlp = table.iloc[1]
    assert mlp["metrics.accuracy_mean"] == pytest.approx(0.7)
    assert mlp["metrics.accuracy_std"] == pytest.approx(math.sqrt(0.02))  # sample std (n - 1)
    assert mlp["params.trainable_mean"] == 100
    assert mlp["params.trainable_std"] == 0
    teacher = table.iloc[0]
    assert teacher["metrics.accuracy_mean"] == pytest.approx(0.9)
    assert math.isnan(teacher["metrics.accuracy_std"])  # one seed: no spread
    assert math.isnan(teacher["metrics.agreement_mean"])  # not defined for the teacher
    assert math.isnan(table.iloc[3]["metrics.accuracy_mean"])  # only failures
    assert not any(column.startswith("seed_") for column in table.columns)


def test_aggregate_of_nothing_is_empty() -> None:
    assert aggregate([]).empty


# ---------------------------------------------------------------------------------------------
# qcompress leaderboard


def run_cli(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def write_run(directory: Path, old_schema: bool = False) -> None:
    def written(**kwargs: Any) -> Any:
        return v1_record(**kwargs) if old_schema else record(**kwargs).to_json()

    write_json_atomic(
        directory / "teacher-hf-1234abcd.json", written(role="teacher", accuracy=0.9)
    )
    for seed, accuracy in [(0, 0.6), (1, 0.8)]:
        write_json_atomic(
            directory / f"mlp_hidden=8-kd-seed{seed}-0000000{seed}.json",
            written(seed=seed, accuracy=accuracy),
        )
    write_json_atomic(directory / "manifest.json", {"schema": "qcompress.manifest/1"})


def test_leaderboard_writes_the_expected_columns(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results / "tiny")
    output = tmp_path / "out" / "leaderboard.csv"
    assert run_cli(["leaderboard", str(results), "-o", str(output)]) == 0
    table = pd.read_csv(output)
    assert list(table.columns[:11]) == [
        "rank", "ranked_by", "suite", "task", "teacher", "role", "model", "objective", "seeds",
        "stale", "dirty"]
    assert set(table["ranked_by"]) == {"accuracy (higher is better)"}
    assert table.columns[-1] == "failed"
    for column in [
        "metrics.accuracy",
        "metrics.agreement",
        "params.trainable",
        "params.inference_total",
        "memory_mb.train.max_mb",
        "latency_ms.p50",
        "latency_ms.p95",
        "throughput.items_per_s",
        "timings_s.total",
    ]:
        assert f"{column}_mean" in table.columns
        assert f"{column}_std" in table.columns
    assert len(table) == 2
    student = table[table["role"] == "student"].iloc[0]
    assert student["seeds"] == 2
    assert student["metrics.accuracy_mean"] == pytest.approx(0.7)


def test_leaderboard_lists_the_teacher_first(tmp_path: Path) -> None:
    write_run(tmp_path / "results")
    output = tmp_path / "leaderboard.csv"
    assert run_cli(["leaderboard", str(tmp_path / "results"), "-o", str(output)]) == 0
    assert list(pd.read_csv(output)["role"]) == ["teacher", "student"]


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_leaderboard_ranks_by_the_headline_metric_in_its_direction(
    higher_is_better: bool,
) -> None:
    from qcompress.report import leaderboard

    records = [record(label=name, accuracy=value) for name, value in
               [("a", 0.6), ("b", 0.9), ("c", 0.7)]]
    records.append(record(label="d", status="failed"))
    for item in records:
        item.measured.metric_info["accuracy"].higher_is_better = higher_is_better
    table = leaderboard(records)
    order = ["b", "c", "a"] if higher_is_better else ["a", "c", "b"]
    assert list(table["model"]) == [*order, "d"]
    assert list(table["rank"])[:3] == [1, 2, 3] and pd.isna(table["rank"].iloc[3])


def test_leaderboard_without_records_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    output = tmp_path / "leaderboard.csv"
    assert run_cli(["leaderboard", str(tmp_path / "empty"), "-o", str(output)]) == 1
    assert "no qcompress records" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("old_schema", [False, True], ids=["record/2", "record/1"])
def test_report_renders_the_records_of_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old_schema: bool
) -> None:
    run = tmp_path / "results" / "tiny"
    write_run(run, old_schema)
    args = ["report", str(run), "--reporter", "markdown", "--reporter", "terminal"]
    assert run_cli(args) == 0
    markdown = (run / "table.md").read_text()
    # Metrics found in the records, in name order (with their direction where the records
    # say it), before the measured columns.
    up = "" if old_schema else " ↑"
    assert (
        f"| model | objective | seeds | accuracy{up} | agreement{up} | trainable params |"
        in markdown
    )
    # Records that do not name the code that made them cannot be shown as current.
    assert "| mlp(hidden=8) | kd | 2 (2 stale) |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| teacher:hf")]
    assert len(rows) == 1
    assert "0.7000 ± 0.1414" in markdown  # accuracy over two seeds, mean ± std
    captured = capsys.readouterr()
    assert "teacher:hf" in captured.out
    assert "wrote" in captured.err and "table.md" in captured.err


def _terminal(records: list[Record], width: int) -> str:
    import io

    from rich.console import Console

    from qcompress.report import ResultsTable
    from qcompress_plugins.reporters.tables import to_terminal

    console = Console(file=io.StringIO(), width=width)
    table = ResultsTable("tiny", aggregate(records), ["accuracy", "agreement"])
    to_terminal(table, Path(), console)
    return console.file.getvalue()


def test_terminal_table_splits_scores_and_costs_when_too_wide() -> None:
    records = [record("teacher", seed=None), record(seed=0), record(seed=1, accuracy=0.7)]
    wide = _terminal(records, 300)
    assert "qcompress: tiny" in wide and "scores" not in wide
    narrow = _terminal(records, 90)
    scores_at, costs_at = narrow.index("tiny: scores"), narrow.index("tiny: costs")
    assert "accuracy" in narrow[scores_at:costs_at] and "p50 ms" in narrow[costs_at:]
    assert narrow.count("mlp(hidden=8)") == 2  # each table names its rows
    # Columns no row has (head latency, LoRA values) are left out.
    assert "head ms" not in wide and "LoRA values" not in wide


def test_a_failed_write_leaves_the_old_record_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing: the old record stays whole, no temporary file is left."""
    import errno

    path = tmp_path / "record.json"
    write_json_atomic(path, {"old": True})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
