"""Transformer students fine-tuned end to end on the task's texts against the teacher:

- ``hf``: any ``AutoModelForSequenceClassification`` by hub id or local path (TinyBERT,
  DistilBERT, a small BERT...), a new classification head for the task's classes.
- ``distil``: DistilBERT's recipe (Sanh et al. 2019) applied to the run's own teacher: a copy of
  the fine-tuned teacher that keeps every other layer (or the layers listed), trained with the
  objective and, optionally, TinyBERT-style intermediate matching (Jiao et al. 2020): the mean
  squared error between the student's hidden states and attention maps and those of the teacher
  layers they came from, weighted by ``intermediate``.

Both train with AdamW, 10% linear warm-up then linear decay, on length-bucketed batches; the
learning rate, epochs and batch size come from the suite's ``train`` block. Every weight is
trained and counted; nothing else runs at inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import (
    Objective,
    ParameterCounts,
    PluginConfig,
    RunContext,
    Split,
    Student,
    TaskData,
    TokenLosses,
    TrainReport,
    TrainSettings,
    count_parameters,
)
from qcompress.training import Optimization, length_buckets, shuffled_buckets, train_loop
from qcompress_plugins import language
from qcompress_plugins.kinds import CAUSAL_LM, CLASSIFICATION

WARMUP_FRACTION = 0.1
# An extra loss on one batch: (the student's outputs, the batch's tokens) -> a scalar.
ExtraLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


class FinetunedConfig(PluginConfig):
    max_length: int = Field(default=64, ge=8, description="tokens kept per text")


class HFStudentConfig(FinetunedConfig):
    model: str = Field(
        description="hub id or local folder ('minilm': the packaged MiniLM; 'teacher': the "
        "teacher's own model)"
    )


class DistilConfig(FinetunedConfig):
    keep: Literal["every-other"] | list[int] = Field(
        default="every-other", description="teacher layers the student keeps (0-based)"
    )
    intermediate: float = Field(
        default=0.0, ge=0, description="weight of hidden-state + attention matching (0: off)"
    )


class FinetunedStudent(Student):
    """Holds a Hugging Face model and its tokenizer; trains and predicts from texts. On a
    classification task the model is a sequence classifier; on a causal-lm task, a causal LM
    trained on next-token prediction with padding masked out."""

    task_kinds = frozenset({CLASSIFICATION, CAUSAL_LM})

    def __init__(self, config: FinetunedConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.model: torch.nn.Module | None = None
        self.tokenizer: Any = None

    @property
    def language(self) -> bool:
        return self.task.kind == CAUSAL_LM

    def load_model(self, source: str, **options: Any) -> tuple[torch.nn.Module, Any]:
        """The model to train (a classifier with a new head, or a causal LM) and its tokenizer."""
        if self.language:
            return language.load_causal_lm(source, "student")
        return load_classifier(source, self.task.num_classes, **options)

    def batch_loss(
        self,
        rows: list[int],
        train: Split,
        teacher_logits: torch.Tensor | None,
        objective: Objective,
        extra_loss: ExtraLoss | None,
    ) -> torch.Tensor:
        """The objective on one batch of training rows (plus ``extra_loss``, if any)."""
        texts = [train.texts[row] for row in rows]
        device = self.context.device
        if self.language:
            tokens, labels = language.lm_batch(
                self.tokenizer, texts, self.config.max_length, device
            )
            return objective(self.model(**tokens).logits, None, labels)
        tokens = self.tokenize(texts)
        outputs = self.model(
            **tokens,
            output_hidden_states=extra_loss is not None,
            output_attentions=extra_loss is not None,
        )
        loss = objective(
            outputs.logits, teacher_logits[rows].to(device), train.labels[rows].to(device)
        )
        return loss if extra_loss is None else loss + extra_loss(outputs, tokens)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        ).to(self.context.device)

    def train_model(
        self,
        train: Split,
        teacher_logits: torch.Tensor | None,
        objective: Objective,
        settings: TrainSettings,
        extra_loss: ExtraLoss | None = None,
    ) -> TrainReport:
        model = self.model
        assert model is not None
        trainable = [p for p in model.parameters() if p.requires_grad]
        trainable += list(self.extra_trainable())

        def batch_loss(rows: Sequence[int]) -> torch.Tensor:
            with self.forward_pass():
                return self.batch_loss(list(rows), train, teacher_logits, objective, extra_loss)

        return train_loop(
            [model],
            trainable,
            settings.epochs,
            math.ceil(len(train) / settings.batch_size),
            shuffled_buckets(train.texts, settings.batch_size),
            batch_loss,
            Optimization(
                lr=settings.lr,
                weight_decay=settings.weight_decay,
                optimizer="adamw",
                warmup_fraction=WARMUP_FRACTION,
            ),
            self.context.progress,
            f"training {type(self).__name__}",
        )

    def extra_trainable(self) -> Iterator[torch.nn.Parameter]:
        """Parameters trained beside the model's own (e.g. a generator of its weights)."""
        return iter(())

    def forward_pass(self) -> AbstractContextManager[Any]:
        """Wraps every training forward pass (e.g. to generate weights once per pass)."""
        return nullcontext()

    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        if self.language:
            return language.next_token_logits(
                self.model, self.tokenizer, texts, self.config.max_length, self.context.device
            )
        return self.model(**self.tokenize(texts)).logits.float().cpu()

    def token_losses(self, split: Split, batch_size: int) -> TokenLosses:
        return language.token_losses(
            self.model,
            self.tokenizer,
            split.texts,
            batch_size,
            self.config.max_length,
            self.context.device,
        )

    def predict_logits(self, split: Split, batch_size: int) -> torch.Tensor:
        logits = torch.empty(len(split), self.task.num_classes)
        for rows in length_buckets(split.texts, batch_size):
            logits[rows] = self.predict_texts([split.texts[row] for row in rows])
        return logits

    def parameter_counts(self) -> ParameterCounts:
        total = count_parameters(self.model)
        return ParameterCounts(trainable=total, inference_total=total)

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return {"layers": getattr(config, "num_hidden_layers", None),
                "hidden_size": getattr(config, "hidden_size", None)}


