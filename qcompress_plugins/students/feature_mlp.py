"""The classical twin of the QD-LLM student: frozen encoder features -> a small MLP.

The encoder is the pretrained (not fine-tuned) MiniLM by default, so the student learns the
task only through the teacher and the labels; ``encoder: teacher`` uses the fine-tuned
teacher's own. Its features come from the run's cache: training never reruns the encoder. The
encoder is counted in ``inference_total`` because it runs at inference.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from qcompress import hookimpl
from qcompress.features import FrozenEncoderConfig, FrozenFeatureStudent
from qcompress.interfaces import RunContext, TaskData
from qcompress_plugins.kinds import CLASSIFICATION
from qcompress_plugins.students.qdllm import trainable_parameters as qdllm_trainable_parameters

MATCH_QDLLM = "match-qdllm"
MAX_WIDTH = 65_536


class FeatureMLPConfig(FrozenEncoderConfig):
    encoder: str = Field(
        default="minilm",
        description="'minilm' (the packaged MiniLM-L6), 'teacher' (the prepared teacher's own "
        "encoder), a hub id or a path",
    )
    hidden: int | str = Field(
        default=64,
        description="hidden width; 0 = a linear probe; 'match-qdllm' = the width whose trainable "
        "count is closest to the default qdllm student's on the same features and classes",
    )
    dropout: float = Field(default=0.0, ge=0, lt=1)

    @field_validator("hidden", mode="before")
    @classmethod
    def _width(cls, value: object) -> object:
        is_width = isinstance(value, int) and not isinstance(value, bool)
        if not (is_width and 0 <= value <= MAX_WIDTH) and value != MATCH_QDLLM:
            raise ValueError(f"expected a hidden width 0..{MAX_WIDTH} or {MATCH_QDLLM!r}")
        return value


def matched_width(target: int, in_features: int, classes: int) -> int:
    """The hidden width whose MLP (``in -> h -> classes``, biases included) has the trainable
    count closest to ``target``."""
    per_unit = in_features + 1 + classes
    low = max(1, (target - classes) // per_unit)
    return min((low, low + 1), key=lambda h: abs(h * per_unit + classes - target))


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
    task_kinds = frozenset({CLASSIFICATION})
    description = "frozen encoder features -> MLP (the classical twin of qdllm)"

    def __init__(self, config: FeatureMLPConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.width: int | None = None

    def build_head(self, in_features: int) -> torch.nn.Module:
        config: FeatureMLPConfig = self.config
        self.width = self.hidden_width(in_features)
        return build_head(in_features, self.width, self.task.num_classes, config.dropout)

    def hidden_width(self, in_features: int) -> int:
        hidden = self.config.hidden
        if hidden != MATCH_QDLLM:
            return hidden
        target = qdllm_trainable_parameters(in_features, self.task.num_classes)
        return matched_width(target, in_features, self.task.num_classes)

    def training_label(self) -> str:
        return f"mlp({self.config.hidden})"

    def describe(self) -> dict[str, Any]:
        details = super().describe()
        if self.head is not None:
            details["hidden_width"] = self.width
        return details


@hookimpl
def register_students(register):
    register("mlp", FeatureMLPStudent)
