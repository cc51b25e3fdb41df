"""Every class of suite error: a SuiteError naming the file, the line, the key path and what was
expected; through the CLI, exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qcompress.errors import SuiteError
from qcompress.plugins import BLOCK_ENV, LOAD_ENV, TRACE_ENV, load_registry, reset_registry
from qcompress.suite import load_suite, load_suites
from qcompress.testing import run_cli

REPO = Path(__file__).resolve().parent.parent
SST2_SUITE = REPO / "suites" / "sst2.yaml"

# A valid suite; line numbers below refer to it (line 1 is `name: errors`).
VALID = """\
name: errors
task: {name: sst2, train_size: 100}
teacher: {name: minilm}
seeds: [0, 1]
students:
  - name: mlp
    hidden: 16
  - {name: mlp, hidden: 0, objective: {name: ce}}
metrics: [accuracy, kl]
"""


@pytest.fixture(autouse=True)
def first_party_only(monkeypatch):
    for variable in (LOAD_ENV, BLOCK_ENV, TRACE_ENV):
        monkeypatch.delenv(variable, raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def write(tmp_path: Path, text: str | bytes, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def edited(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


def suite_error(path: Path, registry) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(path, registry)
    assert caught.value.exit_code == 2
    return str(caught.value)


def problem_line(message: str, path: Path, line: int, loc: str) -> str:
    """The one line of ``message`` about ``loc`` at ``path:line``."""
    prefix = f"{path}:{line}: {loc}: "
    found = [text.strip() for text in message.splitlines() if text.strip().startswith(prefix)]
    assert found, f"no problem {prefix!r} in:\n{message}"
    return found[0].removeprefix(prefix)


def flat(text: str) -> str:
    """Undo the console's line wrapping."""
    return " ".join(text.split())


def assert_cli_refuses(capsys, tmp_path: Path, suite: Path, *fragments: str) -> None:
    """`validate` and `bench` both exit 2 with the message, no traceback, nothing written."""
    results = tmp_path / "results"
    cache = tmp_path / "cache"
    for args in (
        ["validate", str(suite)],
        ["bench", str(suite), "--results", str(results), "--cache-dir", str(cache)],
    ):
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert "Traceback" not in err and "Traceback" not in out
        assert flat(err).startswith("error:")
        for fragment in fragments:
            assert flat(fragment) in flat(err), (fragment, err)
    assert not results.exists() or not any(results.rglob("*"))
    assert not cache.exists()


# ---------------------------------------------------------------------------------------------
# The valid suites


def test_valid_suite_passes(tmp_path, registry, capsys):
    suite = load_suite(write(tmp_path, VALID), registry)
    assert [spec.label for spec in suite.students] == ["mlp(hidden=16)", "mlp(hidden=0)"]
    assert len(suite.cells()) == 4
    code, out, _ = run_cli(capsys, "validate", str(tmp_path / "suite.yaml"))
    assert code == 0
    assert "2 students x 2 seeds = 4 cells" in out


def test_a_student_may_have_its_own_seeds(tmp_path, registry, capsys):
    path = write(tmp_path, edited("metrics:", "  - {name: mlp, hidden: 8, seeds: [7]}\nmetrics:"))
    suite = load_suite(path, registry)
    assert [(c.spec.label, c.seed) for c in suite.cells()][4:] == [("mlp(hidden=8)", 7)]
    code, out, _ = run_cli(capsys, "validate", str(path))
    assert code == 0
    assert "3 students x 2 seeds (1 with their own seeds) = 5 cells" in out


@pytest.mark.parametrize("seeds", ["[]", "[1, 1]", "3", "[a]"])
def test_a_students_bad_seeds_are_named(tmp_path, registry, seeds):
    path = write(
        tmp_path, edited("metrics:", f"  - {{name: mlp, hidden: 8, seeds: {seeds}}}\nmetrics:")
    )
    problem = problem_line(suite_error(path, registry), path, 9, "students[2].seeds")
    assert "distinct integers" in problem or "non-empty list of integers" in problem


