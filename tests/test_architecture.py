"""The core holds contracts and machinery and names no plugin: it never imports
``qcompress_plugins``, and no string in its code is the name of something a plugin registers
(what differs between plugins is asked of the plugins, through the registry and the records)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from qcompress.plugins import load_registry

CORE = Path(__file__).resolve().parent.parent / "qcompress"
# export.py converts circuits into the qiskit and cirq libraries' own objects: those strings
# name the libraries it imports, not the backend plugins that happen to share the names.
LIBRARY_BRIDGES = {"export.py"}


def core_files() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", core_files(), ids=lambda path: path.name)
def test_the_core_never_imports_the_plugins(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(name.startswith("qcompress_plugins") for name in names), (path, names)


def test_no_core_string_is_a_registered_name() -> None:
    registry = load_registry()
    registered = {name: kind for kind in registry.kinds() for name in registry.names(kind)}
    found = []
    for path in core_files():
        if path.name in LIBRARY_BRIDGES:
            continue
        for line, value in code_strings(ast.parse(path.read_text())):
            if value in registered:
                found.append(f"{path.name}:{line}: {value!r} ({registered[value]})")
    assert not found, "the core names plugins:\n" + "\n".join(found)
