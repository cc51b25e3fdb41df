"""How alike two responses to the same prompt are: the judge-free core of RSE-lite (after the
response similarity evaluation of Lee et al. 2025, "Distillation Quantification for Large
Language Models", where a judge LLM scores content, logical structure and style on 1 to 5).

Three granularities, each a similarity in [0, 1] mapped to the paper's scale by
``1 + 4 * similarity`` (identical responses score 5, nothing in common 1):

- **content**: the mean of the cosine of the two responses' sentence embeddings (MiniLM,
  clipped at 0; computed by the caller, :func:`content_similarity`) and ROUGE-L F1 (Google's
  ``rouge-score``, stemmed);
- **structure**: how the responses are laid out: bullet items, numbered steps, paragraphs,
  code blocks, headings and sentences, compared count by count over the features either has
  (:func:`structure_profile`);
- **style**: length in words, formatting (bold, emphasis, exclamations, questions, emoji,
  words in capitals) and the opening (same first word, same kind of opening: a greeting or
  assent such as "Sure!", a restatement, a direct answer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SCALE_LOW, SCALE_HIGH = 1.0, 5.0

BULLET = re.compile(r"^\s*[-*•+]\s+\S", re.MULTILINE)
NUMBERED = re.compile(r"^\s*(?:\d+[.)]|step\s+\d+[:.)]?)\s+\S", re.MULTILINE | re.IGNORECASE)
HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|\*\*[^*\n]+\*\*:?\s*$)", re.MULTILINE)
CODE_FENCE = re.compile(r"```")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
SENTENCE = re.compile(r"[^.!?\n]*[A-Za-z][^.!?\n]*[.!?]+")  # "1." of a list is none
BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
EMPHASIS = re.compile(r"(?<![*\w])\*[^*\n]+\*(?![*\w])|(?<![_\w])_[^_\n]+_(?![_\w])")
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
WORD = re.compile(r"[A-Za-z0-9']+")
CAPS_WORD = re.compile(r"\b[A-Z]{2,}\b")
ASSENT = re.compile(
    r"^(?:sure|certainly|of course|absolutely|great|hello|hi|hey|yes|okay|ok|glad|happy|thank"
    r"|thanks|good question|what a)\b",
    re.IGNORECASE,
)


def to_scale(similarity: float) -> float:
    """[0, 1] -> the paper's 1-5 scale."""
    return SCALE_LOW + (SCALE_HIGH - SCALE_LOW) * min(max(similarity, 0.0), 1.0)


def count_similarity(a: float, b: float) -> float:
    """1 when two counts are equal (both zero included), min / max otherwise."""
    if a == b:
        return 1.0
    return min(a, b) / max(a, b)


def mean_count_similarity(a: dict[str, float], b: dict[str, float]) -> float:
    """The mean :func:`count_similarity` over the features either profile has (a feature
    neither has says nothing about how alike they are); 1 when neither has any."""
    present = [key for key in a if a[key] or b[key]]
    if not present:
        return 1.0
    return sum(count_similarity(a[key], b[key]) for key in present) / len(present)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts (longest common subsequence of stemmed words)."""
    return float(_rouge().score(a, b)["rougeL"].fmeasure)


def content_similarity(a: str, b: str, cosine: float) -> float:
    """The mean of the embeddings' cosine (clipped at 0) and ROUGE-L F1."""
    return (max(cosine, 0.0) + rouge_l(a, b)) / 2


def structure_profile(text: str) -> dict[str, float]:
    fences = len(CODE_FENCE.findall(text))
    return {
        "bullets": len(BULLET.findall(text)),
        "numbered": len(NUMBERED.findall(text)),
        "headings": len(HEADING.findall(text)),
        "code_blocks": fences // 2 + fences % 2,
        "paragraphs": len([p for p in PARAGRAPH_BREAK.split(text.strip()) if p.strip()]),
        "sentences": len(SENTENCE.findall(text)),
    }


def structure_similarity(a: str, b: str) -> float:
    return mean_count_similarity(structure_profile(a), structure_profile(b))


def opening_kind(text: str, prompt: str | None = None) -> str:
    """"assent" (Sure!, Hello, Great question), "restate" (opens with the prompt's first
    words), or "direct"."""
    opening = text.lstrip()
    if ASSENT.match(opening):
        return "assent"
    if prompt is not None:
        prompt_words = WORD.findall(prompt.lower())[:3]
        if prompt_words and WORD.findall(opening.lower())[: len(prompt_words)] == prompt_words:
            return "restate"
    return "direct"


def style_profile(text: str) -> dict[str, float]:
    return {
        "bold": len(BOLD.findall(text)),
        "emphasis": len(EMPHASIS.findall(text)),
        "exclamations": text.count("!"),
        "questions": text.count("?"),
        "emoji": len(EMOJI.findall(text)),
        "caps_words": len(CAPS_WORD.findall(text)),  # shouting and acronyms
    }


def style_similarity(a: str, b: str, prompt: str | None = None) -> float:
    """The mean of the length ratio (words), the formatting profile's similarity and the
    opening's (1 for the same first word, 0.5 for the same kind of opening only)."""
    words_a, words_b = WORD.findall(a), WORD.findall(b)
    length = count_similarity(len(words_a), len(words_b))
    formatting = mean_count_similarity(style_profile(a), style_profile(b))
    first_a = words_a[0].lower() if words_a else ""
    first_b = words_b[0].lower() if words_b else ""
    if first_a == first_b:
        opening = 1.0
    else:
        opening = 0.5 if opening_kind(a, prompt) == opening_kind(b, prompt) else 0.0
    return (length + formatting + opening) / 3


@dataclass(frozen=True)
class ResponseSimilarity:
    """One pair's RSE-lite scores, each on 1-5, and their mean."""

    content: float
    structure: float
    style: float

    @property
    def overall(self) -> float:
        return (self.content + self.structure + self.style) / 3


def response_similarity(
    a: str, b: str, cosine: float, prompt: str | None = None
) -> ResponseSimilarity:
    """RSE-lite of two responses to ``prompt``, given their embeddings' cosine."""
    return ResponseSimilarity(
        content=to_scale(content_similarity(a, b, cosine)),
        structure=to_scale(structure_similarity(a, b)),
        style=to_scale(style_similarity(a, b, prompt)),
    )
