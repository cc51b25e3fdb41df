"""The language-modelling objective: next-token cross-entropy over real tokens only."""

from __future__ import annotations

from qcompress import hookimpl
from qcompress.interfaces import Objective, PluginConfig
from qcompress_plugins.bases.language import IGNORE_INDEX, shifted_token_nll
from qcompress_plugins.kinds import CAUSAL_LM


class NextTokenConfig(PluginConfig):
    pass


class NextTokenLoss(Objective):
    """Mean NLL of every predicted token of the batch (each token weighs the same; positions
    labelled -100, i.e. padding, are left out of both the sum and the count)."""

    Config = NextTokenConfig
    description = "causal LM: next-token cross-entropy, padding masked out (label -100)"
    task_kinds = frozenset({CAUSAL_LM})

    def __call__(self, student_logits, teacher_logits, labels):
        predicted = (labels[:, 1:] != IGNORE_INDEX).sum().clamp_min(1)
        return shifted_token_nll(student_logits, labels).sum() / predicted


@hookimpl
def register_objectives(register):
    register("lm", NextTokenLoss)
