"""The word-embedding students (``bilstm``, ``cnn``): vocabulary and padding, parameter counts
against hand formulas, and a few epochs of training on the tiny sentiment set beat chance."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_sentiment_rows

from qcompress.cache import Cache
from qcompress.context import LocalRunContext
from qcompress.interfaces import Split, TaskData, TrainSettings
from qcompress_plugins.objectives.kd import LogitMSE
from qcompress_plugins.students.word_models import (
    PAD,
    UNK,
    BiLSTMClassifier,
    BiLSTMConfig,
    BiLSTMStudent,
    CNNClassifier,
    CNNConfig,
    CNNStudent,
    Vocabulary,
    words,
)


def split(count: int, seed: int) -> Split:
    rows = tiny_sentiment_rows(count, seed)
    return Split([text for text, _ in rows], torch.tensor([label for _, label in rows]))


@pytest.fixture
def task() -> TaskData:
    return TaskData("tiny", ["negative", "positive"], split(160, seed=1), split(60, seed=2))


def test_words_and_vocabulary() -> None:
    assert words("The film's GREAT, isn't it?") == ["the", "film's", "great", ",", "isn't",
                                                     "it", "?"]  # fmt: skip
    vocabulary = Vocabulary(["b a a", "c a b", "d"], min_count=2, max_size=100)
    assert vocabulary.ids == {"a": 2, "b": 3}  # by frequency; 'c' and 'd' are too rare
    ids = vocabulary.encode(["a b c", "", "b"], max_length=2)
    assert ids.tolist() == [[2, 3], [UNK, PAD], [3, PAD]]
    assert len(Vocabulary(["a b c d e"], min_count=1, max_size=4)) == 4


def test_bilstm_parameters_by_hand() -> None:
    config = BiLSTMConfig(embedding_dim=8, hidden=6)
    model = BiLSTMClassifier(50, config, 3)
    embedding = 50 * 8
    lstm = 2 * 4 * (8 * 6 + 6 * 6 + 6 + 6)  # per direction: input, hidden weights, two biases
    head = (12 * 6 + 6) + (6 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == embedding + lstm + head


def test_cnn_parameters_by_hand() -> None:
    config = CNNConfig(embedding_dim=8, widths=[2, 3], channels=5)
    model = CNNClassifier(50, config, 2)
    expected = 50 * 8 + (8 * 2 * 5 + 5) + (8 * 3 * 5 + 5) + (10 * 2 + 2)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_padding_does_not_change_predictions() -> None:
    """A text alone and the same text in a batch padded to a longer one give the same logits."""
    torch.manual_seed(0)
    for network in (BiLSTMClassifier(20, BiLSTMConfig(embedding_dim=4, hidden=3), 2),
                    CNNClassifier(20, CNNConfig(embedding_dim=4, channels=3), 2)):
        network.eval()
        alone = torch.tensor([[5, 6, 7, 8, 9]])
        padded = torch.tensor([[5, 6, 7, 8, 9, PAD, PAD, PAD], [1, 2, 3, 4, 5, 6, 7, 8]])
        assert torch.allclose(network(alone)[0], network(padded)[0], atol=1e-6)


@pytest.mark.parametrize(("student_cls", "config"), [
    (BiLSTMStudent, BiLSTMConfig(embedding_dim=16, hidden=16)),
    (CNNStudent, CNNConfig(embedding_dim=16, channels=8)),
])  # fmt: skip
def test_trains_from_scratch_with_the_teacher_and_beats_chance(
    tmp_path, task, student_cls, config
) -> None:
    torch.manual_seed(0)
    context = LocalRunContext(Cache(tmp_path))
    student = student_cls(config, task, context)
    # A teacher that knows the answer: +-2 logits by label.
    teacher = torch.nn.functional.one_hot(task.train.labels, 2).float() * 4 - 2
    report = student.fit(task.train, teacher, LogitMSE(LogitMSE.Config(alpha=1.0)),
                         TrainSettings(epochs=8, batch_size=16, lr=0.01))
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0]
    predictions = student.predict_logits(task.eval, batch_size=32).argmax(-1)
    assert (predictions == task.eval.labels).float().mean().item() >= 0.8  # chance: 0.5
    counts = student.parameter_counts()
    assert counts.trainable == counts.inference_total > 0
    assert counts.details["embeddings"] == len(student.vocabulary) * 16
    assert student.describe()["vocabulary"] == len(student.vocabulary)
    # End to end from text gives the same logits as the batch path.
    texts = task.eval.texts[:3]
    assert torch.allclose(student.predict_texts(texts),
                          student.predict_logits(Split(texts, task.eval.labels[:3]), 3))
