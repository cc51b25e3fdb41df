"""The complete plugin example of docs/plugins.md runs as written: its code is taken from the
page, loaded as a plugin, and a suite with its student runs end to end."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from test_end_to_end import write_suite

import qcompress
from qcompress.plugins import load_registry
from qcompress.results import read_record

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def example_module(tmp_path: Path):
    text = DOC.read_text()
    found = re.search(
        r"<!-- example: qcompress_tinyq/__init__.py -->\n```python\n(.*?)```", text, re.S
    )
    assert found, "docs/plugins.md lost its complete example"
    path = tmp_path / "qcompress_tinyq.py"
    path.write_text(found.group(1))
    spec = importlib.util.spec_from_file_location("qcompress_tinyq", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_quantum_student_runs_as_written(
    tmp_path: Path, tiny_bert_dir: Path, tiny_glue_dir: Path
) -> None:
    registry = load_registry(extra_plugins={"tinyq": example_module(tmp_path)})
    assert not registry.broken(), registry.broken()
    students = [{"name": "tiny-vqc", "qubits": 3, "layers": 1, "train": {"epochs": 2}}]
    suite = write_suite(tmp_path, tiny_bert_dir, tiny_glue_dir, name="tinyq",
                        extra_students=students, seeds=[0])
    table = qcompress.run_suite(
        suite, results=tmp_path / "results", cache_dir=tmp_path / "cache", registry=registry
    )
    shown = table.display()
    row = shown[shown["model"].str.startswith("tiny-vqc")].iloc[0]
    assert row["qubits"] == "3"  # the plugin's own column
    assert row["head ms"] != "-"
    record = next(
        r for r in map(read_record, (tmp_path / "results" / "tinyq").glob("tiny-vqc*.json"))
        if r is not None
    )
    assert record.status == "ok", record.error
    params = record.measured.params
    assert params["trainable"] == params["head"] < params["inference_total"]
    assert record.run["student"]["backend"]["name"] == "torch"  # defaults filled in
