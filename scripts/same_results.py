"""Prove that a refactor changes no results: train the same configs at two commits and compare bit for bit.

    python scripts/same_results.py OLD_COMMIT NEW_COMMIT [--epochs 1] [--configs configs/a.yaml ...]
                                   [--ignore-meta KEY.PATH ...] [--keep DIR]

Each commit is checked out in a temporary `git worktree add --detach` (removed at the end, also
after an error or Ctrl-C), and every config (configs/*.yaml of NEW_COMMIT, or --configs, relative to
the repository root) is trained there, with that commit's code and data paths (full-batch
minimisers such as Newton read `training.epochs` as iterations):

    python -m nncli train CONFIG --set training.epochs=N --out RUNS/<old|new>-<commit>/<stem> --quiet

(cwd and PYTHONPATH = the worktree; RUNS is a temporary folder, or --keep DIR to keep the runs).
Then, per config, it compares
  - history.csv (and gradients.csv when written): every cell as text, except the `seconds` column;
  - checkpoints/last.npz and best.npz: every array member bit for bit (dtype, shape and bytes), and
    the `__nncli__` JSON metadata, with every `seconds` value (wall time) removed, key path by key
    path (`config.optimizer.learning_rate: 0.5 -> 0.1`, `config.model.x: added`); `--ignore-meta
    KEY.PATH` (repeatable) skips a path and everything below it, for differences made on purpose.
It prints `STEM: same` or the differences for each config, then `N same, M different`; exit status
0 when every config gives the same results, 1 otherwise. Only the standard library and numpy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHOWN = 8  # differences shown per file; the rest are counted


def git(*args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=check, capture_output=True, text=True).stdout.strip()


def train(worktree: Path, config: str, epochs: int, out: Path) -> str | None:
    """Train `config` with the worktree's code; None on success, else the reason it failed."""
    command = [sys.executable, "-m", "nncli", "train", config, "--set", f"training.epochs={epochs}"]
    command += ["--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    done = subprocess.run(command, cwd=worktree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        return f"exit status {done.returncode}: {lines[-1]}"
    return None


def compare_csv(a: Path, b: Path) -> list[str]:
    """Cell-by-cell text differences, leaving out the `seconds` column."""
    old, new = (list(csv.reader(p.read_text().splitlines())) for p in (a, b))
    if old[:1] != new[:1]:
        return [f"header {old[:1]} -> {new[:1]}"]
    header = old[0] if old else []
    diffs = [f"{len(old) - 1} rows -> {len(new) - 1} rows"] if len(old) != len(new) else []
    for r, (x, y) in enumerate(zip(old[1:], new[1:]), start=1):
        for column, u, v in zip(header, x, y):
            if column != "seconds" and u != v:
                diffs.append(f"row {r} {column}: {u} -> {v}")
    return diffs


def without_seconds(value):
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compare_meta(old, new, ignored: set[str], path: str = "") -> list[str]:
    if path in ignored:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = []
        for key in sorted(old.keys() | new.keys()):
            sub = f"{path}.{key}" if path else key
            if sub in ignored:
                continue
            if key not in old:
                diffs.append(f"{sub}: added")
            elif key not in new:
                diffs.append(f"{sub}: removed")
            else:
                diffs += compare_meta(old[key], new[key], ignored, sub)
        return diffs
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        pairs = enumerate(zip(old, new))
        return [d for i, (x, y) in pairs for d in compare_meta(x, y, ignored, f"{path}.{i}" if path else str(i))]
    if type(old) is not type(new) or old != new:  # 1 and 1.0, or True and 1, are different JSON
        return [f"{path or '(top level)'}: {short(old)} -> {short(new)}"]
    return []


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return json.loads(arrays.pop("__nncli__")[()]), arrays


def compare_checkpoint(a: Path, b: Path, ignored: set[str]) -> list[str]:
    (old_meta, old), (new_meta, new) = load_checkpoint(a), load_checkpoint(b)
    diffs = compare_meta(without_seconds(old_meta), without_seconds(new_meta), ignored)
    diffs += [f"{name}: {'added' if name in new else 'removed'}" for name in sorted(old.keys() ^ new.keys())]
    for name in sorted(old.keys() & new.keys()):
        x, y = old[name], new[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            diffs.append(f"{name}: {x.dtype}{list(x.shape)} -> {y.dtype}{list(y.shape)}")
        elif x.tobytes() != y.tobytes():  # bit for bit: also tells -0.0 from 0.0
            numeric = x.dtype.kind in "iuf"
            gap = f", max |difference| {np.max(np.abs(x.astype(float) - y.astype(float))):.3g}" if numeric else ""
            diffs.append(f"{name}: {int(np.sum(x != y))} of {x.size} values differ{gap}")
    return diffs


def compare_runs(old: Path, new: Path, ignored: set[str]) -> dict[str, list[str]]:
    """The differences, by file, of two run folders."""
    found = {}
    for name in ("history.csv", "gradients.csv", "checkpoints/last.npz", "checkpoints/best.npz"):
        a, b = old / name, new / name
        if a.exists() != b.exists():
            found[name] = [f"only at {'OLD' if a.exists() else 'NEW'}"]
        elif a.exists():
            found[name] = compare_csv(a, b) if name.endswith(".csv") else compare_checkpoint(a, b, ignored)
    return {name: diffs for name, diffs in found.items() if diffs}


def report(stem: str, found: dict[str, list[str]]) -> None:
    if not found:
        print(f"{stem}: same", flush=True)
        return
    print(f"{stem}: {sum(map(len, found.values()))} difference(s)")
    for name, diffs in found.items():
        more = [f"... and {len(diffs) - SHOWN} more"] if len(diffs) > SHOWN else []
        for line in diffs[:SHOWN] + more:
            print(f"  {Path(name).name}: {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", metavar="OLD_COMMIT")
    parser.add_argument("new", metavar="NEW_COMMIT")
    parser.add_argument("--epochs", type=int, default=1, help="training.epochs for every config (default 1)")
    parser.add_argument("--configs", nargs="+", metavar="CONFIG", help="relative to the repository root")
    parser.add_argument("--ignore-meta", action="append", default=[], metavar="KEY.PATH", help="repeatable")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the runs into DIR (new or empty) and keep them")
    args = parser.parse_args()
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: not empty")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the worktrees are removed

    commits = {}
    for side, ref in (("old", args.old), ("new", args.new)):
        try:
            commits[side] = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except subprocess.CalledProcessError:
            parser.error(f"{ref}: not a commit")
    old, new = commits["old"][:10], commits["new"][:10]
    print(f"OLD {args.old} = {old}, NEW {args.new} = {new}, {args.epochs} epoch(s)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="same_results-"))
    runs = args.keep.resolve() if args.keep else tmp / "runs"
    worktrees = {}
    try:
        for side, commit in commits.items():
            worktrees[side] = tmp / f"worktree-{side}"
            git("worktree", "add", "--detach", str(worktrees[side]), commit)
        configs = args.configs or sorted(f"configs/{p.name}" for p in (worktrees["new"] / "configs").glob("*.yaml"))
        same = different = 0
        for config in configs:
            stem = Path(config).stem
            outs = {side: runs / f"{side}-{commit[:10]}" / stem for side, commit in commits.items()}
            failures = {side: train(worktrees[side], config, args.epochs, outs[side]) for side in commits}
            failed = [f"failed at {side.upper()}: {why}" for side, why in failures.items() if why]
            found = {"training": failed} if failed else compare_runs(outs["old"], outs["new"], set(args.ignore_meta))
            report(stem, found)
            if found:
                different += 1
            else:
                same += 1
        print(f"{same} same, {different} different")
        return 0 if different == 0 and same > 0 else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for path in worktrees.values():
            git("worktree", "remove", "--force", str(path), check=False)
        git("worktree", "prune", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if args.keep:
            print(f"runs kept in {runs}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
