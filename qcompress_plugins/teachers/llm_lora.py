"""The ``llm-lora`` teacher: a decoder LLM with a sequence-classification head, LoRA fine-tuned
on the task's training split, as the QD-LLM release builds its teachers (LLaMA-2/3, OPT, BLOOMZ,
each with a task LoRA adapter; teacher logits = the head's logits).

The LLM is frozen; LoRA matrices on the attention projections and the new head are trained
(peft, ``task_type=SEQ_CLS``, which also trains and saves the head). The cache keeps only the
adapter and the head (a few MB), keyed by the base model's content, the recipe and the training
data; a later run loads the base (from its own cache when it came from a GGUF file), applies the
adapter and merges it into the weights, so predicting costs what the plain LLM costs.

Defaults are sized for the 135M-270M models that run on a CPU here; on a GPU, a hub LLaMA
checkpoint takes the same settings (``model: meta-llama/Llama-2-7b-hf``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress_plugins.bases.finetuned import load_classifier, peft_quietly, with_lora
from qcompress_plugins.bases.hf_teacher import HFClassifierTeacher, HFTeacherConfig


class LLMLoRAConfig(HFTeacherConfig):
    model: str = Field(
        default="smollm2-135m-instruct",
        description="a registered model name, a .gguf file, a folder or a hub id of a decoder LLM",
    )
    # Measured with SmolLM2 trained on 1,000 SST-2 texts: 1 epoch at 5e-4 gave 0.618 (872 dev
    # texts), 1 epoch at 2e-3 0.800 and 2 epochs at 2e-3 0.848 (400 dev texts); docs/llms.md.
    # A 7B model wants a lower lr.
    epochs: int = Field(default=2, ge=1, le=1_000)
    lr: float = Field(default=2e-3, gt=0, le=10)
    batch_size: int = Field(default=16, ge=1, le=65_536)
    max_length: int = Field(default=64, ge=8, le=131_072, description="tokens kept per text")
    eval_max_length: int = Field(default=64, ge=8, le=131_072)
    lora_rank: int = Field(default=8, ge=1, le=4_096)
    lora_alpha: float = Field(default=16.0, gt=0, le=1_000_000)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default=["q_proj", "v_proj"],
        min_length=1,
        description="names of the Linear layers that get LoRA matrices (LLaMA/Gemma names)",
    )


class LLMLoRATeacher(HFClassifierTeacher):
    Config = LLMLoRAConfig
    description = "a decoder LLM + classification head, LoRA fine-tuned on the task (QD-LLM's)"

    def trainable_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from peft import LoraConfig, TaskType

        config: LLMLoRAConfig = self.config
        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
        )
        try:
            return with_lora(model, lora)
        except ValueError as error:  # no module of those names
            raise QcompressError(
                f"teacher llm-lora: target_modules {config.target_modules} do not fit "
                f"{type(model).__name__}: {error}"
            ) from None

    def save_trained(self, model: torch.nn.Module, tokenizer: Any, out_dir: Path) -> None:
        model.save_pretrained(out_dir)  # a peft model saves its adapter and head only
        tokenizer.save_pretrained(out_dir)

    def load_trained(self, source: str, classes: int) -> tuple[torch.nn.Module, Any]:
        from peft import PeftModel

        base, tokenizer = load_classifier(self.base, classes, role="teacher")
        with peft_quietly():
            merged = PeftModel.from_pretrained(base, source).merge_and_unload()
        return merged, tokenizer

    def encoder_source(self) -> str | None:
        """The base LLM (the cache holds only the adapter): students given ``encoder: teacher``
        learn on the frozen LLM's own features."""
        return self.base


@hookimpl
def register_teachers(register):
    register("llm-lora", LLMLoRATeacher)
