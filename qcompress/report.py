"""The results table: aggregated records -> display columns (strings) for every reporter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from qcompress.record import Column, Record
from qcompress.results import (
    aggregate,
    aggregate_variants,
    declared_columns,
    headline_metric,
    metric_directions,
)

# (column in the aggregated table without _mean/_std, header, number format)
MEASURED_COLUMNS: list[tuple[str, str, str]] = [
    ("params.trainable", "trainable params", "{:,.0f}"),
    ("params.inference_total", "inference params", "{:,.0f}"),
    ("train_log.final_loss", "train loss", "{:.4f}"),  # the last epoch's mean
    ("timings_s.train", "train s", "{:.1f}"),
    ("memory_mb.train.max_mb", "train mem MiB", "{:.0f}"),
    ("memory_mb.inference.max_mb", "infer mem MiB", "{:.0f}"),
    ("latency_ms.p50", "p50 ms", "{:.2f}"),
    ("latency_ms.p95", "p95 ms", "{:.2f}"),
    ("throughput.items_per_s", "texts/s", "{:,.0f}"),
]
# Plugins' own columns (declared in their records) go after these.
PLUGIN_COLUMNS_AFTER = "params.inference_total"


def _cell(mean: float | None, std: float | None, fmt: str, seeds: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = fmt.format(mean)
    if seeds > 1 and std is not None and not math.isnan(std) and std > 0:
        text += " ± " + fmt.format(std)
    return text


def metric_header(name: str, directions: dict[str, bool]) -> str:
    """A metric's header with its direction: ``<name> ↑`` (higher is better) or ``<name> ↓``."""
    if name not in directions:
        return name
    return f"{name} {'↑' if directions[name] else '↓'}"


def _seeds_cell(row: pd.Series) -> str:
    """The seed count, with what a reader must know about them: failed seeds, records kept
    although their code changed (stale), made from a git tree with uncommitted changes
    (dirty), timed while other work loaded the machine (loaded), whose training diverged."""
    text = str(row["seeds"])
    notes = [f"{row['failed']} failed"] if row.get("failed") else []
    flags = ("diverged", "stale", "dirty", "loaded")
    notes += [f"{row[flag]} {flag}" for flag in flags if row.get(flag)]
    return text + (f" ({', '.join(notes)})" if notes else "")


def display_table(
    aggregated: pd.DataFrame,
    metrics: list[str],
    plugin_columns: list[Column] | None = None,
    directions: dict[str, bool] | None = None,
) -> pd.DataFrame:
    """One string per cell: mean ± std over seeds (std shown when there are several seeds)."""
    directions = directions or {}
    columns: list[tuple[str, str, str]] = [
        (f"metrics.{name}", metric_header(name, directions), "{:.4f}") for name in metrics
    ]
    for measured in MEASURED_COLUMNS:
        columns.append(measured)
        if measured[0] == PLUGIN_COLUMNS_AFTER:
            columns += [(c.key, c.label, c.format) for c in plugin_columns or []]
    rows = []
    # Records of several suites (a grid's pairs, a results root): say which row is whose.
    several = "suite" in aggregated and aggregated["suite"].nunique(dropna=False) > 1
    for _, row in aggregated.iterrows():
        shown = {"suite": row["suite"]} if several else {}
        shown |= {"model": row["model"], "objective": row["objective"], "seeds": _seeds_cell(row)}
        for column, header, fmt in columns:
            shown[header] = _cell(
                row.get(f"{column}_mean"), row.get(f"{column}_std"), fmt, row["seeds"]
            )
        rows.append(shown)
    return _without_empty_columns(pd.DataFrame(rows))


def _without_empty_columns(shown: pd.DataFrame) -> pd.DataFrame:
    """Drop measured columns that no row has (e.g. head latency in a suite without
    frozen-feature students)."""
    empty = [c for c in shown.columns[3:] if (shown[c] == "-").all()]
    return shown.drop(columns=empty)


def display_variants(variants: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The variants table (e.g. a quantum student re-run with shots and noise): each metric of
    the variant beside the student's own on the same rows, and their top-1 agreement."""
    columns: list[tuple[str, str, str]] = [("rows", "rows", "{:.0f}")]
    for name in metrics:
        if f"metrics.{name}_mean" in variants:
            columns += [(f"metrics.{name}", name, "{:.4f}"),
                        (f"student.{name}", f"{name} (exact)", "{:.4f}")]
    columns += [("agreement_with_student", "agrees with exact", "{:.4f}"),
                ("evaluate_s", "eval s", "{:.1f}")]
    rows = []
    for _, row in variants.iterrows():
        shown = {"model": row["model"], "run on": row["variant"], "seeds": str(row["seeds"])}
        for column, header, fmt in columns:
            shown[header] = _cell(
                row.get(f"{column}_mean"), row.get(f"{column}_std"), fmt, row["seeds"]
            )
        rows.append(shown)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ResultsTable:
    """What every reporter renders: the aggregated records, the metrics to show (with their
    directions), the columns the plugins declared, and the aggregated variants (empty when no
    student had any)."""

    title: str
    aggregated: pd.DataFrame
    metrics: list[str]
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)
    columns: list[Column] = field(default_factory=list)
    directions: dict[str, bool] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        return display_table(self.aggregated, self.metrics, self.columns, self.directions)

    def display_variants(self) -> pd.DataFrame:
        return display_variants(self.variants, self.metrics)

    def metric_headers(self) -> list[str]:
        return [metric_header(name, self.directions) for name in self.metrics]


def results_table(
    title: str,
    records: list[Record],
    metrics: list[str] | None = None,
    stale: set[str] | frozenset[str] = frozenset(),
) -> ResultsTable:
    """The table of ``records``: every metric they hold unless ``metrics`` names some;
    ``stale`` holds the cell ids of records reused although their code changed."""
    if metrics is None:
        metrics = sorted({name for record in records for name in record.measured.metrics})
    return ResultsTable(
        title,
        aggregate(records, stale),
        metrics,
        aggregate_variants(records),
        declared_columns(records),
        metric_directions(records),
    )


def leaderboard(records: list[Record], stale: set[str] | frozenset[str] = frozenset()
                ) -> pd.DataFrame:
    """The aggregated table ranked within each task by its headline metric (the task kind's),
    in that metric's direction: ``rank`` 1 is the best model; rows without the metric (failed
    models) come last, unranked."""
    table = aggregate(records, stale)
    headline = headline_metric(records)
    column = f"metrics.{headline}_mean"
    if table.empty or headline is None or column not in table:
        return table
    higher = metric_directions(records).get(headline, True)
    table = table.sort_values(
        ["task", column], ascending=[True, not higher], na_position="last", kind="stable"
    )
    ranks = table.groupby("task", sort=False)[column].rank(
        ascending=not higher, method="min"
    )
    table.insert(0, "rank", ranks.astype("Int64"))
    table.insert(1, "ranked_by", f"{headline} ({'higher' if higher else 'lower'} is better)")
    return table.reset_index(drop=True)
