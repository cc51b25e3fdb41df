"""qcompress.allocator: glibc thresholds raised once, user settings respected."""

from __future__ import annotations

import platform

import pytest

from qcompress import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_sets_thresholds_on_glibc(monkeypatch):
    for name in allocator._USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_freed_memory() is True


def test_leaves_user_settings_alone(monkeypatch):
    called = []
    monkeypatch.setattr(allocator, "_glibc", lambda: called.append(1))
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert allocator.keep_freed_memory() is False
    assert called == []  # not even looked up


def test_does_nothing_without_glibc(monkeypatch):
    for name in allocator._USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
