"""The classical twin of the QD-LLM student: frozen encoder features -> a small MLP.

The encoder is the pretrained (not fine-tuned) MiniLM by default, so the student learns the
task only through the teacher and the labels; ``encoder: teacher`` uses the fine-tuned
teacher's own. Its features come from the run's cache: training never reruns the encoder. The
encoder is counted in ``inference_total`` because it runs at inference.
"""

from __future__ import annotations

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.context import RunContext
from qcompress.features import FrozenEncoderConfig, FrozenFeatureStudent
from qcompress.interfaces import ParameterCounts, TaskData, count_parameters
from qcompress_plugins.encoders import resolve_encoder


class FeatureMLPConfig(FrozenEncoderConfig):
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


class FeatureMLPStudent(FrozenFeatureStudent):
    Config = FeatureMLPConfig
    description = "frozen encoder features -> MLP (the classical twin of qdllm)"

    def __init__(self, config: FeatureMLPConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context, resolve_encoder(config.encoder, context))

    def build_head(self, in_features: int) -> torch.nn.Module:
        config: FeatureMLPConfig = self.config
        return build_head(in_features, config.hidden, self.task.num_classes, config.dropout)

    def training_label(self) -> str:
        return f"mlp({self.config.hidden})"

    def parameter_counts(self) -> ParameterCounts:
        head = count_parameters(self.head)
        encoder = self.encoder_parameters()
        return ParameterCounts(
            trainable=head,
            inference_total=head + encoder,
            details={"head": head, "encoder": encoder},
        )


@hookimpl
def register_students(register):
    register("mlp", FeatureMLPStudent)
