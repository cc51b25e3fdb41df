"""The ``llm-prompt`` teacher: a causal LLM asked about each text, with no training. Its class
logits are the next-token scores of label words after a prompt, the causal-LM route of the
QD-LLM release.

- The prompt is ``template`` with ``{text}`` and ``{choices}`` filled in ("negative or
  positive"). With a chat template (instruct models; ``chat: auto`` uses one when the tokenizer
  has it) the prompt is the user's turn and the scores are read at the start of the
  assistant's; otherwise the prompt ends in "Answer:".
- ``shots`` examples per class from the training split (seeded) come first: as earlier turns of
  the chat, or as answered prompts.
- A class's score is the log-sum-exp of the logits of its label word's first token in the forms
  the model may start an answer with ("positive", " positive", "Positive", " Positive").
- ``calibrate`` applies contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): the
  class probabilities the prompt gives to content-free texts ("N/A", "", "[MASK]") are
  averaged, and each text's class probabilities are divided by them. It is off by default:
  measured on 120 SST-2 dev texts, zero-shot SmolLM2-135M-Instruct scored 0.658 without it and
  0.567 with it (its content-free lean, 44/56, is not the lean its real answers have).

Texts are cut to ``max_text_tokens`` tokens before they go into the prompt; batches are padded
on the right and read at each prompt's last real token.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import (
    ParameterCounts,
    PluginConfig,
    RunContext,
    TaskData,
    Teacher,
    count_parameters,
)
from qcompress.measure import TokenRate, token_rate_columns
from qcompress.models import model_identity
from qcompress.training import length_buckets
from qcompress_plugins.bases import language
from qcompress_plugins.kinds import CLASSIFICATION

CONTENT_FREE = ("N/A", "", "[MASK]")
DEFAULT_TEMPLATE = "{text}\n\nIs the text above {choices}? Answer with one word."


class LLMPromptConfig(PluginConfig):
    model: str = Field(
        default="smollm2-135m-instruct",
        description="a registered model name, a .gguf file, a folder or a hub id of a causal LLM",
    )
    template: str = Field(
        default=DEFAULT_TEMPLATE,
        min_length=1,
        max_length=10_000,
        description="the question; {text} is the text, {choices} the label words joined by 'or'",
    )
    label_words: list[str] | None = Field(
        default=None, description="one word per class, in class order (default: the class names)"
    )
    shots: int = Field(default=0, ge=0, le=64, description="examples per class before the text")
    chat: Literal["auto", "yes", "no"] = Field(
        default="auto", description="use the tokenizer's chat template (auto: when it has one)"
    )
    calibrate: bool = Field(
        default=False, description="contextual calibration (Zhao et al. 2021)"
    )
    max_text_tokens: int = Field(default=96, ge=1, le=131_072, description="tokens kept per text")
    seed: int = Field(default=0, ge=0, le=4_294_967_295, description="which examples are shown")

    @field_validator("template")
    @classmethod
    def _has_text(cls, template: str) -> str:
        if "{text}" not in template:
            raise ValueError("the template must contain {text}")
        try:
            template.format(text="", choices="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"the template may use only {{text}} and {{choices}} ({error})"
            ) from None
        return template

    @field_validator("label_words")
    @classmethod
    def _words(cls, words: list[str] | None) -> list[str] | None:
        if words is not None and (not words or any(not word.strip() for word in words)):
            raise ValueError("label_words must be non-empty words, one per class")
        return words


class LLMPromptTeacher(Teacher):
    Config = LLMPromptConfig
    description = "a causal LLM prompted about each text; label-word logits, optionally calibrated"
    task_kinds = frozenset({CLASSIFICATION})
    columns = token_rate_columns()

    def prepare(self, task: TaskData, context: RunContext) -> None:
        config: LLMPromptConfig = self.config
        words = config.label_words or task.label_names
        if len(words) != task.num_classes:
            raise QcompressError(
                f"teacher llm-prompt: label_words has {len(words)} words but task "
                f"{task.name!r} has {task.num_classes} classes {task.label_names}"
            )
        self._device = context.device
        self._source = context.resolve_model(config.model)
        start = time.perf_counter()
        self._model, self._tokenizer = language.load_causal_lm(self._source, "teacher")
        self._model.to(self._device).eval()
        self._load_s = time.perf_counter() - start
        self._words = list(words)
        self._chat = config.chat == "yes" or (
            config.chat == "auto" and bool(getattr(self._tokenizer, "chat_template", None))
        )
        if config.chat == "yes" and not getattr(self._tokenizer, "chat_template", None):
            raise QcompressError(f"teacher llm-prompt: {config.model!r} has no chat template")
        self._candidates = [self._word_tokens(word) for word in self._words]
        self._examples = self._pick_examples(task, config.shots, config.seed)
        self._fingerprint = fingerprint_of(
            "llm-prompt",
            model_identity(self._source, context.cache),
            config.model_dump(mode="json", exclude={"model"}),
            self._words,
            self._examples,
        )
        self._rate = TokenRate()
        self._calibration = self._content_free_logprobs() if config.calibrate else None

    # -- prompts --------------------------------------------------------------------------

    def _pick_examples(self, task: TaskData, shots: int, seed: int) -> list[tuple[str, int]]:
        """``shots`` training texts per class, interleaved by class (seeded)."""
        if shots == 0:
            return []
        rows_of: dict[int, list[int]] = {}
        for row, label in enumerate(task.train.labels.tolist()):
            rows_of.setdefault(label, []).append(row)
        rng = random.Random(seed)
        chosen = {
            label: rng.sample(rows, min(shots, len(rows))) for label, rows in rows_of.items()
        }
        examples = []
        for index in range(shots):
            for label in sorted(chosen):
                if index < len(chosen[label]):
                    text = task.train.texts[chosen[label][index]]
                    examples.append((self._cut(text), label))
        return examples

    def _cut(self, text: str) -> str:
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.config.max_text_tokens
        return text if len(ids) <= limit else self._tokenizer.decode(ids[:limit])

    def _question(self, text: str) -> str:
        choices = " or ".join(self._words)
        return self.config.template.format(text=text, choices=choices)

    def prompt(self, text: str) -> str:
        """The full prompt for ``text`` (examples included), ending where the answer starts."""
        if self._chat:
            messages: list[dict[str, str]] = []
            for example, label in self._examples:
                messages.append({"role": "user", "content": self._question(example)})
                messages.append({"role": "assistant", "content": self._words[label]})
            messages.append({"role": "user", "content": self._question(self._cut(text))})
            rendered: str = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return rendered
        answered = [
            f"{self._question(example)}\nAnswer: {self._words[label]}\n\n"
            for example, label in self._examples
        ]
        return "".join(answered) + f"{self._question(self._cut(text))}\nAnswer:"

    def _word_tokens(self, word: str) -> list[int]:
        """First tokens of the forms an answer may start with."""
        forms = {word, f" {word}", word.capitalize(), f" {word.capitalize()}"}
        firsts = set()
        for form in forms:
            ids = self._tokenizer(form, add_special_tokens=False)["input_ids"]
            if ids:
                firsts.add(ids[0])
        return sorted(firsts)

    # -- scoring --------------------------------------------------------------------------

    def _class_logprobs(self, prompts: Sequence[str], batch_size: int) -> torch.Tensor:
        """``[N, C]`` log-probabilities over the classes (label words) after each prompt."""
        scores = torch.empty(len(prompts), len(self._words))
        # Chat-rendered prompts already hold the special tokens (BOS...).
        add_special = not self._chat
        for rows in length_buckets(prompts, batch_size):
            tokens = self._tokenizer(
                [prompts[row] for row in rows],
                padding=True,
                add_special_tokens=add_special,
                return_tensors="pt",
            ).to(self._device)
            with self._rate.batch(len(rows), int(tokens["attention_mask"].sum())):
                logits = language.last_token_logits(self._model, tokens)
                per_class = [logits[:, ids].logsumexp(dim=1) for ids in self._candidates]
                scores[rows] = torch.stack(per_class, dim=1).log_softmax(dim=1).cpu()
        return scores

    def _content_free_logprobs(self) -> torch.Tensor:
        """``[C]``: the log of the mean class probabilities on content-free texts."""
        with torch.inference_mode():
            logprobs = self._class_logprobs([self.prompt(text) for text in CONTENT_FREE], 4)
        return logprobs.exp().mean(dim=0).log()

    @torch.inference_mode()
    def predict_logits(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        logprobs = self._class_logprobs([self.prompt(text) for text in texts], batch_size)
        if self._calibration is not None:
            logprobs = (logprobs - self._calibration).log_softmax(dim=1)
        return logprobs

    # -- the Teacher contract -------------------------------------------------------------

    def fingerprint(self) -> str:
        return self._fingerprint

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(trainable=0, inference_total=count_parameters(self._model))

    def encoder_source(self) -> str | None:
        return self._source

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "model": self.config.model,
            "architecture": type(self._model).__name__,
            "load_s": round(self._load_s, 3),
            "chat_template": self._chat,
            "label_words": self._words,
            "label_tokens": [
                self._tokenizer.convert_ids_to_tokens(ids) for ids in self._candidates
            ],
            "examples": len(self._examples),
            "example_prompt": self.prompt("<text>"),
        }
        if self._calibration is not None:
            facts["content_free_probs"] = [round(p, 4) for p in self._calibration.exp().tolist()]
        # Over every prompt it scored in this run: tokens_per_s, ms_per_text, tokens_per_text.
        return {**facts, **self._rate.summary()}


@hookimpl
def register_teachers(register):
    register("llm-prompt", LLMPromptTeacher)
