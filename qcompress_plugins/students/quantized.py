"""The ``quantized`` student: the teacher (or any model) with its Linear layers quantized, no
training (the schemes: :mod:`qcompress_plugins.bases.quantization`):

- ``int8`` (default): weight-only int8, one scale per output channel;
- ``int4``: weight-only 4-bit in groups (``group_size``, 32 by default), as llama.cpp's Q4_1;
- ``int8-dynamic``: PyTorch's dynamic quantization (W8A8), CPU only.

It has as many parameters as the model it came from and fewer bytes; the record counts both
(``params.inference_total`` the parameters, ``params.inference_mb`` the bytes of its state as
saved, packed weights included, which is also what it holds in memory between calls).
``skip`` keeps layers in float by name (e.g. ``[lm_head]``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import QcompressError
from qcompress.interfaces import ParameterCounts, TrainReport, count_parameters
from qcompress_plugins.bases.finetuned import FinetunedConfig, FinetunedStudent
from qcompress_plugins.bases.quantization import (
    Scheme,
    quantize_dynamic_int8,
    quantize_weights,
    saved_bytes,
)


class QuantizedConfig(FinetunedConfig):
    model: str = Field(
        default="teacher",
        description="the model quantized: 'teacher' (the run's), a registered name, a .gguf "
        "file, a folder or a hub id",
    )
    scheme: Scheme = Field(
        default="int8",
        description="int8 or int4 (weight-only), or int8-dynamic (weights and activations)",
    )
    group_size: int = Field(
        default=32, ge=2, le=65_536, description="int4: weights sharing a scale and minimum"
    )
    skip: list[str] = Field(
        default_factory=list, description="Linear layers kept in float (names or name ends)"
    )


class QuantizedStudent(FinetunedStudent):
    Config = QuantizedConfig
    description = "the teacher with its Linear layers quantized (int8 or int4 weights), no training"

    def fit(self, train, teacher_logits, objective, settings) -> TrainReport:
        config: QuantizedConfig = self.config
        if config.scheme == "int8-dynamic" and self.context.device.type != "cpu":
            raise QcompressError(
                "student quantized: PyTorch's dynamic int8 quantization runs on the CPU only; "
                "run this suite with --device cpu, or use scheme int8 or int4"
            )
        model, self.tokenizer = self.load_model(self.context.resolve_model(config.model))
        model.eval()
        self.parameter_total = count_parameters(model)
        self.float_bytes = saved_bytes(model)
        try:
            if config.scheme == "int8-dynamic":
                self.quantized_layers = quantize_dynamic_int8(model, config.skip)
            else:
                bits = 8 if config.scheme == "int8" else 4
                self.quantized_layers = quantize_weights(
                    model, bits, config.group_size, config.skip
                )
        except ValueError as error:
            raise QcompressError(f"student quantized: {error}") from None
        self.model = model.to(self.context.device)
        self.bytes = saved_bytes(self.model)
        return TrainReport(loss_per_epoch=[], steps=0)

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(
            trainable=0, inference_total=self.parameter_total, inference_bytes=self.bytes
        )

    def describe(self) -> dict[str, Any]:
        config: QuantizedConfig = self.config
        return {
            "model": config.model,
            "scheme": config.scheme,
            "group_size": config.group_size if config.scheme == "int4" else None,
            "quantized_layers": self.quantized_layers,
            "bytes_before": self.float_bytes,
            "bytes_after": self.bytes,
            **super().describe(),
        }


@hookimpl
def register_students(register):
    register("quantized", QuantizedStudent)