def test_shipped_sst2_suite_expands_to_fifteen_distinct_cells(registry, capsys):
    suite = load_suite(SST2_SUITE, registry)
    cells = suite.cells()
    assert len(suite.students) == 5 and suite.seeds == [0, 1, 2]
    assert len(cells) == 15
    assert len({cell.cell_id for cell in cells}) == 15
    assert len({cell.file_name for cell in cells}) == 15
    assert {(cell.spec.label, cell.spec.objective.name, cell.seed) for cell in cells} == {
        (label, objective, seed)
        for label, objective in [
            ("qdllm", "qdllm"),
            ("mlp(hidden=64)", "kd"),
            ("mlp(hidden=match-qdllm)", "kd"),
            ("mlp(hidden=64)", "ce"),
            ("mlp(hidden=0)", "kd"),
        ]
        for seed in (0, 1, 2)
    }
    assert suite.metrics == ["accuracy", "macro_f1", "agreement", "kl", "js", "ece_gap"]
    code, out, err = run_cli(capsys, "validate", str(SST2_SUITE))
    assert code == 0, err
    assert "5 students x 3 seeds = 15 cells" in out


def test_cell_ids_are_stable_across_loads(registry):
    first = [cell.cell_id for cell in load_suite(SST2_SUITE, registry).cells()]
    second = [cell.cell_id for cell in load_suite(SST2_SUITE, registry).cells()]
    assert first == second


# ---------------------------------------------------------------------------------------------
# Suite keys and plugin keys


def test_unknown_top_level_key(tmp_path, registry, capsys):
    path = write(tmp_path, VALID + "studnets: []\n")
    message = suite_error(path, registry)
    assert message.startswith("invalid suite (1 problem); nothing was run:")
    problem = problem_line(message, path, 10, "studnets")
    assert problem.startswith("unknown key; expected one of: ")
    assert "students" in problem and "teacher" in problem and "seeds" in problem
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:10: studnets: unknown key")


def test_unknown_key_in_a_student_lists_the_student_keys(tmp_path, registry, capsys):
    path = write(tmp_path, edited("    hidden: 16", "    hiden: 16"))
    message = suite_error(path, registry)
    problem = problem_line(message, path, 7, "students[0].hiden")
    assert problem == (
        "unknown key; expected one of: dropout, encoder, hidden, label, max_length, "
        "objective, pooling, seeds, train"
    )
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:7: students[0].hiden: unknown key")


def test_unknown_key_in_a_nested_block(tmp_path, registry):
    path = write(tmp_path, edited("{name: minilm}", "{name: minilm, epochz: 2}"))
    problem = problem_line(suite_error(path, registry), path, 3, "teacher.epochz")
    assert problem.startswith("unknown key; expected one of:")
    assert "epochs" in problem


def test_wrong_type(tmp_path, registry, capsys):
    path = write(tmp_path, edited("hidden: 16", "max_length: abc"))
    problem = problem_line(suite_error(path, registry), path, 7, "students[0].max_length")
    assert problem.startswith("expected a valid integer")
    assert problem.endswith("got 'abc'")
    assert_cli_refuses(
        capsys, tmp_path, path, f"{path}:7: students[0].max_length: expected a valid"
    )


def test_wrong_type_of_a_suite_key(tmp_path, registry):
    path = write(tmp_path, edited("seeds: [0, 1]", "seeds: zero"))
    problem = problem_line(suite_error(path, registry), path, 4, "seeds")
    assert problem.startswith("expected a valid list")


def test_out_of_range_plugin_value(tmp_path, registry, capsys):
    path = write(tmp_path, edited("hidden: 0,", "max_length: 4,"))
    problem = problem_line(suite_error(path, registry), path, 8, "students[1].max_length")
    assert problem == "expected greater than or equal to 8, got 4"
    assert_cli_refuses(
        capsys, tmp_path, path, f"{path}:8: students[1].max_length: expected greater"
    )


