"""The reference model of a language-modelling suite: a Hugging Face causal LM (hub id or
path) used as it is. Its row is the base model's perplexity before any adaptation; the
students adapt the same base (``model: teacher``) or learn from its top next tokens at every
position (``objective: token-kd``), and are compared with them token by token. On a
generation task it answers the prompts (greedy, through its chat template where it has one);
students learn from its answers and are compared with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from qcompress import hookimpl
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import (
    GenerationSettings,
    ParameterCounts,
    PluginConfig,
    Responses,
    RunContext,
    TaskData,
    Teacher,
    TokenLosses,
    TopTokens,
    count_parameters,
)
from qcompress.models import model_identity
from qcompress_plugins.bases import generation, language
from qcompress_plugins.kinds import CAUSAL_LM, GENERATION


class CausalLMTeacherConfig(PluginConfig):
    model: str = Field(
        description="a registered model name, a .gguf file, a hub id (e.g. gpt2) or a local "
        "folder of a causal LM"
    )
    max_length: int = Field(
        default=128, ge=8, le=131_072, description="tokens kept per text when scoring",
    )


class CausalLMTeacher(Teacher):
    Config = CausalLMTeacherConfig
    description = "a causal LM as it is (the base the students adapt): the reference perplexity"
    task_kinds = frozenset({CAUSAL_LM, GENERATION})
    columns = language.GENERATION_COLUMNS

    def prepare(self, task: TaskData, context: RunContext) -> None:
        config: CausalLMTeacherConfig = self.config
        self._device = context.device
        self._source = context.resolve_model(config.model)
        self._model, self._tokenizer = language.load_causal_lm(self._source, "teacher")
        self._model.to(self._device).eval()
        identity = model_identity(self._source, context.cache)
        self._fingerprint = fingerprint_of("causal-lm", identity, config.max_length)

    def fingerprint(self) -> str:
        return self._fingerprint

    def token_losses(self, texts: Sequence[str], batch_size: int) -> TokenLosses:
        return language.token_losses(
            self._model, self._tokenizer, texts, batch_size, self.config.max_length, self._device
        )

    def top_tokens(self, texts: Sequence[str], batch_size: int, k: int) -> TopTokens:
        return language.top_tokens(
            self._model, self._tokenizer, texts, batch_size, self.config.max_length,
            self._device, k,
        )

    def generate(
        self, prompts: Sequence[str], batch_size: int, settings: GenerationSettings
    ) -> Responses:
        texts, counts = generation.generate(
            self._model, self._tokenizer, prompts, batch_size, settings, self._device
        )
        return Responses(texts, counts, model=self.config.model)

    def parameter_counts(self) -> ParameterCounts:
        total = count_parameters(self._model)
        return ParameterCounts(trainable=0, inference_total=total)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "architecture": type(self._model).__name__,
            **language.generation_speed(self._model, self._device),
        }

    def encoder_source(self) -> str | None:
        return self._source


@hookimpl
def register_teachers(register):
    register("causal-lm", CausalLMTeacher)


