"""YAML config documents: safe loading with line numbers, and `--set` overrides.

The loader is deliberately stricter than YAML 1.1: `1e-3` is a float, only
true/false are booleans, integers with leading zeros are refused (YAML 1.1
would silently read `010` as 8), and aliases, anchors, custom tags, duplicate
keys and absurdly large or deep documents are errors. Every value keeps the
place it came from (`FILE:LINE` or `--set KEY=VALUE`) so validation errors can
point at it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from .errors import ConfigError, Path_, dotted
from .files import read_at_most
from .registry import did_you_mean, quoted

MAX_BYTES = 1 << 20  # 1 MiB: a config is a page of text, not a data set
MAX_DEPTH = 32  # nesting levels
MAX_NODES = 50_000  # scalars, lists and mappings in one document

_TAG = "tag:yaml.org,2002:"
_LEADING_ZERO = "nncli:leading-zero"


class _Loader(yaml.SafeLoader):
    """SafeLoader with a YAML 1.2-like scalar table and limits on size, depth and aliases."""

    yaml_implicit_resolvers: dict = {}  # our own table; yaml.SafeLoader's is left alone

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, "aliases (*name) are not allowed", event.start_mark)
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(None, None, "anchors (&name) are not allowed", event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.MarkedYAMLError(None, None, f"more than {MAX_NODES} values", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _resolver(tag: str, pattern: str, first: str) -> None:
    _Loader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


_resolver(_TAG + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver(_TAG + "null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])
_resolver(_TAG + "int", r"^[-+]?(?:0|[1-9][0-9]*|0x[0-9a-fA-F]+|0o[0-7]+)$", "-+0123456789")
_resolver(_LEADING_ZERO, r"^[-+]?0[0-9]+$", "-+0")
_resolver(
    _TAG + "float",
    r"""^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
    "-+0123456789.",
)


