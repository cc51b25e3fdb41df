"""Records: one self-describing JSON file per finished cell, written atomically the moment the
cell finishes; reading them back, flattening them to table rows, and aggregating over seeds."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from qcompress.fingerprint import fingerprint_of
from qcompress.record import Column, Record, Status, parse_record

MANIFEST = "manifest.json"
# The columns a table groups by: one row per model of a task, teacher and objective.
# A row per model of a suite: the suite (for a grid, its task and teacher pair) keeps apart two
# teachers of one name with other settings (SmolLM2 and Gemma 3 both as llm-lora).
GROUP_COLUMNS = ["suite", "task", "teacher", "role", "model", "objective"]


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` so that ``path`` holds either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(value, indent=2, sort_keys=False, default=str) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:  # a full disk: no half-written temporary file stays behind
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
            raise
    os.replace(handle.name, path)


def read_record(path: Path) -> Record | None:
    """The record at ``path``, or None if it is missing, unreadable or not a record."""
    try:
        return parse_record(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def is_finished(path: Path) -> bool:
    record = read_record(path)
    return record is not None and record.status == Status.OK


@dataclass
class RecordSet:
    """The records found under a folder, and what was left out and why."""

    records: list[Record] = field(default_factory=list)
    # file -> why it is not a record (only for files that claim to be one)
    unreadable: dict[str, str] = field(default_factory=dict)
    # files whose (model, seed) a newer record of the same task and teacher replaces
    superseded: list[str] = field(default_factory=list)


def read_records(root: Path) -> RecordSet:
    """Every record under ``root`` (recursively), in path order, one per (suite, task, teacher,
    model, objective, seed): where several exist (a changed default gives a cell a new id, and
    the old record stays), the newest counts and the others are listed as superseded. JSON
    files that look like records but cannot be read are listed with the reason."""
    found = RecordSet()
    newest: dict[tuple[Any, ...], tuple[str, Record]] = {}
    for path in sorted(Path(root).rglob("*.json")):
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            if path.name != MANIFEST:
                found.unreadable[str(path)] = f"not JSON: {error}"
            continue
        if not (isinstance(value, dict) and str(value.get("schema", "")).startswith(
            "qcompress.record/"
        )):
            continue  # manifests, tables, other tools' files
        try:
            record = parse_record(value)
        except ValueError as error:
            found.unreadable[str(path)] = _first_line(error)
            continue
        key = _identity_key(record)
        if key in newest:
            older_path, older = newest[key]
            if (record.provenance.finished_at or "") >= (older.provenance.finished_at or ""):
                found.superseded.append(older_path)
                newest[key] = (str(path), record)
            else:
                found.superseded.append(str(path))
        else:
            newest[key] = (str(path), record)
    found.records = [record for _, record in newest.values()]
    return found


def _identity_key(record: Record) -> tuple[Any, ...]:
    run = record.run
    return (
        run.get("suite"),
        record.role,
        fingerprint_of(run.get("task")),
        fingerprint_of(run.get("teacher")),
        run.get("label"),
        (run.get("objective") or {}).get("name"),
        run.get("seed"),
    )


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


@functools.cache
def environment() -> dict[str, Any]:
    """Where a record was produced: software versions, hardware, source revision."""
    versions = {"qcompress": importlib.metadata.version("qcompress")}
    for package in _requirements("qcompress"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that is not installed
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "packages": versions,
        "git": _git_state(Path(__file__).resolve().parent.parent),
    }


def _requirements(distribution: str) -> list[str]:
    """The names of everything ``distribution`` requires, its extras' requirements included
    (each plugin's own package and version are in the record's provenance)."""
    names = []
    for requirement in importlib.metadata.requires(distribution) or []:
        name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]
        if name and name != distribution:
            names.append(name)
    return sorted(set(names))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state(directory: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the qcompress source tree, when it is a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


# ---------------------------------------------------------------------------------------------
# Tables


def flatten(record: Record, stale: bool = False) -> dict[str, Any]:
    """One table row: identity columns, flags, then every measured number under a dotted name
    (``metrics.<name>``, ``params.trainable``, ``details.<key>``...)."""
    run, measured = record.run, record.measured
    row: dict[str, Any] = {
        "suite": run.get("suite"),
        "task": (run.get("task") or {}).get("name"),
        "teacher": (run.get("teacher") or {}).get("name"),
        "role": record.role,
        "model": run.get("label", (run.get("teacher") or {}).get("name")),
        "objective": (run.get("objective") or {}).get("name", "-"),
        "seed": run.get("seed"),
        "status": record.status.value,
        "error": record.error.message if record.error else None,
        "stale": stale,
        "dirty": record.dirty,
        "loaded": bool(record.provenance.load.get("loaded")),
        "diverged": bool(measured.train_log.get("diverged")),
    }
    for section in ("metrics", "params", "memory_mb", "latency_ms", "throughput", "timings_s",
                    "details"):
        _flatten_into(row, section, getattr(measured, section))
    # The whole curve stays in the record; the table shows where it ended.
    losses = measured.train_log.get("loss_per_epoch") or []
    row["train_log.final_loss"] = losses[-1] if losses else None
    return row


def _flatten_into(row: dict[str, Any], prefix: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten_into(row, f"{prefix}.{key}", inner)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float) or value is None:
        row[prefix] = value


FLAGS = ["stale", "dirty", "loaded", "diverged"]
NOT_NUMBERS = [*GROUP_COLUMNS, "seed", "status", "error", *FLAGS]


def records_frame(records: list[Record], stale: set[str] | frozenset[str] = frozenset()
                  ) -> pd.DataFrame:
    """One row per record; ``stale`` holds the identities of records made by other code than
    their components' now."""
    return pd.DataFrame([flatten(record, record.identity in stale) for record in records])


