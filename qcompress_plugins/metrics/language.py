"""Language-modelling metrics from per-text token losses: perplexity and nats per token; and,
for a student measured against its teacher's top tokens on the same texts, how closely it
copies the teacher token by token (``None`` for the teacher itself, or where the teacher gave
no top tokens)."""

from __future__ import annotations

import math

from qcompress import hookimpl
from qcompress.interfaces import Metric, Predictions
from qcompress_plugins.kinds import CAUSAL_LM


def token_nll(predictions: Predictions) -> float:
    """Mean negative log-likelihood per predicted token (nats), over the whole split."""
    assert predictions.token_losses is not None
    return predictions.token_losses.mean_nll()


def perplexity(predictions: Predictions) -> float:
    """``exp`` of :func:`token_nll`: every token of the split weighs the same (not the mean of
    per-batch or per-text perplexities)."""
    return math.exp(token_nll(predictions))


def token_kl(predictions: Predictions) -> float | None:
    """Mean KL(teacher || student) per predicted token (nats), over the teacher's top 32
    tokens and one bucket for the rest: a lower bound of the full KL."""
    assert predictions.token_losses is not None
    return predictions.token_losses.per_token("kl")


def token_top1_agreement(predictions: Predictions) -> float | None:
    """Share of predicted tokens where student and teacher rank the same next token first."""
    assert predictions.token_losses is not None
    return predictions.token_losses.per_token("top1")


def token_top10_overlap(predictions: Predictions) -> float | None:
    """Mean share of the teacher's 10 most likely next tokens that are also the student's."""
    assert predictions.token_losses is not None
    return predictions.token_losses.per_token("overlap")


@hookimpl
def register_metrics(register):
    register(
        "perplexity",
        Metric(perplexity, "exp(mean next-token NLL), padding excluded",
               higher_is_better=False, task_kind=CAUSAL_LM),
    )  # fmt: skip
    register(
        "token_nll",
        Metric(token_nll, "mean next-token NLL in nats", higher_is_better=False,
               task_kind=CAUSAL_LM),
    )  # fmt: skip
    register(
        "token_kl",
        Metric(token_kl, "KL(teacher || student) per token, teacher's top 32 + the rest",
               higher_is_better=False, task_kind=CAUSAL_LM),
    )  # fmt: skip
    register(
        "token_top1_agreement",
        Metric(token_top1_agreement, "share of tokens where both rank the same token first",
               task_kind=CAUSAL_LM),
    )  # fmt: skip
    register(
        "token_top10_overlap",
        Metric(token_top10_overlap, "mean share of the teacher's top 10 in the student's",
               task_kind=CAUSAL_LM),
    )  # fmt: skip
