"""The ``quantized`` student: the teacher with quantized Linear layers (int8 or int4 weights,
or int8 dynamic), no training, through ``qcompress bench`` on a causal-lm suite (tiny Llama)
and a classification suite (tiny BERT): as many parameters as the teacher, fewer bytes,
predictions close to the teacher's; the quantization itself against a hand computation; the
dynamic scheme refused on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_end_to_end import bench_records

from qcompress_plugins.bases.quantization import (
    WeightOnlyLinear,
    dequantize_int4,
    quantize_dynamic_int8,
    quantize_int4,
    quantize_int8,
    quantize_weights,
    saved_bytes,
)


def tiny_llm_suite(tiny_llama_dir: Path, tiny_text_dir: Path, students: list) -> dict:
    return {
        "name": "tiny-quantized",
        "data_dir": str(tiny_text_dir),
        "device": "cpu",
        "task": {"name": "text", "file": "text/tiny.txt", "eval_fraction": 0.25,
                 "passage_chars": 120},
        "teacher": {"name": "causal-lm", "model": str(tiny_llama_dir), "max_length": 48},
        "students": students,
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    }  # fmt: skip


def test_a_quantized_llm_keeps_its_parameters_in_fewer_bytes(
    tmp_path: Path, tiny_llama_dir: Path, tiny_text_dir: Path
) -> None:
    records = bench_records(tmp_path, tiny_llm_suite(tiny_llama_dir, tiny_text_dir, [
        {"name": "quantized", "max_length": 48, "label": "int8"},
        {"name": "quantized", "max_length": 48, "scheme": "int4", "group_size": 16,
         "label": "int4"},
        {"name": "quantized", "max_length": 48, "scheme": "int8-dynamic", "label": "dynamic"},
        {"name": "quantized", "max_length": 48, "scheme": "int4", "group_size": 16,
         "skip": ["lm_head"], "label": "int4-float-head"},
    ]))  # fmt: skip
    teacher = records["teacher:causal-lm"]
    for label in ("int8", "int4", "dynamic", "int4-float-head"):
        student = records[label]
        assert student.status.value == "ok", student.error
        assert student.measured.params["trainable"] == 0
        assert student.measured.params["inference_total"] == (
            teacher.measured.params["inference_total"]
        )
        details = student.measured.details
        assert details["bytes_after"] < details["bytes_before"], label
        assert student.measured.params["inference_mb"] == round(details["bytes_after"] / 2**20, 2)
        assert student.measured.train_log["loss_per_epoch"] == []
    bytes_after = {label: records[label].measured.details["bytes_after"] for label in records
                   if label != "teacher:causal-lm"}  # fmt: skip
    assert bytes_after["int4"] < bytes_after["int8"] < bytes_after["int4-float-head"]
    assert records["int4-float-head"].measured.details["quantized_layers"] == (
        records["int4"].measured.details["quantized_layers"] - 1
    )
    # int8 weights stay close to the model they came from, token by token.
    metrics = records["int8"].measured.metrics
    assert metrics["token_top1_agreement"] > 0.9 and metrics["token_kl"] < 0.01, metrics
    assert metrics["perplexity"] == pytest.approx(teacher.measured.metrics["perplexity"], rel=0.02)
    assert records["int4"].measured.metrics["token_kl"] > metrics["token_kl"]


def test_a_group_size_that_does_not_divide_the_layers_fails_the_cell_clearly(
    tmp_path: Path, tiny_llama_dir: Path, tiny_text_dir: Path
) -> None:
    records = bench_records(tmp_path, tiny_llm_suite(tiny_llama_dir, tiny_text_dir, [
        {"name": "quantized", "max_length": 48, "scheme": "int4", "group_size": 6},
    ]), expect_code=1)  # fmt: skip
    student = next(r for label, r in records.items() if label != "teacher:causal-lm")
    assert student.status.value == "failed"
    assert "int4 groups of 6 do not divide a layer's 32 inputs" in student.error.message


def test_a_quantized_classifier_predicts_like_its_teacher(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    records = bench_records(tmp_path, {
        "name": "tiny-int8-cls",
        "data_dir": str(tiny_glue_dir),
        "device": "cpu",
        "task": {"name": "sst2"},
        "teacher": {"name": "hf", "model": str(tiny_bert_dir), "epochs": 1, "lr": 0.001},
        "students": [{"name": "quantized", "label": "int8"}],
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    })  # fmt: skip
    student = records["int8"]
    assert student.status.value == "ok", student.error
    assert student.measured.metrics["agreement"] >= 0.95


def test_int8_weights_round_to_the_nearest_step_of_their_row() -> None:
    weight = torch.tensor([[1.27, -0.5, 0.004], [0.0, 2.54, -2.54]])
    q, scale, _ = quantize_int8(weight)
    assert scale.float().squeeze(1).tolist() == pytest.approx([0.01, 0.02], rel=1e-3)
    assert q.tolist() == [[127, -50, 0], [0, 127, -127]]


def test_int4_packs_two_values_a_byte_and_rounds_within_half_a_step() -> None:
    # One row, two groups of four: 0..15 steps of 0.1 from -0.3, and a constant group.
    weight = torch.tensor([[-0.3, 1.2, 0.0, 0.05, 0.7, 0.7, 0.7, 0.7]])
    packed, scale, minimum = quantize_int4(weight, group_size=4)
    assert packed.dtype == torch.uint8 and packed.shape == (1, 4)
    # -0.3 -> 0, 1.2 -> 15, 0.0 -> 3, 0.05 -> round(3.5) = 4; the even column in the low half.
    assert packed[0, :2].tolist() == [0 | 15 << 4, 3 | 4 << 4]
    assert scale.float()[0, 0].item() == pytest.approx(0.1, rel=1e-3)
    assert minimum.float()[0].tolist() == pytest.approx([-0.3, 0.7], rel=1e-3)
    restored = dequantize_int4(packed, scale, minimum, 4)
    steps = scale.float().repeat_interleave(4, dim=1)
    assert ((restored - weight).abs() <= steps / 2 + 1e-3).all()


def test_weight_only_layers_compute_with_their_dequantized_weights() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 8)
    inputs = torch.randn(3, 64)
    for bits in (8, 4):
        layer = WeightOnlyLinear(linear, bits, group_size=32)
        expected = inputs @ layer.dequantize().T + linear.bias
        assert torch.allclose(layer(inputs), expected, atol=1e-5)
        assert torch.allclose(layer(inputs), linear(inputs), atol=0.2 if bits == 4 else 0.02)


def test_quantizing_replaces_the_linear_layers_and_saves_bytes(tiny_llama_dir: Path) -> None:
    from qcompress_plugins.bases import language

    model, _ = language.load_causal_lm(str(tiny_llama_dir), "student")
    before = saved_bytes(model)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert quantize_weights(model, 4, 16, skip=["lm_head"]) == linears - 1
    assert isinstance(model.lm_head, torch.nn.Linear)
    assert saved_bytes(model) < before

    model, _ = language.load_causal_lm(str(tiny_llama_dir), "student")
    assert quantize_dynamic_int8(model) == linears
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert saved_bytes(model) < before


def test_a_gpu_run_is_told_to_use_the_cpu(tmp_path: Path, tiny_glue_dir: Path) -> None:
    import torch

    from qcompress.cache import Cache
    from qcompress.context import LocalRunContext
    from qcompress.errors import QcompressError
    from qcompress.progress import ProgressReporter
    from qcompress_plugins.students.quantized import QuantizedStudent
    from qcompress_plugins.tasks.glue import SST2

    task = SST2(SST2.Config(name="sst2")).load(tiny_glue_dir)
    context = LocalRunContext(
        cache=Cache(tmp_path), progress=ProgressReporter(enabled=False),
        device=torch.device("cuda"),
    )  # fmt: skip
    student = QuantizedStudent(QuantizedStudent.Config(scheme="int8-dynamic"), task, context)
    with pytest.raises(QcompressError, match="runs on the CPU only; run this suite with"):
        student.fit(task.train, None, None, None)
