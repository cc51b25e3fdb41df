"""The plugin manager: loading, isolation of broken plugins, name clashes, the environment
switches, tracing, and `qcompress plugins`."""

from __future__ import annotations

import importlib.metadata
import json
import types

import pytest

from qcompress import hookimpl, hookspecs, interfaces
from qcompress.errors import PluginError
from qcompress.interfaces import Metric, ParameterCounts, PluginConfig, TaskConfig
from qcompress.plugins import (
    BLOCK_ENV,
    ENTRY_POINT_GROUP,
    KINDS,
    LOAD_ENV,
    TRACE_ENV,
    load_registry,
    reset_registry,
)
from qcompress.testing import run_cli

FIRST_PARTY = {
    "minilm-teacher": ("teacher", "minilm"),
    "hf-teacher": ("teacher", "hf"),
    "glue-tasks": ("task", "sst2"),
    "feature-mlp": ("student", "mlp"),
    "kd-objectives": ("objective", "kd"),
    "classification-metrics": ("metric", "accuracy"),
    "table-reporters": ("reporter", "terminal"),
}


@pytest.fixture(autouse=True)
def clean_plugin_state(monkeypatch):
    """No plugin switches from the caller's shell, and a fresh process-wide registry before
    and after every test (tests change the environment)."""
    for variable in (LOAD_ENV, BLOCK_ENV, TRACE_ENV):
        monkeypatch.delenv(variable, raising=False)
    reset_registry()
    yield
    reset_registry()


def plugin(**hooks):
    """A plugin object with the given hooks (name -> function taking ``register``)."""
    return types.SimpleNamespace(**{name: hookimpl(function) for name, function in hooks.items()})


class Student(interfaces.Student):
    """The least a student must be to be registered (it is never trained here)."""

    Config = PluginConfig
    task_kinds = frozenset({"classification"})

    def fit(self, train, teacher_logits, objective, settings):
        raise AssertionError("not trained in these tests")

    def predict_texts(self, texts):
        raise AssertionError("not run in these tests")

    def parameter_counts(self):
        return ParameterCounts(0, 0)


class Task(interfaces.Task):
    kind = "classification"

    def load(self, data_dir):
        raise AssertionError("not loaded in these tests")


METRIC = Metric(lambda predictions: 1.0, "always one", task_kind="classification")
VALID = {"register_students": Student, "register_metrics": METRIC, "register_tasks": Task}


def registering(kind_hook: str, *names: str, thing: object = None):
    def hook(register):
        for name in names:
            register(name, VALID[kind_hook] if thing is None else thing)

    return plugin(**{kind_hook: hook})


# ---------------------------------------------------------------------------------------------
# Loading


def test_first_party_plugins_load_cleanly():
    registry = load_registry()
    assert registry.broken() == []
    for plugin_name, (kind, thing_name) in FIRST_PARTY.items():
        assert plugin_name in registry.plugins
        assert thing_name in registry.names(kind)
        assert registry.provider(kind, thing_name) == plugin_name


def test_every_hookspec_has_a_kind():
    """A hook missing from KINDS would be accepted by pluggy but never collected."""
    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "qcompress_spec")}
    assert specs == set(KINDS.values())


def test_extra_plugin_registers_things():
    registry = load_registry(
        {"mine": registering("register_students", "tiny", "tinier", thing=Student)}
    )
    assert registry.get("student", "tiny") is Student
    assert registry.provider("student", "tinier") == "mine"
    assert registry.plugins["mine"].registers == {"student": ["tiny", "tinier"]}
    assert registry.plugins["mine"].error is None


def test_class_instance_with_hookimpl_methods_is_a_plugin():
    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            register("always-one", METRIC)

    registry = load_registry({"class-based": Plugin()})
    assert registry.get("metric", "always-one") is METRIC


# ---------------------------------------------------------------------------------------------
# Broken plugins


def test_duplicate_name_is_rejected_naming_both_plugins():
    first_student = type("First", (Student,), {})
    first = registering("register_students", "twin", thing=first_student)
    second = registering("register_students", "twin", thing=type("Second", (Student,), {}))
    registry = load_registry({"first-plugin": first, "second-plugin": second})

    error = registry.plugins["second-plugin"].error
    assert error is not None
    assert "'twin'" in error
    assert "'first-plugin'" in error and "'second-plugin'" in error
    assert [info.name for info in registry.broken()] == ["second-plugin"]
    # The first registration stays usable.
    assert registry.get("student", "twin") is first_student
    assert registry.provider("student", "twin") == "first-plugin"


