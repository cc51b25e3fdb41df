"""Reporters of the results table: the terminal (rich), Markdown and CSV beside the records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from qcompress import hookimpl
from qcompress.interfaces import Reporter
from qcompress.report import ResultsTable

VARIANTS_TITLE = "the trained students re-run on other backends (shots, noise)"


def _rich(shown: pd.DataFrame, title: str) -> Table:
    rich_table = Table(title=title, header_style="bold")
    for index, column in enumerate(shown.columns):
        # Row names keep up to 40 characters on a line (long ones, e.g. with paths, fold) so
        # that the numbers' headers need not wrap.
        widest = max([len(str(value)) for value in shown[column]] + [len(column)])
        rich_table.add_column(
            column,
            justify="left" if index < 2 else "right",
            min_width=min(widest, 40) if index == 0 else None,
            overflow="fold",
        )
    for row in shown.itertuples(index=False):
        rich_table.add_row(*map(str, row))
    return rich_table


def to_terminal(table: ResultsTable, out_dir: Path, console: Console) -> None:
    shown, title = table.display(), f"qcompress: {table.title}"
    whole = _rich(shown, title)
    # Measured without the console's limit (which measuring would clamp the width to).
    natural = Measurement.get(console, console.options.update_width(10**6), whole).maximum
    if natural <= console.width:
        console.print(whole)
    else:  # too wide to read: what each model scores, then what it costs
        keys = list(shown.columns[:3])
        scores = [column for column in shown.columns[3:] if column in table.metric_headers()]
        costs = [column for column in shown.columns[3:] if column not in table.metric_headers()]
        console.print(_rich(shown[keys + scores], f"{title}: scores"))
        console.print(_rich(shown[keys + costs], f"{title}: costs"))
    if not table.variants.empty:
        console.print(_rich(table.display_variants(), f"{table.title}: {VARIANTS_TITLE}"))


def _markdown(shown: pd.DataFrame) -> list[str]:
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(shown.columns))) + "|",
    ]
    body = ["| " + " | ".join(map(str, row)) + " |" for row in shown.itertuples(index=False)]
    return lines + body


def to_markdown(table: ResultsTable, out_dir: Path, console: Console) -> Path:
    lines = [f"# {table.title}", "", *_markdown(table.display())]
    if not table.variants.empty:
        lines += ["", f"## {VARIANTS_TITLE}", "", *_markdown(table.display_variants())]
    path = out_dir / "table.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def to_csv(table: ResultsTable, out_dir: Path, console: Console) -> Path:
    """The aggregated numbers (mean and std columns), not the formatted strings; the variants,
    when there are any, in ``variants.csv`` beside it."""
    path = out_dir / "table.csv"
    table.aggregated.to_csv(path, index=False)
    if not table.variants.empty:
        table.variants.to_csv(out_dir / "variants.csv", index=False)
    return path


@hookimpl
def register_reporters(register):
    register("terminal", Reporter(to_terminal, "the table in the terminal", terminal=True))
    register("markdown", Reporter(to_markdown, "table.md beside the records"))
    register("csv", Reporter(to_csv, "table.csv (mean and std columns) beside the records"))