@pytest.mark.parametrize("value", ["-1", "abc", "true"])
def test_bad_mlp_width(tmp_path, registry, value):
    path = write(tmp_path, edited("hidden: 0,", f"hidden: {value},"))
    problem = problem_line(suite_error(path, registry), path, 8, "students[1].hidden")
    assert problem.startswith("expected a hidden width 0..65536 or 'match-qdllm', got")


@pytest.mark.parametrize("seeds", ["[0, 0]", "[-1]", "[]"])
def test_out_of_range_seeds(tmp_path, registry, capsys, seeds):
    path = write(tmp_path, edited("seeds: [0, 1]", f"seeds: {seeds}"))
    message = suite_error(path, registry)
    assert f"{path}:4: seeds: " in message
    if seeds == "[]":
        assert "at least 1 item" in message
    else:
        assert "seeds must be distinct integers from 0 to 4294967295" in message
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:4: seeds: ")


def test_out_of_range_train_setting(tmp_path, registry):
    path = write(tmp_path, VALID + "train: {epochs: 0}\n")
    problem = problem_line(suite_error(path, registry), path, 10, "train.epochs")
    assert problem == "expected greater than or equal to 1, got 0"


def test_unknown_plugin_name_suggests_the_close_one(tmp_path, registry, capsys):
    path = write(tmp_path, edited("  - name: mlp", "  - name: mlpp"))
    problem = problem_line(suite_error(path, registry), path, 6, "students[0].name")
    assert problem == (
        "unknown student 'mlpp' (known: bilstm, cnn, distil, hf, layer-drop, lora, mlp, "
        "pretrained, qdllm, qpa, qtha, quantized); "
        "did you mean 'mlp'?"
    )
    assert_cli_refuses(capsys, tmp_path, path, "did you mean 'mlp'?")


@pytest.mark.parametrize(
    ("old", "new", "line", "loc", "kind", "suggestion"),
    [
        ("{name: sst2,", "{name: sst3,", 2, "task.name", "task", "sst2"),
        ("{name: minilm}", "{name: minlm}", 3, "teacher.name", "teacher", "minilm"),
        ("{name: ce}", "{name: cee}", 8, "students[1].objective.name", "objective", "ce"),
    ],
)
def test_unknown_plugin_names_of_every_kind(
    tmp_path, registry, old, new, line, loc, kind, suggestion
):
    path = write(tmp_path, edited(old, new))
    problem = problem_line(suite_error(path, registry), path, line, loc)
    assert problem.startswith(f"unknown {kind} ")
    assert problem.endswith(f"did you mean {suggestion!r}?")


def test_unknown_metric(tmp_path, registry, capsys):
    path = write(tmp_path, edited("[accuracy, kl]", "[accuracy, acuracy, kll]"))
    message = suite_error(path, registry)
    assert message.startswith("invalid suite (2 problems)")
    problem = problem_line(message, path, 9, "metrics[1]")
    assert problem.startswith(
        "unknown metric 'acuracy' (known: accuracy, agreement, ece, ece_gap, ice, ice_teacher, js, "
        "kl, macro_f1, perplexity, rse, rse_content, rse_structure, rse_style, token_kl, "
        "token_nll, token_top10_overlap, token_top1_agreement, weighted_f1)"
    )
    assert problem.endswith("did you mean 'accuracy'?")
    assert "metrics[2]: unknown metric 'kll'" in message
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:9: metrics[1]: unknown metric 'acuracy'")


def test_unknown_reporter(tmp_path, registry):
    path = write(tmp_path, VALID + "reports: [terminal, markdwn]\n")
    problem = problem_line(suite_error(path, registry), path, 10, "reports[1]")
    assert problem.endswith("did you mean 'markdown'?")


def test_missing_required_key(tmp_path, registry, capsys):
    path = write(tmp_path, VALID.replace("teacher: {name: minilm}\n", ""))
    problem = problem_line(suite_error(path, registry), path, 1, "teacher")
    assert problem == "missing required key (or 'teachers', a list of them)"
    assert_cli_refuses(capsys, tmp_path, path, "teacher: missing required key")


