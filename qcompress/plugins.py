"""The plugin manager: loads the ``qcompress`` entry-point group, first-party plugins included,
and collects what each plugin registers into one :class:`Registry`.

Environment variables (names of entry points, comma separated):

- ``QCOMPRESS_LOAD_PLUGINS``: load only these (set it empty to load none);
- ``QCOMPRESS_BLOCK_PLUGINS``: never load these;
- ``QCOMPRESS_TRACE_PLUGINS=1``: print every load and registration to stderr.

A plugin that fails to import, implements a hook that does not exist, raises in a hook, or
registers a name another plugin already has is recorded as broken with its error; the other
plugins still load.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from qcompress import hookspecs
from qcompress.errors import PluginError
from qcompress.registration import check_registered

ENTRY_POINT_GROUP = "qcompress"
LOAD_ENV = "QCOMPRESS_LOAD_PLUGINS"
BLOCK_ENV = "QCOMPRESS_BLOCK_PLUGINS"
TRACE_ENV = "QCOMPRESS_TRACE_PLUGINS"

# kind -> the hook that registers it; the order is the order of `qcompress plugins`.
KINDS: dict[str, str] = {
    "task": "register_tasks",
    "teacher": "register_teachers",
    "student": "register_students",
    "objective": "register_objectives",
    "backend": "register_backends",
    "metric": "register_metrics",
    "reporter": "register_reporters",
    "task_kind": "register_task_kinds",
    "model": "register_models",
}


@dataclass
class PluginInfo:
    """One plugin as `qcompress plugins` shows it."""

    name: str
    module: str
    version: str | None
    distribution: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Registered:
    thing: Any
    plugin: str


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        # (kind, name) -> the broken plugin that tried to register it, for clearer errors
        self._refused: dict[tuple[str, str], str] = {}

    def kinds(self) -> list[str]:
        return list(self._by_kind)

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def get(self, kind: str, name: str) -> Any:
        """The thing registered under ``name``; a :class:`PluginError` names the known ones."""
        entry = self._by_kind[kind].get(name)
        if entry is None:
            refused_by = self._refused.get((kind, name))
            if refused_by is not None:
                raise PluginError(
                    f"{kind} {name!r} is not available: its plugin {refused_by!r} is broken: "
                    f"{self.plugins[refused_by].error}"
                )
            raise PluginError(unknown_name_message(kind, name, self.names(kind)))
        return entry.thing

    def provider(self, kind: str, name: str) -> str:
        return self._by_kind[kind][name].plugin

    def plugin_of(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered ``name`` (``None`` if nothing did)."""
        entry = self._by_kind[kind].get(name)
        return None if entry is None else self.plugins.get(entry.plugin)

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def load(self, plugin: object, info: PluginInfo, manager: pluggy.PluginManager) -> None:
        """Register one plugin object and collect its registrations; on any failure record
        the error on ``info`` and leave the registry as it was."""
        if info.name in self.plugins or manager.has_plugin(info.name):
            info.error = f"plugin name {info.name!r} is already used by another plugin"
            self.plugins[f"{info.name} ({info.module})"] = info
            return
        self.plugins[info.name] = info
        registered = False
        staged: list[tuple[str, str, Any]] = []
        try:
            manager.register(plugin, name=info.name)
            registered = True
            _check_hook_names(manager, plugin)
            self._collect(manager, plugin, info.name, staged)
        except Exception as error:  # a broken plugin must not break the others
            if registered:
                manager.unregister(name=info.name)
            info.error = f"{type(error).__name__}: {error}"
            for kind, name, _ in staged:
                self._refused.setdefault((kind, name), info.name)
            _trace(f"plugin {info.name!r} is broken: {info.error}")
            return
        for kind, name, thing in staged:
            self._by_kind[kind][name] = Registered(thing, info.name)
            info.registers.setdefault(kind, []).append(name)
            _trace(f"plugin {info.name!r} registered {kind} {name!r}")

    def _collect(
        self,
        manager: pluggy.PluginManager,
        plugin: object,
        plugin_name: str,
        staged: list[tuple[str, str, Any]],
    ) -> None:
        for kind, hook_name in KINDS.items():
            caller = getattr(manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(name: str, thing: Any, kind: str = kind) -> None:
                    self._check_new_name(kind, name, plugin_name, staged)
                    staged.append((kind, name, thing))
                    check_registered(kind, name, thing)

                impl.function(register=register)

    def _check_new_name(
        self, kind: str, name: str, plugin_name: str, staged: list[tuple[str, str, Any]]
    ) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise PluginError(f"{kind} names must be non-empty strings, got {name!r}")
        existing = self._by_kind[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} {name!r} is registered by both {existing.plugin!r} and {plugin_name!r}"
            )
        if any(k == kind and n == name for k, n, _ in staged):
            raise PluginError(f"{kind} {name!r} is registered twice by {plugin_name!r}")


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r} (known: {', '.join(known) or 'none'}){hint}"


def _check_hook_names(manager: pluggy.PluginManager, plugin: object) -> None:
    """Catch misspelt hooks (pluggy accepts any ``@hookimpl`` name until checked)."""
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.spec is None:
            close = difflib.get_close_matches(caller.name, KINDS.values(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(f"implements unknown hook {caller.name!r}{hint}")


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _trace(message: str) -> None:
    if os.environ.get(TRACE_ENV, "").lower() not in ("", "0", "false", "no"):
        print(f"qcompress plugins: {message}", file=sys.stderr)


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def load_registry(extra_plugins: dict[str, ModuleType | object] | None = None) -> Registry:
    """Load every allowed entry point of the ``qcompress`` group, then ``extra_plugins``
    (name -> module or object with hookimpls; used by tests and embedding code)."""
    allow, block = _env_names(LOAD_ENV), _env_names(BLOCK_ENV)
    manager = new_manager()
    registry = Registry()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (allow is not None and entry_point.name not in allow) or (
            block and entry_point.name in block
        ):
            _trace(f"skipped {entry_point.name!r} (environment)")
            continue
        dist = entry_point.dist
        info = PluginInfo(
            entry_point.name,
            entry_point.value,
            dist.version if dist else None,
            dist.metadata["Name"] if dist else None,
        )
        try:
            plugin = entry_point.load()
        except Exception as error:  # report, don't crash: the rest still works
            info.error = f"failed to import {entry_point.value!r}: {type(error).__name__}: {error}"
            registry.plugins[info.name] = info
            _trace(f"plugin {info.name!r} is broken: {info.error}")
            continue
        registry.load(plugin, info, manager)
    for name, plugin in (extra_plugins or {}).items():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        registry.load(plugin, PluginInfo(name, module, None), manager)
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins (tests change the environment and reload)."""
    global _registry
    _registry = None
