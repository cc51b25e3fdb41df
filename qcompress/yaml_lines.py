"""YAML files read with their line numbers: the node tree is kept beside the data, so that
every problem found later (a pydantic error's location, a key path) can name the file and the
line. Plain data only: a safe loader (no Python tags), no duplicate keys, no self-referencing
aliases or alias bombs. Any file that cannot be read, decoded or parsed gives one clear
:class:`~qcompress.errors.SuiteError`, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from qcompress.errors import SuiteError


class Document:
    """The YAML node tree kept beside the data, to point errors at lines."""

    def __init__(self, path: Path, root: yaml.Node) -> None:
        self.path = path
        self.root = root

    def line_of(self, loc: Sequence[str | int]) -> int:
        """1-based line of the deepest node on ``loc`` that exists (its key, if the value is
        missing)."""
        node = self.root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next((kv for kv in node.value if kv[0].value == part), None)
                if match is None:
                    return line
                line = match[0].start_mark.line + 1
                node = match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, loc: Sequence[str | int], message: str) -> str:
        return f"{self.path}:{self.line_of(loc)}: {format_loc(loc)}: {message}"


def format_loc(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def read_document(path: Path) -> tuple[Any, Document]:
    """The file's data and its node tree; a :class:`SuiteError` for every way the file cannot
    be read, decoded or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except UnicodeDecodeError as error:
        raise SuiteError(f"{path}: not UTF-8 text ({error}); suite files are UTF-8 YAML") from None
    except OSError as error:
        raise SuiteError(f"{path}: cannot read the suite file: {error}") from None
    if not text.strip():
        raise SuiteError(f"{path}: the suite file is empty; expected a mapping of suite keys")
    try:
        data, root = _parse(path, text)
    except RecursionError:
        raise SuiteError(
            f"{path}: the YAML is nested too deeply to read; suite files are a few levels deep"
        ) from None
    if not isinstance(data, dict):
        raise SuiteError(
            f"{path}:1: expected a mapping of suite keys (name, task, teacher, students, ...), "
            f"got {type(data).__name__}"
        )
    return data, Document(path, root)


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node]:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # reads the first characters: may raise already
        root = loader.get_single_node()
        if root is None:
            raise SuiteError(f"{path}: the suite file holds no YAML document")
        _check_nodes(path, root)
        return loader.construct_document(root), root
    except yaml.constructor.ConstructorError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        if (error.problem or "").startswith("could not determine a constructor"):
            raise SuiteError(
                f"{path}:{line}: YAML tag not allowed ({error.problem}); "
                "suite files hold plain data only (mappings, lists, strings, numbers)"
            ) from None
        raise SuiteError(f"{path}:{line}: broken YAML: {_yaml_problem(error)}") from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        raise SuiteError(
            f"{path}:{line}: character {chr(error.character)!r} is not allowed in YAML "
            "(control characters other than tab and newline)"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        raise SuiteError(f"{path}:{line}: broken YAML: {_yaml_problem(error)}") from None
    except ValueError as error:  # a scalar the constructor cannot convert (a 5000-digit int)
        raise SuiteError(f"{path}: a value cannot be read: {error}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(error: yaml.YAMLError) -> str:
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    return " ".join(part for part in parts if part) or str(error)


MAX_NODES = 100_000


def _check_nodes(path: Path, root: yaml.Node) -> None:
    """Reject duplicate keys, self-referencing aliases and alias bombs (anchors and aliases
    that merely reuse a block stay allowed)."""
    visited = 0

    def walk(node: yaml.Node, loc: list[str | int], ancestors: set[int]) -> None:
        nonlocal visited
        visited += 1
        if visited > MAX_NODES:
            raise SuiteError(f"{path}: more than {MAX_NODES} YAML nodes (aliases expanding?)")
        if id(node) in ancestors:
            raise SuiteError(
                f"{path}:{node.start_mark.line + 1}: {format_loc(loc)}: a YAML alias refers to "
                "a block that contains it; suite files hold plain (finite) data only"
            )
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise SuiteError(
                            f"{path}:{key.start_mark.line + 1}: "
                            f"{format_loc([*loc, key.value])}: duplicate key"
                        )
                    seen.add(key.value)
                walk(value, [*loc, key.value], inner)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, [*loc, index], inner)

    walk(root, [], set())


# ---------------------------------------------------------------------------------------------
# Problems found while validating, each pointed at its line


def describe_pydantic_error(
    error: Any,
    model: type[BaseModel] | None,
    extra_allowed: Sequence[str] = (),
) -> str:
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = sorted(model.model_fields) if model is not None else []
        if allowed and extra_allowed:
            allowed = sorted({*allowed, *extra_allowed} - {"name"})
        allowed_text = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{allowed_text}"
    if kind == "missing":
        return "missing required key"
    message = error["msg"][0].lower() + error["msg"][1:]
    message = message.replace("input should be", "expected")
    message = message.removeprefix("value error, ")
    return f"{message}, got {given!r}" if not isinstance(given, dict | list) else message


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``loc`` inside ``model`` (for the list of
    expected keys in an unknown-key message)."""
    for part in loc:
        field_info = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field_info.annotation if field_info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


class Problems:
    def __init__(self, document: Document) -> None:
        self.document = document
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def warn(self, loc: Sequence[str | int], message: str) -> None:
        self.warnings.append(self.document.error(loc, message))

    def add(self, loc: Sequence[str | int], message: str) -> None:
        self.lines.append(self.document.error(loc, message))

    def add_validation(
        self,
        prefix: Sequence[str | int],
        error: ValidationError,
        model: type[BaseModel],
        extra_allowed: Sequence[str] = (),
    ) -> None:
        for item in error.errors():
            loc = [*prefix, *item["loc"]]
            self.add(
                loc,
                describe_pydantic_error(item, _model_at(model, item["loc"][:-1]), extra_allowed),
            )

    def raise_if_any(self) -> None:
        self.lines = list(dict.fromkeys(self.lines))  # e.g. one default objective, many students
        if self.lines:
            count = len(self.lines)
            head = f"invalid suite ({count} problem{'s' if count > 1 else ''}); nothing was run:"
            raise SuiteError("\n".join([head, *(f"  {line}" for line in self.lines)]))
