"""Quantizing a model's Linear layers, and counting the bytes that buys.

Three schemes, one function each:

- ``int8`` weight-only (:class:`WeightOnlyLinear`): weights stored as int8 with one scale per
  output channel (symmetric), dequantized to float at each call, activations untouched;
- ``int4`` weight-only: weights stored two to a byte in groups of ``group_size`` along the
  input, each group with its own scale and minimum in float16 (asymmetric, as llama.cpp's
  Q4_1: 5 bits a weight at groups of 32);
- ``int8-dynamic``: PyTorch's dynamic quantization (weights int8 per output channel,
  activations quantized per tensor at each call, W8A8), CPU only.

Weight-only schemes dequantize before a float matmul, as torchao's int8 weight-only path does
on the CPU: they save the bytes of the weights at rest (on disk, in memory between calls),
not compute. They are written here rather than taken from torchao because torchao 0.18's
int4 weight-only layouts need CUDA, XPU or the ``mslk`` kernels (a placeholder on PyPI), and
its unpacked CPU fallback stores a byte per 4-bit value, which would not save the bytes this
benchmark measures. ``torch.ao.quantization`` (the dynamic scheme) is deprecated in favour
of torchao; its warnings are silenced where that choice is made knowingly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Scheme = Literal["int8", "int4", "int8-dynamic"]
INT4_LEVELS = 15  # 4 bits: 0..15


class WeightOnlyLinear(torch.nn.Module):
    """A Linear layer whose weights are stored quantized and dequantized at each call."""

    def __init__(self, linear: torch.nn.Linear, bits: Literal[8, 4], group_size: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.group_size = bits, group_size
        weight = linear.weight.detach().float()
        if bits == 8:
            qweight, scale, minimum = quantize_int8(weight)
        else:
            qweight, scale, minimum = quantize_int4(weight, group_size)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("minimum", minimum)
        bias = linear.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone())

    def dequantize(self) -> torch.Tensor:
        if self.bits == 8:
            return self.qweight.float() * self.scale.float()
        return dequantize_int4(self.qweight, self.scale, self.minimum, self.group_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(inputs, self.dequantize().to(inputs.dtype), self.bias)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.bits == 4 else ""
        return f"{self.in_features}, {self.out_features}, int{self.bits}{group}"


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: ``weight ~= q * scale``; (q, scale, empty minimum)."""
    scale = (weight.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
    q = (weight / scale).round().clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.float16), torch.empty(0, dtype=torch.float16)


def quantize_int4(
    weight: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit in groups along the input: ``weight ~= q * scale + minimum`` with q in
    0..15, packed two to a byte (the even column in the low half). Returns (packed, scale,
    minimum), scale and minimum in float16, one per group."""
    rows, columns = weight.shape
    if columns % group_size or group_size % 2:
        raise ValueError(
            f"int4 groups of {group_size} do not divide a layer's {columns} inputs into even "
            "groups (choose a group_size that divides every layer's input size)"
        )
    groups = weight.reshape(rows, columns // group_size, group_size)
    # The scale and minimum are rounded to float16 first: they are what dequantizing uses.
    minimum = groups.amin(dim=2, keepdim=True).to(torch.float16)
    scale = ((groups.amax(dim=2, keepdim=True) - minimum.float()) / INT4_LEVELS).clamp(min=1e-6)
    scale = scale.to(torch.float16)
    q = ((groups - minimum.float()) / scale.float()).round().clamp(0, INT4_LEVELS).to(torch.uint8)
    q = q.reshape(rows, columns // 2, 2)
    packed = q[..., 0] | (q[..., 1] << 4)
    return packed, scale.squeeze(2), minimum.squeeze(2)


def dequantize_int4(
    packed: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor, group_size: int
) -> torch.Tensor:
    rows = packed.shape[0]
    q = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(rows, -1, group_size)
    weight = q.float() * scale.float().unsqueeze(2) + minimum.float().unsqueeze(2)
    return weight.reshape(rows, -1)


def linear_layers(model: torch.nn.Module, skip: Sequence[str]) -> list[tuple[str, torch.nn.Linear]]:
    """The model's Linear layers by name, but for those whose name ends with one of ``skip``."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and not any(name == s or name.endswith("." + s) for s in skip)
    ]


def quantize_weights(
    model: torch.nn.Module, bits: Literal[8, 4], group_size: int, skip: Sequence[str] = ()
) -> int:
    """Replace the Linear layers of ``model`` (but ``skip``) by weight-only quantized ones, in
    place; the number replaced. A layer that shares its weight with another module (an output
    layer tied to the input embeddings) is quantized apart: the embeddings stay float."""
    layers = linear_layers(model, skip)
    for name, linear in layers:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, WeightOnlyLinear(linear, bits, group_size))
    if layers and getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False  # nothing to tie any more
    return len(layers)


def quantize_dynamic_int8(model: torch.nn.Module, skip: Sequence[str] = ()) -> int:
    """PyTorch's dynamic int8 quantization of the Linear layers of ``model`` (but ``skip``),
    weights scaled per output channel, in place; the number replaced. Measured on
    SmolLM2-135M (40 WikiText-2 test passages, 128 tokens): perplexity 61.9 in float32, 280
    with per-tensor weight scales, 230 per channel; quantizing only the output layer, 66.9. The
    damage is in the decoder layers, whose activations (quantized per tensor at each call) have
    outliers: LLM.int8's finding."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = {name for name, _ in linear_layers(model, skip)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        quantize_dynamic(
            model, {name: per_channel_dynamic_qconfig for name in names}, inplace=True
        )
    return len(names)


def saved_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's state as ``torch.save`` writes it (packed weights included): what
    storing or loading it costs, which a parameter count cannot say for a quantized model. The
    bytes are counted as they are written, not kept."""
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