def test_duplicate_with_a_first_party_name_is_rejected():
    registry = load_registry({"copycat": registering("register_students", "mlp")})
    error = registry.plugins["copycat"].error
    assert "'feature-mlp'" in error and "'copycat'" in error
    assert registry.provider("student", "mlp") == "feature-mlp"


def test_a_rejected_plugin_keeps_none_of_its_registrations():
    def hook(register):
        register("fresh", Student)
        register("mlp", Student)

    registry = load_registry({"half": plugin(register_students=hook)})
    assert registry.plugins["half"].error
    assert "fresh" not in registry.names("student")
    assert registry.plugins["half"].registers == {}


def test_same_name_twice_in_one_plugin_is_rejected():
    registry = load_registry({"stutter": registering("register_metrics", "m", "m")})
    assert "registered twice" in registry.plugins["stutter"].error
    assert "m" not in registry.names("metric")


@pytest.mark.parametrize("bad_name", ["", " padded ", 3])
def test_bad_thing_names_are_rejected(bad_name):
    registry = load_registry({"odd": registering("register_metrics", bad_name)})
    assert "non-empty strings" in registry.plugins["odd"].error


def test_misspelt_hook_is_reported_with_did_you_mean():
    def register_studnets(register):
        register("never", Student)

    registry = load_registry({"typo": plugin(register_studnets=register_studnets)})
    error = registry.plugins["typo"].error
    assert "'register_studnets'" in error
    assert "did you mean 'register_students'?" in error
    assert "never" not in registry.names("student")
    assert registry.get("student", "mlp")  # the others still load


def test_hook_with_wrong_argument_is_reported():
    registry = load_registry({"wrong-args": plugin(register_students=lambda add: None)})
    assert registry.plugins["wrong-args"].error
    assert "wrong-args" in [info.name for info in registry.broken()]


def test_raising_hook_marks_only_that_plugin_broken():
    def explode(register):
        register("early", Student)
        raise RuntimeError("boom")

    registry = load_registry(
        {
            "before": registering("register_students", "fine-before"),
            "exploding": plugin(register_students=explode),
            "after": registering("register_students", "fine-after"),
        }
    )
    assert registry.plugins["exploding"].error == "RuntimeError: boom"
    assert [info.name for info in registry.broken()] == ["exploding"]
    names = registry.names("student")
    assert {"fine-before", "fine-after", "mlp"} <= set(names)
    assert "early" not in names


def test_entry_point_that_fails_to_import_is_reported(monkeypatch):
    real = importlib.metadata.entry_points

    def with_ghost(**kwargs):
        found = list(real(**kwargs))
        ghost = importlib.metadata.EntryPoint(
            name="ghost", value="qcompress_no_such_module_xyz", group=ENTRY_POINT_GROUP
        )
        return [*found, ghost]

    monkeypatch.setattr(importlib.metadata, "entry_points", with_ghost)
    registry = load_registry()
    error = registry.plugins["ghost"].error
    assert error.startswith("failed to import 'qcompress_no_such_module_xyz'")
    assert "ModuleNotFoundError" in error
    assert [info.name for info in registry.broken()] == ["ghost"]
    assert registry.get("student", "mlp")


def test_cli_lists_and_warns_about_broken_plugins(monkeypatch, capsys, tmp_path):
    real = importlib.metadata.entry_points

    def with_ghost(**kwargs):
        ghost = importlib.metadata.EntryPoint(
            name="ghost", value="qcompress_no_such_module_xyz", group=ENTRY_POINT_GROUP
        )
        return [*real(**kwargs), ghost]

    monkeypatch.setattr(importlib.metadata, "entry_points", with_ghost)
    code, out, err = run_cli(capsys, "plugins")
    assert code == 0
    assert "ghost" in out and "broken" in out

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\ntask: {name: sst2}\nteacher: {name: minilm}\nstudents: [{name: mlp}]\n"
    )
    code, out, err = run_cli(capsys, "validate", str(suite))
    assert code == 0
    assert "warning" in err and "'ghost'" in err


# ---------------------------------------------------------------------------------------------
# Registry.get


