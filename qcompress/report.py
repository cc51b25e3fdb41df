"""The results table: aggregated records -> display columns (strings) for every reporter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# (column in the aggregated table without _mean/_std, header, number format)
MEASURED_COLUMNS: list[tuple[str, str, str]] = [
    ("params.trainable", "trainable params", "{:,.0f}"),
    ("params.inference_total", "inference params", "{:,.0f}"),
    ("timings_s.train", "train s", "{:.1f}"),
    ("memory_mb.train.max_mb", "train mem MiB", "{:.0f}"),
    ("memory_mb.inference.max_mb", "infer mem MiB", "{:.0f}"),
    ("latency_ms.p50", "p50 ms", "{:.2f}"),
    ("latency_ms.p95", "p95 ms", "{:.2f}"),
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
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ResultsTable:
    """What every reporter renders: the aggregated records and the metrics to show."""

    title: str
    aggregated: pd.DataFrame
    metrics: list[str]

    def display(self) -> pd.DataFrame:
        return display_table(self.aggregated, self.metrics)
