"""The ``quantized`` student: the teacher (or any model) with its Linear layers quantized to
int8, no training: PyTorch's dynamic quantization (weights int8 per output channel,
activations quantized per tensor on the fly at each call), CPU only. It has as many
parameters as the model it came from and about a quarter of the bytes in its Linear layers;
the record counts both (``params.inference_total`` the parameters, ``params.inference_mb``
the bytes of its state as saved, quantized weights included).

``torch.ao.quantization`` is deprecated in favour of torchao, which is not yet among this
project's dependencies; its warnings are silenced here, where the choice is made knowingly.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import ParameterCounts, TrainReport, count_parameters
from qcompress_plugins.bases.finetuned import FinetunedConfig, FinetunedStudent


class QuantizedConfig(FinetunedConfig):
    model: str = Field(
        default="teacher",
        description="the model quantized: 'teacher' (the run's), a registered name, a .gguf "
        "file, a folder or a hub id",
    )
    bits: Literal[8] = Field(default=8, description="weight bits (int8 dynamic quantization)")


def quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantized int8 one, its
    weights scaled per output channel. Measured on SmolLM2-135M (40 WikiText-2 test passages,
    128 tokens): perplexity 61.9 in float32, 280 with per-tensor weight scales, 230 per
    channel; quantizing only the output layer, 66.9. The damage is in the decoder layers, whose
    activations (quantized per tensor at each call) have outliers: LLM.int8's finding."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})


def saved_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's state as ``torch.save`` writes it (packed int8 weights included):
    what loading it costs, which a parameter count cannot say for a quantized model. The bytes
    are counted as they are written, not kept."""
    counter = _ByteCounter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save(model.state_dict(), counter)
    return counter.written


class _ByteCounter:
    """A write-only file that keeps nothing but the count of bytes written to it."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class QuantizedStudent(FinetunedStudent):
    Config = QuantizedConfig
    description = "the teacher with its Linear layers quantized to int8 (dynamic), no training"

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        if self.context.device.type != "cpu":
            raise QcompressError(
                "student quantized: PyTorch's dynamic int8 quantization runs on the CPU only; "
                "run this suite with --device cpu"
            )
        config: QuantizedConfig = self.config
        model, self.tokenizer = self.load_model(self.context.resolve_model(config.model))
        self.parameter_total = count_parameters(model)
        self.float_bytes = saved_bytes(model)
        self.model = quantize_linear_int8(model.eval())
        self.bytes = saved_bytes(self.model)
        return TrainReport(loss_per_epoch=[], steps=0)

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(
            trainable=0, inference_total=self.parameter_total, inference_bytes=self.bytes
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "bits": self.config.bits,
            "bytes_before": self.float_bytes,
            "bytes_after": self.bytes,
            **super().describe(),
        }


@hookimpl
def register_students(register):
    register("quantized", QuantizedStudent)