def test_all_plugin_problems_are_reported_together(tmp_path, registry):
    text = edited("hidden: 16", "hidden: abc").replace("hidden: 0,", "hidden: -1,")
    path = write(tmp_path, text.replace("[accuracy, kl]", "[acc]"))
    message = suite_error(path, registry)
    assert message.startswith("invalid suite (3 problems)")
    for loc in ("students[0].hidden", "students[1].hidden", "metrics[0]"):
        assert f": {loc}: " in message


def test_same_student_twice_needs_a_label(tmp_path, registry):
    path = write(tmp_path, VALID.replace("metrics:", "  - {name: mlp, hidden: 16}\nmetrics:"))
    problem = problem_line(suite_error(path, registry), path, 9, "students[2]")
    assert "same student and objective as students[0]" in problem
    assert "'label'" in problem


# ---------------------------------------------------------------------------------------------
# Grids: tasks x teachers

GRID = """\
name: grid
tasks:
  - {name: sst2, train_size: 100}
  - {name: senti, train_size: 100, label: tweets}
teachers:
  - {name: minilm}
  - {name: minilm, epochs: 2, label: minilm-2ep}
seeds: [0, 1]
students:
  - {name: mlp, hidden: 16}
"""


def test_a_grid_loads_as_one_suite_per_task_and_teacher(tmp_path, registry, capsys):
    parts = load_suites(write(tmp_path, GRID), registry)
    assert [part.name for part in parts] == [
        "grid/sst2-minilm", "grid/sst2-minilm-2ep", "grid/tweets-minilm", "grid/tweets-minilm-2ep"
    ]
    assert [(part.task.name, part.teacher.config.epochs) for part in parts] == [
        ("sst2", 1), ("sst2", 2), ("senti", 1), ("senti", 2)
    ]
    assert {part.group for part in parts} == {"grid"}
    # Every cell of every part is distinct (the part's name is in its config).
    cells = [cell for part in parts for cell in part.cells()]
    assert len({cell.cell_id for cell in cells}) == len(cells) == 8
    code, out, _ = run_cli(capsys, "validate", str(tmp_path / "suite.yaml"))
    assert code == 0
    assert "valid; 4 task and teacher pairs, 8 cells" in out
    assert "grid/tweets-minilm-2ep: task senti, teacher minilm, 1 students x 2 seeds" in flat(out)


def test_load_suite_refuses_a_grid_and_names_load_suites(tmp_path, registry):
    message = suite_error(write(tmp_path, GRID), registry)
    assert "a grid of 4 (task, teacher) pairs; load it with load_suites" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("name: grid\n", "name: grid\ntask: {name: sst2}\n",
         ":3: tasks: give either 'task' (one) or 'tasks' (a list), not both"),
        ("teachers:\n  - {name: minilm}\n  - {name: minilm, epochs: 2, label: minilm-2ep}\n",
         "", ":1: teacher: missing required key (or 'teachers', a list of them)"),
        ("label: minilm-2ep", "label: minilm",
         ":7: teachers[1]: same label 'minilm' as teachers[0]; give one a different 'label'"),
        ("label: tweets", "label: a/b",
         ":4: tasks[1].label: expected letters, digits, '_', '.' or '-' (a folder name), "
         "got 'a/b'"),
        ("{name: senti, train_size: 100, label: tweets}", "{name: tinyshakespeare}",
         ":4: tasks[1].name: this task is of kind 'causal-lm', the first of kind "
         "'classification'"),
        ("{name: minilm}", "{name: minilm, epoch: 2}",
         ":6: teachers[0].epoch: unknown key; expected one of: batch_size, epochs, "
         "eval_max_length, freeze_embeddings, label,"),
    ],
    ids=["task-and-tasks", "no-teacher", "same-label", "label-not-a-folder", "two-kinds",
         "bad-teacher-key"],
)
def test_grid_problems_are_named_where_they_are(tmp_path, registry, capsys, old, new, expected):
    path = write(tmp_path, GRID.replace(old, new, 1))
    with pytest.raises(SuiteError) as caught:
        load_suites(path, registry)
    assert expected in flat(str(caught.value)), str(caught.value)
    assert_cli_refuses(capsys, tmp_path, path, expected.split(": ", 1)[-1][:60])


