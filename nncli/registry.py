"""One small registry mechanism for every component kind.

A component is a class whose constructor signature *is* its config schema:
registering it makes it buildable from YAML, listable by `nncli components`,
and writable back, defaults included, into the resolved config. Option values
are checked against the constructor's type annotations by `check_options`,
which also validates the fixed config sections (`training`, ...), so there is
one checker for everything.

Annotations understood: int, float, bool, str, Literal[...], tuple[int, ...],
list[T], dict, X | None, and Annotated[T, Range(...)] or Annotated[object,
REGISTRY] for a nested component (a name, a {type: ...} mapping or an instance).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .errors import ConfigError, Path_


@dataclass(frozen=True)
class Range:
    """A numeric bound on an option, e.g. Range(0, 1, max_open=True) for [0, 1)."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def contains(self, value: float) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        if self.max is not None and (value >= self.max if self.max_open else value > self.max):
            return False
        return True

    def __str__(self) -> str:
        if self.max is None:
            return f"{'>' if self.min_open else '>='} {_num(self.min)}"
        if self.min is None:
            return f"{'<' if self.max_open else '<='} {_num(self.max)}"
        left, right = "(" if self.min_open else "[", ")" if self.max_open else "]"
        return f"in {left}{_num(self.min)}, {_num(self.max)}{right}"


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


PositiveInt = Annotated[int, Range(min=1)]
NonNegativeInt = Annotated[int, Range(min=0)]
PositiveFloat = Annotated[float, Range(min=0.0, min_open=True)]
NonNegativeFloat = Annotated[float, Range(min=0.0)]
Fraction = Annotated[float, Range(0.0, 1.0, max_open=True)]  # [0, 1): a split or a rate
UnitFactor = Annotated[float, Range(0.0, 1.0, min_open=True)]  # (0, 1]: a multiplier that lowers a rate or keeps it
OpenUnit = Annotated[float, Range(0.0, 1.0, min_open=True, max_open=True)]  # (0, 1): e.g. line-search constants
Probability = Annotated[float, Range(0.0, 1.0)]


def normalize(name: str) -> str:
    """Lookup key: case and '-'/'_' do not matter."""
    return name.strip().lower().replace("-", "_")


def quoted(text: object) -> str:
    """A user-supplied name for a message: in quotes, control characters escaped (messages are one line)."""
    return repr(str(text))


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""


