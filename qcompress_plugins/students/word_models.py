"""Small students over word embeddings, trained from scratch with the teacher's logits:

- ``bilstm``: Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple
  Neural Networks"): embeddings -> one bidirectional LSTM layer -> the last hidden state of each
  direction, concatenated -> ReLU layer -> logits. They distil with logit MSE (objective
  ``mse``); any objective works.
- ``cnn``: Kim 2014: embeddings -> 1-D convolutions of several widths -> ReLU -> max over time
  -> dropout -> logits.

No pretrained encoder runs at inference: the vocabulary is built from the task's training texts
(lower-cased words and punctuation, ``min_count`` occurrences), the embeddings are learnt, and
everything counts as trainable. (Tang et al. start from word2vec vectors, which are not available
offline; the embeddings here start random.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.interfaces import (
    Objective,
    ParameterCounts,
    PluginConfig,
    RunContext,
    Split,
    Student,
    TaskData,
    TrainReport,
    TrainSettings,
    count_parameters,
)
from qcompress.training import train_module
from qcompress_plugins.kinds import CLASSIFICATION

PAD, UNK = 0, 1
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Drop the columns that are padding in every row (batches are cut from one matrix padded
    to the longest text of the whole split)."""
    width = int((ids != PAD).sum(1).max().item()) if ids.numel() else 0
    return ids[:, : max(width, 1)]


class Vocabulary:
    """Word -> id, from training texts: ids 0 and 1 are padding and unknown words."""

    def __init__(self, texts: Sequence[str], min_count: int, max_size: int) -> None:
        counts = Counter(word for text in texts for word in words(text))
        # Most frequent first (ties alphabetical), so the same texts give the same ids.
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [word for word, count in ranked if count >= min_count][: max_size - 2]
        self.ids = {word: index + 2 for index, word in enumerate(kept)}

    def __len__(self) -> int:
        return len(self.ids) + 2

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """Token ids ``[N, L]``, right-padded with 0 to the longest text (at most
        ``max_length``); an empty text becomes one unknown word so every row has a token."""
        rows = [[self.ids.get(w, UNK) for w in words(text)][:max_length] or [UNK]
                for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row)
        return ids


class WordModelConfig(PluginConfig):
    embedding_dim: int = Field(default=128, ge=1, le=65_536)
    min_count: int = Field(
        default=1, ge=1, le=1_000_000, description="occurrences a word needs in training",
    )
    max_vocabulary: int = Field(default=30_000, ge=3, le=10_000_000)
    max_length: int = Field(default=64, ge=1, le=131_072, description="words kept per text")
    dropout: float = Field(default=0.1, ge=0, lt=1)


class BiLSTMConfig(WordModelConfig):
    hidden: int = Field(default=128, ge=1, le=65_536, description="LSTM units per direction")


class CNNConfig(WordModelConfig):
    widths: list[int] = Field(default_factory=lambda: [3, 4, 5], min_length=1)
    channels: int = Field(default=100, ge=1, le=65_536, description="filters per width")


class BiLSTMClassifier(torch.nn.Module):
    def __init__(self, vocabulary: int, config: BiLSTMConfig, classes: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, config.embedding_dim, padding_idx=PAD)
        self.lstm = torch.nn.LSTM(config.embedding_dim, config.hidden, batch_first=True,
                                  bidirectional=True)
        self.classify = torch.nn.Sequential(
            torch.nn.Dropout(config.dropout),
            torch.nn.Linear(2 * config.hidden, config.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, classes),
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trim_padding(ids)
        lengths = (ids != PAD).sum(1).clamp(min=1).cpu()
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embed(ids), lengths, batch_first=True, enforce_sorted=False
        )
        _, (final, _) = self.lstm(packed)  # final: [2 directions, B, hidden]
        return self.classify(torch.cat([final[0], final[1]], dim=-1))


class CNNClassifier(torch.nn.Module):
    def __init__(self, vocabulary: int, config: CNNConfig, classes: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, config.embedding_dim, padding_idx=PAD)
        self.widths = list(config.widths)
        self.convolutions = torch.nn.ModuleList(
            torch.nn.Conv1d(config.embedding_dim, config.channels, width)
            for width in config.widths
        )
        self.dropout = torch.nn.Dropout(config.dropout)
        self.classify = torch.nn.Linear(config.channels * len(config.widths), classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Pad on the right so the widest filter fits the shortest batch.
        ids = trim_padding(ids)
        short = max(self.widths) - ids.shape[1]
        if short > 0:
            ids = torch.nn.functional.pad(ids, (0, short), value=PAD)
        lengths = (ids != PAD).sum(1, keepdim=True)  # [B, 1]
        embedded = self.embed(ids).transpose(1, 2)  # [B, E, L]
        pooled = []
        for width, convolution in zip(self.widths, self.convolutions, strict=True):
            features = torch.relu(convolution(embedded))  # [B, C, L - width + 1]
            # Only windows inside the text count (one window when the text is shorter than the
            # filter), so a text's logits do not depend on the batch it is padded into.
            starts = torch.arange(features.shape[2], device=ids.device)[None]
            inside = starts + width <= lengths.clamp(min=width)
            pooled.append(features.masked_fill(~inside[:, None], float("-inf")).amax(dim=2))
        return self.classify(self.dropout(torch.cat(pooled, dim=1)))


class WordModelStudent(Student):
    task_kinds = frozenset({CLASSIFICATION})
    """Tokenise with a vocabulary built from the training split, train the network end to end
    on token ids against the objective."""

    network: type[torch.nn.Module]

    def __init__(self, config: WordModelConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.vocabulary = Vocabulary(task.train.texts, config.min_count, config.max_vocabulary)
        self.model: torch.nn.Module | None = None

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        return self.vocabulary.encode(texts, self.config.max_length)

    def fit(
        self,
        train: Split,
        teacher_logits: torch.Tensor,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        model = self.network(len(self.vocabulary), self.config, self.task.num_classes)
        self.model = model.to(self.context.device)
        # Batches are cut from one padded matrix; each network ignores the padding.
        return train_module(
            self.model,
            self.ids(train.texts),
            teacher_logits,
            train.labels,
            objective,
            settings,
            self.context.progress,
            description=f"training {type(self).__name__}",
        )

    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(self.ids(texts).to(self.context.device)).float().cpu()

    def parameter_counts(self) -> ParameterCounts:
        total = count_parameters(self.model)
        embeddings = count_parameters(self.model.embed)
        return ParameterCounts(
            trainable=total,
            inference_total=total,
            details={"embeddings": embeddings, "network": total - embeddings},
        )

    def describe(self) -> dict[str, Any]:
        return {"vocabulary": len(self.vocabulary)}


class BiLSTMStudent(WordModelStudent):
    Config = BiLSTMConfig
    description = "BiLSTM over word embeddings trained from scratch (Tang et al. 2019)"
    network = BiLSTMClassifier


class CNNStudent(WordModelStudent):
    Config = CNNConfig
    description = "CNN over word embeddings trained from scratch (Kim 2014)"
    network = CNNClassifier


@hookimpl
def register_students(register):
    register("bilstm", BiLSTMStudent)
    register("cnn", CNNStudent)