# ---------------------------------------------------------------------------------------------
# The file itself


def test_empty_file(tmp_path, registry, capsys):
    path = write(tmp_path, "  \n\n")
    message = suite_error(path, registry)
    assert message == f"{path}: the suite file is empty; expected a mapping of suite keys"
    assert_cli_refuses(capsys, tmp_path, path, str(path), "the suite file is empty")


def test_file_with_only_comments(tmp_path, registry):
    path = write(tmp_path, "# nothing here yet\n")
    assert suite_error(path, registry) == f"{path}: the suite file holds no YAML document"


def test_missing_file(tmp_path, registry, capsys):
    path = tmp_path / "no-such-suite.yaml"
    assert suite_error(path, registry) == f"{path}: no such suite file"
    assert_cli_refuses(capsys, tmp_path, path, f"{path}: no such suite file")


def test_unreadable_file_a_directory(tmp_path, registry, capsys):
    path = tmp_path / "suite.yaml"
    path.mkdir()
    message = suite_error(path, registry)
    assert message.startswith(f"{path}: cannot read the suite file:")
    assert_cli_refuses(capsys, tmp_path, path, "cannot read the suite file")


def test_unreadable_file_not_utf8(tmp_path, registry, capsys):
    path = write(tmp_path, b"name: caf\xe9\n")
    message = suite_error(path, registry)
    assert message.startswith(f"{path}: not UTF-8 text")
    assert "utf-8" in message and message.endswith("suite files are UTF-8 YAML")
    assert_cli_refuses(capsys, tmp_path, path, "not UTF-8 text")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("".join(" " * i + f"k{i}:\n" for i in range(3000)) + " " * 3000 + "v\n",
         "nested too deeply"),
        ("name: x\ntask: {name: sst2, train_size: 1" + "0" * 5000 + "}\n", "cannot be read"),
        ("name: a\0b\n", ":1: character '\\x00' is not allowed in YAML"),
        ("name: x\ntask: {name: sst2}\nteacher: {name: minilm}\nstudents: [{name: mlp}]\n"
         "train: {lr: 1e999}\n", "train.lr: expected a finite number"),
        ("name: x\ntask: {name: sst2}\nteacher: {name: minilm}\nstudents: [{name: mlp}]\n"
         "train: {lr: .nan}\n", "train.lr: expected a finite number"),
    ],
    ids=["deep-lists", "deep-mappings", "huge-integer", "control-character", "infinite",
         "nan"],
)
def test_hostile_files_get_the_clean_message(tmp_path, capsys, text, expected):
    """Every way a file can fail to be read, decoded or parsed ends in one message and exit
    code 2, never a traceback (each of these once ended in one)."""
    path = write(tmp_path, text)
    assert_cli_refuses(capsys, tmp_path, path, str(path), expected)


def test_broken_yaml(tmp_path, registry, capsys):
    path = write(tmp_path, edited("seeds: [0, 1]", "seeds: [0, 1"))
    message = suite_error(path, registry)
    assert re.match(rf"^{re.escape(str(path))}:\d+: broken YAML: ", message), message
    assert_cli_refuses(capsys, tmp_path, path, "broken YAML")


def test_broken_yaml_points_at_the_line(tmp_path, registry):
    path = write(tmp_path, edited("    hidden: 16", "    hidden: 16\n   bad indent: 1"))
    message = suite_error(path, registry)
    assert message.startswith(f"{path}:8: broken YAML: ")


