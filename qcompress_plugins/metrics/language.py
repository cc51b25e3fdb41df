"""Language-modelling metrics from per-text token losses: perplexity and nats per token."""

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
