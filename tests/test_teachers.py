"""The Hugging Face classifier teacher on the tiny local BERT: loading as is, fine-tuning once
into the cache, predicting in the order given, and what its fingerprint covers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qcompress.cache import Cache
from qcompress.context import LocalRunContext
from qcompress.errors import QcompressError
from qcompress.interfaces import Split, TaskData
from qcompress.progress import ProgressReporter
from qcompress_plugins.bases.hf_teacher import HFClassifierTeacher
from qcompress_plugins.tasks.glue import SST2


@pytest.fixture
def task(tiny_glue_dir: Path) -> TaskData:
    return SST2(SST2.Config(name="sst2", train_size=48)).load(tiny_glue_dir)


@pytest.fixture
def context(tmp_path: Path) -> LocalRunContext:
    return LocalRunContext(
        cache=Cache(tmp_path / "cache"), progress=ProgressReporter(enabled=False)
    )


def teacher(tiny_bert_dir: Path, **settings) -> HFClassifierTeacher:
    return HFClassifierTeacher(HFClassifierTeacher.Config(model=str(tiny_bert_dir), **settings))


def test_used_as_it_is(tiny_bert_dir: Path, task: TaskData, context: LocalRunContext) -> None:
    model = teacher(tiny_bert_dir)
    with pytest.raises(QcompressError, match="before prepare"):
        model.fingerprint()
    model.prepare(task, context)
    logits = model.predict_logits(task.eval.texts, batch_size=8)
    assert logits.shape == (len(task.eval), 2)
    assert torch.isfinite(logits).all()
    counts = model.parameter_counts()
    assert counts.trainable == 0  # nothing was trained
    assert counts.inference_total == sum(p.numel() for p in model.model.parameters())
    assert context.cache.events == []  # no fine-tuning, nothing cached


def test_predictions_keep_the_order_given(
    tiny_bert_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    model = teacher(tiny_bert_dir)
    model.prepare(task, context)
    texts = task.eval.texts[:9]
    together = model.predict_logits(texts, batch_size=4)  # length-bucketed inside
    one_by_one = torch.cat([model.predict_logits([text], batch_size=1) for text in texts])
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)


def test_class_count_mismatch_is_a_user_error(
    tiny_bert_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    three = TaskData("three", ["a", "b", "c"], task.train, task.eval)
    with pytest.raises(QcompressError, match="has 2 output classes but task 'three' has 3"):
        teacher(tiny_bert_dir).prepare(three, context)


def test_missing_model_is_a_user_error(
    tmp_path: Path, task: TaskData, context: LocalRunContext
) -> None:
    missing = HFClassifierTeacher(HFClassifierTeacher.Config(model=str(tmp_path / "nothing")))
    with pytest.raises(QcompressError, match="cannot load teacher model"):
        missing.prepare(task, context)


def test_fine_tuned_once_then_reused(
    tiny_bert_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    first = teacher(tiny_bert_dir, epochs=1, lr=1e-3, batch_size=16)
    first.prepare(task, context)
    assert [(kind, hit) for kind, _, hit in context.cache.events] == [("teachers", False)]
    details = first.describe()
    assert details["train_rows"] == 48
    assert details["steps"] == 3
    assert len(details["loss_per_epoch"]) == 1
    total = sum(p.numel() for p in first.model.parameters())
    embeddings = sum(p.numel() for p in first.model.bert.embeddings.parameters())
    assert first.parameter_counts().trainable == total - embeddings  # embeddings frozen

    second = teacher(tiny_bert_dir, epochs=1, lr=1e-3, batch_size=16)
    second.prepare(task, context)
    assert context.cache.events[-1][2] is True
    assert second.fingerprint() == first.fingerprint()
    again = second.describe()
    assert again.pop("load_s") >= 0 and details.pop("load_s") >= 0  # a time: it varies
    assert again == details
    texts = task.eval.texts[:5]
    torch.testing.assert_close(second.predict_logits(texts, 8), first.predict_logits(texts, 8))

    other = teacher(tiny_bert_dir, epochs=1, lr=2e-3, batch_size=16)
    other.prepare(task, context)
    assert other.fingerprint() != first.fingerprint()
    assert context.cache.events[-1][2] is False


def test_fingerprint_depends_on_the_training_data(
    tiny_bert_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    model = teacher(tiny_bert_dir, epochs=1, lr=1e-3)
    model.prepare(task, context)
    fewer = TaskData(
        task.name,
        task.label_names,
        Split(task.train.texts[:32], task.train.labels[:32]),
        task.eval,
    )
    other = teacher(tiny_bert_dir, epochs=1, lr=1e-3)
    other.prepare(fewer, context)
    assert other.fingerprint() != model.fingerprint()


def test_fingerprint_covers_the_prediction_length(
    tiny_bert_dir: Path, task: TaskData, context: LocalRunContext
) -> None:
    short, long = teacher(tiny_bert_dir, eval_max_length=8), teacher(tiny_bert_dir)
    short.prepare(task, context)
    long.prepare(task, context)
    text = [" ".join(task.eval.texts[:4])]  # about 40 tokens: truncated at 8
    assert not torch.allclose(short.predict_logits(text, 1), long.predict_logits(text, 1))
    assert short.fingerprint() != long.fingerprint()
