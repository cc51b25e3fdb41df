"""The LLM teachers on tiny Llama and Gemma 3 models built from configs (no packaged weights):
the prompt route (label-word logits, chat template, few-shot, calibration) and the LoRA route
(fine-tuned once into the cache as an adapter, merged on load), padding on either side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qcompress.cache import Cache
from qcompress.context import LocalRunContext
from qcompress.errors import QcompressError
from qcompress.interfaces import TaskData
from qcompress.progress import ProgressReporter
from qcompress_plugins.tasks.glue import SST2
from qcompress_plugins.teachers.llm_lora import LLMLoRATeacher
from qcompress_plugins.teachers.llm_prompt import LLMPromptTeacher


@pytest.fixture
def task(tiny_glue_dir: Path) -> TaskData:
    return SST2(SST2.Config(name="sst2", train_size=48)).load(tiny_glue_dir)


@pytest.fixture
def context(tmp_path: Path) -> LocalRunContext:
    return LocalRunContext(
        cache=Cache(tmp_path / "cache"), progress=ProgressReporter(enabled=False)
    )


@pytest.fixture(params=["llama", "gemma3"])
def decoder_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{request.param}_dir")


def prompt_teacher(model: Path, **settings) -> LLMPromptTeacher:
    return LLMPromptTeacher(LLMPromptTeacher.Config(model=str(model), **settings))


def lora_teacher(model: Path, **settings) -> LLMLoRATeacher:
    settings = {"epochs": 1, "batch_size": 8, "lora_rank": 2, **settings}
    return LLMLoRATeacher(LLMLoRATeacher.Config(model=str(model), **settings))


def assert_padding_changes_nothing(teacher, task: TaskData) -> None:
    """A short text batched with a long one (so padded) gets the logits it gets alone."""
    texts = [task.eval.texts[0], task.eval.texts[1] + " and the plot was dull and tedious ."]
    together = teacher.predict_logits(texts, batch_size=2)
    alone = torch.cat([teacher.predict_logits([text], batch_size=1) for text in texts])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


# -- the prompt route ---------------------------------------------------------------------------


def test_prompt_teacher_gives_class_log_probabilities(
    decoder_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = prompt_teacher(decoder_dir)
    teacher.prepare(task, context)
    logits = teacher.predict_logits(task.eval.texts, batch_size=8)
    assert logits.shape == (len(task.eval), 2)
    torch.testing.assert_close(logits.exp().sum(dim=1), torch.ones(len(task.eval)))
    facts = teacher.describe()
    assert facts["chat_template"] is True  # the tokenizer has one and chat is "auto"
    assert facts["example_prompt"].startswith("<|user|>")
    assert facts["example_prompt"].endswith("<|assistant|> ")
    # Each form of the word that the vocabulary has (a word-level one: no " negative").
    assert [set(tokens) for tokens in facts["label_tokens"]] == [
        {"negative", "Negative"}, {"positive", "Positive"}
    ]
    counts = teacher.parameter_counts()
    assert counts.trainable == 0 and counts.inference_total > 0
    # Its own speed over the prompts it scored: every text, every real token.
    prompts = teacher._tokenizer(
        [teacher.prompt(text) for text in task.eval.texts], add_special_tokens=False
    )["input_ids"]
    assert facts["texts_timed"] == len(task.eval)
    assert facts["tokens_per_text"] == round(sum(map(len, prompts)) / len(prompts), 1)
    assert facts["tokens_per_s"] > 0 and facts["ms_per_text"] > 0


def test_prompt_batches_match_one_text_at_a_time(
    decoder_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    """Right padding read at the last real token: a text's logits do not depend on the longer
    texts it is batched with."""
    teacher = prompt_teacher(decoder_dir)
    teacher.prepare(task, context)
    assert_padding_changes_nothing(teacher, task)


def test_calibration_removes_the_lean_of_content_free_texts(
    tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    raw = prompt_teacher(tiny_llama_dir)
    raw.prepare(task, context)
    calibrated = prompt_teacher(tiny_llama_dir, calibrate=True)
    calibrated.prepare(task, context)
    # On the content-free texts themselves, calibrated probabilities are uniform on average.
    free = calibrated._content_free_logprobs()
    assert not torch.allclose(free.exp(), torch.full((2,), 0.5), atol=1e-3)  # it did lean
    adjusted = (torch.stack([free]) - calibrated._calibration).softmax(dim=1)
    torch.testing.assert_close(adjusted, torch.full((1, 2), 0.5))
    # And calibration changes the teacher's identity (its logits are cached apart).
    assert raw.fingerprint() != calibrated.fingerprint()
    assert "content_free_probs" in calibrated.describe()
    assert "content_free_probs" not in raw.describe()


def test_few_shot_examples_come_first_balanced_and_seeded(
    tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = prompt_teacher(tiny_llama_dir, shots=2, chat="no")
    teacher.prepare(task, context)
    prompt = teacher.prompt("the film was great .")
    assert prompt.count("Answer:") == 5 and prompt.endswith("Answer:")  # 2 per class + the text
    assert prompt.count("Answer: negative") == 2 and prompt.count("Answer: positive") == 2
    again = prompt_teacher(tiny_llama_dir, shots=2, chat="no")
    again.prepare(task, context)
    assert again.prompt("x") == teacher.prompt("x")
    other_seed = prompt_teacher(tiny_llama_dir, shots=2, chat="no", seed=1)
    other_seed.prepare(task, context)
    assert other_seed.prompt("x") != teacher.prompt("x")
    assert other_seed.fingerprint() != teacher.fingerprint()


def test_prompt_settings_are_checked(tiny_llama_dir: Path, task: TaskData, context) -> None:
    with pytest.raises(ValueError, match=r"must contain \{text\}"):
        LLMPromptTeacher.Config(template="no placeholder")
    with pytest.raises(ValueError, match=r"only \{text\} and \{choices\}"):
        LLMPromptTeacher.Config(template="{text} {label}")
    teacher = prompt_teacher(tiny_llama_dir, label_words=["a", "b", "c"])
    with pytest.raises(QcompressError, match="3 words but task 'sst2' has 2 classes"):
        teacher.prepare(task, context)


def test_texts_are_cut_before_they_enter_the_prompt(
    tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = prompt_teacher(tiny_llama_dir, max_text_tokens=3, chat="no")
    teacher.prepare(task, context)
    prompt = teacher.prompt("the film was truly great .")
    assert "the film was\n" in prompt and "truly" not in prompt


# -- the LoRA route -----------------------------------------------------------------------------


def test_lora_teacher_is_fine_tuned_once_and_reloaded_from_its_adapter(
    decoder_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    first = lora_teacher(decoder_dir)
    first.prepare(task, context)
    logits = first.predict_logits(task.eval.texts, batch_size=8)
    assert logits.shape == (len(task.eval), 2) and torch.isfinite(logits).all()
    assert [(kind, hit) for kind, _, hit in context.cache.events] == [("teachers", False)]
    assert first.encoder_source() == str(decoder_dir)  # the frozen base, not the adapter
    entry = Path(context.cache.root / "teachers")
    saved = {path.name for path in next(entry.iterdir()).iterdir()}
    assert "adapter_config.json" in saved and "model.safetensors" not in saved  # adapter only
    info = first.describe()
    counts = first.parameter_counts()
    assert 0 < counts.trainable == info["trainable_params"] < counts.inference_total
    assert info["texts_timed"] == len(task.eval) and info["tokens_per_s"] > 0

    second = lora_teacher(decoder_dir)
    second.prepare(task, context)
    assert context.cache.events[-1][2] is True  # a hit: nothing trained again
    assert second.fingerprint() == first.fingerprint()
    torch.testing.assert_close(second.predict_logits(task.eval.texts, batch_size=8), logits)


def test_lora_teacher_learns_the_task(
    tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = lora_teacher(tiny_llama_dir, epochs=15, lr=3e-2)
    teacher.prepare(task, context)
    predicted = teacher.predict_logits(task.eval.texts, batch_size=8).argmax(dim=1)
    accuracy = (predicted == task.eval.labels).float().mean().item()
    assert accuracy >= 0.85, accuracy  # the tiny data are separable by vocabulary (0.925 seen)
    losses = teacher.describe()["loss_per_epoch"]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("side", ["left", "right"])
def test_lora_teacher_reads_the_last_real_token_whichever_side_pads(
    side: str, tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = lora_teacher(tiny_llama_dir)
    teacher.prepare(task, context)
    teacher._tokenizer.padding_side = side
    assert_padding_changes_nothing(teacher, task)


def test_lora_targets_that_do_not_exist_are_named(
    tiny_llama_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    teacher = lora_teacher(tiny_llama_dir, target_modules=["query", "value"])
    with pytest.raises(QcompressError, match=r"target_modules \['query', 'value'\] do not fit"):
        teacher.prepare(task, context)


# -- an LLM as a frozen encoder -----------------------------------------------------------------


def test_llm_features_read_each_texts_last_real_token(decoder_dir: Path, task: TaskData) -> None:
    """``pooling: last-token`` on a decoder whose tokenizer has no padding token: it pads with
    end-of-sequence, and a text's features do not depend on what it is batched with."""
    from qcompress.features import FrozenEncoder

    encoder = FrozenEncoder(decoder_dir, pooling="last-token", max_length=32)
    texts = [task.eval.texts[0], task.eval.texts[1] + " and the plot was dull and tedious ."]
    together = encoder.encode(texts, batch_size=2)
    alone = torch.cat([encoder.encode([text], batch_size=1) for text in texts])
    assert together.shape == (2, 32)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
