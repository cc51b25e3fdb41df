"""The generation task kind on a tiny Llama: responses as cached values, prompts through the
chat template, the training batch of sequence-level distillation (loss on the response's
tokens only), the prompt tasks, and a whole identity suite through ``qcompress bench``
(teacher responses cached once, students trained on them, ICE-lite and RSE-lite recorded with
every exchange)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qcompress.interfaces import GenerationSettings, Responses
from qcompress_plugins.bases import generation, language
from qcompress_plugins.bases.language import IGNORE_INDEX
from qcompress_plugins.tasks.prompt_sets import GENERAL_PROMPTS, IDENTITY_QUESTIONS, WRAPPERS
from qcompress_plugins.tasks.prompts import IdentityTask, PromptsTask


def test_responses_survive_the_tensor_cache() -> None:
    responses = Responses(["I am SmolLM. ✓", "", "naïve — ok"], [5, 0, 4], "smollm2-135m-instruct")
    assert Responses.from_tensors(responses.as_tensors()) == responses
    with pytest.raises(ValueError, match="2 responses but 1 counts"):
        Responses(["a", "b"], [1], "m")


def test_the_prompt_sets_are_as_large_as_promised() -> None:
    assert len(IDENTITY_QUESTIONS) >= 40 and len(set(IDENTITY_QUESTIONS)) == len(IDENTITY_QUESTIONS)
    general = [p for prompts in GENERAL_PROMPTS.values() for p in prompts]
    assert len(general) >= 60 and len(set(general)) == len(general)
    assert not set(general) & set(IDENTITY_QUESTIONS)


def test_identity_task_scores_every_question_in_every_wrapper() -> None:
    task = IdentityTask(IdentityTask.Config(name="identity", wrappers=["plain", "role-play"]))
    data = task.load(None)
    assert len(data.eval) == 2 * len(IDENTITY_QUESTIONS)
    assert data.label_names == ["plain", "role-play"]
    assert data.eval.texts[0] == IDENTITY_QUESTIONS[0]
    role_play = data.eval.texts[len(IDENTITY_QUESTIONS)]
    assert IDENTITY_QUESTIONS[0] in role_play and role_play != IDENTITY_QUESTIONS[0]
    assert not set(data.train.texts) & set(data.eval.texts)  # trained on other prompts
    assert data.generation == GenerationSettings()
    assert len(WRAPPERS) >= 4


def test_prompts_task_cuts_every_kind_into_disjoint_parts() -> None:
    data = PromptsTask(PromptsTask.Config(name="prompts", max_new_tokens=32)).load(None)
    assert not set(data.train.texts) & set(data.eval.texts)
    kinds_scored = {data.label_names[label] for label in data.eval.labels.tolist()}
    assert kinds_scored == set(GENERAL_PROMPTS)
    assert data.generation.max_new_tokens == 32
    again = PromptsTask(PromptsTask.Config(name="prompts")).load(None)
    assert again.eval.texts == data.eval.texts  # seeded


def test_the_training_batch_scores_the_response_alone(tiny_llama_dir: Path) -> None:
    _, tokenizer = language.load_causal_lm(str(tiny_llama_dir), "student")
    settings = GenerationSettings()
    prompts, responses = ["the film was", "great"], ["good", "the film was bad"]
    tokens, labels = generation.response_batch(
        tokenizer, prompts, responses, 64, settings, torch.device("cpu")
    )
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        head = tokenizer(generation.prompt_text(tokenizer, prompt, settings),
                         add_special_tokens=False)["input_ids"]  # fmt: skip
        assert generation.prompt_text(tokenizer, prompt, settings).startswith("<|user|> ")
        scored = labels[row][labels[row] != IGNORE_INDEX].tolist()
        expected = tokenizer(response, add_special_tokens=False)["input_ids"]
        assert scored == [*expected, tokenizer.eos_token_id]
        assert (labels[row, : len(head)] == IGNORE_INDEX).all()
    # The shorter row's padding is masked too.
    assert (labels[0][tokens["attention_mask"][0] == 0] == IGNORE_INDEX).all()


def test_greedy_generation_is_the_same_in_any_batch(tiny_llama_dir: Path) -> None:
    model, tokenizer = language.load_causal_lm(str(tiny_llama_dir), "student")
    settings = GenerationSettings(max_new_tokens=5)
    prompts = ["the film was great", "bad", "the story was long and the film was bad"]
    alone = [generation.generate(model, tokenizer, [p], 1, settings, torch.device("cpu"))
             for p in prompts]  # fmt: skip
    together = generation.generate(model, tokenizer, prompts, 3, settings, torch.device("cpu"))
    assert together == ([a[0][0] for a in alone], [a[1][0] for a in alone])
    assert all(0 <= count <= 5 for count in together[1])
    assert tokenizer.padding_side == "right"  # restored


def test_an_identity_suite_runs_end_to_end(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from test_end_to_end import bench_records

    suite = {
        "name": "tiny-identity",
        "device": "cpu",
        "task": {"name": "identity", "wrappers": ["plain", "role-play"], "train_size": 16,
                 "eval_size": 12, "max_new_tokens": 6},
        "teacher": {"name": "causal-lm", "model": str(tiny_llama_dir), "max_length": 64},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.01},
        "students": [
            {"name": "hf", "model": "teacher", "max_length": 96, "label": "full"},
            {"name": "lora", "model": "teacher", "max_length": 96, "rank": 4, "alpha": 8,
             "target_modules": ["q_proj", "v_proj"], "label": "lora"},
            {"name": "pretrained", "model": "teacher", "label": "as-shipped", "seeds": [0]},
        ],
        "metrics": ["ice", "ice_teacher", "rse", "rse_content", "rse_structure", "rse_style"],
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 4},
    }  # fmt: skip
    records = bench_records(tmp_path, suite)
    teacher = records.pop("teacher:causal-lm")
    assert teacher.measured.metrics["rse"] is None  # nothing to compare the teacher with
    assert 0 <= teacher.measured.metrics["ice"] <= 1
    exchanges = teacher.measured.generation["exchanges"]
    assert len(exchanges) == 12
    assert {e["group"] for e in exchanges} <= {"plain", "role-play"}
    assert set(teacher.measured.generation["ice_by_group"]) == {e["group"] for e in exchanges}
    for label, record in records.items():
        assert record.status.value == "ok", (label, record.error)
        metrics = record.measured.metrics
        for name in ("rse", "rse_content", "rse_structure", "rse_style"):
            assert 1 <= metrics[name] <= 5, (label, name)
        assert metrics["ice_teacher"] is None  # adapted from the teacher: the same name
        assert len(record.measured.generation["exchanges"]) == 12
        if label == "as-shipped":  # the teacher itself, untrained: it answers as the teacher
            assert record.measured.params["trainable"] == 0
            assert metrics["rse"] == pytest.approx(5.0)
            continue
        losses = record.measured.train_log["loss_per_epoch"]
        assert losses[-1] < losses[0], label
    # The teacher answered each split once; a second run generates nothing again.
    cached = sorted((tmp_path / "cache" / "teacher-responses").glob("*.pt"))
    assert len(cached) == 2
    stamps = [file.stat().st_mtime_ns for file in cached]
    assert len(bench_records(tmp_path, suite, results="again")) == len(records) + 1
    assert [file.stat().st_mtime_ns for file in cached] == stamps
