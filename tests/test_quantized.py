"""The ``quantized`` student: the teacher with int8 dynamically quantized Linear layers, no
training, through ``qcompress bench`` on a causal-lm suite (tiny Llama) and a classification
suite (tiny BERT): as many parameters as the teacher, fewer bytes, predictions close to the
teacher's; and refused on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qcompress.results import read_record
from qcompress_plugins.students.quantized import quantize_linear_int8, saved_bytes


def bench_records(root: Path, suite: dict) -> dict:
    from test_end_to_end import bench

    path = root / f"{suite['name']}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, _, err = bench(path, root / "results", root / "cache")
    assert code == 0, err
    records = {}
    for file in (root / "results" / suite["name"]).glob("*.json"):
        record = read_record(file)
        if record is not None:
            records[record.run["label"]] = record
    return records


def test_a_quantized_llm_keeps_its_parameters_in_fewer_bytes(
    tmp_path: Path, tiny_llama_dir: Path, tiny_text_dir: Path
) -> None:
    records = bench_records(tmp_path, {
        "name": "tiny-int8",
        "data_dir": str(tiny_text_dir),
        "device": "cpu",
        "task": {"name": "text", "file": "text/tiny.txt", "eval_fraction": 0.25,
                 "passage_chars": 120},
        "teacher": {"name": "causal-lm", "model": str(tiny_llama_dir), "max_length": 48},
        "students": [{"name": "quantized", "max_length": 48, "label": "int8"}],
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    })  # fmt: skip
    teacher, student = records["teacher:causal-lm"], records["int8"]
    assert student.status.value == "ok", student.error
    assert student.measured.params["trainable"] == 0
    assert student.measured.params["inference_total"] == teacher.measured.params["inference_total"]
    details = student.measured.details
    assert details["bytes_after"] < details["bytes_before"]
    assert student.measured.params["inference_mb"] == round(details["bytes_after"] / 2**20, 2)
    assert student.measured.params["inference_mb"] < teacher.measured.params["inference_mb"]
    assert student.measured.train_log["loss_per_epoch"] == []
    # Close to the model it came from, token by token.
    metrics = student.measured.metrics
    assert metrics["token_top1_agreement"] > 0.9 and metrics["token_kl"] < 0.01, metrics
    assert metrics["perplexity"] == pytest.approx(teacher.measured.metrics["perplexity"], rel=0.02)


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


def test_the_quantized_layers_are_int8(tiny_llama_dir: Path) -> None:
    from qcompress_plugins.bases import language

    model, _ = language.load_causal_lm(str(tiny_llama_dir), "student")
    before = saved_bytes(model)
    quantized = quantize_linear_int8(model)
    kinds = {type(module).__name__ for module in quantized.modules()}
    assert "Linear" in kinds and not any(
        type(m).__module__.startswith("torch.nn.modules.linear") for m in quantized.modules()
    )
    assert saved_bytes(quantized) < before


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
    student = QuantizedStudent(QuantizedStudent.Config(), task, context)
    with pytest.raises(QcompressError, match="runs on the CPU only; run this suite with"):
        student.fit(task.train, None, None, None)
