"""Judge-free distillation measures for generative models (after Lee et al. 2025,
"Distillation Quantification for Large Language Models"; docs/generation.md):

- ``ice``: identity consistency, ICE-lite: the share of responses that claim an identity other
  than the model's own (:mod:`qcompress_plugins.identity`; the model's own identity comes from
  its name); for the teacher too;
- ``ice_teacher``: the share of a student's responses claiming its teacher's identity (where
  that is not the student's own);
- ``rse`` and its parts ``rse_content``, ``rse_structure``, ``rse_style``: response
  similarity to the teacher's response to the same prompt, RSE-lite, each on the paper's 1-5
  scale, averaged over prompts (:mod:`qcompress_plugins.similarity`; content uses MiniLM
  sentence embeddings and ROUGE-L). ``None`` for the teacher itself.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from qcompress import hookimpl
from qcompress.interfaces import Metric, Predictions
from qcompress_plugins.identity import claims, identity_table, own_identities
from qcompress_plugins.kinds import GENERATION
from qcompress_plugins.similarity import ResponseSimilarity, response_similarity

EMBEDDING_TOKENS = 256  # response tokens MiniLM reads for the content similarity


def ice(predictions: Predictions) -> float:
    responses = predictions.responses
    assert responses is not None
    table = identity_table()
    own = own_identities(responses.model, table)
    other = [
        any(claim.identity not in own for claim in claims(text, table)) for text in responses.texts
    ]
    return sum(other) / max(len(other), 1)


def ice_teacher(predictions: Predictions) -> float | None:
    responses, teacher = predictions.responses, predictions.teacher_responses
    assert responses is not None
    if teacher is None:
        return None
    table = identity_table()
    theirs = own_identities(teacher.model, table) - own_identities(responses.model, table)
    if not theirs:
        return None  # the student is named as its teacher is: no claim tells them apart
    claiming = [
        any(claim.identity in theirs for claim in claims(text, table)) for text in responses.texts
    ]
    return sum(claiming) / max(len(claiming), 1)


@lru_cache(maxsize=4)
def _scores(
    responses: tuple[str, ...], teacher: tuple[str, ...], prompts: tuple[str, ...]
) -> tuple[ResponseSimilarity, ...]:
    """RSE-lite of every (response, teacher response) pair, embeddings computed once."""
    from qcompress.features import FrozenEncoder
    from qcompress_plugins.models import minilm_path

    encoder = FrozenEncoder(minilm_path(), "mean", EMBEDDING_TOKENS)
    embedded = torch.nn.functional.normalize(encoder.encode([*responses, *teacher]), dim=-1)
    cosines = (embedded[: len(responses)] * embedded[len(responses) :]).sum(-1).tolist()
    return tuple(
        response_similarity(a, b, cosine, prompt)
        for a, b, cosine, prompt in zip(responses, teacher, cosines, prompts, strict=True)
    )


def _mean_part(predictions: Predictions, part: str) -> float | None:
    responses, teacher = predictions.responses, predictions.teacher_responses
    if teacher is None:
        return None
    assert responses is not None and predictions.prompts is not None
    scores = _scores(tuple(responses.texts), tuple(teacher.texts), tuple(predictions.prompts))
    return sum(getattr(score, part) for score in scores) / max(len(scores), 1)


def rse(predictions: Predictions) -> float | None:
    return _mean_part(predictions, "overall")


def rse_content(predictions: Predictions) -> float | None:
    return _mean_part(predictions, "content")


def rse_structure(predictions: Predictions) -> float | None:
    return _mean_part(predictions, "structure")


def rse_style(predictions: Predictions) -> float | None:
    return _mean_part(predictions, "style")


@hookimpl
def register_metrics(register):
    for name, compute, higher, description in (
        ("ice", ice, False, "share of responses claiming another model's identity (ICE-lite)"),
        ("ice_teacher", ice_teacher, False, "share of responses claiming the teacher's identity"),
        ("rse", rse, True, "response similarity to the teacher, 1-5 (RSE-lite, mean of 3)"),
        ("rse_content", rse_content, True, "content similarity: MiniLM cosine and ROUGE-L, 1-5"),
        ("rse_structure", rse_structure, True, "layout similarity (lists, steps, blocks), 1-5"),
        ("rse_style", rse_style, True, "style similarity (length, format, opening), 1-5"),
    ):
        register(
            name,
            Metric(compute, description, higher_is_better=higher, task_kind=GENERATION),
        )