def test_get_unknown_name_lists_known_names():
    registry = load_registry()
    with pytest.raises(PluginError) as caught:
        registry.get("student", "mlpp")
    message = str(caught.value)
    assert "unknown student 'mlpp'" in message
    known = (
        "bilstm, cnn, distil, hf, layer-drop, lora, mlp, pretrained, qdllm, qpa, qtha, quantized"
    )
    assert f"(known: {known})" in message
    assert "did you mean 'mlp'?" in message


def test_get_unknown_name_without_any_registered(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "glue-tasks")
    registry = load_registry()
    with pytest.raises(PluginError, match=r"unknown backend 'qiskit' \(known: none\)"):
        registry.get("backend", "qiskit")


def test_first_party_backends_are_registered():
    assert {"torch", "qiskit", "cirq"} <= set(load_registry().names("backend"))


# ---------------------------------------------------------------------------------------------
# Environment switches


def test_load_list_allows_only_named_plugins(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "glue-tasks, feature-mlp")
    registry = load_registry()
    assert set(registry.plugins) == {"glue-tasks", "feature-mlp"}
    assert registry.names("task") == ["sst2"]
    assert registry.names("teacher") == []


def test_empty_load_list_loads_no_entry_points(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "")
    registry = load_registry({"mine": registering("register_tasks", "t")})
    # Extra plugins are not entry points: the switches do not apply to them.
    assert set(registry.plugins) == {"mine"}
    assert all(registry.names(kind) == [] for kind in KINDS if kind != "task")
    assert registry.names("task") == ["t"]


def test_block_list_skips_named_plugins(monkeypatch):
    teachers = "minilm-teacher,hf-teacher,causal-lm-teacher,llm-lora-teacher,llm-prompt-teacher"
    monkeypatch.setenv(BLOCK_ENV, teachers)
    registry = load_registry()
    assert "minilm-teacher" not in registry.plugins
    assert "hf-teacher" not in registry.plugins
    assert registry.names("teacher") == []
    assert "feature-mlp" in registry.plugins


def test_block_wins_over_load(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "glue-tasks,feature-mlp")
    monkeypatch.setenv(BLOCK_ENV, "feature-mlp")
    assert set(load_registry().plugins) == {"glue-tasks"}


def test_blocked_plugin_makes_its_names_unknown_to_suites(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(BLOCK_ENV, "feature-mlp")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\ntask: {name: sst2}\nteacher: {name: minilm}\nstudents: [{name: mlp}]\n"
    )
    code, _, err = run_cli(capsys, "validate", str(suite))
    assert code == 2
    assert "unknown student 'mlp'" in " ".join(err.split())


