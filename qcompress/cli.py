"""The command line: ``qcompress bench | validate | plugins | leaderboard | report``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qcompress import __version__
from qcompress.allocator import keep_freed_memory
from qcompress.api import execute
from qcompress.entry import stopped
from qcompress.errors import QcompressError
from qcompress.plugins import KINDS, PluginInfo, Registry, get_registry
from qcompress.provenance import stale_cells
from qcompress.report import ResultsTable, results_table
from qcompress.report import leaderboard as ranked
from qcompress.results import RecordSet, read_records
from qcompress.suite import Suite, load_suites

# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; the table needs more.
console = Console(width=None if sys.stdout.isatty() else 260)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 260)


def _quiet_libraries() -> None:
    """transformers' per-load reports and bars would bury the run's own output."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _warn_broken(registry: Registry) -> None:
    for info in registry.broken():
        errors.print(f"[yellow]warning[/yellow]: plugin {info.name!r} not loaded: {info.error}")


def _load(suite_file: Path) -> tuple[list[Suite], Registry]:
    """The suite file's parts (one per task and teacher pair) and the registry."""
    registry = get_registry()
    _warn_broken(registry)
    parts = load_suites(suite_file, registry)
    for message in parts[0].warnings:
        errors.print(f"[yellow]warning[/yellow]: {escape(message)}")
    return parts, registry


@click.group()
@click.version_option(__version__, prog_name="qcompress")
def cli() -> None:
    """Compress language models with quantum and classical methods and measure what each buys."""


@cli.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option(
    "--results",
    "results_root",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Records go to RESULTS/<suite name>/.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache of teachers, logits and features [QCOMPRESS_CACHE_DIR, else ~/.cache/qcompress].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data directory; overrides the suite's data_dir and QCOMPRESS_DATA_DIR.",
)
@click.option("--device", default=None, help="auto, cpu or cuda[:N]; overrides the suite.")
@click.option(
    "--reuse-stale",
    is_flag=True,
    help="Keep finished records whose plugins' code has changed since (the table marks them "
    "stale); by default such cells run again.",
)
def bench(
    suite_file: Path,
    results_root: Path,
    cache_dir: Path | None,
    data_dir: Path | None,
    device: str | None,
    reuse_stale: bool,
) -> None:
    """Run every cell of SUITE_FILE, write one record per cell, print the table (one per task
    and teacher pair)."""
    _quiet_libraries()
    keep_freed_memory()
    parts, registry = _load(suite_file)
    failures: list[str] = []
    for suite in parts:
        if len(parts) > 1:
            errors.rule(f"{suite.task.name} with teacher {suite.teacher.name}: {suite.name}")
        run = execute(
            suite,
            registry,
            results=results_root,
            cache_dir=cache_dir,
            data_dir=data_dir,
            device=device,
            reuse_stale=reuse_stale,
            console=errors,
        )
        summary = run.summary
        _render(registry, suite.reports, run.table, summary.results_dir)
        errors.print(
            f"{summary.ran} cells ran, {summary.skipped} reused, {summary.failed} failed; "
            f"records in {summary.results_dir}"
        )
        failures += [f"{suite.name}: {failure}" for failure in summary.failures]
    if failures:
        raise QcompressError(f"{len(failures)} cell(s) failed: " + "; ".join(failures))


def _render(registry: Registry, reporters: list[str], table: ResultsTable, out_dir: Path) -> None:
    for name in reporters:
        written = registry.get("reporter", name).write(table, out_dir, console)
        if written is not None:
            errors.print(f"wrote {written}")


