"""Running a suite from Python: what ``qcompress bench`` does, for a notebook or another tool.

    import qcompress

    table = qcompress.run_suite("suites/my-suite.yaml", results="results")
    table.display()          # the table as strings, as printed
    table.aggregated         # the numbers: mean and std over seeds per model

    tables = qcompress.run_suites("suites/grid.yaml")   # tasks x teachers: a table per pair
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from qcompress.cache import Cache, default_cache_dir
from qcompress.context import LocalRunContext, resolve_device
from qcompress.errors import QcompressError
from qcompress.gradients import ExactParameterShiftWarning
from qcompress.locks import sweep
from qcompress.plugins import Registry, get_registry
from qcompress.progress import ProgressReporter
from qcompress.report import ResultsTable, results_table
from qcompress.suite import Suite, load_suite, load_suites

if TYPE_CHECKING:
    from qcompress.runner import RunSummary


STALE_CACHE_TEMPORARY_S = 3600


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    """A finished run: its summary (cells run, reused, failed; the records) and its table."""

    summary: RunSummary
    table: ResultsTable


def execute(
    suite: Suite,
    registry: Registry,
    *,
    results: str | os.PathLike[str] = "results",
    cache_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    reuse_stale: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> SuiteRun:
    """Run a loaded suite; the command line's ``bench`` and :func:`run_suite` both call this."""
    from qcompress.runner import Runner  # loads the heavy libraries: only when running

    console = console or Console(stderr=True)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # Before any work: a run that cannot write would fail only after minutes of it.
    writable_folder(Path(results) / suite.name, "the results folder")
    writable_folder(cache_root, "the cache folder")
    # Temporary files and staging folders of cache writes that a killed run left (an hour
    # old: a live writer finishes a teacher in minutes).
    swept = sweep(cache_root, ("*.tmp", ".*-*", ".*.tmp"), older_than_s=STALE_CACHE_TEMPORARY_S)
    if swept:
        console.print(f"removed {len(swept)} unfinished cache file(s) left by earlier runs")
    if data_dir is not None:
        suite = dataclasses.replace(suite, data_dir=Path(data_dir))
    def cache_problem(message: str) -> None:
        console.print(f"[yellow]warning[/yellow]: {escape(message)}")

    context = LocalRunContext(
        cache=Cache(cache_root, on_problem=cache_problem),
        registry=registry,
        device=resolve_device(device or suite.device),
        progress=ProgressReporter(console, enabled=progress),
        data_dir=suite.data_dir,
    )
    runner = Runner(suite, registry, Path(results), context, console, reuse_stale=reuse_stale)
    with warnings.catch_warnings():
        # Loading the suite has shown this advice once, naming the line: not again per step.
        warnings.simplefilter("ignore", ExactParameterShiftWarning)
        summary = runner.run()
    table = results_table(suite.name, summary.records, suite.metrics, set(summary.stale))
    return SuiteRun(summary, table)


def writable_folder(path: Path, what: str) -> None:
    """Make sure ``path`` is a folder this process can write into (creating it if needed);
    a :class:`QcompressError` naming the path and the cause otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".qcompress-probe-"):
            pass
    except OSError as error:
        raise QcompressError(
            f"{what} {path} cannot be written: {error.strerror or error}"
        ) from None


def run_suite(
    suite: str | os.PathLike[str] | Suite,
    *,
    results: str | os.PathLike[str] = "results",
    cache_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    reuse_stale: bool = False,
    registry: Registry | None = None,
    progress: bool = False,
) -> ResultsTable:
    """Run every cell of a suite (a file path, or a :class:`~qcompress.suite.Suite` already
    loaded) and return its results table; records go to ``results/<suite name>/`` and finished
    cells are reused exactly as by ``qcompress bench``. Raises
    :class:`~qcompress.errors.SuiteError` for an invalid suite, before any work."""
    registry = registry or get_registry()
    loaded = suite if isinstance(suite, Suite) else load_suite(suite, registry)
    run = execute(
        loaded,
        registry,
        results=results,
        cache_dir=cache_dir,
        data_dir=data_dir,
        device=device,
        reuse_stale=reuse_stale,
        progress=progress,
    )
    return run.table


def run_suites(
    suite: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] = "results",
    cache_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    reuse_stale: bool = False,
    registry: Registry | None = None,
    progress: bool = False,
) -> dict[str, ResultsTable]:
    """Run a suite file of any shape, a grid of ``tasks`` x ``teachers`` included: its parts
    in order, as ``qcompress bench`` does; returns each part's table by its name
    (``<suite>/<task label>-<teacher label>``, or the suite's name for a single pair)."""
    registry = registry or get_registry()
    return {
        part.name: run_suite(
            part,
            results=results,
            cache_dir=cache_dir,
            data_dir=data_dir,
            device=device,
            reuse_stale=reuse_stale,
            registry=registry,
            progress=progress,
        )
        for part in load_suites(suite, registry)
    }