def test_trace_prints_loads_and_registrations_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv(TRACE_ENV, "1")
    monkeypatch.setenv(BLOCK_ENV, "hf-teacher")
    load_registry(
        {
            "traced": registering("register_students", "t1"),
            "bad": plugin(register_studnets=lambda register: None),
        }
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert "qcompress plugins: plugin 'traced' registered student 't1'" in lines
    assert "qcompress plugins: plugin 'feature-mlp' registered student 'mlp'" in lines
    assert "qcompress plugins: skipped 'hf-teacher' (environment)" in lines
    assert any(line.startswith("qcompress plugins: plugin 'bad' is broken:") for line in lines)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_trace_is_silent_unless_enabled(monkeypatch, capsys, value):
    if value is not None:
        monkeypatch.setenv(TRACE_ENV, value)
    load_registry({"quiet": registering("register_students", "q")})
    assert capsys.readouterr().err == ""


def test_reset_registry_reloads_with_the_new_environment(monkeypatch):
    from qcompress.plugins import get_registry

    assert "feature-mlp" in get_registry().plugins
    monkeypatch.setenv(BLOCK_ENV, "feature-mlp")
    assert "feature-mlp" in get_registry().plugins  # cached until reset
    reset_registry()
    assert "feature-mlp" not in get_registry().plugins


# ---------------------------------------------------------------------------------------------
# `qcompress plugins`


def test_cli_plugins_lists_first_party_plugins(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    for plugin_name, (_, thing_name) in FIRST_PARTY.items():
        assert plugin_name in out
        assert thing_name in out
    assert "broken" not in out


def test_cli_plugins_json(capsys):
    code, out, _ = run_cli(capsys, "plugins", "--json")
    assert code == 0
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert set(FIRST_PARTY) <= set(listed)
    assert listed["feature-mlp"]["registers"] == {"student": ["mlp"]}
    assert listed["feature-mlp"]["module"] == "qcompress_plugins.students.feature_mlp"
    assert listed["kd-objectives"]["registers"] == {"objective": ["kd", "mse", "ce"]}
    assert all(entry["error"] is None for entry in listed.values())
    # Every setting a suite may give each thing, as docs/backends.md promises.
    torch = listed["torch-backend"]["things"]["backend"]["torch"]
    assert torch["settings"]["dtype"]["default"] == "complex64"
    assert {"gradient", "kernel"} <= set(torch["settings"])
    mlp = listed["feature-mlp"]["things"]["student"]["mlp"]["settings"]
    assert mlp["encoder"]["default"] == "minilm" and mlp["hidden"]["description"]
    kl = listed["classification-metrics"]["things"]["metric"]["kl"]
    assert kl["higher_is_better"] is False and kl["task_kind"] == "classification"
    assert listed["feature-mlp"]["distribution"] == "qcompress"


def test_cli_plugins_honours_the_load_list(monkeypatch, capsys):
    monkeypatch.setenv(LOAD_ENV, "glue-tasks")
    code, out, _ = run_cli(capsys, "plugins", "--json")
    assert code == 0
    assert [entry["name"] for entry in json.loads(out)] == ["glue-tasks"]


# ---------------------------------------------------------------------------------------------
# Regression tests of bugs found in review.


def test_plugin_name_clash_does_not_hide_the_working_plugin():
    registry = load_registry({"feature-mlp": registering("register_students", "other")})
    assert registry.plugins["feature-mlp"].error is None
    assert registry.plugins["feature-mlp"].registers == {"student": ["mlp"]}


# ---------------------------------------------------------------------------------------------
# What is registered is checked when it is registered


class NoConfig(Student):
    Config = None  # type: ignore[assignment]


class Unfinished(interfaces.Student):
    """Leaves parameter_counts out: it cannot be built."""

    Config = PluginConfig
    task_kinds = frozenset({"classification"})

    def fit(self, train, teacher_logits, objective, settings):
        raise AssertionError

    def predict_texts(self, texts):
        raise AssertionError


class NeedsAnEncoder(Student):
    """Written against an old doc: a fourth argument the runner never passes."""

    def __init__(self, config, task, context, encoder_source):
        super().__init__(config, task, context)


class ServesNothing(Student):
    task_kinds = frozenset()


class KindlessTask(interfaces.Task):
    def load(self, data_dir):
        raise AssertionError


class PlainConfigTask(Task):
    Config = PluginConfig  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("hook", "thing", "expected"),
    [
        ("register_students", object, "expected a subclass of qcompress.interfaces.Student"),
        ("register_students", "a string",
         "expected a subclass"),
        ("register_students", NoConfig, "NoConfig.Config must be a subclass of"),
        ("register_students", Unfinished, "cannot be built: it does not implement "
                                          "parameter_counts"),
        ("register_students", ServesNothing, "task_kinds must name the task kinds"),
        ("register_students", NeedsAnEncoder, "NeedsAnEncoder(config, task, context): missing "
                                              "a required argument: 'encoder_source'"),
        ("register_tasks", KindlessTask, "KindlessTask.kind must name its task kind"),
        ("register_tasks", PlainConfigTask, f"subclass of {TaskConfig.__module__}.TaskConfig"),
        ("register_metrics", Metric(lambda p: 1.0, "no kind"), "set task_kind"),
        ("register_metrics", lambda p: 1.0, "expected a qcompress.interfaces.Metric instance"),
        ("register_task_kinds", object(), "TaskKind instance"),
        ("register_models", "not callable", "returning a folder, a hub id or a .gguf file"),
    ],
)
def test_a_thing_that_cannot_work_marks_its_plugin_broken_with_the_reason(hook, thing, expected):
    registry = load_registry({"faulty": registering(hook, "it", thing=thing)})
    error = registry.plugins["faulty"].error
    assert error is not None and expected in error, error
    kind = next(kind for kind, name in KINDS.items() if name == hook)
    assert "it" not in registry.names(kind)
    # A suite naming it is told which plugin is broken and why, not just "unknown".
    with pytest.raises(PluginError, match="its plugin 'faulty' is broken"):
        registry.get(kind, "it")
