"""Which code produced a result: the code identity of a plugin's class or function, and the
provenance of every component a record names.

A component's code identity is a content hash of the source file that defines it and of every
module of its own top-level package, or of ``qcompress``, that it imports, transitively (of the
syntax trees, without docstrings: editing comments or docs changes nothing). A
change to a student's module, or to a core helper it uses (say the frozen-feature base), changes
its identity; a change to another plugin, or to the command line, does not. Resume compares
these identities, so records are reused only for the code that made them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcompress.fingerprint import fingerprint_of
from qcompress.record import ComponentProvenance, Record

if TYPE_CHECKING:
    from qcompress.plugins import Registry

CORE_PACKAGE = "qcompress"


def code_identity(thing: Any) -> str | None:
    """The code identity of a class, function or instance (its class's, or for a dataclass
    holding a function, such as a Metric, that of the module it was defined in)."""
    module_name = _defining_module(thing)
    if module_name is None:
        return None
    files = _source_closure(module_name)
    if not files:
        return None
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(_file_hash(path).encode())
    return digest.hexdigest()[:16]


def _defining_module(thing: Any) -> str | None:
    if isinstance(thing, type) or inspect.isfunction(thing):
        return thing.__module__
    # an instance that carries its behaviour as a function (a Metric's compute, a
    # Reporter's write): where that function is defined
    for field_name in getattr(thing, "__dataclass_fields__", {}):
        value = getattr(thing, field_name)
        if inspect.isfunction(value):
            return value.__module__
    return type(thing).__module__


@functools.cache
def _source_closure(module_name: str) -> dict[str, Path]:
    """Module name -> source file, for ``module_name`` and the local modules it imports."""
    root = module_name.split(".")[0]
    local_roots = {root, CORE_PACKAGE}
    found: dict[str, Path] = {}
    pending = [module_name]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = _source_file(name)
        if path is None:
            continue
        found[name] = path
        for imported in _imports(name, path):
            if imported.split(".")[0] in local_roots and imported not in found:
                pending.append(imported)
    return found


def _source_file(module_name: str) -> Path | None:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file is None:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            return None
        file = spec.origin if spec is not None else None
    if not file or not file.endswith(".py"):
        return None
    return Path(file)


def _imports(module_name: str, path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (``from a import b`` also yields
    ``a.b``, in case ``b`` is a submodule; names that are not modules are dropped later)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    is_package = path.name == "__init__.py"
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{prefix}.{base}" if base else prefix
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in names if name]


def _file_hash(path: Path) -> str:
    stat = path.stat()
    return _file_hash_cached(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _file_hash_cached(path: Path, size: int, mtime_ns: int) -> str:
    """A hash of what the code does: its syntax tree without docstrings (comments and layout
    are not in the tree), so editing prose reruns nothing; the bytes when it does not parse."""
    source = path.read_bytes()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return hashlib.sha256(source).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def component_provenance(name: str, thing: Any, plugin: Any | None) -> ComponentProvenance:
    """The provenance of ``thing`` registered as ``name`` by ``plugin`` (a PluginInfo)."""
    return ComponentProvenance(
        name=name,
        plugin=getattr(plugin, "name", None),
        distribution=getattr(plugin, "distribution", None),
        version=getattr(plugin, "version", None),
        code=code_identity(thing),
    )


def components_of(
    registry: Registry, named: dict[str, tuple[str, str]]
) -> dict[str, ComponentProvenance]:
    """The provenance of each registered component, by role: ``named`` maps a role (e.g.
    ``student``, ``metric:<name>``) to the (kind, name) the registry knows it by."""
    return {
        role: component_provenance(name, registry.get(kind, name), registry.plugin_of(kind, name))
        for role, (kind, name) in named.items()
    }


# The core's code that turns a trained model into measured numbers: part of every record's
# identity (a change to how latency or memory is measured changes every record).
MEASURING_MODULES = ("qcompress.measure", "qcompress.scoring")
MEASUREMENT = "measurement"


def measurement_provenance() -> ComponentProvenance:
    """The provenance of the core's measuring code (its modules alone, not what they import:
    the contracts they use are part of every plugin's own identity)."""
    from qcompress import __version__

    digest = hashlib.sha256()
    for name in MEASURING_MODULES:
        path = _source_file(name)
        digest.update(name.encode())
        digest.update((_file_hash(path) if path is not None else "-").encode())
    return ComponentProvenance(
        name=MEASUREMENT, distribution="qcompress", version=__version__,
        code=digest.hexdigest()[:16],
    )


def identity_of(components: dict[str, ComponentProvenance]) -> str:
    """One hash of the components' code identities: what resume compares."""
    return fingerprint_of({role: part.code for role, part in sorted(components.items())})


def current_identity(record: Record, registry: Registry) -> str | None:
    """The code identity the record's components have now (``None`` when one of them is no
    longer registered, or the record names none)."""
    named: dict[str, tuple[str, str]] = {}
    for role, component in record.provenance.components.items():
        kind = role.split(":")[0]
        if role == MEASUREMENT:
            continue
        if kind not in registry.kinds() or component.name not in registry.names(kind):
            return None
        named[role] = (kind, component.name)
    if not named:
        return None
    now = components_of(registry, named)
    if MEASUREMENT in record.provenance.components:
        now[MEASUREMENT] = measurement_provenance()
    return identity_of(now)


def stale_cells(records: list[Record], registry: Registry) -> set[str]:
    """Identities (:attr:`Record.identity`) of the records whose code identity differs from
    their components' now (a record that names no code, as those of schema /1, is stale)."""
    return {
        record.identity
        for record in records
        if record.provenance.code_identity is None
        or record.provenance.code_identity != current_identity(record, registry)
    }
