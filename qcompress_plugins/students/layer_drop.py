"""The ``layer-drop`` student: the teacher LLM keeping a subset of its decoder layers (every
other layer by default, or the layers listed), then healed by training every weight on the
task's text, with token-level distillation from the teacher (``objective: {name: token-kd}``;
forward KL by default, reverse KL as MiniLLM does) or plain next-token loss (``lm``).

The layers kept are the teacher's own, in order, with their weights; embeddings, final norm
and output layer are kept whole. Each kept attention layer is renumbered (its ``layer_idx``
indexes the key-value cache when generating) and, for models whose layers differ by kind
(Gemma 3's sliding-window and global attention), the config's ``layer_types`` follows the
layers kept. Works for any Hugging Face decoder whose layers are a ``ModuleList`` named
``layers`` (Llama, Gemma, Mistral, Qwen...) or ``h`` (GPT-2).

With ``lora`` set, the healing trains a peft LoRA on the kept layers instead of every weight
(the two methods composed: a smaller model, adapted cheaply), merged into the weights after
training; ``trainable`` then counts the LoRA values.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import ParameterCounts, TrainReport, count_parameters
from qcompress_plugins.bases.finetuned import FinetunedConfig, FinetunedStudent, with_lora
from qcompress_plugins.kinds import CAUSAL_LM

LAYER_LISTS = ("layers", "h")  # where decoders keep their blocks


class HealingLoRA(BaseModel):
    """A LoRA that heals the kept layers in place of training every weight."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=8, ge=1, le=65_536)
    alpha: float = Field(default=16.0, gt=0, le=1_000_000)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1,
        description="names of the linear layers to adapt",
    )  # fmt: skip


class LayerDropConfig(FinetunedConfig):
    model: str = Field(
        default="teacher",
        description="the LLM whose layers are kept: 'teacher' (the run's), a registered name, "
        "a .gguf file, a folder or a hub id",
    )
    keep: Literal["every-other"] | list[int] = Field(
        default="every-other",
        description="decoder layers kept (0-based, in order); every-other keeps 0, 2, 4...",
    )
    lora: HealingLoRA | None = Field(
        default=None, description="heal with a LoRA on the kept layers, not every weight"
    )


def decoder_layers(model: torch.nn.Module) -> tuple[Any, str, torch.nn.ModuleList]:
    """The module holding a causal LM's decoder blocks, the attribute's name and the blocks."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for name in LAYER_LISTS:
        layers = getattr(decoder, name, None)
        if isinstance(layers, torch.nn.ModuleList):
            return decoder, name, layers
    raise QcompressError(
        f"student layer-drop: {type(model).__name__} has no decoder layer list "
        f"({' or '.join(LAYER_LISTS)}) to take layers from"
    )


def keep_layers(model: torch.nn.Module, keep: Literal["every-other"] | list[int]) -> list[int]:
    """Keep only the decoder layers ``keep`` of ``model`` (in place); the indices kept."""
    decoder, name, layers = decoder_layers(model)
    kept = list(range(0, len(layers), 2)) if keep == "every-other" else list(keep)
    if not kept or sorted(set(kept)) != kept or not 0 <= kept[0] <= kept[-1] < len(layers):
        raise QcompressError(
            f"student layer-drop: keep must list distinct layers of 0..{len(layers) - 1} in "
            f"increasing order, got {keep}"
        )
    setattr(decoder, name, torch.nn.ModuleList(layers[index] for index in kept))
    for position, index in enumerate(kept):
        for module in layers[index].modules():
            if hasattr(module, "layer_idx"):  # the key-value cache slot of this layer
                module.layer_idx = position
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(layers):
        config.layer_types = [layer_types[index] for index in kept]
    config.num_hidden_layers = len(kept)
    return kept


class LayerDropStudent(FinetunedStudent):
    Config = LayerDropConfig
    description = "the teacher LLM with a subset of its decoder layers, healed (token-kd or lm)"
    task_kinds = frozenset({CAUSAL_LM})

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        config: LayerDropConfig = self.config
        source = self.context.resolve_model(config.model)
        model, self.tokenizer = self.load_model(source)
        self.layers_before = len(decoder_layers(model)[2])
        self.kept = keep_layers(model, config.keep)
        if config.lora is not None:
            model = with_lora(model, self._lora(config.lora))
        self.model = model.to(self.context.device)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        report = self.train_model(train, teacher_logits, objective, settings)
        if config.lora is not None:
            self.model = self.model.merge_and_unload().eval()
        return report

    @staticmethod
    def _lora(settings: HealingLoRA) -> Any:
        import peft

        return peft.LoraConfig(
            task_type=peft.TaskType.CAUSAL_LM,
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=list(settings.target_modules),
        )

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(
            trainable=self.trainable, inference_total=count_parameters(self.model)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "kept_layers": self.kept,
            "layers_before": self.layers_before,
            "healing": "lora" if self.config.lora is not None else "every weight",
            **super().describe(),
        }


@hookimpl
def register_students(register):
    register("layer-drop", LayerDropStudent)
