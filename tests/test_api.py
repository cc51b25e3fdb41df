"""The public API: what ``import qcompress`` offers a plugin author and a notebook."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qcompress


@pytest.mark.parametrize("name", qcompress.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(qcompress, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = qcompress.nothing_here  # type: ignore[attr-defined]


def test_importing_qcompress_loads_no_heavy_library() -> None:
    """``import qcompress`` (what every plugin module does first) stays cheap: the contracts
    and helpers load on first use."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, qcompress; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    for heavy in ("'torch'", "'transformers'", "'pandas'", "'qiskit'"):
        assert heavy not in loaded


def test_the_sample_plugin_needs_only_the_public_api() -> None:
    """The sample third-party package imports from ``qcompress`` alone, never from a core
    module: the public API is enough to write a task, a teacher, a student and a metric."""
    from pathlib import Path

    source = (Path(__file__).parent / "plugins" / "qcompress_sample" / "qcompress_sample"
              / "__init__.py").read_text()
    assert "from qcompress import (" in source
    assert "from qcompress." not in source and "import qcompress." not in source
