"""Scoring and measuring a prepared model: what every record's ``measured`` part holds.

The suite's metrics on the task kind's evaluation (and on each variant, beside the student's own
score on the same rows), the parameters, batch-1 latency and throughput from raw texts, and the
memory of inference. Latency never uses cached features: it runs the model end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from qcompress import measure
from qcompress.interfaces import (
    ParameterCounts,
    Predictions,
    TaskData,
)
from qcompress.plugins import Registry
from qcompress.record import Column, Measured, MetricInfo
from qcompress.suite import Suite
from qcompress.task_kinds import (
    Evaluation,
)

BYTES_PER_PARAMETER = 4  # float32 weights


class Scorer:
    """Scores and measures models for one suite."""

    def __init__(
        self, suite: Suite, registry: Registry, headline: str | None, device: torch.device
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.headline = headline
        self.device = device

    def measure(
        self,
        predict: Callable[[Sequence[str]], Any],
        task_data: TaskData,
        params: ParameterCounts,
        evaluation: Evaluation,
        columns: tuple[Column, ...],
    ) -> Measured:
        """What every model's record holds: metrics (and the variants'), parameters, batch-1
        latency and throughput from raw texts, inference memory."""
        params_block = self._params_block(params)
        latency = self._latency(predict, task_data)
        throughput, inference_memory = self._throughput(
            predict, task_data, params_block["inference_mb"]
        )
        return Measured(
            metrics=self._metrics(evaluation.predictions),
            metric_info=self._metric_info(),
            headline=self.headline,
            params=params_block,
            memory_mb={"inference": inference_memory},
            latency_ms=latency,
            throughput=throughput,
            variants=self._variants(evaluation),
            columns=list(columns),
            **evaluation.facts,
        )

    def _variants(self, evaluation: Evaluation) -> list[dict[str, Any]]:
        return [
            {
                "label": scored.variant.label,
                "rows": len(scored.predictions.labels)
                if scored.predictions.labels is not None
                else None,
                "metrics": self._metrics(scored.predictions),
                "agreement_with_student": scored.agreement_with_student,
                # The student's own score on the same rows, for a like-for-like comparison.
                "student_metrics": self._metrics(scored.student_predictions),
                "details": scored.variant.details,
            }
            for scored in evaluation.variants
        ]

    def _metrics(self, predictions: Predictions) -> dict[str, float | None]:
        values = {}
        for name in self.suite.metrics:
            value = self.registry.get("metric", name).compute(predictions)
            values[name] = None if value is None else round(float(value), 6)
        return values

    def _metric_info(self) -> dict[str, MetricInfo]:
        info = {}
        for name in self.suite.metrics:
            metric = self.registry.get("metric", name)
            info[name] = MetricInfo(
                higher_is_better=metric.higher_is_better, description=metric.description
            )
        return info

    @staticmethod
    def _params_block(params: ParameterCounts) -> dict[str, Any]:
        return {
            "trainable": params.trainable,
            "inference_total": params.inference_total,
            "inference_mb": round(
                (params.inference_bytes or params.inference_total * BYTES_PER_PARAMETER) / 2**20,
                2,
            ),
            **params.details,
        }

    def _latency(
        self, predict: Callable[[Sequence[str]], Any], task_data: TaskData
    ) -> dict[str, Any]:
        settings = self.suite.measure
        texts = task_data.eval.texts[: max(settings.latency_samples, 1)]
        with torch.inference_mode():
            return measure.latency(predict, texts, settings.latency_samples, settings.warmup)

    def _throughput(
        self, predict: Callable[[Sequence[str]], Any], task_data: TaskData, weights_mb: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Texts per second over the evaluation split at the suite's batch size, and the memory
        of inference: the weights (exact, from the parameter count) plus what the process grew
        by while predicting (activations; on CUDA the allocator's exact peak). Call after the
        latency measurement, which has loaded everything lazily loaded."""
        with torch.inference_mode(), measure.MemorySampler(self.device) as memory:
            texts = task_data.eval.texts[: self.suite.measure.throughput_samples]
            speed = measure.throughput(predict, texts, self.suite.train.batch_size)
        grown = memory.result()
        return speed, {
            "weights_mb": weights_mb,
            "activations_avg_mb": grown["avg_mb"],
            "activations_max_mb": grown["max_mb"],
            "max_mb": round(weights_mb + grown["max_mb"], 2),
        }