def load_classifier(source: str, classes: int, **options: Any) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=classes, ignore_mismatched_sizes=True, **options
        )
    except OSError as error:
        raise QcompressError(f"cannot load student model {source!r}: {error}") from None
    return model, tokenizer


class HFStudent(FinetunedStudent):
    Config = HFStudentConfig
    description = "any Hugging Face sequence classifier (hub id or path), fine-tuned on the task"

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        source = self.context.resolve_encoder(self.config.model)
        self.model, self.tokenizer = self.load_model(source)
        self.model.to(self.context.device)
        return self.train_model(train, teacher_logits, objective, settings)

    def describe(self) -> dict[str, Any]:
        return {"model": self.config.model, **super().describe()}


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a BERT-like encoder."""
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise QcompressError(
            f"student distil: {type(model).__name__} has no BERT-like encoder.layer list to "
            "take layers from; use a BERT-like teacher, or the 'hf' student"
        )
    return layers


class DistilStudent(FinetunedStudent):
    Config = DistilConfig
    description = "the teacher with every other layer kept (DistilBERT), KD + optional TinyBERT"
    task_kinds = frozenset({CLASSIFICATION})

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        config: DistilConfig = self.config
        source = self.context.resolve_encoder("teacher")
        matching = config.intermediate > 0
        options = {"attn_implementation": "eager"} if matching else {}
        student, self.tokenizer = load_classifier(source, self.task.num_classes, **options)
        layers = transformer_layers(student)
        keep = list(range(0, len(layers), 2)) if config.keep == "every-other" else config.keep
        if not keep or any(not 0 <= index < len(layers) for index in keep):
            raise QcompressError(
                f"student distil: keep must list layers 0..{len(layers) - 1}, got {keep}"
            )
        self.kept = keep
        student.base_model.encoder.layer = torch.nn.ModuleList(layers[index] for index in keep)
        student.config.num_hidden_layers = len(keep)
        self.model = student.to(self.context.device)
        extra = None
        if matching:
            # A frozen copy of the whole teacher gives the targets of the kept layers.
            teacher, _ = load_classifier(source, self.task.num_classes, **options)
            teacher.to(self.context.device).eval().requires_grad_(False)
            extra = self._intermediate_loss(teacher, keep, config.intermediate)
        return self.train_model(train, teacher_logits, objective, settings, extra)

    @staticmethod
    def _intermediate_loss(teacher: torch.nn.Module, keep: list[int], weight: float) -> ExtraLoss:
        """TinyBERT's intermediate terms: MSE of the embeddings output and of every kept layer's
        hidden states (real tokens only) and attention probabilities against the teacher's."""

        def loss(outputs: Any, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():
                target = teacher(**tokens, output_hidden_states=True, output_attentions=True)
            mask = tokens["attention_mask"].unsqueeze(-1).to(outputs.hidden_states[0].dtype)
            real = mask.sum() * outputs.hidden_states[0].shape[-1]

            def hidden_mse(student_state, teacher_state):
                return (((student_state - teacher_state) ** 2) * mask).sum() / real

            total = hidden_mse(outputs.hidden_states[0], target.hidden_states[0])
            for position, layer in enumerate(keep):
                total = total + hidden_mse(
                    outputs.hidden_states[position + 1], target.hidden_states[layer + 1]
                )
                total = total + F.mse_loss(outputs.attentions[position], target.attentions[layer])
            return weight * total / (1 + len(keep))

        return loss

    def describe(self) -> dict[str, Any]:
        return {"kept_teacher_layers": self.kept, **super().describe()}


@hookimpl
def register_students(register):
    register("hf", HFStudent)
    register("distil", DistilStudent)