def test_several_documents_are_refused(tmp_path, registry):
    path = write(tmp_path, VALID + "---\nname: second\n")
    message = suite_error(path, registry)
    assert message.startswith(f"{path}:10: broken YAML: ")
    assert "another document" in message


def test_python_tag_is_refused(tmp_path, registry, capsys):
    marker = tmp_path / "executed"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    path = write(tmp_path, edited("name: errors", f"name: errors\ndescription: {tag}"))
    message = suite_error(path, registry)
    assert message.startswith(f"{path}:2: YAML tag not allowed")
    assert "python/object/apply:os.system" in message
    assert "plain data only" in message
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:2: YAML tag not allowed")
    assert not marker.exists()


@pytest.mark.parametrize(
    "tag", ["!!python/name:os.system", "!!python/object:builtins.object {}", "!custom 1"]
)
def test_other_tags_are_refused(tmp_path, registry, tag):
    path = write(tmp_path, VALID + f"description: {tag}\n")
    assert suite_error(path, registry).startswith(f"{path}:10: YAML tag not allowed")


def test_duplicate_top_level_key(tmp_path, registry, capsys):
    path = write(tmp_path, VALID + "seeds: [2]\n")
    assert suite_error(path, registry) == f"{path}:10: seeds: duplicate key"
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:10: seeds: duplicate key")


def test_duplicate_nested_key(tmp_path, registry):
    path = write(tmp_path, edited("    hidden: 16", "    hidden: 16\n    hidden: 32"))
    assert suite_error(path, registry) == f"{path}:8: students[0].hidden: duplicate key"


def test_duplicate_key_in_flow_mapping(tmp_path, registry):
    path = write(tmp_path, edited("{name: minilm}", "{name: minilm, name: hf}"))
    assert suite_error(path, registry) == f"{path}:3: teacher.name: duplicate key"


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")]
)
def test_top_level_not_a_mapping(tmp_path, registry, capsys, text, kind):
    path = write(tmp_path, text)
    message = suite_error(path, registry)
    assert message == (
        f"{path}:1: expected a mapping of suite keys (name, task, teacher, students, ...), "
        f"got {kind}"
    )
    assert_cli_refuses(capsys, tmp_path, path, f"{path}:1: expected a mapping of suite keys")


def test_student_entry_not_a_mapping(tmp_path, registry):
    path = write(tmp_path, edited("  - name: mlp\n    hidden: 16", "  - mlp"))
    problem = problem_line(suite_error(path, registry), path, 6, "students[0]")
    assert problem == "expected a valid dictionary, got 'mlp'"


# ---------------------------------------------------------------------------------------------
# Regression tests of bugs found in review.


def test_recursive_alias_is_a_suite_error(tmp_path, registry):
    path = write(tmp_path, VALID + "description: &loop [*loop]\n")
    suite_error(path, registry)


def test_unhashable_key_is_not_called_a_tag(tmp_path, registry):
    path = write(tmp_path, VALID + "? [1, 2]\n: 3\n")
    message = suite_error(path, registry)
    assert message.startswith(f"{path}:10: ")
    assert "tag" not in message


# -- backends named inside a student's settings ------------------------------------------------

QDLLM_VALID = VALID.replace(
    "metrics: [accuracy, kl]\n",
    "  - name: qdllm\n"
    "    backend: {name: torch, dtype: complex128}\n"
    "    emulate: [{name: qiskit, shots: 128}, cirq]\n"
    "metrics: [accuracy, kl]\n",
)


def test_student_backends_are_validated_and_completed(tmp_path, registry):
    suite = load_suite(write(tmp_path, QDLLM_VALID), registry)
    config = suite.students[2].student.config
    assert config.backend.name == "torch"
    # Defaults of the backend are filled in, so the record says exactly what ran.
    assert config.backend.settings()["gradient"] == "adjoint"
    assert config.backend.settings()["dtype"] == "complex128"
    assert [spec.name for spec in config.emulate] == ["qiskit", "cirq"]
    assert config.emulate[0].settings()["shots"] == 128
    assert config.emulate[1].settings()["shots"] is None
    assert suite.warnings == []


