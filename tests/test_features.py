"""qcompress.features.FrozenEncoder on a tiny local BERT, and RunContext's feature cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from qcompress.cache import Cache
from qcompress.context import LocalRunContext
from qcompress.features import FrozenEncoder
from qcompress.interfaces import Split
from qcompress.progress import ProgressReporter

HIDDEN = 32  # the tiny BERT's hidden size

# Deliberately not in length order, with repeats of a length, and one very short text.
TEXTS = [
    "the film was truly great and wonderful .",
    "dull",
    "the plot is a painful and tedious story and the acting was awful .",
    "a charming film",
    "the cast was quite brilliant .",
    "ugly",
]


def test_encode_shapes_and_dtype(tiny_bert_dir: Path) -> None:
    encoder = FrozenEncoder(tiny_bert_dir, pooling="mean", max_length=32)
    features = encoder.encode(TEXTS, batch_size=4)
    assert features.shape == (len(TEXTS), HIDDEN)
    assert features.dtype == torch.float32
    assert features.device.type == "cpu"
    assert torch.isfinite(features).all()
    assert encoder.hidden_size == HIDDEN
    assert encoder.encode([], batch_size=4).shape == (0, HIDDEN)


def test_encoder_is_frozen_and_counted(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    encoder = FrozenEncoder(tiny_bert_dir)
    assert not any(parameter.requires_grad for parameter in encoder.model.parameters())
    assert not encoder.model.training
    expected = sum(p.numel() for p in AutoModel.from_pretrained(tiny_bert_dir).parameters())
    assert encoder.parameter_count() == expected > 0


def test_poolings_differ(tiny_bert_dir: Path) -> None:
    pooled = {
        pooling: FrozenEncoder(tiny_bert_dir, pooling=pooling, max_length=32).encode(TEXTS)
        for pooling in ("mean", "cls", "last")
    }
    assert not torch.allclose(pooled["mean"], pooled["cls"])
    assert not torch.allclose(pooled["mean"], pooled["last"])
    assert not torch.allclose(pooled["cls"], pooled["last"])


def test_cls_pooling_is_the_first_hidden_state(tiny_bert_dir: Path) -> None:
    encoder = FrozenEncoder(tiny_bert_dir, pooling="cls", max_length=32)
    text = TEXTS[0]
    pooled = encoder.encode([text])  # loads the model and its tokenizer
    batch = encoder._tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**batch).last_hidden_state
    torch.testing.assert_close(pooled, hidden[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_order_is_kept_despite_length_sorting(tiny_bert_dir: Path, pooling: str) -> None:
    encoder = FrozenEncoder(tiny_bert_dir, pooling=pooling, max_length=32)
    together = encoder.encode(TEXTS, batch_size=2)  # sorted by length inside, batches of 2
    one_by_one = torch.cat([encoder.encode([text]) for text in TEXTS])
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)
    reversed_ = encoder.encode(TEXTS[::-1], batch_size=4)
    torch.testing.assert_close(reversed_, together.flip(0), rtol=1e-4, atol=1e-5)


def test_fingerprint_is_stable_and_changes_with_the_settings(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    base = FrozenEncoder(tiny_bert_dir, pooling="mean", max_length=32)
    assert base.fingerprint() == FrozenEncoder(tiny_bert_dir, "mean", 32).fingerprint()
    assert base.fingerprint() == FrozenEncoder(str(tiny_bert_dir), "mean", 32).fingerprint()
    assert base.fingerprint() != FrozenEncoder(tiny_bert_dir, "cls", 32).fingerprint()
    assert base.fingerprint() != FrozenEncoder(tiny_bert_dir, "last", 32).fingerprint()
    assert base.fingerprint() != FrozenEncoder(tiny_bert_dir, "mean", 64).fingerprint()
    # The identity is the folder's contents, not its location.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    assert FrozenEncoder(copy, "mean", 32).fingerprint() == base.fingerprint()
    # Computing the fingerprint does not load the model.
    assert base._model is None


def test_fingerprint_of_a_hub_id_is_the_name() -> None:
    hub_id = "someone/not-a-local-folder"
    first = FrozenEncoder(hub_id, "mean", 32)
    assert first.fingerprint() == FrozenEncoder(hub_id, "mean", 32).fingerprint()
    assert first.fingerprint() != FrozenEncoder(hub_id).fingerprint()  # max_length 128
    assert first.fingerprint() != FrozenEncoder("someone/other", "mean", 32).fingerprint()


def test_run_context_frozen_features_are_cached(tiny_bert_dir: Path, tmp_path: Path) -> None:
    context = LocalRunContext(
        cache=Cache(tmp_path / "cache"), progress=ProgressReporter(enabled=False)
    )
    encoder = context.frozen_encoder(str(tiny_bert_dir), "mean", 32)
    assert context.frozen_encoder(str(tiny_bert_dir), "mean", 32) is encoder  # one per run
    assert context.frozen_encoder(str(tiny_bert_dir), "cls", 32) is not encoder
    split = Split(TEXTS, torch.tensor([1, 0, 0, 1, 1, 0]))

    first = context.frozen_features(encoder, split, batch_size=2)
    second = context.frozen_features(encoder, split, batch_size=2)
    assert [(kind, hit) for kind, _, hit in context.cache.events] == [
        ("features", False),
        ("features", True),
    ]
    assert torch.equal(first, second)
    torch.testing.assert_close(first, encoder.encode(TEXTS), rtol=1e-4, atol=1e-5)

    # A fresh run (new context, new encoder object) reuses the disk entry without loading.
    fresh = LocalRunContext(
        cache=Cache(tmp_path / "cache"), progress=ProgressReporter(enabled=False)
    )
    fresh_encoder = fresh.frozen_encoder(str(tiny_bert_dir), "mean", 32)
    assert torch.equal(fresh.frozen_features(fresh_encoder, split), first)
    assert fresh.cache.events[-1][2] is True
    assert fresh_encoder._model is None


def test_run_context_features_differ_per_split(tiny_bert_dir: Path, tmp_path: Path) -> None:
    context = LocalRunContext(cache=Cache(tmp_path), progress=ProgressReporter(enabled=False))
    encoder = context.frozen_encoder(str(tiny_bert_dir), "mean", 32)
    context.frozen_features(encoder, Split(TEXTS[:3], torch.tensor([1, 0, 0])))
    context.frozen_features(encoder, Split(TEXTS[3:], torch.tensor([1, 1, 0])))
    assert [hit for _, _, hit in context.cache.events] == [False, False]