def _scalar(node: yaml.ScalarNode) -> Any:
    text, tag = node.value, node.tag
    if tag == _TAG + "str":
        return text
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return text.lower() == "true"
    if tag == _TAG + "int":
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        base = 16 if body.startswith("0x") else 8 if body.startswith("0o") else 10
        return sign * int(body[2:] if base != 10 else body, base)
    if tag == _TAG + "float":
        lowered = text.lower()
        if lowered.endswith(".inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered == ".nan":
            return math.nan
        return float(text)
    if tag == _LEADING_ZERO:
        raise ConfigError(f"integer {text} has a leading zero; write {int(text)} (or quote it for a string)")
    raise ConfigError(f"tag {tag} is not allowed")


@dataclass
class Document:
    """A parsed config: plain data plus where each key path came from."""

    data: dict
    source: str  # the file, or "<string>"
    marks: dict[tuple, str] = field(default_factory=dict)  # key path -> "FILE:LINE" or "--set K=V"

    def locate(self, path: Path_) -> str:
        """The origin of the longest known prefix of `path`."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return self.source

    @contextmanager
    def errors_located(self):
        """Attach FILE:LINE to ConfigErrors raised inside the block."""
        try:
            yield
        except ConfigError as exc:
            if exc.location is None:
                raise exc.moved(exc.path, self.locate(exc.path)) from None
            raise


def _to_python(node: yaml.Node, path: tuple, marks: dict[tuple, str] | None, source: str) -> Any:
    if marks is not None:
        marks[path] = f"{source}:{node.start_mark.line + 1}"
    try:
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                raise ConfigError(f"tag {node.tag} is not allowed")
            return [_to_python(item, (*path, i), marks, source) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _TAG + "map":
                raise ConfigError(f"tag {node.tag} is not allowed")
            result: dict[str, Any] = {}
            lines: dict[str, int] = {}  # key -> its line, to name both places of a duplicate
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _TAG + "merge":
                    raise ConfigError("keys must be plain strings", path)
                key = _scalar(key_node)
                if not isinstance(key, str):
                    raise ConfigError(f"key {key_node.value!r} must be a string", path)
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise ConfigError(f"duplicate key {quoted(key)} (first at line {lines[key]})", (*path, key), f"{source}:{line}")
                lines[key] = line
                if marks is not None:
                    marks[(*path, key)] = f"{source}:{line}"
                result[key] = _to_python(value_node, (*path, key), marks, source)
            return result
    except ConfigError as exc:
        if exc.location is None:
            where = f"{source}:{node.start_mark.line + 1}"
            raise ConfigError(exc.message, exc.path or path, where) from None
        raise
    raise ConfigError(f"unsupported YAML node {type(node).__name__}", path)


def parse_yaml(text: str, source: str, marks: dict[tuple, str] | None = None) -> Any:
    """Parse one YAML document with nncli's strict loader; errors name `source` and the line."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"larger than {MAX_BYTES // 1024} KiB; this is not a config", location=source)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ConfigError(problem, location=where) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML ({str(exc).splitlines()[0]})", location=source) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", location=source) from None
    if node is None:
        return None
    return _to_python(node, (), marks, source)


def load_document(path: str | Path) -> Document:
    """Read a YAML config file into a Document (a mapping at the top)."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = read_at_most(f, MAX_BYTES)
    except FileNotFoundError:
        raise ConfigError("file not found", location=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", location=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", location=source) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"larger than {MAX_BYTES // 1024} KiB; this is not a config", location=source)
    if b"\x00" in raw:
        raise ConfigError("binary file, not a YAML config", location=source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", location=source) from None
    return document_from_text(text, source)


def document_from_text(text: str, source: str = "<string>") -> Document:
    marks: dict[tuple, str] = {}
    data = parse_yaml(text, source, marks)
    if data is None:
        raise ConfigError("empty config", location=source)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections (name, data, model, ...)", location=source)
    marks[()] = source
    return Document(data, source, marks)


def document_from_dict(data: dict, source: str = "<dict>") -> Document:
    """A Document for a config built in Python (no line numbers)."""
    import copy

    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping", location=source)
    return Document(copy.deepcopy(data), source, {(): source})


def apply_overrides(doc: Document, overrides: Iterable[str], sections: Sequence[str] = (), flag: str = "--set") -> None:
    """Apply `--set a.b.0.c=VALUE` overrides in order; VALUE is parsed as YAML. A new top-level
    section must be one of `sections` (the config's keys), so a misspelt one is caught here.
    `flag` names where they came from in errors (a sweep's grid values: --grid)."""
    for text in overrides:
        origin = f"{flag} {text}"
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("expected KEY=VALUE, e.g. training.epochs=3", location=origin)
        try:
            value = parse_yaml(value_text, origin)
        except ConfigError as exc:
            raise ConfigError(f"cannot read the value: {exc.message}", key.split("."), origin) from None
        parts: list[str | int] = []
        node: Any = doc.data
        names = key.split(".")
        for depth, name in enumerate(names):
            last = depth == len(names) - 1
            if isinstance(node, list):
                if not re.fullmatch(r"-?[0-9]+", name):
                    raise ConfigError(f"{quoted(name)} is not a list index", parts, origin)
                index = int(name)
                if not -len(node) <= index < len(node):
                    raise ConfigError(f"index {index} is out of range (the list has {len(node)} items)", parts, origin)
                index %= len(node)
                parts.append(index)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                parts.append(name)
                if last:
                    node[name] = value
                elif name in node and isinstance(node[name], (dict, list)):
                    node = node[name]
                elif name in node and node[name] is not None:
                    raise ConfigError(f"is {type(node[name]).__name__}, not a section", parts, origin)
                else:
                    if parts == [name] and sections and name not in sections:
                        hint = did_you_mean(name, list(sections))
                        raise ConfigError(f"unknown section {quoted(name)}.{hint}", parts, origin)
                    node[name] = {}
                    node = node[name]
            else:
                raise ConfigError(f"cannot set {quoted(name)} inside a {type(node).__name__}", parts, origin)
        prefix = tuple(parts)
        for mark in [m for m in doc.marks if m[: len(prefix)] == prefix]:
            del doc.marks[mark]
        doc.marks[prefix] = origin


class _FlowMap(dict):
    """A mapping written on one line ({type: dense, units: 16, ...}), as list items read best."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _FlowMap, lambda dumper, data: dumper.represent_mapping(_TAG + "map", data.items(), flow_style=True)
)


def _flow_list_items(data: Any, in_list: bool = False) -> Any:
    if isinstance(data, dict):
        items = {k: _flow_list_items(v) for k, v in data.items()}
        return _FlowMap(items) if in_list else items
    if isinstance(data, list):
        return [_flow_list_items(v, in_list=True) for v in data]
    return data


def dump_yaml(data: Any) -> str:
    """Resolved config as block YAML (list items on one line) that the strict loader reads back unchanged."""
    return yaml.dump(
        _flow_list_items(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10_000
    )


__all__ = [
    "Document",
    "apply_overrides",
    "document_from_dict",
    "document_from_text",
    "dotted",
    "dump_yaml",
    "load_document",
    "parse_yaml",
]