@pytest.mark.parametrize(
    ("old", "new", "loc", "expected"),
    [
        ("{name: torch, dtype: complex128}", "{name: torchh}", "students[2].backend.name",
         "unknown backend 'torchh' (known: cirq, qiskit, torch); did you mean 'torch'?"),
        ("dtype: complex128", "dtype: complex32", "students[2].backend.dtype",
         "expected 'complex64' or 'complex128', got 'complex32'"),
        ("{name: qiskit, shots: 128}", "{name: qiskit, shots: 0}", "students[2].emulate[0].shots",
         "expected greater than or equal to 1, got 0"),
        ("{name: qiskit, shots: 128}", "{name: qiskit, noise: depolarizing}",
         "students[2].emulate[0]", "a noise model needs shots (set shots, e.g. 1024)"),
    ],
)
def test_bad_student_backend(tmp_path, registry, capsys, old, new, loc, expected):
    path = write(tmp_path, QDLLM_VALID.replace(old, new, 1))
    message = suite_error(path, registry)
    line = 11 if loc.startswith("students[2].emulate") else 10
    assert problem_line(message, path, line, loc) == expected
    assert_cli_refuses(capsys, tmp_path, path, loc)


def test_parameter_shift_on_an_exact_simulator_is_warned_before_running(tmp_path, capsys):
    text = QDLLM_VALID.replace("dtype: complex128", "gradient: parameter-shift")
    path = write(tmp_path, text)
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 0
    assert f"{path}:10: students[2].backend: gradient 'parameter-shift' on an exact" in flat(err)
    # Evaluation-only backends (emulate) take no gradients: no warning for the exact cirq one.
    assert "students[2].emulate" not in err
    exact_qiskit = write(tmp_path, QDLLM_VALID.replace("name: torch, dtype: complex128",
                                                       "name: qiskit"), "qiskit.yaml")
    code, _, err = run_cli(capsys, "validate", str(exact_qiskit))
    assert code == 0 and "training through the exact qiskit simulator" in flat(err)


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_is_valid(registry, path: Path):
    for suite in load_suites(path, registry):
        assert suite.cells() and suite.warnings == []


LANGUAGE = """\
name: lm
task: {name: tinyshakespeare}
teacher: {name: causal-lm, model: gpt2}
students:
  - {name: lora, model: teacher}
  - {name: mlp, hidden: 16}
  - {name: hf, model: teacher, objective: {name: kd}}
metrics: [perplexity, accuracy]
"""


def test_plugins_must_serve_the_tasks_kind(tmp_path, registry):
    message = suite_error(write(tmp_path, LANGUAGE), registry)
    assert message.startswith("invalid suite (3 problems)")
    assert problem_line(message, tmp_path / "suite.yaml", 6, "students[1].name") == (
        "student 'mlp' serves classification tasks; the task is causal-lm"
    )
    assert problem_line(message, tmp_path / "suite.yaml", 7, "students[2].objective") == (
        "objective 'kd' serves classification tasks; the task is causal-lm"
    )
    assert problem_line(message, tmp_path / "suite.yaml", 8, "metrics[1]") == (
        "metric 'accuracy' scores classification tasks; the task is causal-lm"
    )


def test_language_suites_default_to_the_next_token_loss_and_lm_metrics(tmp_path, registry):
    text = LANGUAGE.replace("  - {name: mlp, hidden: 16}\n", "").replace(
        "objective: {name: kd}", "label: full"
    ).replace("metrics: [perplexity, accuracy]\n", "")
    suite = load_suite(write(tmp_path, text), registry)
    assert {spec.objective.name for spec in suite.students} == {"lm"}
    assert suite.metrics == [
        "perplexity", "token_kl", "token_nll", "token_top10_overlap", "token_top1_agreement"
    ]


