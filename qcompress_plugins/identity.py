"""Who a model says it is: a pattern-based detector of identity claims, the judge-free core of
ICE-lite (after the identity consistency evaluation of Lee et al. 2025, "Distillation
Quantification for Large Language Models", which asks a judge LLM instead).

An *identity* is a model family and its maker (``smollm``: SmolLM by Hugging Face; ``gpt``:
ChatGPT / GPT-n by OpenAI; ...), each with regular expressions for its names. A sentence
*claims* an identity when it speaks in the first person and a claim cue ("I am", "my name is",
"trained by", "based on", "my creators") comes before a name of that identity, with no
negation before the name ("I am not ChatGPT", "I can't speak for OpenAI") and no comparison
between cue and name ("I am similar to ChatGPT"), nor another relation to the model than being
it ("I'm using the GPT-3 model"). "I can tell you about Google" is no claim.
A model's own identity is found by the same table in its name (``smollm2-135m-instruct`` is
``smollm``), so "claims another identity" needs no setting.
Users extend or replace the table (:func:`identity_table`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qcompress.interfaces import Responses

# identity -> the patterns of its names and its maker's (case-insensitive, word-bounded).
IDENTITIES: dict[str, tuple[str, ...]] = {
    "smollm": (r"smol\s?lm\w*", r"hugging\s?face"),
    "gpt": (r"chat\s?gpt", r"gpt-?\d\w*", r"gpt", r"open\s?ai"),
    "claude": (r"claude", r"anthropic"),
    "gemini": (
        r"gemini", r"gemma\w*", r"bard", r"palm\s?\d?", r"lamda", r"google", r"deep\s?mind"
    ),
    "llama": (r"llama\s?\d?\w*", r"meta(?:\s?ai)?", r"facebook"),
    "qwen": (r"qwen\w*", r"tongyi(?:\s?qianwen)?", r"alibaba"),
    "mistral": (r"mistral\w*", r"mixtral\w*"),
    "phi": (r"phi-?\d\w*", r"microsoft"),
    "deepseek": (r"deep\s?seek\w*",),
    "ernie": (r"ernie(?:\s?bot)?", r"baidu"),
    "glm": (r"chat\s?glm\w*", r"glm-?\d\w*", r"zhipu"),
    "falcon": (r"falcon", r"technology innovation institute"),
    "grok": (r"grok", r"xai"),
    "vicuna": (r"vicuna", r"lmsys"),
    "olmo": (r"olmo\w*", r"allen institute", r"ai2"),
}

FIRST_PERSON = re.compile(r"\b(?:i|i['’]m|im|me|my|myself|i['’]ve)\b", re.IGNORECASE)
# What introduces a claim about oneself; the identity's name must come after one.
CLAIM_CUE = re.compile(
    r"\bi\s+am\b|\bi['’]m\b|\bim\b|\bmy\s+name\b|\bcall\s+me\b|\bi\s+was\b"
    r"|\bi\s+have\s+been\b|\bi['’]ve\s+been\b|\bi\s+(?:come|came)\s+from\b"
    r"|\b(?:created|developed|trained|built|made|designed|programmed|released|fine-?tuned"
    r"|owned|powered)\s+by\b|\bbased\s+on\b|\bversion\s+of\b"
    r"|\bmy\s+(?:creators?|developers?|makers?|company|model|architecture|training)\b",
    re.IGNORECASE,
)
NEGATION = re.compile(r"\b(?:not|never|no|nor|neither|cannot)\b|n['’]t\b", re.IGNORECASE)
# Between cue and name: a comparison ("I am similar to ChatGPT") or another relation to the
# named model than being it ("I'm using the GPT-3 model", "I'm talking to ChatGPT").
COMPARISON = re.compile(
    r"\b(?:like|unlike|similar|such\s+as|compared|than|versus|vs|other|others|using|uses?|used"
    r"|talking|asking|ask|prefer|love|try|tried|trying|know|about)\b",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Claim:
    """One identity a response claims, and the sentence that claims it."""

    identity: str
    sentence: str


def identity_table(
    extra: Mapping[str, Iterable[str]] | None = None, replace: bool = False
) -> dict[str, re.Pattern[str]]:
    """Compiled patterns per identity: the built-in table with ``extra`` identities (or more
    patterns for a known one) added, or ``extra`` alone with ``replace``."""
    table: dict[str, list[str]] = {} if replace else {k: list(v) for k, v in IDENTITIES.items()}
    for identity, patterns in (extra or {}).items():
        table.setdefault(identity, []).extend(patterns)
    return {
        identity: re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.IGNORECASE)
        for identity, patterns in table.items()
    }


def identities_named(text: str, table: Mapping[str, re.Pattern[str]]) -> set[str]:
    """The identities whose names occur in ``text`` (e.g. a model's name or path)."""
    spaced = re.sub(r"[_/]", " ", text)  # "gemma3-270m" stays one name; paths split
    return {identity for identity, pattern in table.items() if pattern.search(spaced)}


def claims(response: str, table: Mapping[str, re.Pattern[str]]) -> list[Claim]:
    """The identities ``response`` claims for itself, one per (identity, sentence)."""
    found = []
    for sentence in SENTENCE_END.split(response):
        sentence = sentence.strip()
        if not sentence or not FIRST_PERSON.search(sentence):
            continue
        for identity, pattern in table.items():
            if any(_claimed(sentence, match) for match in pattern.finditer(sentence)):
                found.append(Claim(identity, sentence))
    return found


def _claimed(sentence: str, name: re.Match[str]) -> bool:
    before = sentence[: name.start()]
    cues = list(CLAIM_CUE.finditer(before))
    if not cues or NEGATION.search(before):
        return False
    return not COMPARISON.search(before[cues[-1].end() :])


def claims_other_identity(
    response: str, own: set[str], table: Mapping[str, re.Pattern[str]]
) -> list[Claim]:
    """The claims of ``response`` to an identity that is not among ``own``."""
    return [claim for claim in claims(response, table) if claim.identity not in own]


def own_identities(model: str, table: Mapping[str, re.Pattern[str]]) -> set[str]:
    """The identities a model may claim as its own: those its name names."""
    return identities_named(model, table)


def exchange_facts(
    prompts: Sequence[str],
    groups: Sequence[str] | None,
    responses: Responses,
    teacher: Responses | None,
) -> dict[str, Any]:
    """Every exchange of a generation evaluation for the record (prompt, group, response,
    tokens, and the identities it claims with the sentences that claim them), the model's own
    identities and the teacher's, and the share of responses claiming another identity per
    group (e.g. per wrapper of the identity questions)."""
    table = identity_table()
    own = own_identities(responses.model, table)
    groups = list(groups) if groups is not None else ["all"] * len(prompts)
    exchanges, other_by_group = [], {}
    for prompt, group, response, tokens in zip(
        prompts, groups, responses.texts, responses.new_tokens, strict=True
    ):
        found = claims(response, table)
        exchanges.append({
            "prompt": prompt, "group": group, "response": response, "tokens": tokens,
            "claims": [[claim.identity, claim.sentence] for claim in found],
        })  # fmt: skip
        other = any(claim.identity not in own for claim in found)
        other_by_group.setdefault(group, []).append(other)
    return {
        "own_identity": sorted(own),
        "teacher_identity": sorted(own_identities(teacher.model, table)) if teacher else None,
        "ice_by_group": {g: round(sum(v) / len(v), 6) for g, v in other_by_group.items()},
        "exchanges": exchanges,
    }
