"""Classification objectives: Hinton knowledge distillation, logit matching (MSE), and plain
cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from qcompress import hookimpl
from qcompress.interfaces import Objective, PluginConfig
from qcompress_plugins.kinds import CLASSIFICATION


def softened_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), the batch mean."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


class KDConfig(PluginConfig):
    temperature: float = Field(default=2.0, gt=0, le=1_000)
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the teacher term")


class HintonKD(Objective):
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(teacher_T || student_T)``
    (Hinton et al. 2015; the T^2 keeps gradient scales comparable across temperatures)."""

    task_kinds = frozenset({CLASSIFICATION})

    Config = KDConfig
    description = "Hinton KD: (1-a) CE + a T^2 KL(teacher || student) at temperature T"

    def __call__(self, student_logits, teacher_logits, labels):
        config: KDConfig = self.config
        hard = F.cross_entropy(student_logits, labels)
        soft = softened_kl(teacher_logits, student_logits, config.temperature)
        return (1 - config.alpha) * hard + config.alpha * config.temperature**2 * soft


class CEConfig(PluginConfig):
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)


class CrossEntropy(Objective):
    """Cross-entropy on the labels alone: the no-teacher baseline."""

    task_kinds = frozenset({CLASSIFICATION})
    uses_teacher = False

    Config = CEConfig
    description = "cross-entropy on the labels (no teacher)"

    def __call__(self, student_logits, teacher_logits, labels):
        return F.cross_entropy(student_logits, labels, label_smoothing=self.config.label_smoothing)


class LogitMSEConfig(PluginConfig):
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the teacher term")


class LogitMSE(Objective):
    """``(1 - alpha) * CE(student, labels) + alpha * MSE(student logits, teacher logits)``:
    matching the teacher's raw logits (Ba & Caruana 2014; Tang et al. 2019, who distil BERT
    into a BiLSTM this way). The MSE is the mean over classes and rows."""

    task_kinds = frozenset({CLASSIFICATION})

    Config = LogitMSEConfig
    description = "logit matching: (1-a) CE + a MSE(student logits, teacher logits)"

    def __call__(self, student_logits, teacher_logits, labels):
        alpha = self.config.alpha
        hard = F.cross_entropy(student_logits, labels)
        return (1 - alpha) * hard + alpha * F.mse_loss(student_logits, teacher_logits)


@hookimpl
def register_objectives(register):
    register("kd", HintonKD)
    register("mse", LogitMSE)
    register("ce", CrossEntropy)