class Registry:
    """Name -> class table for one component kind ("layer", "optimizer", ...).

    Every registry is listed in `Registry.every` (plugins.py rolls a failed
    plugin's registrations back through it). While a plugin is being imported
    `Registry.loading_plugin` names it, and what it registers remembers that
    origin (`origin(name)`: None for nncli's own components).
    """

    every: list[Registry] = []
    loading_plugin: str | None = None

    def __init__(self, kind: str, type_key: str = "type"):
        self.kind = kind
        self.type_key = type_key  # the mapping key that names the component
        self._entries: dict[str, type] = {}
        self._canonical: dict[str, str] = {}
        self._origins: dict[str, str] = {}  # canonical name -> the plugin that registered it
        Registry.every.append(self)

    def register(self, name: str, *aliases: str):
        """Class decorator adding `cls` under `name` (canonical) and `aliases`."""

        def decorator(cls):
            keys = list(map(normalize, (name, *aliases)))
            for key in keys:  # check every name before adding any: a clash leaves the table as it was
                if key in self._entries:
                    owner = self._origins.get(self._canonical[key])
                    by = f"by plugin {owner}" if owner else "by nncli itself"
                    raise ValueError(f"{self.kind} {key!r} is already registered ({by}); choose another name")
            for key in keys:
                self._entries[key] = cls
                self._canonical[key] = name
            if Registry.loading_plugin is not None:
                self._origins[name] = Registry.loading_plugin
            if "registered_name" not in cls.__dict__:
                cls.registered_name = name
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        """Remove `name` and its aliases (a plugin or a test that registered its own component)."""
        canonical = self.canonical(name)
        for key in [k for k, v in self._canonical.items() if v == canonical]:
            del self._entries[key], self._canonical[key]
        self._origins.pop(canonical, None)

    def origin(self, name: str) -> str | None:
        """The plugin that registered `name`, or None for a built-in component."""
        return self._origins.get(self.canonical(name))

    def names(self) -> list[str]:
        """Canonical names, sorted (aliases left out)."""
        return sorted(set(self._canonical.values()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize(name) in self._entries

    def get(self, name: str, path: Path_ = ()) -> type:
        """The class registered as `name`, or a ConfigError with a suggestion."""
        if not isinstance(name, str):
            raise ConfigError(f"expected a {self.kind} name, got {_show(name)}", path)
        key = normalize(name)
        if key not in self._entries:
            hint = did_you_mean(key, self._canonical)
            error = ConfigError(f"unknown {self.kind} {quoted(name)}.{hint} Known: {', '.join(self.names())}", path)
            error.unknown = (self.kind, name)  # a checkpoint names the plugin it may come from
            raise error
        return self._entries[key]

    def canonical(self, name: str) -> str:
        return self._canonical[normalize(name)]

    def create(self, spec: Any, path: Path_ = ()) -> Any:
        """Build a component from a name, a {type: name, **options} mapping or pass an instance through.

        The instance gets `.spec`: its full option set, defaults included, under
        the canonical name; that is what the resolved config records.
        """
        if isinstance(spec, str):
            name, options, opt_path = spec, {}, tuple(path)
        elif isinstance(spec, dict):
            if self.type_key not in spec:
                raise ConfigError(
                    f"missing '{self.type_key}' ({self.kind} name); known: {', '.join(self.names())}",
                    path,
                )
            options = dict(spec)
            name = options.pop(self.type_key)
            opt_path = tuple(path)
            path = (*path, self.type_key)
        elif hasattr(spec, "spec") and isinstance(spec, tuple(set(self._entries.values()))):
            return spec
        else:
            raise ConfigError(
                f"expected a {self.kind} name or a mapping with '{self.type_key}', got {_show(spec)}",
                path,
            )
        cls = self.get(name, path)
        canonical = self.canonical(name)
        kwargs = check_options(cls, options, opt_path, owner=canonical)
        resolve = getattr(cls, "resolve_options", None)
        if resolve is not None:
            kwargs = resolve(kwargs)
        try:
            obj = cls(**kwargs)
        except ValueError as exc:
            raise ConfigError(f"{canonical}: {exc}", opt_path) from None
        obj.spec = {self.type_key: canonical, **{k: to_plain(v) for k, v in kwargs.items()}}
        return obj

    def describe(self, name: str) -> ComponentInfo:
        """Options with types and defaults, and the docstring's first line, for `nncli components`."""
        cls = self.get(name)
        return ComponentInfo(
            kind=self.kind,
            name=self.canonical(name),
            summary=_first_line(cls),
            options=describe_options(cls),
            aliases=sorted(k for k, v in self._canonical.items() if v == self.canonical(name) and k != v),
            origin=self.origin(name),
        )


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: Any  # `REQUIRED` when the option has no default
    help: str


REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class ComponentInfo:
    kind: str
    name: str
    summary: str
    options: list[OptionInfo]
    aliases: list[str]
    origin: str | None = None  # the plugin that registered it (None: built in)


def _first_line(obj: Any) -> str:
    """The docstring's first paragraph, on one line."""
    doc = (inspect.getdoc(obj) or "").strip()
    return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())


def _parameters(target: Any) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    init = target.__init__ if inspect.isclass(target) else target
    params = [
        p
        for p in inspect.signature(target).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    hints = typing.get_type_hints(init, include_extras=True)
    return params, hints


def _option_help(target: Any) -> dict[str, str]:
    """Per-option help from an 'Options:' block in the class docstring ('name: text' lines)."""
    doc = inspect.getdoc(target) or ""
    helps: dict[str, str] = {}
    in_block = False
    for line in doc.splitlines():
        if line.strip().lower() == "options:":
            in_block = True
            continue
        if in_block:
            if not line.strip():
                break
            key, sep, text = line.strip().partition(":")
            if sep:
                helps[key.strip()] = text.strip()
    return helps


def describe_options(target: Any) -> list[OptionInfo]:
    params, hints = _parameters(target)
    helps = _option_help(target)
    return [
        OptionInfo(
            p.name,
            describe_type(hints.get(p.name, Any)),
            to_plain(p.default) if p.default is not REQUIRED else REQUIRED,
            helps.get(p.name, ""),
        )
        for p in params
    ]


def check_options(target: Any, options: dict, path: Path_ = (), owner: str = "") -> dict:
    """Validate `options` against `target`'s signature; return the keyword arguments, defaults filled in.

    Unknown names get a "did you mean"; missing required options, wrong types
    and out-of-range values each raise a ConfigError naming the key path.
    """
    params, hints = _parameters(target)
    names = [p.name for p in params]
    where = f"{owner}: " if owner else ""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}expected a mapping, got {_show(options)}", path)
    for key in options:
        if key not in names:
            hint = did_you_mean(str(key), names)
            known = f" Options: {', '.join(names)}" if names and not hint else ""
            raise ConfigError(f"{where}unknown option {quoted(key)}.{hint}{known}", (*path, key))
    kwargs = {}
    for p in params:
        if p.name in options:
            kwargs[p.name] = convert(options[p.name], hints.get(p.name, Any), (*path, p.name))
        elif p.default is REQUIRED:
            raise ConfigError(f"{where}missing required option '{p.name}'", path)
        else:  # defaults go through the same conversion: a default "zeros" becomes an initializer
            kwargs[p.name] = convert(p.default, hints.get(p.name, Any), (*path, p.name))
    return kwargs


_NONE = type(None)


def convert(value: Any, annotation: Any, path: Path_) -> Any:
    """Check `value` against `annotation`; return it converted (ints to floats, lists to tuples, specs to objects)."""
    origin = get_origin(annotation)
    if annotation is Any or annotation is object:
        return value
    if origin is Annotated:
        base, *meta = get_args(annotation)
        registries = [m for m in meta if isinstance(m, Registry)]
        if registries:
            return registries[0].create(value, path)
        value = convert(value, base, path)
        for m in meta:
            if isinstance(m, Range) and value is not None and not m.contains(value):
                raise ConfigError(f"must be {m}, got {_show(value)}", path)
        return value
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        if value is None:
            if _NONE in args:
                return None
            raise ConfigError(f"expected {describe_type(annotation)}, got null", path)
        errors = []
        for arg in (a for a in args if a is not _NONE):
            try:
                return convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"expected {describe_type(annotation)}, got {_show(value)}", path)
    if origin is Literal:
        choices = get_args(annotation)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        hint = did_you_mean(str(value), [str(c) for c in choices])
        listed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"expected one of {listed}, got {_show(value)}.{hint}".rstrip("."), path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {_show(value)}", path)
    if annotation is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)  # 3e4 is written as a float in YAML
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"expected an integer, got {_show(value)}", path)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"expected a finite number, got {_show(value)}", path)
            return float(value)
        raise ConfigError(f"expected a number, got {_show(value)}", path)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"expected a string, got {_show(value)}", path)
    if origin is tuple:
        args = get_args(annotation)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not isinstance(value, (list, tuple)):
            if not variadic:  # a scalar expands: kernel_size: 3 -> (3, 3)
                return tuple(convert(value, a, path) for a in args)
            value = [value]
        if not variadic and len(value) != len(args):
            raise ConfigError(f"expected {len(args)} values, got {len(value)}", path)
        item_types = [args[0]] * len(value) if variadic else args
        return tuple(convert(v, a, (*path, i)) for i, (v, a) in enumerate(zip(value, item_types)))
    if origin is list or annotation is list:
        (item,) = get_args(annotation) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {_show(value)}", path)
        return [convert(v, item, (*path, i)) for i, v in enumerate(value)]
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {_show(value)}", path)
        return value
    if dataclasses.is_dataclass(annotation):  # a fixed sub-section, e.g. training.early_stopping
        if isinstance(value, annotation):
            return value
        return annotation(**check_options(annotation, value, path))
    raise TypeError(f"unsupported option annotation {annotation!r} at {path}")


