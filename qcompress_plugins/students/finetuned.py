"""Transformer students fine-tuned end to end on the task's texts against the teacher:

- ``hf``: any ``AutoModelForSequenceClassification`` by hub id or local path (TinyBERT,
  DistilBERT, a small BERT...), a new classification head for the task's classes; on a
  causal-lm or generation task, any causal LM, every weight trained.
- ``pretrained``: a causal LM as it ships, not trained: the "before" of a fine-tuning or a
  distillation (e.g. Gemma 3 base answering identity questions), scored as the others are.
- ``distil``: DistilBERT's recipe (Sanh et al. 2019) applied to the run's own teacher: a copy of
  the fine-tuned teacher that keeps every other layer (or the layers listed), trained with the
  objective and, optionally, TinyBERT-style intermediate matching (Jiao et al. 2020): the mean
  squared error between the student's hidden states and attention maps and those of the teacher
  layers they came from, weighted by ``intermediate``. ``model`` takes the layers from another
  BERT-like model instead (``minilm``: the packaged pretrained MiniLM), the DistilBERT-style
  baseline of a teacher that is not BERT-like (an LLM): the distilled student then learns the
  LLM's logits with half of MiniLM's layers.

Both train with AdamW, 10% linear warm-up then linear decay, on length-bucketed batches; the
learning rate, epochs and batch size come from the suite's ``train`` block. Every weight is
trained and counted; nothing else runs at inference.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import ParameterCounts, TrainReport, count_parameters
from qcompress_plugins.bases.finetuned import (
    ExtraLoss,
    FinetunedConfig,
    FinetunedStudent,
    load_classifier,
)
from qcompress_plugins.kinds import CAUSAL_LM, CLASSIFICATION, GENERATION


class HFStudentConfig(FinetunedConfig):
    model: str = Field(
        description="hub id or local folder ('minilm': the packaged MiniLM; 'teacher': the "
        "teacher's own model)"
    )


class DistilConfig(FinetunedConfig):
    model: str = Field(
        default="teacher",
        description="where the layers come from: 'teacher' (the run's fine-tuned teacher), "
        "'minilm', or a hub id or folder of a BERT-like classifier",
    )
    keep: Literal["every-other"] | list[int] = Field(
        default="every-other", description="teacher layers the student keeps (0-based)"
    )
    intermediate: float = Field(
        default=0.0, ge=0, le=1_000_000,
        description="weight of hidden-state + attention matching (0: off)",
    )


class HFStudent(FinetunedStudent):
    Config = HFStudentConfig
    description = "any Hugging Face sequence classifier (hub id or path), fine-tuned on the task"

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        source = self.context.resolve_model(self.config.model)
        self.model, self.tokenizer = self.load_model(source)
        self.model.to(self.context.device)
        return self.train_model(train, teacher_logits, objective, settings)

    def describe(self) -> dict[str, Any]:
        return {"model": self.config.model, **super().describe()}


class PretrainedStudent(FinetunedStudent):
    Config = HFStudentConfig
    description = "a causal LM as it ships, not trained (the 'before' of a fine-tuning)"
    task_kinds = frozenset({CAUSAL_LM, GENERATION})

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        source = self.context.resolve_model(self.config.model)
        self.model, self.tokenizer = self.load_model(source)
        self.model.to(self.context.device).eval()
        return TrainReport(loss_per_epoch=[], steps=0)

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(trainable=0, inference_total=count_parameters(self.model))

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
        source = self.context.resolve_model(config.model)
        matching = config.intermediate > 0
        options = {"attn_implementation": "eager"} if matching else {}
        student, self.tokenizer = load_classifier(
            source, self.task.num_classes, ignore_mismatched_sizes=True, **options
        )
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
            teacher, _ = load_classifier(
                source, self.task.num_classes, ignore_mismatched_sizes=True, **options
            )
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
        return {"model": self.config.model, "kept_layers": self.kept, **super().describe()}


@hookimpl
def register_students(register):
    register("hf", HFStudent)
    register("pretrained", PretrainedStudent)
    register("distil", DistilStudent)
