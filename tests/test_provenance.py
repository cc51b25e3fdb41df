"""qcompress.provenance: a component's code identity follows its code and the local modules it
imports, and nothing else."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from qcompress import provenance


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throwaway package ``idpkg`` (student.py imports helper.py; other.py is unrelated),
    and a function that edits one file and reloads the identity from scratch."""
    root = tmp_path / "idpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "helper.py").write_text("def scale(x):\n    return 2 * x\n")
    (root / "other.py").write_text("VALUE = 1\n")
    (root / "student.py").write_text(textwrap.dedent('''
        """A student."""
        from idpkg.helper import scale


        class Student:
            """Trains."""

            def fit(self, x):
                return scale(x)  # twice
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))

    def identity(edit: tuple[str, str] | None = None) -> str | None:
        if edit is not None:
            name, text = edit
            (root / name).write_text(text)
        for module in [m for m in sys.modules if m.startswith("idpkg")]:
            del sys.modules[module]
        provenance._source_closure.cache_clear()
        return provenance.code_identity(importlib.import_module("idpkg.student").Student)

    yield root, identity
    for module in [m for m in sys.modules if m.startswith("idpkg")]:
        del sys.modules[module]
    provenance._source_closure.cache_clear()


def test_identity_follows_the_code_and_what_it_imports(package) -> None:
    root, identity = package
    first = identity()
    assert first is not None and identity() == first
    student = (root / "student.py").read_text()
    # Prose and layout: the same identity.
    prose = student.replace('"""Trains."""', '"""Trains the head."""').replace("# twice", "# x2")
    assert identity(("student.py", prose + "\n\n")) == first
    # Another module of the package that it does not import: the same identity.
    assert identity(("other.py", "VALUE = 2\n")) == first
    # A module it imports, and its own code: new identities.
    changed_helper = identity(("helper.py", "def scale(x):\n    return 3 * x\n"))
    assert changed_helper != first
    changed_code = identity(("student.py", prose.replace("scale(x)", "scale(x) + 1")))
    assert changed_code not in (first, changed_helper)


def test_a_metric_instance_is_identified_by_its_function() -> None:
    from qcompress.plugins import load_registry

    registry = load_registry()
    accuracy = registry.get("metric", "accuracy")
    js = registry.get("metric", "js")
    assert provenance.code_identity(accuracy) == provenance.code_identity(accuracy.compute)
    assert provenance.code_identity(accuracy) != provenance.code_identity(js)
