"""Runs a suite: prepares the task and the teacher once, then trains and measures every cell,
writing each cell's record the moment it finishes.

- Resume: a cell whose record exists and says ``ok`` is skipped; failed cells run again.
- Isolation: an exception or a non-finite loss in one cell is recorded as that cell's failure;
  the other cells still run. Ctrl-C stops the run; every finished record is already on disk.
- Caching: teacher logits and frozen features come from the content-addressed cache, so every
  student and seed reuses them and a rerun does not recompute them.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from qcompress import measure
from qcompress.context import RunContext
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import CAUSAL_LM, Predictions, Split, TaskData, Teacher
from qcompress.plugins import Registry
from qcompress.results import (
    MANIFEST,
    SCHEMA,
    environment,
    is_finished,
    read_record,
    write_json_atomic,
)
from qcompress.suite import Cell, Suite

BYTES_PER_PARAMETER = 4  # float32 weights


@dataclass
class RunSummary:
    results_dir: Path
    records: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


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
        context: RunContext,
        console: Console | None = None,
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.results_dir = Path(results_root) / suite.name
        self.context = context
        self.console = console or Console(stderr=True)

    # -- the plan -------------------------------------------------------------------------

    def teacher_file(self) -> Path:
        identity = fingerprint_of(self.suite.task.as_dict(), self.suite.teacher.as_dict())
        return self.results_dir / f"teacher-{self.suite.teacher.name}-{identity[:8]}.json"

    def run(self) -> RunSummary:
        started = _now()
        cells = self.suite.cells()
        pending = [cell for cell in cells if not is_finished(self.results_dir / cell.file_name)]
        summary = RunSummary(self.results_dir, [], skipped=len(cells) - len(pending))
        teacher_path = self.teacher_file()
        if summary.skipped:
            self.console.print(
                f"resuming: {summary.skipped} of {len(cells)} cells already have records"
            )
        if pending or not is_finished(teacher_path):
            self._run_pending(pending, teacher_path, summary)
        paths = [teacher_path, *(self.results_dir / cell.file_name for cell in cells)]
        summary.records = [r for r in map(read_record, paths) if r is not None]
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
                "environment": environment(),
            },
        )
        return summary

    def _run_pending(self, pending: list[Cell], teacher_path: Path, summary: RunSummary) -> None:
        task_data = self._load_task()
        teacher, prepare_s = self._prepare_teacher(task_data)
        self.context.teacher = teacher
        if self.context.registry is None:
            self.context.registry = self.registry
        # Language models are compared on token losses; there are no class logits to distil.
        language = task_data.kind == CAUSAL_LM
        teacher_train = None if language else self._teacher_logits(teacher, task_data.train)
        teacher_eval = None if language else self._teacher_logits(teacher, task_data.eval)
        if not is_finished(teacher_path):
            record = self._teacher_record(teacher, task_data, teacher_eval, prepare_s)
            write_json_atomic(teacher_path, record)
            self._announce(record)
        for cell in pending:
            record = self._run_cell(cell, task_data, teacher, teacher_train, teacher_eval)
            write_json_atomic(self.results_dir / cell.file_name, record)
            self._announce(record)
            summary.ran += 1
            if record["status"] != "ok":
                summary.failed += 1
                summary.failures.append(f"{record['config']['label']} seed {cell.seed}")

    # -- task and teacher -----------------------------------------------------------------

    def _load_task(self) -> TaskData:
        task_cls = self.registry.get("task", self.suite.task.name)
        with self.context.progress.task(f"loading task {self.suite.task.name}", total=1) as step:
            task_data = task_cls(self.suite.task.config).load(self.context.data_dir)
            step()
        what = (
            "language modelling"
            if task_data.kind == CAUSAL_LM
            else f"{task_data.num_classes} classes"
        )
        self.console.print(
            f"task {task_data.name}: {len(task_data.train)} training and "
            f"{len(task_data.eval)} evaluation texts, {what}"
        )
        return task_data

    def _prepare_teacher(self, task_data: TaskData) -> tuple[Teacher, float]:
        teacher_cls = self.registry.get("teacher", self.suite.teacher.name)
        teacher: Teacher = teacher_cls(self.suite.teacher.config)
        seed_everything(self.suite.task.config.seed)
        start = time.perf_counter()
        teacher.prepare(task_data, self.context)
        return teacher, time.perf_counter() - start

    def _teacher_logits(self, teacher: Teacher, split: Split) -> torch.Tensor:
        parts = {"teacher": teacher.fingerprint(), "split": split.fingerprint()}
        batch_size = max(self.suite.train.batch_size, 64)

        def compute() -> dict[str, torch.Tensor]:
            with self.context.progress.task(
                f"teacher logits ({len(split)} texts)", total=1
            ) as step:
                logits = teacher.predict_logits(split.texts, batch_size=batch_size)
                step()
            return {"logits": logits.float().cpu()}

        return self.context.cache.tensors("teacher-logits", parts, compute)["logits"]

    def _teacher_record(
        self,
        teacher: Teacher,
        task_data: TaskData,
        teacher_eval: torch.Tensor | None,
        prepare_s: float,
    ) -> dict[str, Any]:
        """The teacher's row. Its training time and memory are those of its fine-tuning, which
        the teacher measured when it was built (it may come from the cache)."""
        record = self._base_record(
            "teacher",
            {
                "suite": self.suite.name,
                "task": self.suite.task.as_dict(),
                "teacher": self.suite.teacher.as_dict(),
                "label": f"teacher:{self.suite.teacher.name}",
            },
            task_data,
            teacher.fingerprint(),
        )
        params = teacher.parameter_counts()
        details = teacher.describe()
        if task_data.kind == CAUSAL_LM:
            batch_size = self.suite.train.batch_size
            losses = teacher.token_losses(task_data.eval.texts, batch_size=batch_size)
            predictions = Predictions(None, None, None, token_losses=losses)
            record["scored_tokens"] = int(losses.tokens.sum())

            def predict(texts: list[str]) -> Any:
                return teacher.token_losses(texts, batch_size=len(texts))
        else:
            predictions = Predictions(teacher_eval, task_data.eval.labels, None)

            def predict(texts: list[str]) -> Any:
                return teacher.predict_logits(texts, batch_size=len(texts))

        params_block = self._params_block(params)
        latency = self._latency(predict, task_data)
        throughput, inference_memory = self._throughput(
            predict, task_data, params_block["inference_mb"]
        )

        record.update(
            status="ok",
            metrics=self._metrics(predictions),
            params=params_block,
            memory_mb={"train": details.get("finetune_memory_mb"), "inference": inference_memory},
            latency_ms=latency,
            throughput=throughput,
            timings_s={
                "prepare_this_run": round(prepare_s, 3),
                "train": details.get("finetune_s"),
            },
            details=details,
            finished_at=_now(),
        )
        return record

    # -- one cell -------------------------------------------------------------------------

    def _run_cell(
        self,
        cell: Cell,
        task_data: TaskData,
        teacher: Teacher,
        teacher_train: torch.Tensor | None,
        teacher_eval: torch.Tensor | None,
    ) -> dict[str, Any]:
        record = self._base_record("student", cell.config(), task_data, teacher.fingerprint())
        record["cell_id"] = cell.cell_id
        start = time.perf_counter()
        try:
            seed_everything(cell.seed)
            spec = cell.spec
            student_cls = self.registry.get("student", spec.student.name)
            objective = self.registry.get("objective", spec.objective.name)(spec.objective.config)
            student = student_cls(spec.student.config, task_data, self.context)
            prepare_start = time.perf_counter()
            student.prepare([task_data.train, task_data.eval])
            prepare_s = time.perf_counter() - prepare_start
            with measure.MemorySampler(self.context.device) as train_memory:
                fit_start = time.perf_counter()
                report = student.fit(task_data.train, teacher_train, objective, spec.train)
                train_s = time.perf_counter() - fit_start
            eval_start = time.perf_counter()
            if task_data.kind == CAUSAL_LM:
                losses = student.token_losses(task_data.eval, spec.train.batch_size)
                predictions = Predictions(None, None, None, token_losses=losses)
                record["scored_tokens"] = int(losses.tokens.sum())
                variants = []
                eval_s = time.perf_counter() - eval_start
            else:
                logits = student.predict_logits(task_data.eval, spec.train.batch_size)
                eval_s = time.perf_counter() - eval_start
                predictions = Predictions(logits, task_data.eval.labels, teacher_eval)
                variants = self._variants(student, task_data, logits, teacher_eval, spec.train)
            params_block = self._params_block(student.parameter_counts())
            latency = self._latency(student.predict_texts, task_data)
            throughput, inference_memory = self._throughput(
                student.predict_texts, task_data, params_block["inference_mb"]
            )
            record.update(
                status="ok",
                metrics=self._metrics(predictions),
                params=params_block,
                memory_mb={"train": train_memory.result(), "inference": inference_memory},
                latency_ms=latency,
                throughput=throughput,
                timings_s={
                    "prepare": round(prepare_s, 3),
                    "train": round(train_s, 3),
                    "evaluate": round(eval_s, 3),
                },
                train_log={
                    "loss_per_epoch": report.loss_per_epoch,
                    "steps": report.steps,
                    **report.extras,
                },
                details=student.describe(),
            )
            if variants:
                record["variants"] = variants
        except Exception as error:  # one broken cell must not cost the others
            record.update(
                status="failed",
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(),
            )
        record["timings_s"] = {
            **(record.get("timings_s") or {}),
            "total": round(time.perf_counter() - start, 3),
        }
        record["finished_at"] = _now()
        return record

    def _variants(
        self,
        student: Any,
        task_data: TaskData,
        logits: torch.Tensor,
        teacher_eval: torch.Tensor,
        train: Any,
    ) -> list[dict[str, Any]]:
        """The student's other evaluations (e.g. its circuit with shots and noise), each scored
        with the suite's metrics on the rows it covers, plus how often it agrees with the
        student's own predictions on those rows."""
        start = time.perf_counter()
        found = student.variants(task_data.eval, train.batch_size)
        results = []
        for variant in found:
            rows = (
                variant.rows
                if variant.rows is not None
                else torch.arange(len(task_data.eval))
            )
            predictions = Predictions(
                variant.logits, task_data.eval.labels[rows], teacher_eval[rows]
            )
            own = logits[rows].argmax(-1)
            results.append(
                {
                    "label": variant.label,
                    "rows": len(rows),
                    "metrics": self._metrics(predictions),
                    "agreement_with_student": round(
                        (variant.logits.argmax(-1) == own).float().mean().item(), 6
                    ),
                    # The student's own score on the same rows, for a like-for-like comparison.
                    "student_metrics": self._metrics(
                        Predictions(logits[rows], task_data.eval.labels[rows], teacher_eval[rows])
                    ),
                    "details": variant.details,
                }
            )
        if results:
            self.console.print(
                f"evaluated {len(results)} variant(s) in {time.perf_counter() - start:.1f} s"
            )
        return results

    # -- measurements ---------------------------------------------------------------------

    def _metrics(self, predictions: Predictions) -> dict[str, float | None]:
        values = {}
        for name in self.suite.metrics:
            value = self.registry.get("metric", name).compute(predictions)
            values[name] = None if value is None else round(float(value), 6)
        return values

    @staticmethod
    def _params_block(params: Any) -> dict[str, Any]:
        return {
            "trainable": params.trainable,
            "inference_total": params.inference_total,
            "inference_mb": round(params.inference_total * BYTES_PER_PARAMETER / 2**20, 2),
            **{f"{name}": count for name, count in params.details.items()},
        }

    def _latency_texts(self, task_data: TaskData) -> list[str]:
        return task_data.eval.texts[: max(self.suite.measure.latency_samples, 1)]

    def _latency(self, predict: Any, task_data: TaskData) -> dict[str, float]:
        settings = self.suite.measure
        with torch.inference_mode():
            return measure.latency(
                predict, self._latency_texts(task_data), settings.latency_samples, settings.warmup
            )

    def _throughput(
        self, predict: Any, task_data: TaskData, weights_mb: float
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Texts per second over the evaluation split at the suite's batch size, and the memory
        of inference: the weights (exact, from the parameter count) plus what the process grew
        by while predicting (activations; on CUDA the allocator's exact peak). Call after the
        latency measurement, which has loaded everything lazily loaded."""
        with torch.inference_mode(), measure.MemorySampler(self.context.device) as memory:
            texts = task_data.eval.texts[: self.suite.measure.throughput_samples]
            speed = measure.throughput(predict, texts, self.suite.train.batch_size)
        grown = memory.result()
        return speed, {
            "weights_mb": weights_mb,
            "activations_avg_mb": grown["avg_mb"],
            "activations_max_mb": grown["max_mb"],
            "max_mb": round(weights_mb + grown["max_mb"], 2),
        }

    def _base_record(
        self, role: str, config: dict[str, Any], task_data: TaskData, teacher_fp: str
    ) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "role": role,
            "status": "running",
            "error": None,
            "config": config,
            "fingerprints": {"data": task_data.fingerprint(), "teacher": teacher_fp},
            "data": task_data.provenance,
            "device": str(self.context.device),
            "environment": environment(),
            "started_at": _now(),
        }

    def _announce(self, record: dict[str, Any]) -> None:
        label = record["config"]["label"]
        seed = record["config"].get("seed")
        where = f"{label}" + (f" seed {seed}" if seed is not None else "")
        if record["status"] == "ok":
            headline = next(
                (name for name in ("accuracy", "perplexity") if name in record["metrics"]), None
            )
            value = record["metrics"].get(headline) if headline else None
            shown = f"{headline} {value:.4f}" if value is not None else "done"
            self.console.print(f"[green]ok[/green] {where}: {shown}")
        else:
            self.console.print(f"[red]failed[/red] {where}: {record['error']}")
