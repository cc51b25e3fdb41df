"""qcompress.tasks (TSV, per-class text files, datasets folders, subsamples, stratified splits)
and the SST-2 task plugin that combines them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import DEV_ROWS, TRAIN_ROWS, tiny_sentiment_rows

from qcompress.errors import DataError
from qcompress.interfaces import Split
from qcompress.plugins import load_registry
from qcompress.tasks import (
    describe_split,
    load_hf_split,
    read_text_per_class,
    read_tsv,
    stratified_split,
    subsample,
    take,
)
from qcompress_plugins.tasks.glue import SST2


def make_split(labels: list[int]) -> Split:
    return Split([f"text {row}" for row in range(len(labels))], torch.tensor(labels))


# ---------------------------------------------------------------------------------------------
# read_tsv


def test_read_tsv_with_header_finds_columns_by_name(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    # Columns in another order than asked for; text is stripped; quotes are kept verbatim.
    path.write_text('label\tsentence\n1\t a "good" film \n0\tbad\n', encoding="utf-8")
    split = read_tsv(path, "sentence", "label")
    assert split.texts == ['a "good" film', "bad"]
    assert split.labels.tolist() == [1, 0]
    assert split.labels.dtype == torch.long


def test_read_tsv_with_header_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeffsentence\tlabel\nfine\t1\n".encode())
    assert read_tsv(path, "sentence", "label").texts == ["fine"]


def test_read_tsv_without_header_uses_column_positions(tmp_path: Path) -> None:
    path = tmp_path / "cola.tsv"  # CoLA's layout: source, label, original label, sentence
    path.write_text("gj04\t1\t\tThe book fell .\ngj04\t0\t*\tBook the fell .\n", encoding="utf-8")
    split = read_tsv(path, 3, 1)
    assert split.texts == ["The book fell .", "Book the fell ."]
    assert split.labels.tolist() == [1, 0]


def test_read_tsv_unknown_column_names_the_columns_found(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("text\ty\nfine\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"expected columns 'sentence' and 'label'.*'text', 'y'"):
        read_tsv(path, "sentence", "label")


def test_read_tsv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing data file"):
        read_tsv(tmp_path / "nope.tsv", "sentence", "label")


@pytest.mark.parametrize(
    "bad_line",
    ["a film without a label", "a film\tpositive"],
    ids=["missing-column", "label-not-int"],
)
def test_read_tsv_malformed_row_names_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(f"sentence\tlabel\ngood\t1\nbad\t0\n{bad_line}\nok\t1\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_tsv(path, "sentence", "label")
    assert str(caught.value).startswith(f"{path}:4: malformed row")


def test_read_tsv_malformed_row_line_number_without_header(tmp_path: Path) -> None:
    path = tmp_path / "cola.tsv"
    path.write_text("gj04\t1\t\tfine .\ngj04\tx\t\tbroken .\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_tsv(path, 3, 1)
    assert str(caught.value).startswith(f"{path}:2: malformed row")


def test_read_tsv_empty_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=str(path)):
        read_tsv(path, "sentence", "label")


def test_read_tsv_header_only_is_an_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "header.tsv"
    path.write_text("sentence\tlabel\n", encoding="utf-8")
    split = read_tsv(path, "sentence", "label")
    assert len(split) == 0


# ---------------------------------------------------------------------------------------------
# read_text_per_class


def test_read_text_per_class_labels_by_file_position_and_skips_blank_lines(
    tmp_path: Path,
) -> None:
    negative, positive = tmp_path / "train_neg.txt", tmp_path / "train_pos.txt"
    negative.write_text("sad\n\n  gloomy  \n", encoding="utf-8")
    positive.write_text("happy\n", encoding="utf-8")
    split = read_text_per_class([negative, positive])
    assert split.texts == ["sad", "gloomy", "happy"]
    assert split.labels.tolist() == [0, 0, 1]


def test_read_text_per_class_missing_file(tmp_path: Path) -> None:
    present = tmp_path / "a.txt"
    present.write_text("x\n")
    with pytest.raises(DataError, match=r"missing data file .*b\.txt"):
        read_text_per_class([present, tmp_path / "b.txt"])


# ---------------------------------------------------------------------------------------------
# subsample and stratified_split


def test_subsample_is_seeded_deterministic_and_aligned() -> None:
    split = make_split([row % 3 for row in range(200)])
    first, again = subsample(split, 50, seed=7), subsample(split, 50, seed=7)
    assert len(first) == 50
    assert first.texts == again.texts
    assert torch.equal(first.labels, again.labels)
    # Rows keep their original order, and every label still belongs to its text.
    rows = [int(text.split()[1]) for text in first.texts]
    assert rows == sorted(rows)
    assert first.labels.tolist() == [row % 3 for row in rows]


def test_subsample_different_seeds_differ() -> None:
    split = make_split([row % 2 for row in range(200)])
    assert subsample(split, 50, seed=0).texts != subsample(split, 50, seed=1).texts


@pytest.mark.parametrize("size", [None, 10, 11])
def test_subsample_whole_split_when_size_unset_or_too_large(size: int | None) -> None:
    split = make_split([0, 1] * 5)
    assert subsample(split, size, seed=3) is split


def test_take_selects_rows() -> None:
    split = make_split([0, 1, 0, 1])
    taken = take(split, [3, 0])
    assert taken.texts == ["text 3", "text 0"]
    assert taken.labels.tolist() == [1, 0]


def test_stratified_split_preserves_class_ratios() -> None:
    split = make_split([0] * 70 + [1] * 30)
    train, test = stratified_split(split, [0.8, 0.2], seed=0)
    assert Counter(train.labels.tolist()) == {0: 56, 1: 24}
    assert Counter(test.labels.tolist()) == {0: 14, 1: 6}
    # A partition: disjoint parts covering every row once.
    assert sorted(train.texts + test.texts) == sorted(split.texts)
    assert not set(train.texts) & set(test.texts)


def test_stratified_split_three_parts_and_three_classes() -> None:
    split = make_split([0] * 40 + [1] * 20 + [2] * 40)
    parts = stratified_split(split, [0.5, 0.25, 0.25], seed=4)
    assert [len(part) for part in parts] == [50, 25, 25]
    assert Counter(parts[0].labels.tolist()) == {0: 20, 1: 10, 2: 20}
    assert Counter(parts[1].labels.tolist()) == {0: 10, 1: 5, 2: 10}


def test_stratified_split_is_deterministic_and_seed_dependent() -> None:
    split = make_split([row % 2 for row in range(100)])
    first = stratified_split(split, [0.7, 0.3], seed=5)
    again = stratified_split(split, [0.7, 0.3], seed=5)
    other = stratified_split(split, [0.7, 0.3], seed=6)
    assert [part.texts for part in first] == [part.texts for part in again]
    assert first[1].texts != other[1].texts


def test_stratified_split_rejects_fractions_not_adding_to_one() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        stratified_split(make_split([0, 1] * 5), [0.5, 0.4], seed=0)


def test_describe_split_counts_per_class() -> None:
    described = describe_split(make_split([0, 0, 1]), ["negative", "positive"])
    assert described == {"rows": 3, "per_class": {"negative": 2, "positive": 1}}


# ---------------------------------------------------------------------------------------------
# load_hf_split (local folders only: the tests run with the hub switched off)


def write_csv_dataset(folder: Path, splits: dict[str, list[tuple[str, int]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        lines = ["sentence,label", *(f'"{text}",{label}' for text, label in rows)]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.usefixtures("hf_datasets_cache")
def test_load_hf_split_reads_a_local_csv_folder_offline(tmp_path: Path) -> None:
    folder = write_csv_dataset(
        tmp_path / "dataset",
        {
            "train": [(" a great film ", 1), ("dull", 0), ("lovely", 1)],
            "validation": [("awful", 0)],
        },
    )
    train = load_hf_split(str(folder), None, "train", "sentence", "label")
    assert train.texts == ["a great film", "dull", "lovely"]
    assert train.labels.tolist() == [1, 0, 1]
    assert train.labels.dtype == torch.long
    assert load_hf_split(str(folder), None, "validation", "sentence", "label").texts == ["awful"]


@pytest.mark.usefixtures("hf_datasets_cache")
def test_load_hf_split_reads_a_local_parquet_folder(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder = tmp_path / "parquet"
    folder.mkdir()
    frame = pandas.DataFrame({"text": ["yes", "no"], "y": [1, 0]})
    frame.to_parquet(folder / "train.parquet", index=False)
    split = load_hf_split(str(folder), None, "train", "text", "y")
    assert split.texts == ["yes", "no"]
    assert split.labels.tolist() == [1, 0]


@pytest.mark.usefixtures("hf_datasets_cache")
def test_load_hf_split_missing_column_is_a_data_error(tmp_path: Path) -> None:
    folder = write_csv_dataset(tmp_path / "dataset", {"train": [("fine", 1)]})
    with pytest.raises(DataError, match=r"has no column\(s\) \['text'\]; it has \['sentence'"):
        load_hf_split(str(folder), None, "train", "text", "label")


@pytest.mark.usefixtures("hf_datasets_cache")
def test_load_hf_split_missing_split_is_a_data_error(tmp_path: Path) -> None:
    folder = write_csv_dataset(tmp_path / "dataset", {"train": [("fine", 1)]})
    with pytest.raises(DataError, match=r"cannot load split 'validation' of dataset"):
        load_hf_split(str(folder), None, "validation", "sentence", "label")


@pytest.mark.usefixtures("hf_datasets_cache")
def test_load_hf_split_unknown_dataset_is_a_data_error_offline(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(DataError, match="cannot load"):
        load_hf_split(str(missing), None, "train", "sentence", "label")


def test_an_unreachable_hub_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (or no connection), a hub dataset is refused in well under a second, not after
    half a minute of the datasets library's retries."""
    import time

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError, match="from the hub: offline mode is set"):
        load_hf_split("nyu-mll/glue", "sst2", "train", "sentence", "label")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("sentence\tlabel\ngood\t1\nodd\t7\n", ":3: label 7 is not one of the task's classes 0..1"),
        ("sentence\tlabel\ngood\t1\nodd\t-1\n", ":3: label -1 is not one of the task's classes"),
        (b"sentence\tlabel\ncaf\xe9\t1\n", ": not UTF-8 text"),
        ("sentence\tlabel\n" + "x" * 5_000_000 + "\n", ":2: malformed row ['x"),
    ],
    ids=["label-too-large", "label-negative", "not-utf8", "huge-malformed-row"],
)
def test_bad_data_files_get_a_short_message_with_file_and_line(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    path = tmp_path / "train.tsv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_tsv(path, "sentence", "label", classes=2)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert len(message) < 600  # an excerpt, not the 5 MB row


# ---------------------------------------------------------------------------------------------
# The SST-2 task plugin


def sst2(**settings) -> SST2:
    return SST2(SST2.Config(name="sst2", **settings))


def test_sst2_is_registered_by_its_plugin() -> None:
    assert load_registry().get("task", "sst2") is SST2


def test_sst2_loads_from_the_data_dir(tiny_glue_dir: Path) -> None:
    data = sst2().load(tiny_glue_dir)
    assert data.name == "sst2"
    assert data.label_names == ["negative", "positive"]
    assert data.num_classes == 2
    assert (len(data.train), len(data.eval)) == (TRAIN_ROWS, DEV_ROWS)
    expected = tiny_sentiment_rows(TRAIN_ROWS, seed=1)
    assert data.train.texts == [text for text, _ in expected]
    assert data.train.labels.tolist() == [label for _, label in expected]
    assert data.provenance["source"] == str(tiny_glue_dir / "glue" / "sst2")
    assert data.provenance["train"] == {
        "rows": TRAIN_ROWS,
        "per_class": {"negative": TRAIN_ROWS // 2, "positive": TRAIN_ROWS // 2},
    }


def test_sst2_explicit_path_wins_and_subsamples_are_seeded(tiny_glue_dir: Path) -> None:
    folder = tiny_glue_dir / "glue" / "sst2"
    data = sst2(path=str(folder), train_size=30, eval_size=10, seed=3).load(None)
    again = sst2(path=str(folder), train_size=30, eval_size=10, seed=3).load(None)
    other = sst2(path=str(folder), train_size=30, eval_size=10, seed=4).load(None)
    assert (len(data.train), len(data.eval)) == (30, 10)
    assert data.fingerprint() == again.fingerprint()
    assert data.fingerprint() != other.fingerprint()
    assert data.provenance["subsample_seed"] == 3


@pytest.mark.usefixtures("hf_datasets_cache")
def test_sst2_through_hf_path_with_a_local_folder(tmp_path: Path) -> None:
    train_rows, dev_rows = tiny_sentiment_rows(20, seed=1), tiny_sentiment_rows(6, seed=2)
    folder = write_csv_dataset(tmp_path / "sst2-csv", {"train": train_rows, "validation": dev_rows})
    # No TSV folder anywhere, so the task goes to `datasets` with the local folder.
    data = sst2(hf_path=str(folder), hf_config=None).load(tmp_path / "empty-data-dir")
    assert data.train.texts == [text for text, _ in train_rows]
    assert data.eval.labels.tolist() == [label for _, label in dev_rows]
    assert data.provenance["source"] == f"datasets:{folder}"


@pytest.mark.usefixtures("hf_datasets_cache")
def test_sst2_without_any_data_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        sst2(hf_path=str(tmp_path / "missing"), hf_config=None).load(tmp_path)
    message = str(caught.value)
    assert f"no {tmp_path / 'glue' / 'sst2' / 'train.tsv'}" in message
    assert "QCOMPRESS_DATA_DIR" in message


@pytest.mark.data
def test_real_sst2_from_the_shared_data_dir(data_dir: Path) -> None:
    if not (data_dir / "glue" / "sst2" / "train.tsv").is_file():
        pytest.skip(f"no glue/sst2 under {data_dir}")
    data = sst2().load(data_dir)
    assert (len(data.train), len(data.eval)) == (67_349, 872)
    assert set(data.train.labels.unique().tolist()) == {0, 1}
    assert all(data.train.texts[:100])


@pytest.mark.data
def test_real_cola_reads_without_header(data_dir: Path) -> None:
    path = data_dir / "glue" / "cola" / "train.tsv"
    if not path.is_file():
        pytest.skip(f"no {path}")
    split = read_tsv(path, 3, 1)
    assert len(split) == 8_551
    assert set(split.labels.unique().tolist()) == {0, 1}
