"""docs/plugins.md documents every hook in qcompress.hookspecs, and no hook that is gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qcompress import hookspecs
from qcompress.plugins import new_manager

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
HOOK_HEADING = re.compile(r"^###\s+`?(register_\w+)`?\s*$", re.MULTILINE)


def hookspec_names() -> list[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), marker))


@pytest.fixture(scope="module")
def documented_hooks() -> set[str]:
    return set(HOOK_HEADING.findall(DOCS.read_text(encoding="utf-8")))


def test_hookspecs_are_found():
    names = hookspec_names()
    assert "register_students" in names
    # The same hooks as the plugin manager knows.
    manager_hooks = {name for name in vars(new_manager().hook) if name.startswith("register_")}
    assert set(names) == manager_hooks


@pytest.mark.parametrize("hook", hookspec_names())
def test_hook_is_documented(hook, documented_hooks):
    assert hook in documented_hooks, f"docs/plugins.md needs a '### {hook}' heading"


def test_no_documented_hook_is_stale(documented_hooks):
    assert documented_hooks <= set(hookspec_names())
