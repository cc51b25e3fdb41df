"""Language-modelling tasks over plain-text corpora (``<data dir>/text/``), cut into passages
of whole lines (:func:`qcompress.tasks.passages`) that models score one by one.

- ``tinyshakespeare``: ``text/tinyshakespeare.txt``; the first 90% of the characters train, the
  last 10% evaluate (the usual convention).
- ``wikitext2``: ``text/wikitext2/{valid,test}.txt`` (WikiText-2, tokenized, with ``<unk>``).
  Only valid and test are here, so students train on valid and are scored on test. Without a
  local copy, Hugging Face ``datasets`` (``wikitext``, ``wikitext-2-v1``) gives the same splits.
- ``text``: any corpus: ``train_file`` and ``eval_file``, or one ``file`` split by
  ``eval_fraction`` (paths relative to the data directory, or absolute).

Perplexities are per passage, so a model sees at most one passage of context: they are higher
than sliding-window perplexities over the whole test set, and comparable only within qcompress.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from qcompress import hookimpl
from qcompress.errors import DataError
from qcompress.interfaces import Split, Task, TaskConfig, TaskData
from qcompress.tasks import passages, subsample
from qcompress_plugins.kinds import CAUSAL_LM


class CorpusConfig(TaskConfig):
    passage_chars: int = Field(
        default=400, ge=16, le=1_000_000, description="longest passage, in characters",
    )


class TextConfig(CorpusConfig):
    file: str | None = Field(default=None, description="one corpus, split by eval_fraction")
    eval_fraction: float = Field(default=0.1, gt=0, lt=1, description="the corpus's last part")
    train_file: str | None = None
    eval_file: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> TextConfig:
        pair = self.train_file is not None and self.eval_file is not None
        if (self.file is None) == (not pair):
            raise ValueError("give either 'file', or both 'train_file' and 'eval_file'")
        return self


def read_corpus(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"missing corpus file {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read corpus file {path}: {error}") from None


class CorpusTask(Task):
    """Reads a corpus, cuts passages, subsamples them and records where they came from."""

    Config = CorpusConfig
    kind = CAUSAL_LM
    name = "text"

    @abstractmethod
    def texts(self, data_dir: Path | None) -> tuple[str, str, dict[str, Any]]:
        """The training text, the evaluation text and their provenance."""

    def locate(self, data_dir: Path | None, relative: str) -> Path:
        path = Path(relative).expanduser()
        if path.is_absolute():
            return path
        if data_dir is None:
            raise DataError(
                f"task {self.name}: no data directory set to find {relative} in "
                "(set QCOMPRESS_DATA_DIR, the suite's data_dir or --data-dir)"
            )
        return data_dir / path

    def load(self, data_dir: Path | None) -> TaskData:
        config: CorpusConfig = self.config
        train_text, eval_text, source = self.texts(data_dir)
        train = Split(passages(train_text, config.passage_chars))
        evaluation = Split(passages(eval_text, config.passage_chars))
        if not train.texts or not evaluation.texts:
            raise DataError(f"task {self.name}: no text in {source}")
        train = subsample(train, config.train_size, config.seed)
        evaluation = subsample(evaluation, config.eval_size, config.seed)
        return TaskData(
            name=self.name,
            label_names=[],
            train=train,
            eval=evaluation,
            kind=CAUSAL_LM,
            provenance={
                **source,
                "passage_chars": config.passage_chars,
                "train": {"passages": len(train), "chars": sum(map(len, train.texts))},
                "eval": {"passages": len(evaluation), "chars": sum(map(len, evaluation.texts))},
                "subsample_seed": config.seed,
            },
        )


class TextTask(CorpusTask):
    Config = TextConfig
    description = "language modelling on any plain-text corpus (file, or train_file/eval_file)"

    def texts(self, data_dir: Path | None) -> tuple[str, str, dict[str, Any]]:
        config: TextConfig = self.config
        if config.file is not None:
            path = self.locate(data_dir, config.file)
            return *split_tail(read_corpus(path), config.eval_fraction), {"source": str(path)}
        train = self.locate(data_dir, config.train_file)
        evaluation = self.locate(data_dir, config.eval_file)
        return (
            read_corpus(train),
            read_corpus(evaluation),
            {"source": {"train": str(train), "eval": str(evaluation)}},
        )


def split_tail(text: str, fraction: float) -> tuple[str, str]:
    """The text before and after its last ``fraction`` of characters (cut at a line end)."""
    cut = text.rfind("\n", 0, round(len(text) * (1 - fraction))) + 1
    return text[:cut], text[cut:]


class TinyShakespeare(CorpusTask):
    description = "tiny-shakespeare: first 90% of the characters train, last 10% evaluate"
    name = "tinyshakespeare"

    def texts(self, data_dir: Path | None) -> tuple[str, str, dict[str, Any]]:
        path = self.locate(data_dir, "text/tinyshakespeare.txt")
        return *split_tail(read_corpus(path), 0.1), {"source": str(path), "split": "90/10"}


class WikiText2(CorpusTask):
    description = "WikiText-2 (tokenized): trains on valid, scored on test"
    name = "wikitext2"

    def texts(self, data_dir: Path | None) -> tuple[str, str, dict[str, Any]]:
        folder = data_dir / "text" / "wikitext2" if data_dir is not None else None
        if folder is not None and (folder / "valid.txt").is_file():
            return (
                read_corpus(folder / "valid.txt"),
                read_corpus(folder / "test.txt"),
                {"source": str(folder), "train": "valid.txt", "eval": "test.txt"},
            )
        return *self._from_datasets(folder), {"source": "datasets:wikitext/wikitext-2-v1"}

    @staticmethod
    def _from_datasets(folder: Path | None) -> tuple[str, str]:
        import datasets

        try:
            splits = [
                datasets.load_dataset("wikitext", "wikitext-2-v1", split=split)
                for split in ("validation", "test")
            ]
        except Exception as error:  # hub unreachable, no cache
            looked = f"no {folder / 'valid.txt'}" if folder else "no data directory set"
            raise DataError(
                f"WikiText-2 not found ({looked}) and not loadable with datasets: "
                f"{type(error).__name__}: {error}"
            ) from None
        return "".join(splits[0]["text"]), "".join(splits[1]["text"])


@hookimpl
def register_tasks(register):
    register("text", TextTask)
    register("tinyshakespeare", TinyShakespeare)
    register("wikitext2", WikiText2)
