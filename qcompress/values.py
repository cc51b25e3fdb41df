"""The values plugins and the core exchange: texts and labels (:class:`Split`,
:class:`TaskData`), settings (:class:`PluginConfig`, :class:`TrainSettings`,
:class:`BackendSpec`), what training and scoring report (:class:`TrainReport`,
:class:`TokenLosses`, :class:`ParameterCounts`, :class:`Predictions`, :class:`Variant`), a
language model's :class:`TopTokens`, and
what a backend is (:class:`BackendInfo`). ``qcompress.interfaces`` holds the classes plugins
implement and re-exports these."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qcompress.fingerprint import fingerprint_of

# The largest seed numpy and torch both accept.
SEED_MAX = 2**32 - 1
# More texts than any task here has; a subsample larger than its split is warned about.
MAX_ROWS = 100_000_000


class PluginConfig(BaseModel):
    """Base of every plugin's settings: unknown keys are errors, values are checked (numbers
    must be finite: ``.inf`` or ``1e999`` in a suite is a mistake, not a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Split:
    """Texts and their integer labels (``None`` for language modelling: the texts are the
    targets)."""

    texts: list[str]
    labels: torch.Tensor | None = None  # long, [N]

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode())
            digest.update(b"\0")
        if self.labels is not None:
            digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TaskData:
    """A loaded task: the split students train on and the one they are scored on.

    ``provenance`` says where the data came from and how it was split (files, sizes, seed); it
    goes into every record. ``kind`` names the task kind (the runner fills it in from the
    task class when the task leaves it unset); ``label_names`` name the classes, if any.
    """

    name: str
    label_names: list[str]
    train: Split
    eval: Split
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    generation: GenerationSettings | None = None  # a generation task's decoding settings

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def fingerprint(self) -> str:
        return fingerprint_of(
            self.name, self.label_names, self.train.fingerprint(), self.eval.fingerprint()
        )


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters, counted honestly.

    ``trainable``: what the method trains. ``inference_total``: everything that must be loaded to
    predict, frozen encoders included. ``details``: named parts (e.g. ``encoder``, ``head``,
    ``circuit``) that add up to ``inference_total``. ``inference_bytes``: the bytes those take
    when the model knows them exactly (a quantized model: as many parameters, fewer bytes);
    otherwise four bytes a parameter are assumed.
    """

    trainable: int
    inference_total: int
    details: dict[str, int] = field(default_factory=dict)
    inference_bytes: int | None = None


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of a module (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for parameter in module.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


class TrainSettings(PluginConfig):
    """How a student is trained (the suite's ``train`` block, overridable per student)."""

    epochs: int = Field(default=3, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    lr: float = Field(default=1e-2, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0, le=10)


@dataclass
class TrainReport:
    """What training did: the mean loss of every epoch, steps taken, method-specific extras, and
    the loss of the first batch before any update (``None`` when the trainer did not say)."""

    loss_per_epoch: list[float]
    steps: int
    extras: dict[str, Any] = field(default_factory=dict)
    initial_loss: float | None = None


@dataclass(frozen=True)
class TokenLosses:
    """How well a language model predicts each text: the summed negative log-likelihood (nats)
    of the text's predicted tokens, and how many tokens were predicted (padding excluded).

    Measured against a teacher's :class:`TopTokens` on the same texts (same tokenizer), it
    also holds, per text and summed over the same tokens: ``kl``, the KL divergence from the
    teacher's next-token distribution to the model's, over the teacher's top k tokens and one
    bucket for all others (a lower bound of the full KL, exact when the teacher's tail is
    empty); ``top1``, the tokens where both rank the same token first; ``overlap``, the share
    of the teacher's top ``OVERLAP_K`` tokens that are also the model's."""

    nll: torch.Tensor  # float64, [N]
    tokens: torch.Tensor  # long, [N]
    kl: torch.Tensor | None = None  # float64, [N]
    top1: torch.Tensor | None = None  # float64, [N]
    overlap: torch.Tensor | None = None  # float64, [N]

    def mean_nll(self) -> float:
        """Nats per token over all texts, every token weighing the same."""
        return float(self.nll.sum() / self.tokens.sum().clamp_min(1))

    def per_token(self, name: str) -> float | None:
        """The mean over all predicted tokens of ``kl``, ``top1`` or ``overlap`` (``None`` when
        not measured against a teacher)."""
        summed = getattr(self, name)
        if summed is None:
            return None
        return float(summed.sum() / self.tokens.sum().clamp_min(1))


# How many of the teacher's most likely tokens the top-k overlap compares.
OVERLAP_K = 10


@dataclass(frozen=True)
class TopTokens:
    """A language model's next-token distributions over a list of texts, kept to the ``k``
    most likely tokens at every predicted position: the teacher's, computed once per split and
    cached, for token-level distillation and for comparing students with it.

    Positions are the texts' predicted tokens in order (every real token but the first, as the
    tokenizer and ``max_length`` of the model cut them): those of text ``i`` are rows
    ``offsets[i]:offsets[i + 1]``. ``logprobs`` are log-probabilities over the whole
    vocabulary, most likely first; ``tail`` is the log of the probability of all other tokens
    (at least log 1e-12, where the top k hold it all)."""

    ids: torch.Tensor  # long, [P, k]
    logprobs: torch.Tensor  # float32, [P, k]
    tail: torch.Tensor  # float32, [P]
    offsets: torch.Tensor  # long, [N + 1]

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.offsets.numel() - 1)

    def rows(self, texts: torch.Tensor | list[int]) -> TopTokens:
        """The entries of the texts numbered ``texts``, in that order."""
        chosen = [int(t) for t in texts]
        spans = [torch.arange(int(self.offsets[t]), int(self.offsets[t + 1])) for t in chosen]
        index = torch.cat(spans) if spans else torch.empty(0, dtype=torch.long)
        lengths = torch.tensor([len(span) for span in spans], dtype=torch.long)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        return TopTokens(self.ids[index], self.logprobs[index], self.tail[index], offsets)

    def first(self, counts: Sequence[int]) -> TopTokens | None:
        """The first ``counts[i]`` positions of each text ``i`` (a student that keeps fewer
        tokens of a text than the teacher predicts the first of the teacher's positions);
        ``None`` if a text has fewer positions than asked (it was cut otherwise)."""
        have = (self.offsets[1:] - self.offsets[:-1]).tolist()
        if len(counts) != len(have) or any(c > h for c, h in zip(counts, have, strict=True)):
            return None
        if list(counts) == have:
            return self
        index = torch.cat(
            [torch.arange(int(start), int(start) + count)
             for start, count in zip(self.offsets[:-1].tolist(), counts, strict=True)]
            or [torch.empty(0, dtype=torch.long)]
        )  # fmt: skip
        lengths = torch.tensor(list(counts), dtype=torch.long)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        return TopTokens(self.ids[index], self.logprobs[index], self.tail[index], offsets)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        return {"ids": self.ids, "logprobs": self.logprobs, "tail": self.tail,
                "offsets": self.offsets}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TopTokens:
        return cls(tensors["ids"], tensors["logprobs"], tensors["tail"], tensors["offsets"])


class GenerationSettings(PluginConfig):
    """How every model of a generation task answers its prompts: greedy decoding of at most
    ``max_new_tokens`` tokens, through the tokenizer's chat template where the model has one
    (``auto``: an instruct model is prompted as its users prompt it) or never."""

    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="tokens generated")
    chat_template: Literal["auto", "never"] = Field(
        default="auto", description="auto: the model's chat template where it has one"
    )


