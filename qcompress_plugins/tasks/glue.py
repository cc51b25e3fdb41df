"""GLUE SST-2: binary sentiment of movie-review sentences (Socher et al. 2013).

Read from ``<data dir>/glue/sst2/{train,dev}.tsv`` (the GLUE distribution) when present,
else from Hugging Face ``datasets`` (``nyu-mll/glue``, config ``sst2``, or any dataset given as
``hf_path``, e.g. a local folder). Students train on a seeded subsample of the training split;
everything is scored on the dev split (GLUE's test labels are not public).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from qcompress import hookimpl
from qcompress.errors import DataError
from qcompress.interfaces import Split, Task, TaskConfig, TaskData
from qcompress.tasks import describe_split, load_hf_split, read_tsv, subsample
from qcompress_plugins.kinds import CLASSIFICATION

LABELS = ["negative", "positive"]


class SST2Config(TaskConfig):
    path: str | None = Field(
        default=None, description="folder with train.tsv and dev.tsv; else <data dir>/glue/sst2"
    )
    hf_path: str = Field(default="nyu-mll/glue", description="datasets path when no local copy")
    hf_config: str | None = Field(
        default="sst2", description="datasets config; ignored when hf_path is a local folder"
    )


class SST2(Task):
    Config = SST2Config
    kind = CLASSIFICATION
    description = "GLUE SST-2 sentiment (2 classes); scored on the dev split"

    def load(self, data_dir: Path | None) -> TaskData:
        config: SST2Config = self.config
        folder = (
            Path(config.path) if config.path else (data_dir / "glue" / "sst2" if data_dir else None)
        )
        if folder is not None and (folder / "train.tsv").is_file():
            train = read_tsv(folder / "train.tsv", "sentence", "label", classes=len(LABELS))
            evaluation = read_tsv(folder / "dev.tsv", "sentence", "label", classes=len(LABELS))
            source = str(folder)
        else:
            train, evaluation = self._from_datasets(folder)
            source = f"datasets:{config.hf_path}" + (
                f"/{config.hf_config}" if config.hf_config else ""
            )
        train = subsample(train, config.train_size, config.seed)
        evaluation = subsample(evaluation, config.eval_size, config.seed)
        return TaskData(
            name="sst2",
            label_names=LABELS,
            train=train,
            eval=evaluation,
            provenance={
                "source": source,
                "train": describe_split(train, LABELS),
                "eval": describe_split(evaluation, LABELS),
                "subsample_seed": config.seed,
            },
        )

    def _from_datasets(self, folder: Path | None) -> tuple[Split, Split]:
        config: SST2Config = self.config
        # A local folder of data files has no named configs; a hub dataset (GLUE) does.
        name = None if Path(config.hf_path).is_dir() else config.hf_config
        try:
            return (
                load_hf_split(config.hf_path, name, "train", "sentence", "label"),
                load_hf_split(config.hf_path, name, "validation", "sentence", "label"),
            )
        except DataError as error:
            looked = f"no {folder / 'train.tsv'}" if folder else "no data directory set"
            raise DataError(
                f"SST-2 not found ({looked}; set QCOMPRESS_DATA_DIR or the suite's data_dir to a "
                f"folder holding glue/sst2/train.tsv and dev.tsv), and {error}"
            ) from None


@hookimpl
def register_tasks(register):
    register("sst2", SST2)
