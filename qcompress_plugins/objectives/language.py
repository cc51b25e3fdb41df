"""Language-modelling objectives: next-token cross-entropy over real tokens only (``lm``; on a
generation task, over the teacher's response tokens: sequence-level distillation), and
token-level distillation from a teacher's top tokens (``token-kd``)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import Objective, PluginConfig, TopTokens
from qcompress_plugins.bases.language import (
    IGNORE_INDEX,
    aligned,
    coarse_logprobs,
    kl_from_teacher,
    predicted_positions,
    shifted_token_nll,
)
from qcompress_plugins.kinds import CAUSAL_LM, GENERATION


class NextTokenConfig(PluginConfig):
    pass


class NextTokenLoss(Objective):
    """Mean NLL of every predicted token of the batch (each token weighs the same; positions
    labelled -100, i.e. padding, are left out of both the sum and the count)."""

    Config = NextTokenConfig
    description = "causal LM: next-token cross-entropy, padding masked out (label -100)"
    task_kinds = frozenset({CAUSAL_LM, GENERATION})
    uses_teacher = False

    def __call__(self, student_logits, teacher_logits, labels):
        predicted = (labels[:, 1:] != IGNORE_INDEX).sum().clamp_min(1)
        return shifted_token_nll(student_logits, labels).sum() / predicted


class TokenKDConfig(PluginConfig):
    alpha: float = Field(
        default=0.5, ge=0, le=1,
        description="weight of the distillation term; 1 - alpha weighs next-token CE",
    )
    divergence: Literal["forward", "reverse"] = Field(
        default="forward",
        description="forward: KL(teacher || student); reverse: KL(student || teacher) (MiniLLM)",
    )


class TokenKD(Objective):
    """Token-level distillation: at every predicted token, the KL divergence between the
    teacher's next-token distribution and the student's, folded onto the teacher's top k
    tokens (cached once per split) and one bucket for the rest; mixed with next-token CE.
    Forward KL (the teacher's view) spreads the student over what the teacher finds likely;
    reverse KL (MiniLLM, Gu et al. 2024) makes it seek the teacher's modes. The student must
    use the teacher's tokenizer; a shorter ``max_length`` learns the teacher's first positions
    of each text."""

    Config = TokenKDConfig
    description = "causal LM: next-token CE + KL to the teacher's top tokens (forward or reverse)"
    task_kinds = frozenset({CAUSAL_LM})

    def __call__(self, student_logits, teacher_logits, labels):
        config: TokenKDConfig = self.config
        if not isinstance(teacher_logits, TopTokens):
            raise QcompressError(
                "objective token-kd learns from a language-model teacher's top tokens; this "
                "teacher gives none (use the causal-lm teacher)"
            )
        positions = predicted_positions(labels)
        teacher_logits = aligned(teacher_logits, positions)
        ce = NextTokenLoss(NextTokenConfig())(student_logits, None, labels)
        device = student_logits.device
        student = student_logits[:, :-1][positions].float().log_softmax(dim=-1)
        student_top, student_tail = coarse_logprobs(student, teacher_logits.ids.to(device))
        teacher = teacher_logits.logprobs.to(device), teacher_logits.tail.to(device)
        if config.divergence == "forward":
            kl = kl_from_teacher(*teacher, student_top, student_tail)
        else:
            kl = kl_from_teacher(student_top, student_tail, *teacher)
        distil = kl.mean() if kl.numel() else torch.zeros((), device=device)
        return (1 - config.alpha) * ce + config.alpha * distil


@hookimpl
def register_objectives(register):
    register("lm", NextTokenLoss)
    register("token-kd", TokenKD)
