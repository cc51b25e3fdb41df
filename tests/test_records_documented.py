"""docs/records.md documents every key of the record (the pydantic models of
qcompress.record, the variant entries and the machine-load block the runner writes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qcompress import measure, record

DOCS = Path(__file__).resolve().parent.parent / "docs" / "records.md"
MODELS = [record.Record, record.Measured, record.Provenance, record.ComponentProvenance,
          record.Error, record.MetricInfo]
# Written as plain dicts by the runner, so no model lists them.
VARIANT_KEYS = ["label", "rows", "metrics", "student_metrics", "agreement_with_student",
                "details", "evaluate_s", "settings"]
ENVIRONMENT_KEYS = ["python", "platform", "cpu", "cpu_count", "torch_threads", "gpu", "cuda",
                    "packages", "git", "commit", "dirty"]


def keys() -> list[str]:
    found = [field.alias or name for model in MODELS for name, field in model.model_fields.items()]
    found += [f.name for f in dataclasses.fields(record.Column)]
    return sorted({*found, *VARIANT_KEYS, *ENVIRONMENT_KEYS})


@pytest.mark.parametrize("key", keys())
def test_record_key_is_documented(key: str) -> None:
    assert f"`{key}`" in DOCS.read_text(encoding="utf-8"), f"docs/records.md: document `{key}`"


def test_machine_load_keys_are_documented() -> None:
    with measure.MachineLoad() as load:
        pass
    text = DOCS.read_text(encoding="utf-8")
    for key in load.result():
        assert f"`{key}`" in text
