"""Plugins: your own components, registered with nncli's registries by code you name.

A plugin is a Python file or an importable module that registers components,
e.g. `@LAYERS.register("my_layer") class MyLayer(Layer): ...`. nncli imports
one only when you name it: in a config's top-level `plugins:` list (files
relative to the config's folder), with `nncli --plugin PATH`, or by installing
a package that declares an entry point in the group `nncli.plugins` (loaded
once, the first time a command reads a config, a checkpoint or the component
list). A checkpoint never imports code: its embedded config's `plugins:` only
names, in the error, the plugin a component it needs comes from.

Each plugin is imported once per process. A plugin that is missing, fails to
import or registers a name that is taken is one error naming it; whatever it
had registered before failing is rolled back.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from .errors import ConfigError
from .registry import Registry

ENTRY_POINT_GROUP = "nncli.plugins"

_loaded: dict[str, list[tuple[Registry, str]]] = {}  # plugin key -> what it registered
_entry_points_loaded = False
_command_line: list[str] = []  # resolved names of the --plugin ones, which a trained run's config records


def is_file_spec(spec: str) -> bool:
    """A file path (ends with .py or holds a path separator) rather than a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve(spec: str, base: str | Path | None = None) -> str:
    """The plugin's lasting name: a file as an absolute path (relative ones from `base`, default the current
    folder), a module name as it is."""
    if not is_file_spec(spec):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = Path(base or ".") / path
    return str(path.absolute())


def _names() -> set[tuple[int, str]]:
    return {(i, name) for i, registry in enumerate(Registry.every) for name in registry.names()}


def load(spec: str, base: str | Path | None = None, location: str | None = None, path=()) -> str:
    """Import the plugin `spec` (a .py file or a module name) once; return its resolved name.

    Errors are one ConfigError at `location`/`path` (the config line or `--plugin`) naming the plugin.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected a plugin file (.py) or module name, got {spec!r}", path, location)
    key = resolve(spec.strip(), base)
    done = _loaded.get(key)
    if done is not None:
        if all(name in registry for registry, name in done):
            return key
        _unregister(done)  # a test unregistered some of them: import it afresh
        del _loaded[key]
    if is_file_spec(spec):
        file = Path(key)
        if not file.exists():
            raise ConfigError(f"plugin {key}: no such file", path, location)
        if not file.is_file():
            raise ConfigError(f"plugin {key}: not a file", path, location)
    before = _names()
    previous, Registry.loading_plugin = Registry.loading_plugin, key
    try:
        _import(key)
    except (Exception, SystemExit) as exc:
        _unregister(_added(before))
        message = " ".join(str(exc).split()) or "no message"
        what = "cannot import it" if isinstance(exc, ImportError) else f"raised {type(exc).__name__}"
        if isinstance(exc, ValueError) and "is already registered" in str(exc):
            what = "cannot register a component"
        raise ConfigError(f"plugin {key}: {what}: {message}", path, location) from None
    finally:
        Registry.loading_plugin = previous
    _loaded[key] = _added(before)
    return key


def _added(before: set[tuple[int, str]]) -> list[tuple[Registry, str]]:
    return [(Registry.every[i], name) for i, name in sorted(_names() - before)]


def _import(key: str) -> None:
    if not is_file_spec(key):
        importlib.import_module(key)
        return
    stem = re.sub(r"\W", "_", Path(key).stem)
    module_name = f"nncli_plugin_{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, key)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


def _unregister(entries) -> None:
    for registry, name in entries:
        if name in registry:
            registry.unregister(name)


def load_all(specs, base: str | Path | None = None, location: str | None = None, path_prefix=()) -> list[str]:
    """Load each plugin of a list (a config's `plugins:`); return their resolved names."""
    return [load(spec, base, location, (*path_prefix, i)) for i, spec in enumerate(specs)]


def load_command_line(spec: str) -> str:
    """`nncli --plugin SPEC`: load it, and remember it so that a config read afterwards records it in its
    resolved `plugins:` (a checkpoint then names it when it is missing)."""
    key = load(spec, location="--plugin")
    if key not in _command_line:
        _command_line.append(key)
    return key


def command_line() -> list[str]:
    return list(_command_line)


def loaded() -> list[str]:
    """Resolved names of the plugins imported so far."""
    return list(_loaded)


def unload_all() -> None:
    """Unregister everything plugins registered and forget them (for tests; modules stay imported)."""
    for entries in _loaded.values():
        _unregister(entries)
    _loaded.clear()
    _command_line.clear()


def load_entry_points() -> None:
    """Load every installed `nncli.plugins` entry point, once per process (a callable one is called)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} ({ep.value})"
        if key in _loaded:
            continue
        before = _names()
        previous, Registry.loading_plugin = Registry.loading_plugin, key
        try:
            target = ep.load()
            if callable(target) and not isinstance(target, type):
                target()
        except (Exception, SystemExit) as exc:
            _unregister(_added(before))
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"plugin {key} from the {ENTRY_POINT_GROUP} group: {type(exc).__name__}: {message}", location="nncli") from None
        finally:
            Registry.loading_plugin = previous
        _loaded[key] = _added(before)


def missing_plugins(config: dict) -> list[str]:
    """The plugins a (checkpoint's embedded) config names that are not loaded in this process."""
    named = config.get("plugins") if isinstance(config, dict) else None
    if not isinstance(named, list):
        return []
    return [p for p in named if isinstance(p, str) and p not in _loaded]
