"""Adapter students: the base model stays frozen and only an adapter (and the new
classification head) trains.

- ``lora``: peft LoRA (Hu et al. 2021) on the named modules: ``rank``, ``alpha``, ``dropout``.
- ``qpa``: the same LoRA, but its values are *generated* by QPA's quantum circuit and mapping
  model (``qcompress_plugins.adapters.qpa``); only the generator and the head train.

After training the adapter is merged into the base weights (``merge_and_unload``), so inference
is one plain model: for QPA the generator is not needed to predict. The record gives the
batch-1 latency before merging (``details.latency_unmerged_ms``) beside the runner's (merged),
and counts: ``trainable`` (what the optimiser updates), ``lora_values`` (the adapter's values;
for QPA, generated), ``inference_total`` (the merged model). Full fine-tuning of the same base
is the ``hf`` student.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
from pydantic import Field
from torch.nn.utils import parametrize

from qcompress import hookimpl, measure
from qcompress.interfaces import BackendSpec, ParameterCounts, TrainReport, count_parameters
from qcompress_plugins.adapters.qpa import (
    QPAGenerator,
    attach_generator,
    count_lora_values,
    lora_layers,
)
from qcompress_plugins.encoders import resolve_encoder
from qcompress_plugins.students.finetuned import FinetunedConfig, FinetunedStudent, load_classifier

UNMERGED_LATENCY_SAMPLES = 20


class LoRAConfig(FinetunedConfig):
    model: str = Field(default="minilm", description="base: hub id, path or 'minilm'")
    rank: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"], min_length=1,
        description="names of the linear layers to adapt (BERT: query, key, value, dense)",
    )  # fmt: skip


class QPAConfig(LoRAConfig):
    chunk_size: int = Field(default=2048, ge=1, description="values each mapping output makes")
    depth: int = Field(default=8, ge=1, description="RY + CNOT-ladder blocks of the QNN")
    widths: list[int] = Field(
        default_factory=lambda: [32, 64, 128, 128, 64, 32, 32], min_length=1,
        description="hidden widths of the mapping model (no activations, as released)",
    )  # fmt: skip
    gamma: float = 0.1
    beta: float = 0.60
    post_alpha: float = Field(default=0.15, gt=0, description="the post-processing exponent")
    index: Literal["fixed", "random"] = Field(
        default="fixed", description="'random': the release's random basis-state bit strings"
    )
    backend: BackendSpec = Field(default_factory=lambda: BackendSpec(name="torch"))


class LoRAStudent(FinetunedStudent):
    Config = LoRAConfig
    description = "peft LoRA on a frozen base (default MiniLM), merged for inference"

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        import peft

        config: LoRAConfig = self.config
        source = resolve_encoder(config.model, self.context)
        base, self.tokenizer = load_classifier(source, self.task.num_classes)
        lora = peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(config.target_modules),
        )
        self.model = peft.get_peft_model(base, lora).to(self.context.device)
        self.lora_values = count_lora_values(self.model)
        self.before_training()
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.trainable += sum(p.numel() for p in self.extra_trainable())
        report = self.train_model(train, teacher_logits, objective, settings)
        self.latency_unmerged_ms = self._latency(self.task.eval.texts[:UNMERGED_LATENCY_SAMPLES])
        self.merge()
        return report

    def before_training(self) -> None:
        """Subclasses change the adapter here (QPA generates its values)."""

    def merge(self) -> None:
        self.model = self.model.merge_and_unload().eval()

    def _latency(self, texts: Sequence[str]) -> float:
        return measure.latency(self.predict_texts, texts, len(texts), warmup=1)["p50"]

    def parameter_counts(self) -> ParameterCounts:
        total = count_parameters(self.model)
        return ParameterCounts(
            trainable=self.trainable,
            inference_total=total,
            details={"lora_values": self.lora_values},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "latency_unmerged_ms": self.latency_unmerged_ms,
            **super().describe(),
        }


class QPAStudent(LoRAStudent):
    Config = QPAConfig
    description = "QPA: a quantum circuit generates the LoRA values; inference is a merged LoRA"

    def before_training(self) -> None:
        config: QPAConfig = self.config
        self.generator = QPAGenerator(
            self.lora_values,
            self.context.backend(config.backend),
            chunk_size=config.chunk_size,
            depth=config.depth,
            widths=tuple(config.widths),
            gamma=config.gamma,
            beta=config.beta,
            alpha=config.post_alpha,
            index=config.index,
        ).to(self.context.device)
        attach_generator(self.model, self.generator)

    def extra_trainable(self) -> Iterator[torch.nn.Parameter]:
        generator = getattr(self, "generator", None)
        return iter(generator.parameters()) if generator is not None else iter(())

    def forward_pass(self) -> AbstractContextManager[Any]:
        return self.generator.sharing()

    def merge(self) -> None:
        # Bake the generated values into plain LoRA weights, then merge them as LoRA does.
        with torch.no_grad(), self.generator.sharing():
            for layer in lora_layers(self.model):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        super().merge()

    def parameter_counts(self) -> ParameterCounts:
        counts = super().parameter_counts()
        generator = sum(p.numel() for p in self.generator.parameters())
        details = {
            **counts.details,
            "generator": generator,
            "qnn": self.generator.qnn_weights.numel(),
            "head": counts.trainable - generator,
        }
        return ParameterCounts(counts.trainable, counts.inference_total, details)

    def describe(self) -> dict[str, Any]:
        generator = self.generator
        return {
            "chunks": generator.n_chunks,
            "qubits": generator.n_qubits,
            "circuit": generator.circuit.describe(),
            **super().describe(),
        }


@hookimpl
def register_students(register):
    register("lora", LoRAStudent)
    register("qpa", QPAStudent)