@dataclass(frozen=True)
class Responses:
    """What one model wrote for each prompt of a split, how many tokens each took, and which
    model wrote them (its name or path, as the suite gave it: the identity measures read it)."""

    texts: list[str]
    new_tokens: list[int]
    model: str

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.new_tokens):
            raise ValueError(f"{len(self.texts)} responses but {len(self.new_tokens)} counts")

    def __len__(self) -> int:
        return len(self.texts)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """The responses as tensors (UTF-8 bytes and lengths), for the tensor cache."""
        encoded = [text.encode() for text in (*self.texts, self.model)]
        joined = bytearray(b"".join(encoded))
        return {
            "bytes": torch.tensor(list(joined), dtype=torch.uint8),
            "lengths": torch.tensor([len(e) for e in encoded], dtype=torch.long),
            "new_tokens": torch.tensor(self.new_tokens, dtype=torch.long),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Responses:
        data = bytes(tensors["bytes"].tolist())
        texts, start = [], 0
        for length in tensors["lengths"].tolist():
            texts.append(data[start : start + length].decode())
            start += length
        return cls(texts[:-1], tensors["new_tokens"].tolist(), texts[-1])


# What a task kind gives students to learn from: class logits, a teacher's top tokens, its
# responses to prompts, or none.
Targets = torch.Tensor | TopTokens | Responses | None


@dataclass(frozen=True)
class Variant:
    """A trained student evaluated another way, e.g. its circuit run with shots and noise on
    another backend. The runner scores ``logits`` with the suite's metrics and records the
    result beside the cell's own; ``rows`` says which evaluation rows they cover (all when
    ``None``), ``details`` what the variant is."""

    label: str
    logits: torch.Tensor
    rows: torch.Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is, recorded with every result it produced."""

    name: str
    device: str
    exact: bool
    shots: int | None
    noise: str | None
    gradient: str  # "backprop", "adjoint" or "parameter-shift"
    dtype: str
    kernel: str | None = None  # the backend's own name for the implementation that ran


class BackendSpec(BaseModel):
    """A backend chosen in a plugin's settings: ``name`` plus that backend's own settings, e.g.
    ``{name: <backend>, shots: 1024}``, or just the name as a string.

    A plugin declares a field of this type; the suite loader checks the settings against the
    named backend's ``Config`` (and fills in its defaults) like any other plugin block, and
    :meth:`RunContext.backend` builds it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str  # a registered backend; a plugin's field gives its own default

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def settings(self) -> dict[str, Any]:
        """The backend's own settings (everything but the name)."""
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class Predictions:
    """What a metric sees, as the task kind fills it in: class logits on the evaluation split,
    the labels, and the teacher's logits on the same rows (``None`` when scoring the teacher
    itself); or, for language models, ``token_losses`` (the others ``None``)."""

    logits: torch.Tensor | None
    labels: torch.Tensor | None
    teacher_logits: torch.Tensor | None
    token_losses: TokenLosses | None = None
    # Generation: the prompts, the group of each (e.g. the wrapper an identity question came
    # in), the model's responses and the teacher's (None when scoring the teacher itself).
    prompts: list[str] | None = None
    groups: list[str] | None = None
    responses: Responses | None = None
    teacher_responses: Responses | None = None
