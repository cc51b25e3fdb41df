"""Frozen Hugging Face encoders (texts -> one pooled vector per text) and the base of every
student that learns on their features (the QD-LLM student and its classical twins).

Features are cached by the run context, so training never reruns the encoder; the encoder itself
is loaded only when something must actually be encoded.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from qcompress import measure
from qcompress.errors import QcompressError
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import (
    Objective,
    ParameterCounts,
    PluginConfig,
    Responses,
    RunContext,
    Split,
    Student,
    Targets,
    TaskData,
    TopTokens,
    TrainReport,
    TrainSettings,
    count_parameters,
)
from qcompress.models import model_identity, pad_with_eos
from qcompress.record import Column
from qcompress.training import train_module

if TYPE_CHECKING:
    from qcompress.cache import Cache

Pooling = Literal["mean", "cls", "last", "last-token"]


class FrozenEncoder:
    """An ``AutoModel`` encoder with a pooling rule.

    ``mean`` averages the hidden states of real tokens; ``cls`` takes the first token;
    ``last-token`` takes each text's last real token (where a decoder LLM has read the whole
    text); ``last`` reproduces the QD-LLM release: texts padded to ``max_length`` and the hidden
    state at the last position taken (usually a padding token). A tokenizer without a padding
    token (most decoder LLMs) pads with its end-of-sequence token.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        pooling: Pooling = "mean",
        max_length: int = 128,
        device: torch.device | str = "cpu",
        cache: Cache | None = None,
    ) -> None:
        self.name_or_path = str(name_or_path)
        self.cache = cache  # remembers the digests of large weight files
        self.pooling = pooling
        self.max_length = max_length
        self.device = torch.device(device)
        self._model: Any = None  # a transformers model, loaded lazily
        self._tokenizer: Any = None

    def fingerprint(self) -> str:
        identity = model_identity(self.name_or_path, self.cache)
        return fingerprint_of("frozen-encoder", identity, self.pooling, self.max_length)

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
        pad_with_eos(self._tokenizer)
        self._tokenizer.padding_side = "right"
        model = AutoModel.from_pretrained(self.name_or_path)
        model.requires_grad_(False)
        self._model = model.eval().to(self.device)

    @property
    def model(self) -> Any:
        self._load()
        return self._model

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def parameter_count(self) -> int:
        return count_parameters(self.model)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Pooled features ``[len(texts), hidden]`` (float32, CPU), in the order given."""
        self._load()
        # Sorting by length keeps padding (and so wasted work) small; the order is restored.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        pooled = torch.empty(len(texts), self.hidden_size)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            pooled[rows] = self._encode_batch([texts[row] for row in rows]).float().cpu()
        return pooled

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        padding = "max_length" if self.pooling == "last" else True
        batch = self._tokenizer(
            texts,
            padding=padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            return hidden[:, -1]
        if self.pooling == "last-token":
            last = batch["attention_mask"].sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


# ---------------------------------------------------------------------------------------------
# Students on frozen features


class FrozenEncoderConfig(PluginConfig):
    """Settings of every student that learns on frozen encoder features."""

    encoder: str = Field(
        default="teacher",
        description="'teacher' (the prepared teacher's own encoder), a registered encoder "
        "name, a hub id or a path",
    )
    pooling: Pooling = "mean"
    max_length: int = Field(default=128, ge=8, le=131_072)


class FrozenFeatureStudent(Student):
    """A student made of a frozen encoder and a trainable head over its pooled features.

    Subclasses build the head (:meth:`build_head`); this class resolves the encoder named in
    the settings (``encoder``), fetches the cached features, trains the head on them, and
    predicts from cached features (evaluation) or from raw texts through the encoder (latency).
    Parameters: the head is trained; the encoder counts in ``inference_total``, because it
    runs at inference (override :meth:`parameter_counts` to name finer parts)."""

    Config = FrozenEncoderConfig
    config: FrozenEncoderConfig
    # The head alone on a precomputed feature vector (no encoder): the student's own cost.
    columns = (Column("details.head_latency_ms", "head ms", "{:.3f}"),)

    def __init__(self, config: FrozenEncoderConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        source = context.resolve_model(config.encoder)
        self.encoder = context.frozen_encoder(source, config.pooling, config.max_length)
        self.head: torch.nn.Module | None = None

    @abstractmethod
    def build_head(self, in_features: int) -> torch.nn.Module:
        """The trainable head over features of width ``in_features``."""

    def features(self, split: Split) -> torch.Tensor:
        return self.context.frozen_features(self.encoder, split)

    def prepare(self, splits: Sequence[Split]) -> None:
        for split in splits:
            self.features(split)

    def fit(
        self,
        train: Split,
        teacher_logits: Targets,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        if train.labels is None or isinstance(teacher_logits, TopTokens | Responses):
            raise QcompressError(
                f"{type(self).__name__} learns from labelled texts and a teacher's class logits"
            )
        features = self.features(train)
        self.head = self.build_head(features.shape[1]).to(self.context.device)
        return train_module(
            self.head,
            features,
            teacher_logits,
            train.labels,
            objective,
            settings,
            self.context.progress,
            description=f"training {self.training_label()}",
        )

    def training_label(self) -> str:
        return type(self).__name__

    def trained_head(self) -> torch.nn.Module:
        if self.head is None:
            raise QcompressError(f"{type(self).__name__}: predict before fit")
        return self.head

    @torch.inference_mode()
    def predict_logits(self, split: Split, batch_size: int) -> torch.Tensor:
        features = self.features(split).to(self.context.device)
        head = self.trained_head()
        chunks = [
            head(features[start : start + batch_size])
            for start in range(0, len(features), batch_size)
        ]
        return torch.cat(chunks).float().cpu()

    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        features = self.encoder.encode(texts, batch_size=max(len(texts), 1))
        return self.trained_head()(features.to(self.context.device)).float().cpu()

    def encoder_parameters(self) -> int:
        return self.encoder.parameter_count()

    def parameter_counts(self) -> ParameterCounts:
        if self.head is None:
            raise QcompressError("parameter_counts() before fit(): the head is not built yet")
        head = count_parameters(self.head, trainable_only=True)
        encoder = self.encoder_parameters()
        return ParameterCounts(
            trainable=head,
            inference_total=encoder + count_parameters(self.head),
            details={"head": count_parameters(self.head), "encoder": encoder},
        )

    def describe(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "encoder": self.config.encoder,
            "encoder_fingerprint": self.encoder.fingerprint(),
        }
        if self.head is not None:
            details["head_latency_ms"] = self.head_latency_ms()
        return details

    @torch.inference_mode()
    def head_latency_ms(self, repeats: int = 50) -> float:
        """Batch-1 latency of the trained head alone on one feature vector, without the
        encoder: the student's own cost (for a simulated quantum circuit, the "quantum-inspired
        classical model" view). The median of ``repeats`` calls after one warm-up, in ms."""
        head = self.trained_head()
        features = self.features(self.task.eval)[:1].to(self.context.device)  # cached
        return measure.latency(lambda _: head(features), [""], repeats, warmup=1)["p50"]