@cli.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
def validate(suite_file: Path) -> None:
    """Check SUITE_FILE completely without running anything."""
    parts, _ = _load(suite_file)
    if len(parts) > 1:
        cells = sum(len(suite.cells()) for suite in parts)
        console.print(f"{suite_file}: valid; {len(parts)} task and teacher pairs, {cells} cells")
    for suite in parts:
        where = f"  {suite.name}:" if len(parts) > 1 else f"{suite_file}: valid;"
        own = sum(spec.seeds is not None for spec in suite.students)
        console.print(
            f"{where} task {suite.task.name}, teacher {suite.teacher.name}, "
            f"{len(suite.students)} students x {len(suite.seeds)} seeds"
            + (f" ({own} with their own seeds)" if own else "")
            + f" = {len(suite.cells())} cells"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List every plugin: name, version, what it registers, and broken ones with their error."""
    registry = get_registry()
    infos = sorted(registry.plugins.values(), key=lambda info: info.name)
    if as_json:
        listed = [{**dataclasses.asdict(info), "things": _things(registry, info)} for info in infos]
        console.print_json(json.dumps(listed, default=str))
        return
    table = Table("plugin", "version", "module", "registers", title="qcompress plugins")
    for info in infos:
        if info.error:
            registers = f"[red]broken: {info.error}[/red]"
        else:
            registers = (
                "; ".join(
                    f"{kind}s: {', '.join(info.registers[kind])}"
                    for kind in KINDS
                    if kind in info.registers
                )
                or "(nothing)"
            )
        table.add_row(info.name, info.version or "-", info.module, registers)
    console.print(table)


def _things(registry: Registry, info: PluginInfo) -> dict[str, dict[str, Any]]:
    """What a plugin registered, by kind and name: its description and, for classes, every
    setting a suite may give it (type, default, description)."""
    found: dict[str, dict[str, Any]] = {}
    for kind, names in info.registers.items():
        for name in names:
            thing = registry.get(kind, name)
            entry: dict[str, Any] = {"description": getattr(thing, "description", "")}
            config = getattr(thing, "Config", None)
            if config is not None:
                entry["settings"] = {
                    key: {
                        "type": str(field.annotation),
                        "default": None if field.is_required() else field.default,
                        "required": field.is_required(),
                        "description": field.description,
                    }
                    for key, field in config.model_fields.items()
                }
            if kind == "metric":
                entry["higher_is_better"] = thing.higher_is_better
                entry["task_kind"] = thing.task_kind
            found.setdefault(kind, {})[name] = entry
    return found


@cli.command()
@click.argument("results_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("leaderboard.csv"),
    show_default=True,
)
def leaderboard(results_dir: Path, output: Path) -> None:
    """Fold every record under RESULTS_DIR into one CSV row per (suite, task, teacher, model,
    objective): mean and std over seeds, the seed count, and the rank by the task's headline
    metric in its direction."""
    found = _read(results_dir)
    registry = get_registry()
    table = ranked(found.records, stale_cells(found.records, registry))
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output, index=False)
    console.print(f"wrote {output}: {len(table)} rows from {len(found.records)} records")


@cli.command()
@click.argument("results_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--reporter",
    "reporters",
    multiple=True,
    help="A registered reporter (repeatable); default: those that print to the terminal.",
)
def report(results_dir: Path, reporters: tuple[str, ...]) -> None:
    """Print (or write) the table of the records under RESULTS_DIR."""
    registry = get_registry()
    if not reporters:
        names = registry.names("reporter")
        reporters = tuple(n for n in names if registry.get("reporter", n).terminal)
    found = _read(results_dir)
    table = results_table(
        str(results_dir), found.records, stale=stale_cells(found.records, registry)
    )
    _render(registry, list(reporters), table, results_dir)


def _read(results_dir: Path) -> RecordSet:
    """The records under ``results_dir``, saying which files were left out and why."""
    found = read_records(results_dir)
    for path, why in found.unreadable.items():
        errors.print(f"[yellow]warning[/yellow]: {escape(path)}: not read: {escape(why)}")
    if found.superseded:
        errors.print(
            f"[yellow]note[/yellow]: {len(found.superseded)} older record(s) of a model and "
            f"seed that a newer record replaces were left out: "
            + escape(", ".join(Path(p).name for p in found.superseded))
        )
    if not found.records:
        raise QcompressError(f"no qcompress records under {results_dir}")
    return found


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one message and exit non-zero, without a traceback."""
    try:
        cli.main(args=argv, prog_name="qcompress", standalone_mode=False)
    except click.exceptions.Abort as abort:
        # click turns Ctrl-C, SIGTERM (a KeyboardInterrupt) and a stray EOFError into Abort
        cause = abort.__context__
        if isinstance(cause, EOFError):
            errors.print(f"[red]error[/red]: a file ended early: {escape(str(cause))}")
            sys.exit(1)
        sys.exit(stopped(cause if isinstance(cause, KeyboardInterrupt) else KeyboardInterrupt()))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except QcompressError as error:
        errors.print(f"[red]error[/red]: {escape(str(error))}", highlight=False)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM (qcompress.entry.Terminated)
        sys.exit(stopped(error))
    except OSError as error:  # disk full, read-only or missing folder, name too long...
        where = f"{error.filename}: " if error.filename else ""
        errors.print(
            f"[red]error[/red]: {escape(where)}{escape(error.strerror or str(error))} "
            "(finished records are kept)",
            highlight=False,
        )
        sys.exit(1)