def describe_type(annotation: Any) -> str:
    """Human-readable type for help and error messages."""
    origin = get_origin(annotation)
    if annotation is Any or annotation is object:
        return "any"
    if origin is Annotated:
        base, *meta = get_args(annotation)
        for m in meta:
            if isinstance(m, Registry):
                return f"{m.kind} name or mapping"
        ranges = [str(m) for m in meta if isinstance(m, Range)]
        return " ".join([describe_type(base), *ranges])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not _NONE]
        text = " or ".join(describe_type(a) for a in args)
        return f"{text} or null" if _NONE in get_args(annotation) else text
    if origin is Literal:
        return "one of " + "|".join(str(c) for c in get_args(annotation))
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {describe_type(args[0])}"
        return f"{len(args)} × {describe_type(args[0])}"
    if origin is list or annotation is list:
        (item,) = get_args(annotation) or (Any,)
        return f"list of {describe_type(item)}"
    if dataclasses.is_dataclass(annotation):
        return "mapping: " + ", ".join(f.name for f in dataclasses.fields(annotation))
    return {bool: "bool", int: "int", float: "float", str: "string", dict: "mapping"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def to_plain(value: Any) -> Any:
    """A config-friendly (YAML/JSON) form of an option value: components become their compact spec."""
    if hasattr(value, "spec") and isinstance(value.spec, dict):
        return compact_spec(value.spec)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def compact_spec(spec: dict) -> str | dict:
    """A component without options is written as its bare name."""
    return next(iter(spec.values())) if len(spec) == 1 else dict(spec)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)