def test_classification_suites_refuse_language_teachers(tmp_path, registry):
    language_teacher = "teacher: {name: causal-lm, model: x}"
    path = write(tmp_path, edited("teacher: {name: minilm}", language_teacher))
    assert problem_line(suite_error(path, registry), path, 3, "teacher.name") == (
        "teacher 'causal-lm' serves causal-lm, generation tasks; the task is classification"
    )


def test_a_missing_optional_dependency_is_found_before_any_work(
    tmp_path, capsys, monkeypatch
):
    """A suite naming qiskit with shots where qiskit-aer is not installed: validate says which
    module is missing and how to install it (the extra intact), naming the line."""
    import importlib.util

    import qcompress.suite

    real = importlib.util.find_spec

    def without_aer(name, *args, **kwargs):
        return None if name == "qiskit_aer" else real(name, *args, **kwargs)

    monkeypatch.setattr(qcompress.suite.importlib.util, "find_spec", without_aer)
    path = write(tmp_path, QDLLM_VALID)
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    message = flat(err)
    assert "backend 'qiskit' needs qiskit_aer, which is not installed" in message
    assert "pip install 'qcompress[quantum]'" in message
    assert "students[2].emulate[0]" in message and "Traceback" not in err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("seeds: [0, 4294967296]", "seeds: seeds must be distinct integers from 0 to 4294967295"),
        ("train: {batch_size: 100000000}", "train.batch_size: expected less than or equal to"),
        ("train: {epochs: 1000000}", "train.epochs: expected less than or equal to 10000"),
        ("train: {lr: 1000}", "train.lr: expected less than or equal to 10"),
        ("measure: {latency_samples: 10000000}", "measure.latency_samples"),
        ("name: " + "n" * 300, "name: string should have at most 100 characters"),
        ("device: cuda:7", "device: 'cuda:7': this machine has"),
    ],
    ids=["seed", "batch", "epochs", "lr", "latency", "long-name", "device"],
)
def test_values_the_run_cannot_use_are_refused_before_any_work(tmp_path, capsys, line, expected):
    key = line.split(":")[0]
    text = "\n".join(row for row in VALID.splitlines() if not row.startswith(f"{key}:"))
    path = write(tmp_path, text + "\n" + line + "\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2, err
    assert expected.lower() in flat(err).lower(), flat(err)
    assert "Traceback" not in err


def test_every_core_numeric_setting_is_bounded() -> None:
    """The suite's own numbers and every task's have a documented range, both ends."""
    import annotated_types

    from qcompress.interfaces import TaskConfig, TrainSettings
    from qcompress.suite_model import MeasureSettings

    for model in (TaskConfig, TrainSettings, MeasureSettings):
        for name, field in model.model_fields.items():
            if not any(kind in str(field.annotation) for kind in ("int", "float")):
                continue
            bounds = {type(m) for m in field.metadata}
            assert bounds & {annotated_types.Ge, annotated_types.Gt}, (model, name)
            assert bounds & {annotated_types.Le, annotated_types.Lt}, (model, name)


def test_every_plugin_numeric_setting_is_bounded(registry) -> None:
    """Every number a suite may give a registered class has a documented range, both ends
    (lists of numbers and mixed settings are checked by their plugins' own validators)."""
    import typing

    import annotated_types

    unbounded = []
    for kind in ("task", "teacher", "student", "objective", "backend"):
        for name in registry.names(kind):
            for key, field in registry.get(kind, name).Config.model_fields.items():
                if typing.get_origin(field.annotation) in (list, tuple):
                    continue  # lists of numbers: their plugins' validators check them
                types = {field.annotation, *typing.get_args(field.annotation)}
                if not types & {int, float} or str in types:
                    continue
                bounds = {type(m) for m in field.metadata}
                if not (bounds & {annotated_types.Ge, annotated_types.Gt}
                        and bounds & {annotated_types.Le, annotated_types.Lt}):
                    unbounded.append(f"{kind} {name}: {key}")
    assert not unbounded, unbounded
