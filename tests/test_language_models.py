"""Causal language modelling through ``qcompress bench``: a tiny GPT-2 built from a config and
saved locally, adapted by full fine-tuning, LoRA, QPA and QTHA on a plain-text corpus, scored
by perplexity with padding masked out; and the GPT-2 suite's clear failure when GPT-2 cannot be
reached."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from qcompress.results import read_record

pytest.importorskip("peft", reason="peft is in the project's dependencies")

REPO = Path(__file__).resolve().parent.parent
TOKEN_METRICS = ("token_kl", "token_top1_agreement", "token_top10_overlap")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, tiny_gpt2_dir: Path, tiny_text_dir: Path):
    from test_end_to_end import bench

    root = tmp_path_factory.mktemp("lm_run")
    train = {"epochs": 6, "batch_size": 16, "lr": 0.01}
    suite = {
        "name": "tiny-lm",
        "data_dir": str(tiny_text_dir),
        "device": "cpu",
        "task": {"name": "text", "file": "text/tiny.txt", "eval_fraction": 0.25,
                 "passage_chars": 120},
        "teacher": {"name": "causal-lm", "model": str(tiny_gpt2_dir), "max_length": 48},
        "train": train,
        "seeds": [0],
        "students": [
            {"name": "hf", "model": "teacher", "max_length": 48, "label": "full"},
            {"name": "lora", "model": "teacher", "max_length": 48, "label": "lora",
             "target_modules": ["c_attn"], "train": {"lr": 0.03}},
            {"name": "qpa", "model": "teacher", "max_length": 48, "target_modules": ["lm_head"],
             "label": "qpa",
             "rank": 4, "alpha": 8, "chunk_size": 64, "depth": 2},
            {"name": "qtha", "model": "teacher", "max_length": 48, "label": "qtha",
             "target_modules": ["c_attn"], "rank": 4, "qubits": 2, "layers": 1, "cores": 2,
             "bond": 2, "train": {"lr": 0.03}},
        ],
        "measure": {"latency_samples": 3, "warmup": 1, "throughput_samples": 8},
    }  # fmt: skip
    path = root / "tiny-lm.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, out, err = bench(path, root / "results", root / "cache")
    records = {}
    for file in (root / "results" / "tiny-lm").glob("*.json"):
        record = read_record(file)
        if record is not None and record.role in ("student", "teacher"):
            name = record.run.get("student", {}).get("name", "teacher")
            records[name] = record
    return {"code": code, "out": out, "err": err, "records": records}


def test_every_adapter_trains_a_causal_lm_end_to_end(lm_run) -> None:
    assert lm_run["code"] == 0, lm_run["err"]
    records = lm_run["records"]
    assert set(records) == {"teacher", "hf", "lora", "qpa", "qtha"}
    base = records["teacher"].measured.metrics["perplexity"]
    for name, record in records.items():
        assert record.status == "ok", (name, record.error)
        metrics = record.measured.metrics
        assert set(metrics) == {"perplexity", "token_nll", *TOKEN_METRICS}
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["token_nll"]), rel=1e-5)
        assert record.measured.scored_tokens > 0
        # What generating costs, at batch 1: a 48-token prompt (the tiny GPT-2 reads 64
        # tokens, 16 are left to write), then each new token from the key-value cache.
        details = record.measured.details
        assert details["prefill_tokens"] == 48
        assert details["prefill_ms"] > 0 and details["decode_ms_per_token"] > 0
        if name == "teacher":  # compared with itself: does not apply
            assert all(metrics[metric] is None for metric in TOKEN_METRICS)
        else:  # every student is compared with the teacher token by token
            assert metrics["token_kl"] > 0
            assert 0 <= metrics["token_top1_agreement"] <= 1
            assert 0 <= metrics["token_top10_overlap"] <= 1
    # The random base is near-uniform over its vocabulary; training on the corpus beats it.
    # (Adapters on a frozen random base move slowly; full fine-tuning and a generated lm_head
    # LoRA much faster.)
    for name in ("hf", "lora", "qpa", "qtha"):
        assert records[name].measured.metrics["perplexity"] < 0.9 * base, name
        losses = records[name].measured.train_log["loss_per_epoch"]
        assert len(losses) == 6 and losses[-1] < losses[0], name
    assert records["hf"].measured.metrics["perplexity"] < 0.3 * base
    # QPA's LoRA on the tied lm_head was merged into an untied copy: the embeddings are intact
    # and the merged model scores like the trained one (its last epoch's training loss).
    assert records["qpa"].measured.details["untied_output_embeddings"] is True
    for name in ("lora", "qpa", "qtha"):
        assert records[name].measured.details["merge_max_logit_change"] < 1e-4, name
    assert records["qpa"].measured.metrics["token_nll"] < records["qpa"].measured.train_log[
        "loss_per_epoch"][-1] + 0.5  # fmt: skip
    assert "perplexity" in lm_run["out"]


def test_lm_counts(lm_run) -> None:
    records = lm_run["records"]
    vocabulary, width, layers = records["qpa"].measured.params["inference_total"], 32, 2
    assert vocabulary > 0
    lora = records["lora"].measured.params
    # LoRA rank 8 on c_attn (32 -> 96) in 2 layers; a language model trains no new head.
    assert lora["lora_values"] == lora["trainable"] == layers * 8 * (width + 3 * width)
    qtha = records["qtha"].measured.params
    assert qtha["trainable"] == qtha["adapter"] and qtha["head"] == 0
    assert qtha["lora_equivalent"] == layers * 4 * (width + 3 * width)
    qpa = records["qpa"].measured.params
    assert qpa["trainable"] == qpa["generator"]  # the generator alone trains
    teacher_total = records["teacher"].measured.params["inference_total"]
    assert records["hf"].measured.params["trainable"] == teacher_total


def test_perplexity_ignores_padding(tiny_gpt2_dir: Path) -> None:
    from qcompress_plugins.bases import language

    model, tokenizer = language.load_causal_lm(str(tiny_gpt2_dir), "test")
    texts = ["the film was truly great and good .", "the plot was bad ."]
    together = language.token_losses(model, tokenizer, texts, 2, 48, torch.device("cpu"))
    alone = [language.token_losses(model, tokenizer, [t], 1, 48, torch.device("cpu"))
             for t in texts]  # fmt: skip
    assert together.tokens.tolist() == [8 - 1, 5 - 1]  # words minus the first (no context)
    for index, single in enumerate(alone):
        assert together.tokens[index] == single.tokens[0]
        assert together.nll[index].item() == pytest.approx(single.nll[0].item(), rel=1e-5)


def test_gpt2_suite_says_clearly_when_gpt2_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_text_dir: Path
) -> None:
    from test_end_to_end import bench

    data = tmp_path / "data"
    (data / "text" / "wikitext2").mkdir(parents=True)
    for name in ("valid.txt", "test.txt"):
        shutil.copy(tiny_text_dir / "text" / "tiny.txt", data / "text" / "wikitext2" / name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("QCOMPRESS_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)  # no local folder named gpt2 either
    code, out, err = bench(REPO / "suites" / "peft-gpt2.yaml", tmp_path / "r", tmp_path / "c")
    assert code != 0
    assert "cannot load the teacher's causal language model 'gpt2'" in err
    assert "Traceback" not in err + out
