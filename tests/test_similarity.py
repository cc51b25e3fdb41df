"""RSE-lite's components against hand computations: identical responses score 5 at every
granularity, unrelated ones low; the structure and style profiles of written examples; the
mapping to the paper's 1-5 scale."""

from __future__ import annotations

import pytest

from qcompress_plugins.similarity import (
    count_similarity,
    opening_kind,
    response_similarity,
    rouge_l,
    structure_profile,
    structure_similarity,
    style_profile,
    style_similarity,
    to_scale,
)

LISTED = """Sure! Here are three steps:

1. Preheat the oven.
2. Mix the flour and eggs.
3. Bake for **20 minutes**.

Enjoy your cake!"""

PLAIN = "The capital of France is Paris. It lies on the Seine."


def test_the_scale_maps_zero_to_one_and_one_to_five() -> None:
    assert [to_scale(s) for s in (0.0, 0.5, 1.0, -0.3, 1.7)] == [1.0, 3.0, 5.0, 1.0, 5.0]


def test_counts_compare_by_their_ratio() -> None:
    assert count_similarity(0, 0) == 1.0
    assert count_similarity(2, 4) == 0.5
    assert count_similarity(0, 3) == 0.0


def test_identical_responses_score_five_everywhere() -> None:
    for text in (LISTED, PLAIN):
        scores = response_similarity(text, text, cosine=1.0, prompt="How do I bake a cake?")
        assert (scores.content, scores.structure, scores.style, scores.overall) == (5, 5, 5, 5)


def test_unrelated_responses_score_low() -> None:
    scores = response_similarity(LISTED, PLAIN, cosine=0.05)
    assert scores.content < 1.5
    assert scores.structure < 2.5
    assert scores.overall < 2.5


def test_rouge_l_by_hand() -> None:
    # LCS of "the cat sat on the mat" / "the cat was on the mat": 5 of 6 words each way.
    assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    assert rouge_l("alpha beta", "gamma delta") == 0.0


def test_structure_profile_of_a_listed_answer() -> None:
    assert structure_profile(LISTED) == {
        "bullets": 0, "numbered": 3, "headings": 0, "code_blocks": 0, "paragraphs": 3,
        "sentences": 5,
    }  # fmt: skip
    assert structure_profile("```python\nprint(1)\n```\n- a\n- b\n# Title") == {
        "bullets": 2, "numbered": 0, "headings": 1, "code_blocks": 1, "paragraphs": 1,
        "sentences": 0,
    }  # fmt: skip


def test_structure_similarity_by_hand() -> None:
    # Two bullets against four, one paragraph each; features neither has are left out.
    two, four = "- a\n- b", "- a\n- b\n- c\n- d"
    assert structure_similarity(two, four) == pytest.approx((0.5 + 1.0) / 2)
    assert structure_similarity("", "") == 1.0


def test_style_profile_and_similarity_by_hand() -> None:
    assert style_profile("Wow!! **Bold** and *soft* 🎉") == {
        "bold": 1, "emphasis": 1, "exclamations": 2, "questions": 0, "emoji": 1,
        "caps_words": 0,
    }  # fmt: skip
    assert style_profile("NASA said NO.")["caps_words"] == 2
    # Same first word ("sure"), 2 words against 4, one "!" against none (the only format).
    similarity = style_similarity("Sure thing!", "Sure, here it is.")
    assert similarity == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_kinds_of_opening() -> None:
    assert opening_kind("Certainly! Paris.") == "assent"
    assert opening_kind("The capital of France is Paris.", "The capital of France?") == "restate"
    assert opening_kind("Paris.", "The capital of France?") == "direct"
    # Different first words, same kind of opening: half the opening's score.
    assert style_similarity("Sure.", "Certainly.") == pytest.approx((1 + 1 + 0.5) / 3)
