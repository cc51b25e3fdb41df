"""Runs a suite: prepares the task and the teacher once, then trains and measures every cell,
writing each cell's record the moment it finishes.

- Resume: a cell is skipped when its record exists, says ``ok``, is the record of this very
  cell (its id) and was made by the same code (its components' code identities); otherwise it
  runs again. ``reuse_stale`` keeps records whose code changed, and tables mark them.
- Isolation: an exception or a non-finite loss in one cell is recorded as that cell's failure;
  the other cells still run. Ctrl-C stops the run; every finished record is already on disk.
- Everything that depends on the kind of task (what the teacher produces, how a model is
  scored) is asked of the task kind's strategy; the runner names no plugin.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from qcompress import measure
from qcompress.context import LocalRunContext
from qcompress.errors import DataError
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import (
    Student,
    Targets,
    TaskConfig,
    TaskData,
    Teacher,
    TrainReport,
)
from qcompress.locks import folder_lock, sweep
from qcompress.plugins import Registry
from qcompress.provenance import (
    MEASUREMENT,
    components_of,
    identity_of,
    measurement_provenance,
)
from qcompress.record import (
    ComponentProvenance,
    Error,
    Provenance,
    Record,
    Status,
    parse_record,
)
from qcompress.results import MANIFEST, environment, read_record, write_json_atomic
from qcompress.scoring import Scorer
from qcompress.suite import Cell, Suite
from qcompress.task_kinds import (
    TaskKind,
)


@dataclass
class RunSummary:
    results_dir: Path
    records: list[Record]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    # Cell ids of records reused although their code changed (``reuse_stale``).
    stale: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """The teacher's record or one cell's: where it goes, what it is, which code makes it."""

    path: Path
    run: dict[str, Any]
    cell_id: str
    components: dict[str, ComponentProvenance]
    cell: Cell | None = None  # None for the teacher

    @property
    def code_identity(self) -> str:
        return identity_of(self.components)


# A training run whose last epoch's loss is this many times its first one's, or one of whose
# epochs averages this many times the loss before any update, has diverged: its numbers stand
# in the record, but the table must say so (a loss of 1e18 is finite).
DIVERGENCE_FACTOR = 10.0


def divergence(report: TrainReport) -> str | None:
    """Why the losses say training diverged, or ``None``."""
    losses = report.loss_per_epoch
    if len(losses) >= 2 and losses[0] > 0:
        first, last = losses[0], losses[-1]
        if last > DIVERGENCE_FACTOR * first:
            return (
                f"the last epoch's loss {last:.4g} is {last / first:.3g}x the first's {first:.4g}"
            )
    start = report.initial_loss
    if losses and start is not None and start > 0:
        # An explosion inside the first epoch: the epochs may fall after it, from far above.
        worst = max(losses)
        if worst > DIVERGENCE_FACTOR * start:
            epoch = losses.index(worst) + 1
            return (
                f"epoch {epoch}'s mean loss {worst:.4g} is {worst / start:.3g}x the loss "
                f"before training, {start:.4g}"
            )
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Runner:
    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        results_root: Path,
        context: LocalRunContext,
        console: Console | None = None,
        reuse_stale: bool = False,
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.results_dir = Path(results_root) / suite.name
        self.context = context
        self.console = console or Console(stderr=True)
        self.reuse_stale = reuse_stale
        self.kind_name: str = registry.get("task", suite.task.name).kind
        self.kind: TaskKind = registry.get("task_kind", self.kind_name)
        self.scorer = Scorer(suite, registry, self.kind.headline_metric, context.device)

    # -- the plan -------------------------------------------------------------------------

    def _shared_components(self) -> dict[str, tuple[str, str]]:
        return {
            "task": ("task", self.suite.task.name),
            "task_kind": ("task_kind", self.kind_name),
            "teacher": ("teacher", self.suite.teacher.name),
            **{f"metric:{name}": ("metric", name) for name in self.suite.metrics},
        }

    def _components(self, named: dict[str, tuple[str, str]]) -> dict[str, ComponentProvenance]:
        """Each named plugin's provenance, and the core's measuring code's."""
        return {**components_of(self.registry, named), MEASUREMENT: measurement_provenance()}

    def teacher_job(self) -> Job:
        identity = fingerprint_of(self.suite.task.as_dict(), self.suite.teacher.as_dict())
        run = {
            "suite": self.suite.name,
            "task": self.suite.task.as_dict(),
            "teacher": self.suite.teacher.as_dict(),
            "label": f"teacher:{self.suite.teacher.name}",
        }
        path = self.results_dir / f"teacher-{self.suite.teacher.name}-{identity[:8]}.json"
        return Job(path, run, identity, self._components(self._shared_components()))

    def cell_job(self, cell: Cell) -> Job:
        named = {
            **self._shared_components(),
            "student": ("student", cell.spec.student.name),
            "objective": ("objective", cell.spec.objective.name),
        }
        return Job(
            self.results_dir / cell.file_name,
            cell.config(),
            cell.cell_id,
            self._components(named),
            cell,
        )

    def reusable(self, job: Job) -> bool | None:
        """Whether the record at ``job.path`` can stand: True (same cell, same code), None
        (same cell, other code: stale), False (missing, failed, or not a valid record of this
        cell: such a file is reported and set aside, never taken for the cell's result)."""
        if not job.path.exists():
            return False
        try:
            record = parse_record(json.loads(job.path.read_text()))
        except (OSError, ValueError) as error:
            self._set_aside(job.path, f"not a valid record ({' '.join(str(error).split())[:200]})")
            return False
        if record.cell_id != job.cell_id:
            self._set_aside(job.path, f"it is the record of another cell ({record.cell_id})")
            return False
        if record.status != Status.OK:
            return False
        return True if record.provenance.code_identity == job.code_identity else None

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(path.name + ".invalid")
        os.replace(path, aside)
        self.console.print(
            f"[yellow]warning[/yellow]: {escape(str(path))}: {escape(why)}; set aside as "
            f"{escape(aside.name)}, the cell runs again"
        )

    def run(self) -> RunSummary:
        """Run the pending cells, holding the results folder's lock (a second process on the
        same folder waits, then reuses these records)."""
        with folder_lock(self.results_dir, self.console.print):
            # Temporary files of writes a killed run left unfinished (no writer is active).
            swept = sweep(self.results_dir, (".*.tmp",))
            if swept:
                self.console.print(f"removed {len(swept)} unfinished temporary file(s)")
            return self._run()

    def _run(self) -> RunSummary:
        started = _now()
        teacher_job = self.teacher_job()
        jobs = [self.cell_job(cell) for cell in self.suite.cells()]
        summary = RunSummary(self.results_dir, [])
        pending = []
        for job in jobs:
            state = self.reusable(job)
            if state is None and self.reuse_stale:
                summary.stale.append(job.cell_id)
            if state is False or (state is None and not self.reuse_stale):
                pending.append(job)
        summary.skipped = len(jobs) - len(pending)
        if summary.skipped:
            stale = f" ({len(summary.stale)} stale, kept on request)" if summary.stale else ""
            self.console.print(
                f"resuming: {summary.skipped} of {len(jobs)} cells already have records{stale}"
            )
        teacher_state = self.reusable(teacher_job)
        teacher_done = teacher_state is True or (teacher_state is None and self.reuse_stale)
        if pending or not teacher_done:
            self._run_pending(pending, teacher_job, teacher_done, summary)
        paths = [teacher_job.path, *(job.path for job in jobs)]
        summary.records = [record for record in map(read_record, paths) if record is not None]
        write_json_atomic(
            self.results_dir / MANIFEST,
            {
                "schema": "qcompress.manifest/1",
                "suite": self.suite.name,
                "suite_file": str(self.suite.path),
                "suite_config": self.suite.raw,
                "started_at": started,
                "finished_at": _now(),
                "records": [path.name for path in paths if path.exists()],
                "ran": summary.ran,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "stale": summary.stale,
                "environment": environment(),
            },
        )
        return summary

    def _run_pending(
        self, pending: list[Job], teacher_job: Job, teacher_done: bool, summary: RunSummary
    ) -> None:
        task_data = self._load_task()
        teacher, prepare_s = self._prepare_teacher(task_data)
        context = self.context.with_teacher(teacher, task_data)
        batch_size = max(self.suite.train.batch_size, 64)
        # The teacher's targets on the training split, unless no pending cell learns from them.
        wanted = any(
            self.kind.trains_on_targets
            or self.registry.get("objective", job.cell.spec.objective.name).uses_teacher
            for job in pending
            if job.cell is not None
        )
        targets_train = (
            self.kind.teacher_targets(teacher, task_data.train, batch_size, context)
            if wanted
            else None
        )
        targets_eval = self.kind.teacher_targets(teacher, task_data.eval, batch_size, context)
        if not teacher_done:
            record = self._teacher_record(teacher_job, teacher, task_data, targets_eval, prepare_s)
            write_json_atomic(teacher_job.path, record.to_json())
            self._announce(record)
        for job in pending:
            assert job.cell is not None
            record = self._run_cell(job, context, task_data, teacher, targets_train, targets_eval)
            write_json_atomic(job.path, record.to_json())
            self._announce(record)
            summary.ran += 1
            if record.status != Status.OK:
                summary.failed += 1
                summary.failures.append(f"{record.label} seed {record.seed}")

    # -- task and teacher -----------------------------------------------------------------

    def _load_task(self) -> TaskData:
        task_cls = self.registry.get("task", self.suite.task.name)
        with self.context.progress.task(f"loading task {self.suite.task.name}", total=1) as step:
            task_data = task_cls(self.suite.task.config).load(self.context.data_dir)
            step()
        if task_data.kind is None:
            task_data = replace(task_data, kind=self.kind_name)
        self.console.print(f"task {task_data.name}: {self.kind.summary(task_data)}")
        config = self.suite.task.config
        assert isinstance(config, TaskConfig)
        for part, split, asked, key in (
            ("training", task_data.train, config.train_size, "train_size"),
            ("evaluation", task_data.eval, config.eval_size, "eval_size"),
        ):
            if len(split) == 0:  # nothing to train on or to score: later steps fail obscurely
                raise DataError(
                    f"task {task_data.name}: the {part} split is empty; expected at least one "
                    "text (are its data files empty?)"
                )
            if asked is not None and len(split) < asked:
                self.console.print(
                    f"[yellow]warning[/yellow]: task {task_data.name}: the {part} split has "
                    f"{len(split)} texts, fewer than {key} {asked}; all of them are used"
                )
        return task_data

    def _prepare_teacher(self, task_data: TaskData) -> tuple[Teacher, float]:
        teacher_cls = self.registry.get("teacher", self.suite.teacher.name)
        teacher: Teacher = teacher_cls(self.suite.teacher.config)
        assert isinstance(self.suite.task.config, TaskConfig)
        seed_everything(self.suite.task.config.seed)
        start = time.perf_counter()
        teacher.prepare(task_data, self.context)
        return teacher, time.perf_counter() - start

    def _teacher_record(
        self,
        job: Job,
        teacher: Teacher,
        task_data: TaskData,
        targets_eval: Targets,
        prepare_s: float,
    ) -> Record:
        """The teacher's record. Its training time and memory are those of its fine-tuning,
        which the teacher measured when it was built (it may come from the cache)."""
        record = self._new_record("teacher", job, task_data, teacher)
        with measure.MachineLoad() as load:
            evaluation = self.kind.evaluate_teacher(
                teacher, task_data, targets_eval, self.suite.train.batch_size
            )
            details = teacher.describe()
            measured = self.scorer.measure(
                self.kind.teacher_predictor(teacher),
                task_data,
                teacher.parameter_counts(),
                evaluation,
                type(teacher).columns,
            )
        measured.memory_mb["train"] = details.get("finetune_memory_mb")
        measured.timings_s = {
            "prepare_this_run": round(prepare_s, 3),
            "train": details.get("finetune_s"),
        }
        measured.details = details
        record.measured = measured
        record.status = Status.OK
        return self._finish(record, load)

    # -- one cell -------------------------------------------------------------------------

    def _run_cell(
        self,
        job: Job,
        context: LocalRunContext,
        task_data: TaskData,
        teacher: Teacher,
        targets_train: Targets,
        targets_eval: Targets,
    ) -> Record:
        assert job.cell is not None
        spec, seed = job.cell.spec, job.cell.seed
        record = self._new_record("student", job, task_data, teacher)
        start = time.perf_counter()
        with measure.MachineLoad() as load:
            try:
                seed_everything(seed)
                student_cls = self.registry.get("student", spec.student.name)
                objective_cls = self.registry.get("objective", spec.objective.name)
                objective = objective_cls(spec.objective.config)
                student: Student = student_cls(spec.student.config, task_data, context)
                prepare_start = time.perf_counter()
                student.prepare([task_data.train, task_data.eval])
                prepare_s = time.perf_counter() - prepare_start
                with measure.MemorySampler(self.context.device) as train_memory:
                    fit_start = time.perf_counter()
                    report = student.fit(task_data.train, targets_train, objective, spec.train)
                    train_s = time.perf_counter() - fit_start
                eval_start = time.perf_counter()
                evaluation = self.kind.evaluate_student(
                    student, task_data, targets_eval, spec.train.batch_size
                )
                eval_s = time.perf_counter() - eval_start
                measured = self.scorer.measure(
                    student.predict_texts,
                    task_data,
                    student.parameter_counts(),
                    evaluation,
                    student_cls.columns,
                )
                measured.memory_mb["train"] = train_memory.result()
                measured.timings_s = {
                    "prepare": round(prepare_s, 3),
                    "train": round(train_s, 3),
                    "evaluate": round(eval_s, 3),
                }
                measured.train_log = {
                    "loss_per_epoch": report.loss_per_epoch,
                    "steps": report.steps,
                    **report.extras,
                }
                diverged = divergence(report)
                if diverged:
                    measured.train_log["diverged"] = diverged
                measured.details = student.describe()
                record.measured = measured
                record.status = Status.OK
            except Exception as error:  # one broken cell must not cost the others
                record.status = Status.FAILED
                record.error = Error(
                    message=f"{type(error).__name__}: {error}", traceback=traceback.format_exc()
                )
        record.measured.timings_s["total"] = round(time.perf_counter() - start, 3)
        return self._finish(record, load)

    # -- records --------------------------------------------------------------------------

    def _new_record(self, role: str, job: Job, task_data: TaskData, teacher: Teacher) -> Record:
        return Record(
            role=role,
            cell_id=job.cell_id,
            run=job.run,
            provenance=Provenance(
                components=job.components,
                code_identity=job.code_identity,
                fingerprints={"data": task_data.fingerprint(), "teacher": teacher.fingerprint()},
                data=task_data.provenance,
                device=str(self.context.device),
                environment=environment(),
                started_at=_now(),
            ),
        )

    @staticmethod
    def _finish(record: Record, load: measure.MachineLoad) -> Record:
        record.provenance.load = load.result()
        record.provenance.finished_at = _now()
        return record

    def _announce(self, record: Record) -> None:
        where = record.label + (f" seed {record.seed}" if record.seed is not None else "")
        if record.status == Status.OK:
            headline = record.measured.headline
            value = record.measured.metrics.get(headline) if headline else None
            shown = f"{headline} {value:.4f}" if value is not None else "done"
            diverged = record.measured.train_log.get("diverged")
            if diverged:
                shown += f" [yellow](diverged: {escape(diverged)})[/yellow]"
            self.console.print(f"[green]ok[/green] {escape(where)}: {shown}")
        else:
            message = record.error.message if record.error else "failed"
            self.console.print(f"[red]failed[/red] {escape(where)}: {escape(message)}")
