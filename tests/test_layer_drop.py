"""The ``layer-drop`` student on tiny GPT-2, Llama and Gemma 3 models: the layers kept and the
parameters left by formula, the config and key-value cache slots following them (generation
still runs), bad settings named; and through ``qcompress bench``, healed with token-level
distillation (forward and reverse KL), with the plain next-token loss and with a LoRA
(merged after training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qcompress.errors import QcompressError
from qcompress.interfaces import count_parameters
from qcompress_plugins.bases import language
from qcompress_plugins.students.layer_drop import decoder_layers, keep_layers


@pytest.fixture(params=["gpt2", "llama", "gemma3"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{request.param}_dir")


def widened(model_dir: Path, tmp_path: Path, layers: int = 4) -> Path:
    """The tiny model with ``layers`` decoder layers (so that dropping leaves a choice)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [
            "full_attention" if (i + 1) % 2 == 0 else "sliding_attention" for i in range(layers)
        ] if config.model_type.startswith("gemma3") else ["full_attention"] * layers
    torch.manual_seed(0)
    folder = tmp_path / f"{model_dir.parent.name}-{layers}"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return folder


def test_kept_layers_and_the_parameters_left(model_dir: Path, tmp_path: Path) -> None:
    folder = widened(model_dir, tmp_path)
    model, tokenizer = language.load_causal_lm(str(folder), "student")
    _, _, layers = decoder_layers(model)
    before = count_parameters(model)
    dropped = count_parameters(layers[1]) + count_parameters(layers[2])
    kinds = list(getattr(model.config, "layer_types", None) or [])

    kept = keep_layers(model, [0, 3])
    assert kept == [0, 3]
    assert count_parameters(model) == before - dropped
    assert model.config.num_hidden_layers == 2 and len(decoder_layers(model)[2]) == 2
    if kinds:  # Gemma 3: the kinds of attention follow the layers kept
        assert model.config.layer_types == [kinds[0], kinds[3]]
    slots = {m.layer_idx for m in decoder_layers(model)[2][1].modules() if hasattr(m, "layer_idx")}
    assert slots == {1}  # the second kept layer writes the second cache slot
    tokens = tokenizer(["the film was"], return_tensors="pt")
    generated = model.generate(**tokens, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == tokens["input_ids"].shape[1] + 3


@pytest.mark.parametrize("keep", [[], [1, 0], [0, 0], [0, 9], [-1]])
def test_bad_layer_lists_are_named(tiny_llama_dir: Path, keep: list[int]) -> None:
    model, _ = language.load_causal_lm(str(tiny_llama_dir), "student")
    with pytest.raises(QcompressError, match=r"keep must list distinct layers of 0\.\.1"):
        keep_layers(model, keep)


def test_every_other_layer_by_default(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    model, _ = language.load_causal_lm(str(widened(tiny_gpt2_dir, tmp_path, 5)), "student")
    assert keep_layers(model, "every-other") == [0, 2, 4]


def test_layer_drop_heals_through_bench(tiny_llama_dir: Path, tiny_text_dir: Path,
                                        tmp_path: Path) -> None:  # fmt: skip
    from test_end_to_end import bench_records

    student = {"name": "layer-drop", "max_length": 48}
    suite = {
        "name": "tiny-drop",
        "data_dir": str(tiny_text_dir),
        "device": "cpu",
        "task": {"name": "text", "file": "text/tiny.txt", "eval_fraction": 0.25,
                 "passage_chars": 120},
        "teacher": {"name": "causal-lm", "model": str(tiny_llama_dir), "max_length": 48},
        "objective": {"name": "token-kd"},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.003},
        "students": [
            {**student, "label": "forward"},
            {**student, "label": "reverse",
             "objective": {"name": "token-kd", "divergence": "reverse"}},
            {**student, "label": "lm", "objective": {"name": "lm"}},
            {**student, "label": "lora", "lora": {"rank": 4, "alpha": 8}},
        ],
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    }  # fmt: skip
    records = bench_records(tmp_path, suite)
    teacher = records.pop("teacher:causal-lm")
    model, _ = language.load_causal_lm(str(tiny_llama_dir), "student")
    half = count_parameters(model) - count_parameters(decoder_layers(model)[2][1])
    attention = decoder_layers(model)[2][0].self_attn
    lora_values = sum(4 * (p.in_features + p.out_features)
                      for p in (attention.q_proj, attention.v_proj))  # fmt: skip
    for label, record in records.items():
        assert record.status.value == "ok", (label, record.error)
        assert record.measured.details["kept_layers"] == [0]
        assert record.measured.details["layers_before"] == 2
        trainable = lora_values if label == "lora" else half
        assert record.measured.params["trainable"] == trainable, label
        assert record.measured.params["inference_total"] == half  # LoRA merged
        losses = record.measured.train_log["loss_per_epoch"]
        assert losses[-1] < losses[0], label
        assert record.measured.metrics["token_kl"] is not None
    assert teacher.measured.params["inference_total"] > half
