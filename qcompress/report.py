"""The results table: aggregated records -> display columns (strings) for every reporter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

# (column in the aggregated table without _mean/_std, header, number format)
MEASURED_COLUMNS: list[tuple[str, str, str]] = [
    ("params.trainable", "trainable params", "{:,.0f}"),
    ("params.inference_total", "inference params", "{:,.0f}"),
    # Adapters: the LoRA values trained (LoRA) or generated (QPA).
    ("params.lora_values", "LoRA values", "{:,.0f}"),
    ("train_log.final_loss", "train loss", "{:.4f}"),  # the last epoch's mean
    ("timings_s.train", "train s", "{:.1f}"),
    ("memory_mb.train.max_mb", "train mem MiB", "{:.0f}"),
    ("memory_mb.inference.max_mb", "infer mem MiB", "{:.0f}"),
    ("latency_ms.p50", "p50 ms", "{:.2f}"),
    ("latency_ms.p95", "p95 ms", "{:.2f}"),
    # Adapters before merging into the base weights (the runner times the merged model).
    ("details.latency_unmerged_ms", "unmerged p50 ms", "{:.2f}"),
    # The student alone on a precomputed feature vector (no encoder): its own cost.
    ("details.head_latency_ms", "head ms", "{:.3f}"),
    ("throughput.items_per_s", "texts/s", "{:,.0f}"),
]


def _cell(mean: float | None, std: float | None, fmt: str, seeds: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = fmt.format(mean)
    if seeds > 1 and std is not None and not math.isnan(std) and std > 0:
        text += " ± " + fmt.format(std)
    return text


def display_table(aggregated: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One string per cell: mean ± std over seeds (std shown when there are several seeds)."""
    columns: list[tuple[str, str, str]] = [
        (f"metrics.{name}", name, "{:.4f}") for name in metrics
    ] + MEASURED_COLUMNS
    rows = []
    for _, row in aggregated.iterrows():
        shown = {
            "model": row["model"],
            "objective": row["objective"],
            "seeds": str(row["seeds"]) + (f" ({row['failed']} failed)" if row["failed"] else ""),
        }
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
    """What every reporter renders: the aggregated records and the metrics to show, and the
    aggregated variants (empty when no student had any)."""

    title: str
    aggregated: pd.DataFrame
    metrics: list[str]
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)

    def display(self) -> pd.DataFrame:
        return display_table(self.aggregated, self.metrics)

    def display_variants(self) -> pd.DataFrame:
        return display_variants(self.variants, self.metrics)
