"""``FinetunedStudent``: a Hugging Face model fine-tuned end to end on the task's texts against
the teacher. On a classification task the model is a sequence classifier; on a causal-lm task,
a causal LM trained on next-token prediction with padding masked out; on a generation task, a
causal LM trained on the teacher's responses to the training prompts (sequence-level
distillation) that answers the evaluation prompts. Training: AdamW, 10% linear warm-up then
linear decay, length-bucketed batches in a seeded shuffle (``qcompress.training.train_loop``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from pydantic import Field

from qcompress.errors import QcompressError
from qcompress.interfaces import (
    GenerationSettings,
    Objective,
    ParameterCounts,
    PluginConfig,
    Responses,
    RunContext,
    Split,
    Student,
    Targets,
    TaskData,
    TokenLosses,
    TopTokens,
    TrainReport,
    TrainSettings,
    count_parameters,
)
from qcompress.models import pad_with_eos
from qcompress.training import Optimization, length_buckets, shuffled_buckets, train_loop
from qcompress_plugins.bases import generation, language
from qcompress_plugins.kinds import CAUSAL_LM, CLASSIFICATION, GENERATION

WARMUP_FRACTION = 0.1
# An extra loss on one batch: (the student's outputs, the batch's tokens) -> a scalar.
ExtraLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


@contextmanager
def peft_quietly() -> Iterator[None]:
    """Without the FutureWarning peft 0.21 triggers in transformers 5 by asking for
    ``is_gradient_checkpointing`` when it wraps a model (theirs to fix; it buried the run's
    output)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        yield


def with_lora(model: torch.nn.Module, lora: Any) -> torch.nn.Module:
    """``peft.get_peft_model``, quietly."""
    import peft

    with peft_quietly():
        return peft.get_peft_model(model, lora)


class FinetunedConfig(PluginConfig):
    max_length: int = Field(default=64, ge=8, le=131_072, description="tokens kept per text")


class FinetunedStudent(Student):
    """Holds a Hugging Face model and its tokenizer; trains and predicts from texts. On a
    classification task the model is a sequence classifier; on a causal-lm task, a causal LM
    trained on next-token prediction with padding masked out."""

    task_kinds = frozenset({CLASSIFICATION, CAUSAL_LM, GENERATION})
    columns = language.GENERATION_COLUMNS  # empty (so not shown) on classification tasks

    def __init__(self, config: FinetunedConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.model: torch.nn.Module | None = None
        self.tokenizer: Any = None

    @property
    def language(self) -> bool:
        """Whether the model is a causal LM (language modelling or generation)."""
        return self.task.kind in (CAUSAL_LM, GENERATION)

    def model_name(self) -> str:
        """The name of the model adapted, as the suite gave it (``teacher``: the teacher's)."""
        name = str(getattr(self.config, "model", "") or type(self).__name__)
        teacher = self.context.teacher
        if name == "teacher" and teacher is not None:
            return str(getattr(teacher.config, "model", name))
        return name

    def load_model(self, source: str, **options: Any) -> tuple[torch.nn.Module, Any]:
        """The model to train (a classifier with a new head, or a causal LM) and its tokenizer."""
        if self.language:
            return language.load_causal_lm(source, "student")
        return load_classifier(
            source, self.task.num_classes, ignore_mismatched_sizes=True, **options
        )

    def batch_loss(
        self,
        rows: list[int],
        train: Split,
        teacher_logits: Targets,
        objective: Objective,
        extra_loss: ExtraLoss | None,
    ) -> torch.Tensor:
        """The objective on one batch of training rows (plus ``extra_loss``, if any)."""
        texts = [train.texts[row] for row in rows]
        device = self.context.device
        if isinstance(teacher_logits, Responses):  # the teacher's answers to these prompts
            assert self.task.generation is not None
            tokens, labels = generation.response_batch(
                self.tokenizer, texts, [teacher_logits.texts[row] for row in rows],
                self.config.max_length, self.task.generation, device,
            )  # fmt: skip
            return objective(self.model(**tokens).logits, None, labels)
        if self.language:
            tokens, labels = language.lm_batch(
                self.tokenizer, texts, self.config.max_length, device
            )
            # A language-model teacher's top tokens for these texts (token-level distillation).
            batch = teacher_logits.rows(rows) if isinstance(teacher_logits, TopTokens) else None
            return objective(self.model(**tokens).logits, batch, labels)
        tokens = self.tokenize(texts)
        outputs = self.model(
            **tokens,
            output_hidden_states=extra_loss is not None,
            output_attentions=extra_loss is not None,
        )
        assert train.labels is not None and not isinstance(teacher_logits, TopTokens | Responses)
        targets = None if teacher_logits is None else teacher_logits[rows].to(device)
        loss = objective(outputs.logits, targets, train.labels[rows].to(device))
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
        teacher_logits: Targets,
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

    def generate(
        self, prompts: Sequence[str], batch_size: int, settings: GenerationSettings
    ) -> Responses:
        texts, counts = generation.generate(
            self.model, self.tokenizer, prompts, batch_size, settings, self.context.device
        )
        return Responses(texts, counts, model=self.model_name())

    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        if self.language:
            return language.next_token_logits(
                self.model, self.tokenizer, texts, self.config.max_length, self.context.device
            )
        return self.model(**self.tokenize(texts)).logits.float().cpu()

    def token_losses_against(
        self, split: Split, batch_size: int, teacher: TopTokens
    ) -> TokenLosses:
        return language.token_losses_against(
            self.model, self.tokenizer, split.texts, batch_size, self.config.max_length,
            self.context.device, teacher,
        )

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
        facts = {"layers": getattr(config, "num_hidden_layers", None),
                 "hidden_size": getattr(config, "hidden_size", None)}  # fmt: skip
        if self.language:  # what generating costs: reading a prompt, writing each token
            facts |= language.generation_speed(self.model, self.context.device)
        return facts


def load_classifier(
    source: str, classes: int | None, role: str = "student", **options: Any
) -> tuple[torch.nn.Module, Any]:
    """``AutoModelForSequenceClassification`` and its tokenizer from a folder or hub id, with a
    head of ``classes`` outputs (``None``: the model's own head). A tokenizer without a padding
    token pads with its end-of-sequence token, and the model is told that id: a decoder
    classifies from the last token that is not padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if classes is not None:
        options["num_labels"] = classes
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, **options)
    except OSError as error:
        raise QcompressError(f"cannot load {role} model {source!r}: {error}") from None
    pad_with_eos(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
