"""The classical twin of the QD-LLM student: frozen encoder features -> a small MLP.

The encoder is the pretrained (not fine-tuned) MiniLM by default, so the student learns the
task only through the teacher and the labels. Its features come from the run's cache: training
never reruns the encoder. The encoder is counted in ``inference_total`` because it runs at
inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.context import RunContext
from qcompress.features import Pooling
from qcompress.interfaces import (
    Objective,
    ParameterCounts,
    PluginConfig,
    Split,
    Student,
    TaskData,
    TrainReport,
    TrainSettings,
    count_parameters,
)
from qcompress.training import train_module
from qcompress_plugins.encoders import resolve_encoder


class FeatureMLPConfig(PluginConfig):
    encoder: str = Field(default="minilm", description="'minilm', a hub id or a local path")
    pooling: Pooling = "mean"
    max_length: int = Field(default=128, ge=8)
    hidden: int = Field(default=64, ge=0, description="hidden width; 0 = a linear probe")
    dropout: float = Field(default=0.0, ge=0, lt=1)


def build_head(in_features: int, hidden: int, classes: int, dropout: float) -> torch.nn.Module:
    if hidden == 0:
        return torch.nn.Linear(in_features, classes)
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, classes),
    )


class FeatureMLPStudent(Student):
    Config = FeatureMLPConfig
    description = "frozen encoder features -> MLP (the classical twin of qdllm)"

    def __init__(self, config: FeatureMLPConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.encoder = context.frozen_encoder(
            resolve_encoder(config.encoder), config.pooling, config.max_length
        )
        self.head: torch.nn.Module | None = None

    def _features(self, split: Split) -> torch.Tensor:
        return self.context.frozen_features(self.encoder, split)

    def prepare(self, splits: Sequence[Split]) -> None:
        for split in splits:
            self._features(split)

    def fit(
        self,
        train: Split,
        teacher_logits: torch.Tensor,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        features = self._features(train)
        config: FeatureMLPConfig = self.config
        self.head = build_head(
            features.shape[1], config.hidden, self.task.num_classes, config.dropout
        ).to(self.context.device)
        return train_module(
            self.head,
            features,
            teacher_logits,
            train.labels,
            objective,
            settings,
            self.context.progress,
            description=f"training mlp({config.hidden})",
        )

    @torch.inference_mode()
    def predict_logits(self, split: Split, batch_size: int) -> torch.Tensor:
        features = self._features(split).to(self.context.device)
        return self.head(features).float().cpu()

    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        features = self.encoder.encode(texts, batch_size=max(len(texts), 1))
        return self.head(features.to(self.context.device)).float().cpu()

    def parameter_counts(self) -> ParameterCounts:
        head = count_parameters(self.head)
        encoder = self.encoder.parameter_count()
        return ParameterCounts(
            trainable=head,
            inference_total=head + encoder,
            details={"head": head, "encoder": encoder},
        )

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.config.encoder, "encoder_fingerprint": self.encoder.fingerprint()}


@hookimpl
def register_students(register):
    register("mlp", FeatureMLPStudent)
