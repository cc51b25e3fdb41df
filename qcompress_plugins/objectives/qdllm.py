"""The QD-LLM distillation objective (Li et al. 2025, docs/methods.md §1 item 6).

``(1-a) CE(s, y) + a T² KL(softmax(t/T) || softmax(s/T)) + a JS(softmax(s/T), softmax(t/T))``,
T = 2, a = 0.5. The released code applies softmax a second time inside its JS term (to inputs
that are already probabilities); ``js: double-softmax`` reproduces that, ``standard`` (the
default) is the Jensen-Shannon divergence the paper writes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from qcompress import hookimpl
from qcompress.interfaces import Objective, PluginConfig
from qcompress_plugins.kinds import CLASSIFICATION
from qcompress_plugins.objectives.kd import softened_kl


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = (p + q)/2, in nats, the batch mean."""
    m = (p + q) / 2
    log_m = m.clamp_min(torch.finfo(m.dtype).tiny).log()
    kl_pm = F.kl_div(log_m, p, reduction="batchmean")
    kl_qm = F.kl_div(log_m, q, reduction="batchmean")
    return (kl_pm + kl_qm) / 2


class QDLLMObjectiveConfig(PluginConfig):
    temperature: float = Field(default=2.0, gt=0, le=1_000)
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the teacher terms")
    js: Literal["standard", "double-softmax"] = Field(
        default="standard", description="'double-softmax': the released code's JS term"
    )


class QDLLMObjective(Objective):
    task_kinds = frozenset({CLASSIFICATION})
    Config = QDLLMObjectiveConfig
    description = "QD-LLM: (1-a) CE + a T^2 KL(teacher || student) + a JS(student, teacher)"

    def __call__(self, student_logits, teacher_logits, labels):
        config: QDLLMObjectiveConfig = self.config
        t = config.temperature
        hard = F.cross_entropy(student_logits, labels)
        kl = softened_kl(teacher_logits, student_logits, t)
        p = F.softmax(student_logits / t, dim=-1)
        q = F.softmax(teacher_logits / t, dim=-1)
        if config.js == "double-softmax":
            p, q = F.softmax(p, dim=-1), F.softmax(q, dim=-1)
        js = jensen_shannon(p, q)
        return (1 - config.alpha) * hard + config.alpha * (t**2 * kl + js)


@hookimpl
def register_objectives(register):
    register("qdllm", QDLLMObjective)
