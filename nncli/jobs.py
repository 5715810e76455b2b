"""The work an engine runs (engines.py): one training run, or one seed of a comparison.

Each job is a module-level function of plain, picklable values, so it runs the
same in this process or in a Ray worker on another machine. A job first makes
its process look like the driver's: the same working folder (relative data
paths), the same command-line plugins. Paths in a job are absolute: on a
cluster they must name shared storage that every node sees at the same place.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path


def _like_the_driver(spec: dict) -> None:
    os.chdir(spec["cwd"])
    if spec.get("plugins"):
        from . import plugins

        for plugin in spec["plugins"]:
            plugins.load_command_line(plugin)


def _record_attempt(spec: dict, attempt: int) -> None:
    """attempts/<trial>-<n>.json: where this attempt runs, written as it starts (a sweep's record of its retries)."""
    folder = spec.get("attempts")
    if folder is None:
        return
    from .files import atomic_write_text

    where = {"trial": spec["name"], "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "parent": os.getppid()}
    try:
        import ray

        if ray.is_initialized():
            where["node"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no Ray, or not in a Ray worker: nothing more to record
        pass
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(folder) / f"{spec['name']}-{attempt}.json", json.dumps(where) + "\n")


def train_run(spec: dict, attempt: int = 1):
    """Train one run into spec["folder"]; an earlier attempt's checkpoint there is resumed, bit for bit.

    spec: config (a path or a dict), overrides, seed, folder, cwd, plugins, and optionally weights,
    callbacks (in-process engines only) and attempts (a folder to record each attempt in).
    A folder whose run died before its first checkpoint holds nothing to keep: it starts afresh.
    """
    from . import api

    _like_the_driver(spec)
    _record_attempt(spec, attempt)
    folder = Path(spec["folder"])
    last = folder / "checkpoints" / "last.npz"
    callbacks = spec.get("callbacks") or ()
    if last.exists():
        return api.train(spec["config"], spec["overrides"], seed=spec["seed"], resume=last, callbacks=callbacks)
    if folder.exists():
        shutil.rmtree(folder)
    return api.train(spec["config"], spec["overrides"], out=folder, seed=spec["seed"], weights=spec.get("weights"), callbacks=callbacks)


def compare_seed(spec: dict, attempt: int = 1):
    """Every optimizer of the config's compare: section on one seed (a comparison has nothing to resume)."""
    from .compare import compare
    from .experiment import load_experiment

    _like_the_driver(spec)
    experiment = load_experiment(spec["config"], spec["overrides"])
    return compare(experiment, [spec["seed"]], spec.get("on_run_end"))
