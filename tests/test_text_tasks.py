"""Language-modelling tasks: passages cut from plain-text corpora, the corpora's conventional
splits, and clear errors for missing files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from qcompress.errors import DataError
from qcompress.tasks import passages
from qcompress_plugins.kinds import CAUSAL_LM
from qcompress_plugins.tasks.text import TextTask, TinyShakespeare, WikiText2, split_tail


def test_passages_keep_whole_lines_and_break_at_blank_lines() -> None:
    text = "First:\nHello there.\n\nAll:\nYes.\nNo.\n"
    assert passages(text, 100) == ["First:\nHello there.", "All:\nYes.\nNo."]
    assert passages(text, 10) == ["First:", "Hello", "there.", "All:\nYes.", "No."]


def test_passages_cut_long_lines_between_words_and_long_words_inside() -> None:
    assert passages("aa bb cc dd\n" + "x" * 12, 5) == ["aa bb", "cc dd", "xxxxx", "xxxxx", "xx"]
    assert all(len(p) <= 7 for p in passages("one two three four five six seven", 7))


def test_split_tail_cuts_at_a_line_end() -> None:
    head, tail = split_tail("line one\nline two\nline three\n", 0.3)
    assert head + tail == "line one\nline two\nline three\n"
    assert head.endswith("\n") and tail == "line three\n"


def test_text_task_from_one_file(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("\n".join(f"line {i} of the corpus" for i in range(40)))
    task = TextTask(TextTask.Config(name="text", file="corpus.txt", passage_chars=50))
    data = task.load(tmp_path)
    assert data.kind == CAUSAL_LM and data.label_names == [] and data.train.labels is None
    assert data.eval.texts[-1].endswith("line 39 of the corpus")
    assert all(len(text) <= 50 for text in data.train.texts + data.eval.texts)
    assert data.provenance["eval"]["passages"] == len(data.eval)


def test_text_task_needs_one_file_or_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="either 'file', or both"):
        TextTask.Config(name="text", train_file="a.txt")
    with pytest.raises(ValidationError, match="either 'file', or both"):
        TextTask.Config(name="text", file="a.txt", train_file="b.txt", eval_file="c.txt")


def test_missing_corpus_names_the_file(tmp_path: Path) -> None:
    task = TinyShakespeare(TinyShakespeare.Config(name="tinyshakespeare"))
    with pytest.raises(DataError, match=r"missing corpus file .*tinyshakespeare\.txt"):
        task.load(tmp_path)
    with pytest.raises(DataError, match="no data directory set"):
        task.load(None)


@pytest.mark.data
def test_real_corpora_from_the_shared_data_dir(data_dir: Path) -> None:
    if not (data_dir / "text" / "tinyshakespeare.txt").is_file():
        pytest.skip(f"no text/ corpora under {data_dir}")
    shakespeare = TinyShakespeare(TinyShakespeare.Config(name="tinyshakespeare")).load(data_dir)
    train_chars = shakespeare.provenance["train"]["chars"]
    eval_chars = shakespeare.provenance["eval"]["chars"]
    assert 0.85 < train_chars / (train_chars + eval_chars) < 0.95
    assert shakespeare.train.texts[0].startswith("First Citizen:")
    wiki = WikiText2(WikiText2.Config(name="wikitext2", eval_size=100)).load(data_dir)
    assert wiki.provenance["train"] == {"passages": len(wiki.train),
                                        "chars": sum(map(len, wiki.train.texts))}  # fmt: skip
    assert len(wiki.eval) == 100 and "<unk>" in " ".join(wiki.train.texts)
