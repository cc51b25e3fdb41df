"""Adapter students: the base model stays frozen and only an adapter (and the new
classification head) trains.

- ``lora``: peft LoRA (Hu et al. 2021) on the named modules: ``rank``, ``alpha``, ``dropout``.
- ``qpa``: the same LoRA, but its values are *generated* by QPA's quantum circuit and mapping
  model (``qcompress_plugins.adapters.qpa``); only the generator and the head train.
- ``qtha``: QTHA, reconstructed (``qcompress_plugins.adapters.qtha``): per target layer an MPO
  low-rank branch and a quantum branch, fused; it acts on every token, so it is *not* merged
  and stays in the model at inference (counted in ``inference_total``; ``lora_equivalent``
  gives what LoRA of the same rank would train on the same layers).

After training, LoRA and QPA adapters are merged into the base weights (``merge_and_unload``),
so inference is one plain model: for QPA the generator is not needed to predict. The record
gives the batch-1 latency before merging (``details.latency_unmerged_ms``) beside the runner's
(merged), and counts: ``trainable`` (what the optimiser updates), ``lora_values`` (the
adapter's values; for QPA, generated), ``inference_total`` (the stored model), ``vs_lora``
(what the method trains for its adaptation over what LoRA of the same rank on the same layers
trains: 1 for LoRA, QPA's generator over the values it generates, QTHA's adapter over LoRA's)
and ``adapter_at_inference`` (parameters kept beside the base at inference: 0 when merged). Full
fine-tuning of the same base is the ``hf`` student. On a causal-lm task every adapter works on
an ``AutoModelForCausalLM`` trained on next-token prediction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch.nn.utils import parametrize

from qcompress import hookimpl, measure
from qcompress.errors import QcompressError
from qcompress.interfaces import (
    BackendSpec,
    Column,
    ParameterCounts,
    TrainReport,
    count_parameters,
)
from qcompress_plugins.adapters.qpa import (
    QPAGenerator,
    attach_generator,
    count_lora_values,
    lora_layers,
)
from qcompress_plugins.adapters.qtha import attach_qtha, is_target, lora_equivalent
from qcompress_plugins.bases.finetuned import FinetunedConfig, FinetunedStudent, with_lora

UNMERGED_LATENCY_SAMPLES = 20


class LoRAConfig(FinetunedConfig):
    model: str = Field(default="minilm", description="base: hub id, path or 'minilm'")
    rank: int = Field(default=8, ge=1, le=65_536)
    alpha: float = Field(default=16.0, gt=0, le=1_000_000)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"], min_length=1,
        description="names of the linear layers to adapt (BERT: query, key, value, dense)",
    )  # fmt: skip


class QPAConfig(LoRAConfig):
    chunk_size: int = Field(
        default=2048, ge=1, le=16_777_216, description="values each mapping output makes",
    )
    depth: int = Field(default=8, ge=1, le=1_000, description="RY + CNOT-ladder blocks of the QNN")
    widths: list[int] = Field(
        default_factory=lambda: [32, 64, 128, 128, 64, 32, 32], min_length=1,
        description="hidden widths of the mapping model (no activations, as released)",
    )  # fmt: skip
    gamma: float = Field(default=0.1, gt=0, le=1_000_000)
    beta: float = Field(default=0.60, gt=0, le=1_000_000)
    post_alpha: float = Field(
        default=0.15, gt=0, le=100, description="the post-processing exponent",
    )
    index: Literal["fixed", "random"] = Field(
        default="fixed", description="'random': the release's random basis-state bit strings"
    )
    init_scale: float = Field(
        default=0.01, gt=0, le=1_000_000,
        description="the mapping's output layer at start, scaled (1: release)",
    )
    backend: BackendSpec = Field(default_factory=lambda: BackendSpec(name="torch"))


class QTHAConfig(LoRAConfig):
    rank: int = Field(
        default=4, ge=1, le=65_536, description="width of the low-rank (tensor) branch",
    )
    qubits: int | None = Field(
        default=None, ge=1, le=24, description="quantum branch width (<= rank; default: rank)"
    )
    layers: int = Field(default=2, ge=1, le=1_000, description="[RY, RZ, CNOT ring] layers")
    cores: int = Field(default=3, ge=1, le=17, description="MPO cores of each projection")
    bond: int = Field(default=4, ge=1, le=65_536, description="MPO bond dimension")
    backend: BackendSpec = Field(default_factory=lambda: BackendSpec(name="torch"))

    @model_validator(mode="after")
    def _qubits_within_rank(self) -> QTHAConfig:
        if self.qubits is not None and self.qubits > self.rank:
            raise ValueError(f"qubits ({self.qubits}) must not exceed rank ({self.rank})")
        return self


CLASSIFIER_HEADS = ("classifier", "score")  # the new head of a sequence classifier (as peft)


def untie_targeted_output(model: torch.nn.Module, targets: Sequence[str]) -> bool:
    """Give the output layer its own copy of the weights it shares with the input embeddings
    (GPT-2's ``lm_head``) when an adapter targets it: otherwise merging the adapter would
    change the embeddings too, and the merged model would not be the trained one. The copy is
    stored, and counted, at inference. Returns whether anything was untied."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inputs = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if output is None or inputs is None or output.weight is not inputs.weight:
        return False
    name = next(n for n, m in model.named_modules() if m is output)
    if not is_target(name, targets):
        return False
    output.weight = torch.nn.Parameter(output.weight.detach().clone())
    model.config.tie_word_embeddings = False
    return True


class LoRAStudent(FinetunedStudent):
    Config = LoRAConfig
    description = "peft LoRA on a frozen base (default MiniLM), merged for inference"
    columns = (
        # The LoRA values trained (LoRA) or generated (QPA).
        Column("params.lora_values", "LoRA values", "{:,.0f}"),
        # The adaptation's trained parameters over LoRA's, and what stays unmerged.
        Column("params.vs_lora", "× LoRA", "{:.4f}"),
        Column("params.adapter_at_inference", "adapter kept", "{:,.0f}"),
        # Before merging into the base weights (the runner times the merged model).
        Column("details.latency_unmerged_ms", "unmerged p50 ms", "{:.2f}"),
        *FinetunedStudent.columns,
    )

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        source = self.context.resolve_model(self.config.model)
        base, self.tokenizer = self.load_model(source)
        self.untied = untie_targeted_output(base, self.config.target_modules)
        self.model = self.adapt(base).to(self.context.device)
        self.before_training()
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.trainable += sum(p.numel() for p in self.extra_trainable())
        report = self.train_model(train, teacher_logits, objective, settings)
        probe = self.task.eval.texts[:UNMERGED_LATENCY_SAMPLES]
        self.latency_unmerged_ms = self._latency(probe)
        before = self.predict_texts(probe)
        self.merge()
        # The merged model must be the trained one: recorded, so every record shows it.
        self.merge_max_logit_change = (self.predict_texts(probe) - before).abs().max().item()
        return report

    def adapt(self, base: torch.nn.Module) -> torch.nn.Module:
        """The base model with its adapter; only the adapter and the new head train."""
        import peft

        config: LoRAConfig = self.config
        lora = peft.LoraConfig(
            task_type=peft.TaskType.CAUSAL_LM if self.language else peft.TaskType.SEQ_CLS,
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(config.target_modules),
        )
        model = with_lora(base, lora)
        self.lora_values = count_lora_values(model)
        return model

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
            details={"lora_values": self.lora_values, "vs_lora": 1.0, "adapter_at_inference": 0},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "untied_output_embeddings": self.untied,
            "merge_max_logit_change": self.merge_max_logit_change,
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
            init_scale=config.init_scale,
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
            "vs_lora": round(generator / self.lora_values, 6),
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


class QTHAStudent(LoRAStudent):
    Config = QTHAConfig
    description = "QTHA (reconstructed): MPO low-rank + quantum branch per layer, kept at inference"

    def adapt(self, base: torch.nn.Module) -> torch.nn.Module:
        config: QTHAConfig = self.config
        base.requires_grad_(False)
        # A classifier's head is new and trains; a language model keeps its own output layer.
        heads = [m for n, m in base.named_children() if n in CLASSIFIER_HEADS]
        if not heads and not self.language:
            raise QcompressError(
                f"student qtha: {type(base).__name__} has no classification head named "
                f"{' or '.join(CLASSIFIER_HEADS)} to train"
            )
        for head in heads:
            head.requires_grad_(True)
        targets = list(config.target_modules)
        self.lora_equivalent = lora_equivalent(base, targets, config.rank)
        self.layers = attach_qtha(
            base,
            targets,
            alpha=config.alpha,
            backend=self.context.backend(config.backend),
            rank=config.rank,
            qubits=config.qubits or config.rank,
            layers=config.layers,
            cores=config.cores,
            bond=config.bond,
            dropout=config.dropout,
        )
        return base

    def merge(self) -> None:
        # The quantum branch acts on every token: nothing can be folded into the base weights.
        self.model.eval()

    def parameter_counts(self) -> ParameterCounts:
        adapters = [layer.adapter for layer in self.layers]
        adapter = sum(count_parameters(a) for a in adapters)
        return ParameterCounts(
            trainable=self.trainable,
            inference_total=count_parameters(self.model),
            details={
                "adapter": adapter,
                "circuit": sum(a.circuit_weights.numel() for a in adapters),
                "head": self.trainable - adapter,
                "lora_equivalent": self.lora_equivalent,
                "vs_lora": round(adapter / self.lora_equivalent, 6),
                "adapter_at_inference": adapter,  # acts on every token: never merged
            },
        )

    def describe(self) -> dict[str, Any]:
        adapter = self.layers[0].adapter
        return {
            "adapted_layers": len(self.layers),
            "mergeable": False,
            "mpo_factors": {"in": adapter.down.in_factors, "rank": adapter.down.out_factors},
            "circuit": adapter.circuit.describe(),
            **super().describe(),
        }


@hookimpl
def register_students(register):
    register("lora", LoRAStudent)
    register("qpa", QPAStudent)
    register("qtha", QTHAStudent)
