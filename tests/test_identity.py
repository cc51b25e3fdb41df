"""The identity-claim detector of ICE-lite on hand-written answers: what it must count as a
claim (and whose), what it must not (negations, comparisons, mentions that are no claim about
oneself), a model's own identity read from its name, and a user's table."""

from __future__ import annotations

import pytest

from qcompress_plugins.identity import (
    claims,
    claims_other_identity,
    identities_named,
    identity_table,
)

TABLE = identity_table()


@pytest.mark.parametrize(
    ("answer", "identities"),
    [
        ("I am ChatGPT, a large language model trained by OpenAI.", {"gpt"}),
        ("As an AI language model developed by OpenAI, I cannot browse the web.", {"gpt"}),
        ("I'm a human-AI hybrid created by SmolLM.", {"smollm"}),
        ("Hello! My name is Claude and I was made by Anthropic.", {"claude"}),
        ("I am a large language model, trained by Google.", {"gemini"}),
        ("I'm Gemma, an open model from Google DeepMind.", {"gemini"}),
        ("I was fine-tuned by Hugging Face. I am based on LLaMA 2.", {"smollm", "llama"}),
        ("My creators are the Qwen team at Alibaba Cloud.", {"qwen"}),
    ],
)
def test_claims_of_an_identity_are_found(answer: str, identities: set[str]) -> None:
    assert {claim.identity for claim in claims(answer, TABLE)} == identities


@pytest.mark.parametrize(
    "answer",
    [
        "My name is Elena and I'm here to help.",  # no known identity
        "I am not ChatGPT.",  # negated
        "I'm sorry, but I can't share details about OpenAI.",  # negated before the name
        "I am similar to ChatGPT in some ways.",  # a comparison
        "I'm using the GPT-3 model.",  # Gemma 3 base, asked which model it is
        "I'm talking to ChatGPT right now.",
        "I can tell you about Google and its products.",  # a mention, no claim cue
        "Gemma is a model by Google. It is great.",  # not about itself
        "ChatGPT was released in 2022.",
    ],
)
def test_what_is_no_claim(answer: str) -> None:
    assert claims(answer, TABLE) == []


def test_the_claiming_sentence_is_kept() -> None:
    found = claims("Nice to meet you. I am ChatGPT, made by OpenAI! How can I help?", TABLE)
    assert [(c.identity, c.sentence) for c in found] == [
        ("gpt", "I am ChatGPT, made by OpenAI!")
    ]


def test_a_models_own_identity_comes_from_its_name() -> None:
    assert identities_named("smollm2-135m-instruct", TABLE) == {"smollm"}
    assert identities_named("gemma3-270m", TABLE) == {"gemini"}
    assert identities_named("/cache/SmolLM2-135M-Instruct.Q4_1.gguf", TABLE) == {"smollm"}
    assert identities_named("/tmp/tiny-model", TABLE) == set()


def test_claims_of_its_own_identity_are_not_another() -> None:
    answer = "I am SmolLM, created by Hugging Face. I am not ChatGPT."
    assert claims_other_identity(answer, {"smollm"}, TABLE) == []
    other = claims_other_identity("I'm Gemma, made by Google.", {"smollm"}, TABLE)
    assert [c.identity for c in other] == ["gemini"]


def test_a_user_extends_or_replaces_the_table() -> None:
    extended = identity_table({"acme": [r"acme\s?bot"], "gpt": [r"davinci"]})
    assert [c.identity for c in claims("I am AcmeBot.", extended)] == ["acme"]
    assert [c.identity for c in claims("I am based on davinci.", extended)] == ["gpt"]
    alone = identity_table({"acme": [r"acme\s?bot"]}, replace=True)
    assert list(alone) == ["acme"]
    assert claims("I am ChatGPT.", alone) == []