def aggregate(records: list[Record], stale: set[str] | frozenset[str] = frozenset()
              ) -> pd.DataFrame:
    """Mean and std over seeds of every number, one row per (suite, task, teacher, role, model,
    objective); failed cells are counted in ``failed`` and left out of the statistics; the
    flags count the seeds that were stale, from a dirty tree, or timed under load."""
    frame = records_frame(records, stale)
    if frame.empty:
        return frame
    ok = frame[frame["status"] == "ok"]
    numbers = [
        column
        for column in frame.columns
        if column not in NOT_NUMBERS and pd.api.types.is_numeric_dtype(frame[column])
    ]
    grouped = ok.groupby(GROUP_COLUMNS, sort=False, dropna=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    for flag in reversed(FLAGS):
        table.insert(1, flag, grouped[flag].sum())
    failed = frame[frame["status"] != "ok"].groupby(GROUP_COLUMNS, dropna=False).size()
    table = table.join(failed.rename("failed"), how="outer")
    # Teachers first, then students in order of first appearance (the order the suite lists
    # them, for the records of one run).
    keys = frame[GROUP_COLUMNS].drop_duplicates()
    keys = keys.sort_values("role", key=lambda role: role != "teacher", kind="stable")
    table = table.reindex(pd.MultiIndex.from_frame(keys))
    for column in ["seeds", "failed", *FLAGS]:
        table[column] = table[column].fillna(0).astype(int)
    return table.reset_index()


def declared_columns(records: list[Record]) -> list[Column]:
    """The table columns the records' plugins declared, each once, in order of appearance."""
    seen: dict[str, Column] = {}
    for record in records:
        for column in record.measured.columns:
            seen.setdefault(column.key, column)
    return list(seen.values())


def metric_directions(records: list[Record]) -> dict[str, bool]:
    """Metric name -> higher is better, as the records say (the first record that says)."""
    directions: dict[str, bool] = {}
    for record in records:
        for name, info in record.measured.metric_info.items():
            directions.setdefault(name, info.higher_is_better)
    return directions


def headline_metric(records: list[Record]) -> str | None:
    return next((r.measured.headline for r in records if r.measured.headline), None)


VARIANT_GROUP_COLUMNS = ["suite", "task", "model", "objective", "variant"]


def variants_frame(records: list[Record]) -> pd.DataFrame:
    """One row per (cell, variant): the variant's metrics, the student's own metrics on the same
    rows (``student.<metric>``), and how often the two agree."""
    rows = []
    for record in records:
        if record.status != Status.OK:
            continue
        for variant in record.measured.variants:
            run = record.run
            row: dict[str, Any] = {
                "suite": run.get("suite"),
                "task": (run.get("task") or {}).get("name"),
                "model": run.get("label"),
                "objective": (run.get("objective") or {}).get("name", "-"),
                "variant": variant["label"],
                "seed": run.get("seed"),
                "rows": variant["rows"],
                "agreement_with_student": variant["agreement_with_student"],
            }
            _flatten_into(row, "metrics", variant["metrics"])
            _flatten_into(row, "student", variant["student_metrics"])
            _flatten_into(row, "evaluate_s", (variant.get("details") or {}).get("evaluate_s"))
            rows.append(row)
    return pd.DataFrame(rows)


def aggregate_variants(records: list[Record]) -> pd.DataFrame:
    """Mean and std over seeds of every variant number, one row per (suite, task, model,
    objective, variant), in the order the variants first appear."""
    frame = variants_frame(records)
    if frame.empty:
        return frame
    numbers = [
        column
        for column in frame.columns
        if column not in [*VARIANT_GROUP_COLUMNS, "seed"]
        and pd.api.types.is_numeric_dtype(frame[column])
    ]
    grouped = frame.groupby(VARIANT_GROUP_COLUMNS, sort=False, dropna=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    return table.reset_index()
