"""Teachers that are Hugging Face sequence classifiers (``AutoModelForSequenceClassification``),
by hub id, local path, registered name or GGUF file, used as they are or fine-tuned on the task
once and cached.

The fine-tuned model is saved with ``save_pretrained`` into the content-addressed cache (key: the
base weights, the recipe and the training data), so it is built once and reloaded after.
Subclasses change what is trained and saved (``trainable_model``, ``save_trained``,
``load_trained``): the LoRA-tuned LLM teacher saves only its adapter and head.

A decoder LLM classifies from its last real token; a tokenizer without a padding token pads with
its end-of-sequence token, and the model is told which id that is, so the last real token is
found whichever side the padding is on.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from qcompress.cache import Cache
from qcompress.errors import QcompressError
from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import (
    ParameterCounts,
    PluginConfig,
    RunContext,
    TaskData,
    Teacher,
    count_parameters,
)
from qcompress.measure import MemorySampler, TokenRate, token_rate_columns
from qcompress.models import model_identity
from qcompress.training import Optimization, length_buckets, train_loop
from qcompress_plugins.bases.finetuned import load_classifier
from qcompress_plugins.kinds import CLASSIFICATION

TRAIN_INFO = "qcompress-train.json"


class FinetuneConfig(PluginConfig):
    epochs: int = Field(default=0, ge=0, le=1_000, description="0: use the model as it is")
    lr: float = Field(default=1e-4, gt=0, le=10)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    max_length: int = Field(
        default=64, ge=8, le=131_072, description="tokens kept when fine-tuning",
    )
    freeze_embeddings: bool = Field(
        default=True, description="keep the embedding tables fixed (faster, and little to gain)"
    )
    seed: int = Field(default=0, ge=0, le=4_294_967_295)


class HFTeacherConfig(FinetuneConfig):
    model: str = Field(description="hub id or local folder of a model")
    eval_max_length: int = Field(
        default=128, ge=8, le=131_072, description="tokens kept when predicting",
    )


class HFClassifierTeacher(Teacher):
    Config = HFTeacherConfig
    task_kinds = frozenset({CLASSIFICATION})
    description = "any AutoModelForSequenceClassification (hub id or path), optionally fine-tuned"
    columns = token_rate_columns()

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self._base: str | None = None  # the resolved base_model(): a folder or hub id
        self._model: torch.nn.Module | None = None
        self._tokenizer: Any = None
        self._fingerprint: str | None = None
        self._train_info: dict[str, Any] = {}
        self._load_s = 0.0
        self._device = torch.device("cpu")
        self._source: str | None = None
        self._rate = TokenRate()
        self._cache: Cache | None = None

    # -- where the weights come from ------------------------------------------------------

    def base_model(self) -> str:
        """The model as the settings name it (a registered name, a path, a hub id...)."""
        return self.config.model

    @property
    def base(self) -> str:
        if self._base is None:
            raise QcompressError("the teacher is used before prepare()")
        return self._base

    def _base_identity(self) -> str:
        return model_identity(self.base, self._cache)

    def prepare(self, task: TaskData, context: RunContext) -> None:
        config: HFTeacherConfig = self.config
        self._device = context.device
        self._cache = context.cache
        self._base = context.resolve_model(self.base_model())
        if config.epochs == 0:
            source = self.base
            weights: Any = self._base_identity()
        else:
            recipe = config.model_dump(mode="json", exclude={"model", "eval_max_length"})
            parts = {
                "base": self._base_identity(),
                "recipe": recipe,
                "train": task.train.fingerprint(),
                "labels": task.label_names,
            }
            weights = parts
            source = str(
                context.cache.directory(
                    "teachers", parts, lambda out: self._finetune(task, out, context)
                )
            )
            self._train_info = json.loads((Path(source) / TRAIN_INFO).read_text())
        # The logits depend on the weights and on how texts are cut when predicting.
        self._fingerprint = fingerprint_of("hf-teacher", weights, config.eval_max_length)
        self._source = source
        start = time.perf_counter()
        model, self._tokenizer = self.load_trained(source, task.num_classes)
        self._load_s = time.perf_counter() - start
        if model.config.num_labels != task.num_classes:
            raise QcompressError(
                f"teacher {source!r} has {model.config.num_labels} output classes but task "
                f"{task.name!r} has {task.num_classes}; fine-tune it (finetune epochs > 0)"
            )
        self._model = model.eval().to(self._device)

    def load_trained(self, source: str, classes: int) -> tuple[torch.nn.Module, Any]:
        """The classifier and tokenizer in ``source`` (the base, or what ``save_trained``
        wrote there)."""
        return load_classifier(source, classes=None, role="teacher")

    # -- fine-tuning ----------------------------------------------------------------------

    def trainable_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to fine-tune, some of its parameters frozen: here the embedding tables
        (all of them, with their layer norm, where the model exposes them as one module, as
        BERT-likes do; the word table otherwise)."""
        if self.config.freeze_embeddings:
            embeddings = getattr(model.base_model, "embeddings", None)
            (embeddings or model.get_input_embeddings()).requires_grad_(False)
        return model

    def save_trained(self, model: torch.nn.Module, tokenizer: Any, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

    def _finetune(self, task: TaskData, out_dir: Path, context: RunContext) -> None:
        config: FinetuneConfig = self.config
        # The new head and any adapter start from the recipe's seed, whatever ran before.
        torch.manual_seed(config.seed)
        base, tokenizer = load_classifier(self.base, task.num_classes, role="teacher")
        model = self.trainable_model(base).to(context.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        batches = length_buckets(task.train.texts, config.batch_size)
        shuffler = random.Random(config.seed)
        labels = task.train.labels

        def epoch_batches() -> list[list[int]]:
            shuffler.shuffle(batches)  # in place: each epoch reshuffles the last order
            return batches

        def batch_loss(rows: Sequence[int]) -> torch.Tensor:
            encoded = tokenizer(
                [task.train.texts[row] for row in rows],
                padding=True,
                truncation=True,
                max_length=config.max_length,
                return_tensors="pt",
            ).to(context.device)
            return F.cross_entropy(model(**encoded).logits, labels[list(rows)].to(context.device))

        start = time.perf_counter()
        with MemorySampler(context.device) as memory:
            report = train_loop(
                [model],
                trainable,
                config.epochs,
                len(batches),
                epoch_batches,
                batch_loss,
                # AdamW's default weight decay (0.01), as the recipe was measured with
                Optimization(
                    lr=config.lr,
                    weight_decay=0.01,
                    optimizer="adamw",
                    warmup_fraction=config.warmup_fraction,
                ),
                context.progress,
                f"fine-tuning teacher on {len(task.train)} texts",
                mean_over="batches",
            )
        base.config.id2label = dict(enumerate(task.label_names))
        base.config.label2id = {name: index for index, name in enumerate(task.label_names)}
        self.save_trained(model, tokenizer, out_dir)
        info = {
            "base_model": self.base_model(),
            "finetune_s": round(time.perf_counter() - start, 3),
            "finetune_memory_mb": memory.result(),
            "loss_per_epoch": report.loss_per_epoch,
            "steps": report.steps,
            "train_rows": len(task.train),
            "trainable_params": sum(p.numel() for p in trainable),
        }
        (out_dir / TRAIN_INFO).write_text(json.dumps(info, indent=2) + "\n")

    # -- the Teacher contract -------------------------------------------------------------

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            raise QcompressError("the teacher is used before prepare()")
        return self._model

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            raise QcompressError("the teacher is used before prepare()")
        return self._fingerprint

    @torch.inference_mode()
    def predict_logits(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        logits = torch.empty(len(texts), self.model.config.num_labels)
        for rows in length_buckets(texts, batch_size):
            encoded = self._tokenizer(
                [texts[row] for row in rows],
                padding=True,
                truncation=True,
                max_length=self.config.eval_max_length,
                return_tensors="pt",
            ).to(self._device)
            with self._rate.batch(len(rows), int(encoded["attention_mask"].sum())):
                logits[rows] = self.model(**encoded).logits.float().cpu()
        return logits

    def parameter_counts(self) -> ParameterCounts:
        total = count_parameters(self.model)
        trainable = self._train_info.get("trainable_params", 0)
        return ParameterCounts(trainable=trainable, inference_total=total)

    def encoder_source(self) -> str | None:
        """The (fine-tuned) folder: ``AutoModel`` loads its encoder without the head."""
        return self._source

    def describe(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model(),
            "load_s": round(self._load_s, 3),
            **self._train_info,
            **self._rate.summary(),
        }

