"""The record: one self-describing JSON document per finished cell (and one for the teacher).

A record has three parts, as peft's ``method_comparison`` has run, train and meta parts:

- ``run``: what ran: the resolved configuration (suite, task, teacher, student, objective,
  training settings, seed). The cell id is a hash of it.
- ``measured``: what it measured: metrics, parameters, memory, latency, throughput, timings,
  the training curve, the plugin's own facts (``details``), variants, and how to show them
  (``columns`` declared by the plugins, ``metric_info`` with each metric's direction).
- ``provenance``: where it came from: every component's plugin, distribution, version and code
  identity; data and teacher fingerprints; device, software and hardware; the machine's load
  while it ran; start and finish times.

``status`` is ``ok``, ``failed`` (``error`` says why) or ``running``. Records written before
this schema (``qcompress.record/1``: the same facts, flat) are read and upgraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qcompress.fingerprint import fingerprint_of

SCHEMA = "qcompress.record/2"
SCHEMA_V1 = "qcompress.record/1"
READABLE_SCHEMAS = (SCHEMA, SCHEMA_V1)


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    RUNNING = "running"


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Column:
    """A column a plugin adds to the results table: the dotted key of a measured number in the
    record (e.g. ``details.head_latency_ms``), the header, and a ``str.format`` format."""

    key: str
    label: str
    format: str = "{:.4g}"


class MetricInfo(Part):
    """How to read a metric: its direction and what it is."""

    higher_is_better: bool = True
    description: str = ""


class Measured(Part):
    metrics: dict[str, float | None] = Field(default_factory=dict)
    metric_info: dict[str, MetricInfo] = Field(default_factory=dict)
    headline: str | None = None  # the metric that ranks models on this task kind
    params: dict[str, Any] = Field(default_factory=dict)
    memory_mb: dict[str, Any] = Field(default_factory=dict)
    latency_ms: dict[str, Any] = Field(default_factory=dict)
    throughput: dict[str, Any] = Field(default_factory=dict)
    timings_s: dict[str, Any] = Field(default_factory=dict)
    train_log: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    variants: list[dict[str, Any]] = Field(default_factory=list)
    scored_tokens: int | None = None
    # A generation task's exchanges (prompt, response, claimed identities) and their summary.
    generation: dict[str, Any] = Field(default_factory=dict)
    columns: list[Column] = Field(default_factory=list)


class ComponentProvenance(Part):
    """Which code produced one part of a record."""

    name: str  # what the suite calls it
    plugin: str | None = None  # the entry point (or extra plugin) that registered it
    distribution: str | None = None
    version: str | None = None
    code: str | None = None  # content hash of its source and the local modules it imports


class Error(Part):
    message: str
    traceback: str | None = None


class Provenance(Part):
    components: dict[str, ComponentProvenance] = Field(default_factory=dict)
    # A hash of the components' code identities: the record is reused only while it matches.
    code_identity: str | None = None
    fingerprints: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    device: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    load: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None


class Record(Part):
    """One cell's (or the teacher's) record; see the module docstring."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    role: str  # "teacher" or "student"
    status: Status = Status.RUNNING
    cell_id: str | None = None
    run: dict[str, Any]
    measured: Measured = Field(default_factory=Measured)
    provenance: Provenance = Field(default_factory=Provenance)
    error: Error | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def label(self) -> str:
        return str(self.run.get("label") or self.run.get("teacher", {}).get("name", "?"))

    @property
    def identity(self) -> str:
        """The cell id (records of schema /1 may lack it: then a hash of what ran)."""
        return self.cell_id or fingerprint_of(self.run)

    @property
    def seed(self) -> int | None:
        return self.run.get("seed")

    @property
    def dirty(self) -> bool:
        """Produced from a git checkout with uncommitted changes."""
        git = self.provenance.environment.get("git") or {}
        return bool(git.get("dirty"))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def parse_record(value: Any) -> Record:
    """A record from its JSON value, upgrading ``/1`` records; raises ``ValueError`` (pydantic's
    ``ValidationError`` is one) when the value is not a record of a readable schema."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    schema = value.get("schema")
    if schema == SCHEMA_V1:
        value = upgrade_v1(value)
    elif schema != SCHEMA:
        raise ValueError(f"schema {schema!r} is not one of {', '.join(READABLE_SCHEMAS)}")
    return Record.model_validate(value)


# The /1 record kept these sections at the top level.
_V1_MEASURED = (
    "metrics", "params", "memory_mb", "latency_ms", "throughput", "timings_s", "train_log",
    "details", "variants", "scored_tokens",
)
_V1_PROVENANCE = ("fingerprints", "data", "device", "environment", "started_at", "finished_at")


def upgrade_v1(value: dict[str, Any]) -> dict[str, Any]:
    """The ``/2`` shape of a ``/1`` record: the same facts, moved into their parts."""
    measured = {key: value[key] for key in _V1_MEASURED if value.get(key) is not None}
    provenance = {key: value[key] for key in _V1_PROVENANCE if value.get(key) is not None}
    error = None
    if value.get("error"):
        error = {"message": value["error"], "traceback": value.get("traceback")}
    return {
        "schema": SCHEMA,
        "role": value.get("role", "student"),
        "status": value.get("status", Status.RUNNING),
        "cell_id": value.get("cell_id"),
        "run": value.get("config") or {},
        "measured": measured,
        "provenance": provenance,
        "error": error,
    }
