"""Reporters of the results table: the terminal (rich), Markdown and CSV beside the records."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from qcompress import hookimpl
from qcompress.interfaces import Reporter
from qcompress.report import ResultsTable


def to_terminal(table: ResultsTable, out_dir: Path, console: Console) -> None:
    shown = table.display()
    rich_table = Table(title=f"qcompress: {table.title}", header_style="bold")
    for index, column in enumerate(shown.columns):
        rich_table.add_column(column, justify="left" if index < 2 else "right")
    for row in shown.itertuples(index=False):
        rich_table.add_row(*map(str, row))
    console.print(rich_table)


def to_markdown(table: ResultsTable, out_dir: Path, console: Console) -> Path:
    shown = table.display()
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(shown.columns))) + "|",
    ]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in shown.itertuples(index=False)]
    path = out_dir / "table.md"
    path.write_text(f"# {table.title}\n\n" + "\n".join(lines) + "\n")
    return path


def to_csv(table: ResultsTable, out_dir: Path, console: Console) -> Path:
    """The aggregated numbers (mean and std columns), not the formatted strings."""
    path = out_dir / "table.csv"
    table.aggregated.to_csv(path, index=False)
    return path


@hookimpl
def register_reporters(register):
    register("terminal", Reporter(to_terminal, "the table in the terminal"))
    register("markdown", Reporter(to_markdown, "table.md beside the records"))
    register("csv", Reporter(to_csv, "table.csv (mean and std columns) beside the records"))
