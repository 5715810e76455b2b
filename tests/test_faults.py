"""Bad input and faults, one table: each case runs the CLI and checks the exit status, the one-line
`error:` message, and that nothing that existed before (an earlier run, the data, the configs) changed.

Groups: config, override, data (idx, csv), checkpoint, filesystem, signal, numerical. The signal
cases deliver real SIGINT / SIGTERM to this process while the CLI trains; exact resume after a
signal is checked against real subprocesses in test_resume.py and test_kill.py.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from helpers import make_csv, make_digits, mlp_config, rewrite_checkpoint, without_root_file_access, write_config, write_idx
from typer.testing import CliRunner

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.cli import app


@dataclass
class World:
    """What exists before each case: data, a good config, an earlier run and its checkpoints."""

    root: Path
    digits: Path
    table: Path
    config: dict
    config_path: Path
    csv_config_path: Path
    earlier: Path  # an earlier run folder
    last: Path  # its checkpoints
    best: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    digits = make_digits(root / "digits")
    table = make_csv(root / "table.csv")
    config = mlp_config(digits, epochs=2)
    config_path = write_config(root / "good.yaml", config)
    csv_config = {
        "name": "tab", "data": {"source": "csv", "path": str(table), "target": "label"},
        "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "binary_cross_entropy",
        "optimizer": {"type": "gd", "learning_rate": 0.5}, "training": {"epochs": 3},
    }
    csv_config_path = write_config(root / "tab.yaml", csv_config)
    result = nncli.train(config, out=root / "earlier")
    return World(root, digits, table, config, config_path, csv_config_path, result.run_dir,
                 result.final_checkpoint, result.best_checkpoint)


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file under root (except the case's scratch folder)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and skip not in p.parents
    }


# -- helpers for building cases ---------------------------------------------------
FIRING: list[threading.Thread] = []  # signal threads of the running case: joined before it ends
LONG = ["--set", "training.epochs=5000"]  # still training when the signal comes (it stops the run)


def signal_during(args: Callable, history: Callable, signum: int, times: int = 1, rows: int = 1) -> Callable:
    """Run `args`; once `history(tmp)` has `rows` epochs, send `signum` to this process `times` times."""

    def build(w: World, t: Path) -> list[str]:
        argv = args(w, t)

        def fire():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # no signal at all (and a failed case) if training never starts
                path = history(t)
                if path.exists() and len(path.read_text().splitlines()) > rows:
                    for _ in range(times):
                        os.kill(os.getpid(), signum)
                        time.sleep(0.002)
                    return
                time.sleep(0.005)

        thread = threading.Thread(target=fire, daemon=True)
        thread.start()
        FIRING.append(thread)
        return argv

    return build


def run_copy(w: World, tmp: Path) -> Path:
    """A copy of the earlier run, to resume (and interrupt) without touching the original."""
    return Path(shutil.copytree(w.earlier, tmp / "copy"))


def config_file(w: World, tmp: Path, text: str | None = None, change: Callable | None = None, name="c.yaml") -> Path:
    path = tmp / name
    if text is not None:
        path.write_text(text)
    else:
        config = json.loads(json.dumps(w.config))
        change(config)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def edit_text(w: World, tmp: Path, old: str, new: str) -> Path:
    text = w.config_path.read_text()
    assert old in text, old
    return config_file(w, tmp, text.replace(old, new, 1))


def digits_copy(w: World, tmp: Path, damage: Callable[[Path], None]) -> Path:
    folder = make_digits(tmp / "digits", n_train=60, n_test=12, gz=False)
    damage(folder)
    return folder


GZIP_MAGIC = bytes([0x1F, 0x8B])


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def idx_case(damage: Callable[[Path], object]) -> Callable:
    """Train the good config on a small IDX folder damaged by `damage`."""
    return lambda w, t: ["train", str(w.config_path), "--set", f"data.path={digits_copy(w, t, damage)}"]


def csv_file(tmp: Path, text: str) -> Path:
    path = tmp / "t.csv"
    path.write_text(text)
    return path


def bytes_file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def csv_args(w: World, tmp: Path, text: str, **data) -> list[str]:
    path = csv_file(tmp, text)
    sets = [f"data.path={path}"] + [f"data.{k}={v}" for k, v in data.items()]
    return ["train", str(w.csv_config_path), *[a for s in sets for a in ("--set", s)]]


REG_TABLE = "a,b,label\n" + "".join(f"{i},{(i * 7) % 5},{i % 4}.5\n" for i in range(30))


def reg_args(w: World, tmp: Path, text: str, loss: str = "mse", **data) -> list[str]:
    """A regression of the csv world's table (one output, data.task: regression)."""
    return [*csv_args(w, tmp, text, task="regression", **data), "--set", f"loss={loss}"]


def parquet_args(w: World, tmp: Path, columns: dict, **data) -> list[str]:
    """Train the csv world's model on a Parquet file of these columns (pyarrow: the dev extra)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp / "t.parquet"
    pq.write_table(pa.table(columns), path)
    extra = "".join(f", {k}: {v}" for k, v in data.items())
    return ["train", str(w.csv_config_path), "--set", f"data={{source: parquet, path: {path}, target: label{extra}}}"]


GOOD_X = np.arange(40.0).reshape(20, 2)
GOOD_Y = np.arange(20) % 2


def npy_args(w: World, tmp: Path, x=GOOD_X, y=GOOD_Y, x_bytes: bytes | None = None) -> list[str]:
    """Train the csv world's model on features x.npy and labels y.npy (x_bytes: the features file's raw bytes)."""
    xp, yp = tmp / "x.npy", tmp / "y.npy"
    if x_bytes is not None:
        xp.write_bytes(x_bytes)
    else:
        np.save(xp, x, allow_pickle=True)
    np.save(yp, y)
    return ["train", str(w.csv_config_path), "--set", f"data={{source: npy, path: {xp}, labels: {yp}}}"]


def npz_args(w: World, tmp: Path, **arrays) -> list[str]:
    path = tmp / "t.npz"
    np.savez(path, **arrays)
    return ["train", str(w.csv_config_path), "--set", f"data={{source: npz, path: {path}}}"]


def _npy_bytes(array: np.ndarray, cut: int = 0) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getvalue()
    return data[: len(data) - cut] if cut else data


TS_HEADER = "@problemName toy\n@timeStamps false\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n"


def ts_args(w: World, tmp: Path, cases: str) -> list[str]:
    """Train an LSTM on a .ts file of these cases (after a good header: lines 1-7)."""
    path = bytes_file(tmp, "t.ts", (TS_HEADER + cases).encode())
    return ["train", str(w.csv_config_path), "--set", f"data={{source: ts, path: {path}, test_path: ''}}",
            "--set", "model.layers=[{type: lstm, units: 2}, {type: dense, units: 2}]"]


def picture(tmp: Path, side: int) -> Path:
    from PIL import Image

    path = tmp / f"p{side}.png"
    Image.fromarray(np.zeros((side, side), np.uint8)).save(path)
    return path


def predict_args(w: World, tmp: Path, *inputs, extra=()) -> list[str]:
    return ["predict", str(w.last), *map(str, inputs), "--out", str(tmp / "predicted.csv"), *extra]


def checkpoint_copy(w: World, tmp: Path, change_meta=None, change_arrays=None, source=None) -> Path:
    return rewrite_checkpoint(source or w.last, tmp / "bad.npz", change_meta, change_arrays)


def raw_npz(tmp: Path, members: dict[str, bytes]) -> Path:
    path = tmp / "raw.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=True)
    return buf.getvalue()


def meta_member(**overrides) -> bytes:
    meta = {"format": "nncli-checkpoint", "version": 1, "config": {}, "epoch": 1, "input_shape": [3], "preprocessing": {}}
    meta.update(overrides)
    return npy(np.array(json.dumps(meta)))


def meta_text(tmp: Path, text: str) -> Path:
    """A checkpoint whose __nncli__ member is exactly `text` (JSON that json.dumps would never write)."""
    return raw_npz(tmp, {"__nncli__.npy": npy(np.array(text))})


def meta_edited(w: World, tmp: Path, old: str, new: str) -> Path:
    """A copy of the earlier run's last checkpoint with the first `old` in its __nncli__ JSON text replaced."""
    path = tmp / "edited.npz"
    with zipfile.ZipFile(w.last) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "__nncli__.npy":
                text = str(np.load(w.last)["__nncli__"])
                assert old in text, old
                data = npy(np.array(text.replace(old, new, 1)))
            dst.writestr(info.filename, data)
    return path


def symlink(tmp: Path, name: str, target: str) -> Path:
    path = tmp / name
    os.symlink(target, path)
    return path


def eval_of(path_fn):
    return lambda w, tmp: ["eval", str(path_fn(w, tmp))]


def resume_of(path_fn):
    return lambda w, tmp: ["train", str(w.config_path), "--resume", str(path_fn(w, tmp))]


def weights_of(path_fn):
    return lambda w, tmp: ["train", str(w.config_path), "--weights", str(path_fn(w, tmp)), "--out", str(tmp / "new")]


def set_meta(key, value):
    def change(meta):
        meta[key] = value

    return change


# -- the table: (group, id, args builder, exit status, message fragment) ------------------
C = "config"
CASES: list[tuple[str, str, Callable, int, str]] = [
    # config files
    (C, "missing file", lambda w, t: ["train", str(t / "nope.yaml")], 2, "nope.yaml: file not found"),
    (C, "directory", lambda w, t: ["train", str(t)], 2, "is a directory"),
    (C, "empty", lambda w, t: ["train", str(config_file(w, t, ""))], 2, "c.yaml: empty config"),
    (C, "binary", lambda w, t: ["train", str(config_file(w, t, "\x00\x01"))], 2, "binary file"),
    (C, "not utf-8", lambda w, t: ["train", str(bytes_file(t, "l.yaml", b"name: \xe9t\xe9\n"))], 2, "not UTF-8"),
    (C, "oversized", lambda w, t: ["train", str(config_file(w, t, "a: '" + "x" * (1 << 20) + "'\n"))], 2, "larger than 1024 KiB"),
    (C, "deeply nested", lambda w, t: ["train", str(config_file(w, t, "a: " + "[" * 100 + "]" * 100))], 2, "nested deeper than 32"),
    (C, "alias", lambda w, t: ["train", str(config_file(w, t, "a: &x {b: 1}\nc: *x\n"))], 2, "c.yaml:1: anchors (&name) are not allowed"),
    (C, "duplicate key", lambda w, t: ["train", str(config_file(w, t, "seed: 1\nseed: 2\n"))], 2, "c.yaml:2: seed: duplicate key 'seed' (first at line 1)"),
    (C, "nested duplicate key", lambda w, t: ["train", str(config_file(w, t, "training:\n  epochs: 1\n  batch_size: 2\n  epochs: 3\n"))], 2, "c.yaml:4: training.epochs: duplicate key 'epochs' (first at line 2)"),
    (C, "duplicate key in a list item", lambda w, t: ["train", str(config_file(w, t, "model:\n  layers:\n    - type: dense\n      units: 3\n      units: 4\n"))], 2, "c.yaml:5: model.layers.0.units: duplicate key 'units' (first at line 4)"),
    (C, "data path missing names data.path", lambda w, t: ["train", str(edit_text(w, t, f"path: {w.digits}", "path: gone"))], 2, "c.yaml:5: data.path: gone: no such folder"),
    (C, "endless config file", lambda w, t: ["summary", "/dev/zero"], 2, "/dev/zero: larger than 1024 KiB"),
    (C, "python tag", lambda w, t: ["train", str(config_file(w, t, "seed: !!python/object/apply:os.system [ls]\n"))], 2, "is not allowed"),
    (C, "syntax error", lambda w, t: ["train", str(config_file(w, t, "seed: [1, 2\n"))], 2, "c.yaml:2:"),
    (C, "top-level list", lambda w, t: ["train", str(config_file(w, t, "- a\n- b\n"))], 2, "the top level must be a mapping"),
    (C, "leading zero", lambda w, t: ["train", str(edit_text(w, t, "seed: 0", "seed: 007"))], 2, "seed: integer 007 has a leading zero"),
    (C, "unknown section", lambda w, t: ["train", str(edit_text(w, t, "seed: 0", "sead: 0"))], 2, "sead: unknown option 'sead'. Did you mean 'seed'?"),
    (C, "missing data", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c.pop("data")))], 2, "missing required option 'data'"),
    (C, "no layers", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"].update(layers=[])))], 2, "model.layers: the model needs at least one layer"),
    (C, "layers not a list", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"].update(layers="dense")))], 2, "model.layers: expected a list"),
    (C, "unknown layer", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(type="dens")))], 2, "unknown layer 'dens'. Did you mean 'dense'?"),
    (C, "unknown layer option", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(unit=3)))], 2, "model.layers.1.unit: dense: unknown option 'unit'. Did you mean 'units'?"),
    (C, "wrong type", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(units="many")))], 2, "model.layers.1.units: expected an integer, got 'many'"),
    (C, "bool for int", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["training"].update(epochs=True)))], 2, "training.epochs: expected an integer, got true"),
    (C, "out of range", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(units=0)))], 2, "model.layers.1.units: must be >= 1, got 0"),
    (C, "negative rate", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["optimizer"].update(learning_rate=-0.1)))], 2, "optimizer.learning_rate: must be > 0, got -0.1"),
    (C, "nan rate", lambda w, t: ["train", str(edit_text(w, t, "learning_rate: 0.01", "learning_rate: .nan"))], 2, "optimizer.learning_rate: expected a finite number, got nan"),
    (C, "split of 1", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["data"].update(validation_split=1.0)))], 2, "data.validation_split: must be in [0, 1), got 1.0"),
    (C, "unknown optimizer", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["optimizer"].update(type="adma")))], 2, "optimizer.type: unknown optimizer 'adma'. Did you mean 'adam'?"),
    (C, "unknown optimizer option", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["optimizer"].update(beta1=0.8)))], 2, "optimizer.beta1: adam: unknown option 'beta1'. Did you mean 'beta_1'?"),
    (C, "unknown loss", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c.update(loss="hinge")))], 2, "loss: unknown loss 'hinge'"),
    (C, "unknown activation", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(activation="sigmiod")))], 2, "unknown activation 'sigmiod'. Did you mean 'sigmoid'?"),
    (C, "unknown initializer", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(kernel_initializer="he")))], 2, "model.layers.1.kernel_initializer: unknown initializer 'he'"),
    (C, "unknown data source", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["data"].update(source="hdf5")))], 2, "data.source: unknown data source 'hdf5'"),
    (C, "missing source", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["data"].pop("source")))], 2, "data: missing 'source'"),
    (C, "unknown schedule", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["training"].update(schedule="cosin")))], 2, "training.schedule: unknown schedule 'cosin'. Did you mean 'cosine'?"),
    (C, "early stopping typo", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["training"].update(early_stopping={"patiense": 2})))], 2, "training.early_stopping.patiense: unknown option"),
    (C, "monitor without val", lambda w, t: ["train", str(config_file(w, t, change=lambda c: (c["training"].update(early_stopping={}), c["data"].update(validation_split=0.0))))], 2, "training.early_stopping.monitor: val_loss needs validation data"),
    (C, "loss/output mismatch", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][2].update(units=4)))], 2, "loss: the last layer has 4 outputs but the data has 3 classes"),
    (C, "model too big for memory", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["model"]["layers"][1].update(units=10**9)))], 2, "model.layers.1 dense(1000000000, relu)) but"),
    (C, "dense on images", lambda w, t: ["summary", str(config_file(w, t, change=lambda c: c["model"]["layers"].pop(0)))], 2, "model.layers.0: dense: dense expects flat inputs"),
    (C, "bad run name", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c.update(name="../../etc")))], 2, "name: '../../etc' cannot name a run folder"),
    (C, "bad --seed", lambda w, t: ["train", str(w.config_path), "--seed", "-3"], 2, "--seed: must be a non-negative integer"),
    (C, "bad eval split", lambda w, t: ["eval", str(w.last), "--split", "tset"], 2, "--split: expected test, val or train, got 'tset'. Did you mean 'test'?"),
    (C, "unknown component kind", lambda w, t: ["components", "layerz"], 2, "unknown component kind 'layerz'"),
    (C, "resume and weights", lambda w, t: ["train", str(w.config_path), "--resume", str(w.last), "--weights", str(w.last)], 2, "use --resume (continue a run) or --weights"),
    (C, "resume with another config", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c["optimizer"].update(learning_rate=0.02))), "--resume", str(w.last)], 2, "optimizer: differs from the config in"),
    # usage: Typer's own parsing errors are one line too (every command: test_every_command_refuses_bad_usage_in_one_line)
    ("usage", "no config", lambda w, t: ["train"], 2, "nncli train: missing argument 'config'"),
    ("usage", "seed not a number", lambda w, t: ["train", str(w.config_path), "--seed", "abc"], 2, "nncli train: invalid value for '--seed'"),
    ("usage", "unknown option", lambda w, t: ["train", str(w.config_path), "--bogus"], 2, "nncli train: no such option: --bogus"),
    ("usage", "misspelt option", lambda w, t: ["eval", str(w.last), "--jsn"], 2, "nncli eval: no such option: --jsn. Did you mean --json?"),
    ("usage", "option without its value", lambda w, t: ["train", str(w.config_path), "--out"], 2, "nncli train: option '--out' requires an argument"),
    ("usage", "unknown command", lambda w, t: ["trian", str(w.config_path)], 2, "nncli: no such command 'trian'. Did you mean 'train'?"),
    ("usage", "config a dangling symlink", lambda w, t: ["train", str(symlink(t, "l.yaml", "nowhere.yaml"))], 2, "l.yaml: file not found"),
    ("usage", "config a symlink loop", lambda w, t: ["train", str(symlink(t, "l.yaml", "l.yaml"))], 2, "l.yaml: cannot read (Too many levels of symbolic links)"),
    # --set overrides
    ("override", "no equals", lambda w, t: ["train", str(w.config_path), "--set", "training.epochs"], 2, "--set training.epochs: expected KEY=VALUE"),
    ("override", "unknown key", lambda w, t: ["train", str(w.config_path), "--set", "training.epoch=3"], 2, "--set training.epoch=3: training.epoch: unknown option 'epoch'. Did you mean 'epochs'?"),
    ("override", "unknown section", lambda w, t: ["train", str(w.config_path), "--set", "trainig.epochs=3"], 2, "unknown section 'trainig'. Did you mean 'training'?"),
    ("override", "index out of range", lambda w, t: ["train", str(w.config_path), "--set", "model.layers.9.units=3"], 2, "model.layers: index 9 is out of range (the list has 3 items)"),
    ("override", "not an index", lambda w, t: ["train", str(w.config_path), "--set", "model.layers.first.units=3"], 2, "'first' is not a list index"),
    ("override", "into a scalar", lambda w, t: ["train", str(w.config_path), "--set", "seed.value=3"], 2, "seed: is int, not a section"),
    ("override", "bad yaml", lambda w, t: ["train", str(w.config_path), "--set", "training.epochs=[3"], 2, "--set training.epochs=[3: training.epochs: cannot read the value"),
    ("override", "wrong type", lambda w, t: ["train", str(w.config_path), "--set", "training.batch_size=big"], 2, "--set training.batch_size=big: training.batch_size: expected an integer"),
    ("override", "alias in value", lambda w, t: ["train", str(w.config_path), "--set", "training=&a {epochs: 1}"], 2, "anchors (&name) are not allowed"),
    # IDX data
    ("data", "idx folder missing", lambda w, t: ["train", str(w.config_path), "--set", f"data.path={t}/nowhere"], 2, "nowhere: no such folder"),
    ("data", "idx path is a file", lambda w, t: ["train", str(w.config_path), "--set", f"data.path={w.table}"], 2, "expected a folder of IDX files"),
    ("data", "idx labels missing", idx_case(lambda f: (f / "train-labels-idx1-ubyte").unlink()), 2, "missing train-labels-idx1-ubyte"),
    ("data", "idx wrong magic", idx_case(lambda f: _rewrite(f / "train-images-idx3-ubyte", lambda b: b"PK" + b[2:])), 2, "not an IDX file (magic number"),
    ("data", "idx truncated", idx_case(lambda f: _rewrite(f / "train-images-idx3-ubyte", lambda b: b[:-7])), 2, "truncated: header says 60×8×8"),
    ("data", "idx trailing data", idx_case(lambda f: _rewrite(f / "train-labels-idx1-ubyte", lambda b: b + b"x")), 2, "the file has more data"),
    ("data", "idx counts disagree", idx_case(lambda f: write_idx(f / "train-labels-idx1-ubyte", np.zeros(59, np.uint8), gz=False)), 2, "60 images but train-labels-idx1-ubyte has 59 labels"),
    ("data", "idx corrupt gzip", idx_case(lambda f: _rewrite(f / "train-labels-idx1-ubyte", lambda b: GZIP_MAGIC + bytes(range(40)))), 2, "corrupt gzip data"),
    ("data", "idx labels are images", idx_case(lambda f: write_idx(f / "train-labels-idx1-ubyte", np.zeros((60, 2), np.uint8), gz=False)), 2, "expected a vector of integer labels"),
    ("data", "idx one class", idx_case(lambda f: write_idx(f / "train-labels-idx1-ubyte", np.zeros(60, np.uint8), gz=False)), 2, "hold a single class"),
    ("data", "idx test class unknown", idx_case(lambda f: write_idx(f / "t10k-labels-idx1-ubyte", np.full(12, 7, np.uint8), gz=False)), 2, "label 7 is not one of the classes"),
    ("data", "idx empty file", idx_case(lambda f: _rewrite(f / "train-images-idx3-ubyte", lambda b: b"")), 2, "magic number empty file"),
    # CSV data
    ("data", "predict an unreadable picture", lambda w, t: predict_args(w, t, bytes_file(t, "x.png", b"junk")), 2, "x.png: neither an IDX file nor a picture"),
    ("data", "predict a picture of another size, no resize", lambda w, t: predict_args(w, t, picture(t, 16), extra=["--no-resize"]), 2, "is 16×16 pixels, the model takes 8×8"),
    ("data", "predict IDX images of another size", lambda w, t: predict_args(w, t, write_idx(t / "small", np.zeros((2, 5, 5), np.uint8))), 2, "holds images of 5×5×1; the model was trained on 8×8×1"),
    ("data", "predict a missing input", lambda w, t: predict_args(w, t, t / "none.png"), 2, "none.png: no such file"),
    ("data", "predict a CSV with a picture model", lambda w, t: predict_args(w, t, w.table), 2, "table.csv: neither an IDX file nor a picture"),
    ("data", "ts ragged case", lambda w, t: ts_args(w, t, "1,2:3,4:a\n1,2,3:4,5:b\n"), 2, "t.ts:9: series of one case differ in length"),
    ("data", "ts label outside the set", lambda w, t: ts_args(w, t, "1,2:3,4:a\n1,2:3,4:c\n"), 2, "t.ts:9: label 'c' is not one of the declared classes"),
    ("data", "ts non-numeric", lambda w, t: ts_args(w, t, "1,2:3,4:a\n1,x:3,4:b\n"), 2, "t.ts:9: dimension 1: value 'x' is not a number"),
    ("data", "ts no cases", lambda w, t: ts_args(w, t, ""), 2, "t.ts: has a header but no cases after @data"),
    ("data", "ts empty", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data={{source: ts, path: {bytes_file(t, 'e.ts', b'')}}}"], 2, "e.ts: empty file"),
    ("data", "csv missing", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data.path={t}/none.csv"], 2, "none.csv: no such file"),
    ("data", "csv ragged row", lambda w, t: csv_args(w, t, "a,b,label\n1,2,0\n3,4\n5,6,1\n"), 2, "t.csv:3: expected 3 columns as in the header, got 2"),
    ("data", "csv non-numeric", lambda w, t: csv_args(w, t, "a,b,label\n1,2,0\n3,abc,1\n"), 2, "t.csv:3: column 'b': value 'abc' is not a finite number"),
    ("data", "csv missing value", lambda w, t: csv_args(w, t, "a,b,label\n1,2,0\n3,,1\n"), 2, "t.csv:3: column 'b': value is missing"),
    ("data", "csv missing label", lambda w, t: csv_args(w, t, "a,b,label\n1,2,0\n3,4,\n"), 2, "t.csv:3: column 'label': class label is missing"),
    ("data", "csv no target column", lambda w, t: csv_args(w, t, "a,b,y\n1,2,0\n3,4,1\n"), 2, "no column named 'label'"),
    ("data", "csv one class", lambda w, t: csv_args(w, t, "a,b,label\n" + "1,2,0\n" * 20), 2, "holds a single class"),
    ("data", "csv too few rows", lambda w, t: csv_args(w, t, "a,b,label\n1,2,0\n3,4,1\n"), 2, "test_split=0.2 of 2 rows holds out none"),
    ("data", "csv header only", lambda w, t: csv_args(w, t, "a,b,label\n"), 2, "has a header but no data rows"),
    ("data", "csv no header", lambda w, t: csv_args(w, t, "1,2,0\n3,4,1\n"), 2, "the first row is all numbers"),
    ("data", "csv empty", lambda w, t: csv_args(w, t, ""), 2, "t.csv: empty file"),
    ("data", "csv binary", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data.path={bytes_file(t, 'b.csv', gzip.compress(b'a,label'))}"], 2, "b.csv:"),
    ("data", "csv duplicate header", lambda w, t: csv_args(w, t, "a,a,label\n1,2,0\n"), 2, "column 'a' appears twice"),
    ("data", "csv overflow", lambda w, t: csv_args(w, t, "a,b,label\n" + "".join(f"{i},1e300,{i % 2}\n" for i in range(40))), 2, "column 'b': values too large to standardise"),
    ("data", "csv float32 overflow", lambda w, t: csv_args(w, t, "a,b,label\n" + "".join(f"{i},{i}e39,{i % 2}\n" for i in range(40)), standardize="false"), 2, "value is too large for float32"),
    ("data", "csv target of real numbers", lambda w, t: csv_args(w, t, "a,b,label\n" + "".join(f"{i},{i % 3},{i * 0.37:.2f}\n" for i in range(40))), 2, "target column 'label' holds 40 distinct values in 40 rows, real numbers such as 0.37; classification needs class labels"),
    ("data", "csv target of row ids", lambda w, t: csv_args(w, t, "a,b,label\n" + "".join(f"{i},{i % 3},{i}\n" for i in range(40))), 2, "holds 40 distinct values in 40 rows; classification needs class labels, each shared by several rows; to predict the numbers set data.task: regression"),
    # parquet, npy and npz sources: the same rules as csv, rows counted from 1
    ("data", "parquet not a parquet file", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data={{source: parquet, path: {csv_file(t, 'a,b,label')}}}"], 2, "t.csv: not a readable Parquet file"),
    ("data", "parquet missing value", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0, 3.0] * 7, "b": [1.0, None, 3.0] * 7, "label": [0, 1, 0] * 7}), 2, "t.parquet: row 2: column 'b': value is missing"),
    ("data", "parquet non-finite value", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0, float("inf")] * 7, "label": [0, 1, 0] * 7}), 2, "t.parquet: row 3: column 'a': value 'inf' is not a finite number"),
    ("data", "parquet text feature", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0] * 10, "b": ["x", "y"] * 10, "label": [0, 1] * 10}), 2, "t.parquet: column 'b' holds string, not numbers"),
    ("data", "parquet missing label", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0] * 10, "label": ["yes", None] * 10}), 2, "t.parquet: row 2: column 'label': class label is missing"),
    ("data", "parquet no target column", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0] * 10, "lable": [0, 1] * 10}), 2, "no column named 'label'. Did you mean 'lable'?"),
    ("data", "parquet one class", lambda w, t: parquet_args(w, t, {"a": [1.0, 2.0] * 10, "label": ["yes"] * 20}), 2, "column 'label' holds a single class ('yes')"),
    ("data", "npy features of one dimension", lambda w, t: npy_args(w, t, x=np.arange(20.0)), 2, "x.npy: features must be an array of shape (rows, features...), got shape (20,)"),
    ("data", "npy labels for other rows", lambda w, t: npy_args(w, t, y=np.arange(5) % 2), 2, "y.npy: has 5 rows, the features"),
    ("data", "npy pickled objects", lambda w, t: npy_args(w, t, x=np.array([[{"a": 1}]] * 20, dtype=object)), 2, "x.npy: not a readable .npy array (pickled data; nncli loads plain arrays only)"),
    ("data", "npy truncated", lambda w, t: npy_args(w, t, x_bytes=_npy_bytes(GOOD_X, cut=16)), 2, "x.npy: not a readable .npy array"),
    ("data", "npy not an array file", lambda w, t: npy_args(w, t, x_bytes=b"a,b,label\n1,2,0\n"), 2, "x.npy: not a readable .npy array"),
    ("data", "npy missing value", lambda w, t: npy_args(w, t, x=np.where(np.arange(40).reshape(20, 2) == 3, np.nan, GOOD_X)), 2, "x.npy: row 2: column 1: value is missing (nan)"),
    ("data", "npy text labels of one class", lambda w, t: npy_args(w, t, y=np.array(["cat"] * 20)), 2, "y.npy: column 'y' holds a single class ('cat')"),
    ("data", "npy given an npz", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data={{source: npy, path: {npz_args(w, t, x=GOOD_X, y=GOOD_Y)[-1].split('path: ')[1].rstrip('}')}, labels: y.npy}}"], 2, "t.npz: is an .npz archive; use data.source: npz"),
    ("data", "npy labels missing", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data={{source: npy, path: {npy_args(w, t)[-1].split('path: ')[1].split(',')[0]}, labels: {t}/none.npy}}"], 2, "none.npy: no such .npy file"),
    ("data", "npz member missing", lambda w, t: npz_args(w, t, x=GOOD_X, labels=GOOD_Y), 2, "t.npz: no array 'y'. It holds: x, labels"),
    ("data", "npz not an archive", lambda w, t: ["train", str(w.csv_config_path), "--set", f"data={{source: npz, path: {csv_file(t, 'a,b,label')}}}"], 2, "t.csv: not a readable .npz archive"),
    ("data", "npz float32 overflow", lambda w, t: npz_args(w, t, x=GOOD_X * 1e300, y=GOOD_Y) + ["--set", "data.standardize=false"], 2, "t.npz: x: values too large for float32 training"),
    # plugins and export
    (C, "plugin file missing", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c.update(plugins=["nowhere.py"])))], 2, "nowhere.py: no such file"),
    (C, "plugin raises on import", lambda w, t: ["train", str(config_file(w, t, change=lambda c: c.update(plugins=[str(bytes_file(t, "boom.py", b"raise RuntimeError('boom')\n"))])))], 2, "boom.py: raised RuntimeError: boom"),
    (C, "--plugin missing", lambda w, t: ["--plugin", str(t / "nowhere.py"), "components", "layer"], 2, "--plugin: plugin "),
    ("checkpoint", "export to an unknown format", lambda w, t: ["export", str(w.last), "--format", "onx", "--out", str(t / "m.onnx")], 2, "--format: unknown export format 'onx'"),
    # regression (data.task: regression)
    ("data", "regression non-numeric target", lambda w, t: reg_args(w, t, "a,b,label\n" + "".join(f"{i},{i % 3},{i * 0.5}\n" for i in range(20)) + "3,4,abc\n"), 2, "t.csv:22: column 'label': value 'abc' is not a finite number"),
    ("data", "regression missing target value", lambda w, t: reg_args(w, t, "a,b,label\n1,2,0.5\n3,4,\n" + "5,6,1.5\n" * 10), 2, "t.csv:3: column 'label': value is missing"),
    ("data", "regression target column missing", lambda w, t: reg_args(w, t, REG_TABLE, target="[label, zz]"), 2, "t.csv: no column named 'zz'"),
    ("data", "regression every column a target", lambda w, t: reg_args(w, t, REG_TABLE, target="[a, b, label]"), 2, "every column is a target"),
    (C, "classification loss on regression data", lambda w, t: reg_args(w, t, REG_TABLE, loss="binary_cross_entropy"), 2, "loss: binary_cross_entropy is a classification loss but data.task is regression; use mse, mae or huber"),
    (C, "regression loss on class labels", lambda w, t: csv_args(w, t, REG_TABLE.replace(".5", "").replace(".0", ""), ) + ["--set", "loss=mae"], 2, "loss: mae compares outputs with target values: it needs data.task: regression"),
    (C, "target list for a classification", lambda w, t: csv_args(w, t, REG_TABLE, target="[b, label]"), 2, "a list of target columns needs data.task: regression"),
    (C, "standardize_target for a classification", lambda w, t: csv_args(w, t, REG_TABLE, standardize_target="true"), 2, "standardize_target applies to a regression"),
    (C, "regression outputs for fewer targets", lambda w, t: reg_args(w, t, REG_TABLE, target="[b, label]"), 2, "loss: the last layer has output shape (1,) but the data has 2 target columns"),
    (C, "regression monitors accuracy", lambda w, t: reg_args(w, t, REG_TABLE) + ["--set", "training.early_stopping={monitor: val_accuracy}"], 2, "a regression has no val_accuracy"),
    ("data", "eval data missing names the embedded data.path", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["config"]["data"].update(path="gone"))), 2, "bad.npz (embedded config): data.path: gone: no such folder"),
    ("data", "csv wrong feature count for checkpoint", lambda w, t: ["eval", str(w.last), "--data-path", str(w.table)], 2, "expected a folder of IDX files"),
    # checkpoints, on every load path
    ("checkpoint", "eval config far bigger than its arrays", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["config"]["model"]["layers"][1].update(units=10**9))), 2, "bad.npz: its embedded config describes 68,000,000,003 parameters but it holds 547"),
    ("checkpoint", "eval missing", eval_of(lambda w, t: t / "none.npz"), 2, "none.npz: no such file"),
    ("checkpoint", "eval a directory", eval_of(lambda w, t: t), 2, "not a file"),
    ("checkpoint", "eval not a zip", eval_of(lambda w, t: csv_file(t, "hello")), 2, "not a readable .npz/zip archive"),
    ("checkpoint", "eval empty zip", eval_of(lambda w, t: raw_npz(t, {})), 2, "no __nncli__ member"),
    ("checkpoint", "eval truncated", eval_of(lambda w, t: bytes_file(t, "cut.npz", w.last.read_bytes()[:3000])), 2, "cut.npz:"),
    ("checkpoint", "eval bit flip", eval_of(lambda w, t: bytes_file(t, "flip.npz", _flip(w.last.read_bytes()))), 2, "corrupt"),
    ("checkpoint", "eval unknown member", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "evil/x.npy": npy([1.0])})), 2, "unexpected member 'evil/x.npy'"),
    ("checkpoint", "eval non-npy member", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/x.py": b"import os"})), 2, "unexpected member 'param/x.py'"),
    ("checkpoint", "eval duplicate member", eval_of(lambda w, t: _duplicate(t)), 2, "appears twice"),
    ("checkpoint", "eval object array", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/0.dense/W.npy": npy(np.array([{}], object))})), 2, "only plain numeric arrays are allowed"),
    ("checkpoint", "eval structured array", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/0.dense/W.npy": npy(np.zeros(2, "i4,f4"))})), 2, "only plain numeric arrays are allowed"),
    ("checkpoint", "eval big-endian", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/0.dense/W.npy": npy(np.zeros(2, ">f4"))})), 2, "is big-endian"),
    ("checkpoint", "eval complex", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/0.dense/W.npy": npy(np.zeros(2, complex))})), 2, "dtype complex128"),
    ("checkpoint", "eval header lies", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(), "param/0.dense/W.npy": npy(np.zeros((4, 4), np.float32))[:-16]})), 2, "param/0.dense/W: expected 64 bytes of data, found 48"),
    ("checkpoint", "eval zip bomb", eval_of(lambda w, t: _bomb(t)), 2, "refusing a zip bomb"),
    ("checkpoint", "eval meta not json", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": npy(np.array("{oops"))})), 2, "__nncli__ is not valid JSON"),
    ("checkpoint", "eval meta not text", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": npy(np.zeros(3))})), 2, "__nncli__ has dtype float64; expected text"),
    ("checkpoint", "eval wrong format", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=set_meta("config", {}))), 2, "embedded config is invalid"),
    ("checkpoint", "eval future version", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(version=7)})), 2, "format version 7 is newer than this nncli reads"),
    ("checkpoint", "eval other format", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(format="keras")})), 2, "format is 'keras', not 'nncli-checkpoint'"),
    ("checkpoint", "eval bad input shape", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=set_meta("input_shape", [-1]))), 2, "input_shape [-1] is not a list of positive integers"),
    ("checkpoint", "eval unknown component", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["config"]["model"]["layers"][1].update(type="os.system"))), 2, "unknown layer 'os.system'"),
    ("checkpoint", "eval shape mismatch", eval_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["config"]["model"]["layers"][1].update(units=9))), 2, "param/1.dense/W has shape (64, 8), the config's model needs (64, 9)"),
    ("checkpoint", "eval missing weights", eval_of(lambda w, t: checkpoint_copy(w, t, change_arrays=lambda a: a.pop("param/2.dense/b"))), 2, "missing param/2.dense/b"),
    ("checkpoint", "eval nan weights", eval_of(lambda w, t: checkpoint_copy(w, t, change_arrays=lambda a: a["param/1.dense/W"].__setitem__((0, 0), np.nan))), 2, "param/1.dense/W holds non-finite values"),
    ("checkpoint", "eval integer weights", eval_of(lambda w, t: checkpoint_copy(w, t, change_arrays=lambda a: a.update({"param/2.dense/b": np.zeros(3, np.int32)}))), 2, "has dtype int32, expected floats"),
    ("checkpoint", "eval duplicate meta key", eval_of(lambda w, t: meta_text(t, '{"format": "nncli-checkpoint", "version": 1, "config": {}, "epoch": 1, "input_shape": [3], "preprocessing": {}, "preprocessing": {"classes": [0, 1]}}')), 2, "raw.npz: __nncli__.preprocessing: duplicate key 'preprocessing'"),
    ("checkpoint", "eval nested duplicate meta key", eval_of(lambda w, t: meta_edited(w, t, '"epochs": 2', '"epochs": 2, "epochs": 9')), 2, "edited.npz: __nncli__.config.training.epochs: duplicate key 'epochs'"),
    ("checkpoint", "eval NaN preprocessing", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"classes": [0, 1], "mean": [0.0, 1.0], "std": [1.0, float("nan")]})})), 2, "raw.npz: __nncli__.preprocessing.std.1: nan is not a finite number"),
    ("checkpoint", "eval Infinity in meta", eval_of(lambda w, t: meta_edited(w, t, '"learning_rate": 0.01', '"learning_rate": 1e400')), 2, "__nncli__.config.optimizer.learning_rate: inf is not a finite number"),
    ("checkpoint", "eval zero std", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"classes": [0, 1], "mean": [0.0], "std": [0.0]})})), 2, "__nncli__.preprocessing.std: standard deviations must be positive, got 0.0"),
    ("checkpoint", "eval mean without std", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"classes": [0, 1], "mean": [0.0]})})), 2, "__nncli__.preprocessing: mean and std come together"),
    ("checkpoint", "eval stats per feature", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"features": ["a", "b"], "mean": [0.0], "std": [1.0]})})), 2, "__nncli__.preprocessing.mean has 1 values for 2 features"),
    ("checkpoint", "eval class listed twice", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"classes": [0, 1, 0]})})), 2, "__nncli__.preprocessing.classes lists 0 twice"),
    ("checkpoint", "eval class not a label", eval_of(lambda w, t: raw_npz(t, {"__nncli__.npy": meta_member(preprocessing={"classes": [{"a": 1}, 1]})})), 2, "__nncli__.preprocessing.classes: class labels must be strings or numbers"),
    ("checkpoint", "eval integer of 5000 digits", eval_of(lambda w, t: meta_text(t, '{"epoch": ' + "9" * 5000 + "}")), 2, "__nncli__ is not valid JSON (Exceeds the limit"),
    ("checkpoint", "eval junk before the zip", eval_of(lambda w, t: bytes_file(t, "pre.npz", b"MZjunk" + w.last.read_bytes())), 2, "pre.npz: not an nncli checkpoint (6 bytes before the zip archive)"),
    ("checkpoint", "eval junk after the zip", eval_of(lambda w, t: bytes_file(t, "post.npz", w.last.read_bytes() + b"trailing")), 2, "post.npz: not an nncli checkpoint (data after the end of the zip archive)"),
    ("checkpoint", "eval zip comment", eval_of(lambda w, t: _commented(w, t)), 2, "not an nncli checkpoint (data after the end of the zip archive)"),
    ("checkpoint", "resume from weights only", resume_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m.pop("train_state"))), 2, "bad.npz: holds weights but no training state, so --resume cannot continue it; use --weights"),
    ("checkpoint", "resume bad order", resume_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["train_state"].update(batch=2), change_arrays=lambda a: a.update({"train/order": np.zeros(5, np.int64)}))), 2, "cannot resume from it: the epoch's sample order is not a permutation"),
    ("checkpoint", "resume nan optimizer state", resume_of(lambda w, t: checkpoint_copy(w, t, change_arrays=lambda a: a["optim/m"].__setitem__(0, np.inf))), 2, "cannot resume from it: optim/m must be finite"),
    ("checkpoint", "resume bad rng", resume_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["rng"].update(shuffle={"bit_generator": "MT19937"}))), 2, "random generator state is not a PCG64 state"),
    ("checkpoint", "resume history mismatch", resume_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m["train_state"]["history"].pop())), 2, "cannot resume from it: history has 1 rows for epoch 2"),
    ("checkpoint", "resume missing state", resume_of(lambda w, t: checkpoint_copy(w, t, change_meta=lambda m: m.pop("rng"))), 2, "cannot resume from it: missing 'rng'"),
    ("checkpoint", "resume zip bomb", resume_of(lambda w, t: _bomb(t)), 2, "refusing a zip bomb"),
    ("checkpoint", "weights truncated", weights_of(lambda w, t: bytes_file(t, "cut.npz", w.last.read_bytes()[:-100])), 2, "cut.npz:"),
    ("checkpoint", "weights wrong architecture", lambda w, t: ["train", str(w.config_path), "--weights", str(w.last), "--set", "model.layers.1.units=5", "--out", str(t / "new")], 2, "has shape (64, 8), the config's model needs (64, 5)"),
    ("checkpoint", "weights nan", weights_of(lambda w, t: checkpoint_copy(w, t, change_arrays=lambda a: a["param/2.dense/W"].__setitem__((0, 0), np.inf))), 2, "holds non-finite values"),
    ("checkpoint", "weights from other data", lambda w, t: ["train", str(w.csv_config_path), "--weights", str(w.last), "--out", str(t / "new")], 2, "trained on inputs of shape (8, 8, 1), this data has (3,)"),
    # filesystem
    ("filesystem", "out is a file", lambda w, t: ["train", str(w.config_path), "--out", str(w.table)], 2, "table.csv: is a file, not a folder"),
    ("filesystem", "compare out is a file", lambda w, t: ["compare-optimizers", str(w.csv_config_path), "--set", "compare={optimizers: [gd]}", "--out", str(w.table)], 2, "table.csv: is a file, not a folder"),
    ("filesystem", "out under a file", lambda w, t: ["train", str(w.config_path), "--out", str(w.table / "run")], 2, "cannot write"),
    ("filesystem", "eval data moved", lambda w, t: ["eval", str(w.last), "--data-path", str(t / "gone")], 2, "gone: no such folder"),
    ("filesystem", "plot missing run", lambda w, t: ["plot", str(t / "none")], 2, "none: no such run folder or history.csv"),
    ("filesystem", "plot not a history", lambda w, t: ["plot", str(w.table)], 2, "not an nncli history.csv"),
    # signal: Ctrl-C and SIGTERM stop at the next batch, save, say how to resume, exit 130 / 143
    ("signal", "sigint mid-training", signal_during(lambda w, t: ["train", str(w.config_path), *LONG, "--out", str(t / "r")], lambda t: t / "r" / "history.csv", signal.SIGINT), 130, "interrupted by SIGINT"),
    ("signal", "sigterm mid-training", signal_during(lambda w, t: ["train", str(w.config_path), *LONG, "--out", str(t / "r")], lambda t: t / "r" / "history.csv", signal.SIGTERM), 143, "interrupted by SIGTERM"),
    ("signal", "ctrl-c burst", signal_during(lambda w, t: ["train", str(w.config_path), *LONG, "--out", str(t / "r")], lambda t: t / "r" / "history.csv", signal.SIGINT, times=5), 130, "interrupted by SIGINT"),
    ("signal", "sigint full batch", signal_during(lambda w, t: ["train", str(w.csv_config_path), *LONG, "--out", str(t / "r")], lambda t: t / "r" / "history.csv", signal.SIGINT), 130, "interrupted by SIGINT"),
    ("signal", "sigint while resuming", signal_during(lambda w, t: ["train", str(w.config_path), *LONG, "--resume", str(run_copy(w, t) / "checkpoints" / "last.npz")], lambda t: t / "copy" / "history.csv", signal.SIGINT, rows=3), 130, "interrupted by SIGINT"),
    ("signal", "sigterm during --seeds", signal_during(lambda w, t: ["train", str(w.config_path), *LONG, "--seeds", "3", "--out", str(t / "s")], lambda t: t / "s" / "seed-0" / "history.csv", signal.SIGTERM), 143, "interrupted by SIGTERM"),
    # numerical
    ("numerical", "diverging learning rate", lambda w, t: ["train", str(w.config_path), "--set", "optimizer={type: sgd, learning_rate: 1e30}", "--out", str(t / "boom")], 1, "training diverged at epoch 1, batch"),
    ("numerical", "diverging with momentum", lambda w, t: ["train", str(w.config_path), "--set", "optimizer={type: momentum, learning_rate: 1e25}", "--out", str(t / "boom")], 1, "training diverged at epoch 1"),
    ("numerical", "diverging full batch", lambda w, t: ["train", str(w.csv_config_path), "--set", "optimizer.learning_rate=1e300", "--out", str(t / "boom")], 1, "training diverged at epoch"),
]


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[data.index(b"param/1.dense/W.npy") + 300] ^= 0xFF
    return bytes(flipped)


def _duplicate(tmp: Path) -> Path:
    path = tmp / "dup.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__nncli__.npy", meta_member())
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("__nncli__.npy", meta_member())
    return path


def _commented(w: World, tmp: Path) -> Path:
    path = Path(shutil.copy(w.last, tmp / "comment.npz"))
    with zipfile.ZipFile(path, "a") as z:
        z.comment = b"hello"
    return path


def _bomb(tmp: Path) -> Path:
    path = tmp / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__nncli__.npy", meta_member())
        z.writestr("param/0.dense/W.npy", npy(np.zeros(5_000_000, np.float32)))
    return path


@pytest.mark.parametrize("group,name,build,status,fragment", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_and_faults(world, tmp_path, monkeypatch, group, name, build, status, fragment):
    monkeypatch.chdir(world.root)
    scratch = tmp_path / "case"
    scratch.mkdir()
    args = build(world, scratch)
    before = snapshot(world.root, scratch)
    stray = []  # signals of a burst that land after the CLI restored our handlers must not hit pytest
    previous = {s: signal.signal(s, lambda n, _: stray.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(app, args)
        while FIRING:
            FIRING.pop().join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert result.exit_code == status, f"{args}\n{result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("error: "), result.stderr
    assert fragment in lines[-1], lines[-1]
    assert "Traceback" not in result.output
    if status == 2:
        assert len(lines) == 1, result.stderr
    if group == "signal":  # the checkpoint it saved loads, and the message says how to continue from it
        saved = lines[-1].split("saved ")[1].split(";")[0]
        read_checkpoint(saved)
        assert "--resume" in lines[-1]
    assert snapshot(world.root, scratch) == before, "a failed run changed files that existed before it"
    assert not (world.root / "runs").exists()


def test_the_table_is_large_and_covers_every_group():
    groups = {c[0] for c in CASES}
    assert len(CASES) >= 80 and {"config", "override", "data", "checkpoint", "filesystem", "signal", "numerical"} <= groups


# -- faults that need the process's environment changed -------------------------------------
@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")])
def test_a_full_or_read_only_disk_keeps_the_last_good_checkpoint(world, tmp_path, monkeypatch, code, reason):
    run = nncli.train(world.config, out=tmp_path / "run")
    good = run.final_checkpoint.read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("last.npz"):
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    config = write_config(tmp_path / "longer.yaml", {**world.config, "training": {**world.config["training"], "epochs": 4}})
    result = CliRunner().invoke(app, ["train", str(config), "--resume", str(run.final_checkpoint)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {run.final_checkpoint}: cannot write ({reason}); the previous version is intact"
    assert run.final_checkpoint.read_bytes() == good
    assert not list(run.final_checkpoint.parent.glob("*.tmp"))
    assert history_epochs(run.run_dir) == [1, 2] == [row["epoch"] for row in read_checkpoint(run.final_checkpoint).meta["train_state"]["history"]]


def history_epochs(run_dir: Path) -> list[int]:
    """The epochs history.csv lists."""
    return [int(line.split(",")[0]) for line in (run_dir / "history.csv").read_text().splitlines()[1:]]


def test_a_file_size_limit_leaves_history_no_further_than_the_checkpoint(world, tmp_path):
    """RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG) below the checkpoint's size: the first last.npz
    cannot be written, so history.csv must not list epoch 1 either; one error line, exit 1."""
    import resource

    limit = world.last.stat().st_size // 2  # config.yaml and history.csv fit, a checkpoint does not
    assert (world.earlier / "config.yaml").stat().st_size < limit

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = tmp_path / "run"
    process = subprocess.run([sys.executable, "-m", "nncli", "train", str(world.config_path), "--out", str(run)], cwd=world.root,
                             capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert process.returncode == 1, process.stderr
    assert process.stderr.strip().splitlines()[-1] == f"error: {run / 'checkpoints' / 'last.npz'}: cannot write (File too large)"
    assert not (run / "checkpoints" / "last.npz").exists() and history_epochs(run) == []


def test_divergence_after_a_good_epoch_keeps_that_checkpoint(world, tmp_path):
    from nncli.training import Callback

    class PoisonAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, row):
            trainer.model.theta[:] = 1e30  # the next step's loss overflows

    config = {**world.config, "training": {**world.config["training"], "epochs": 3}}
    with pytest.raises(nncli.NncliError) as err:
        nncli.train(config, out=tmp_path / "run", callbacks=[PoisonAfterFirstEpoch()])
    assert err.value.exit_code == 1
    message = str(err.value)
    assert "training diverged at epoch 2, batch 1" in message
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'last.npz'}" in message
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz").meta["epoch"] == 1


# -- usage errors of every command, generated from the CLI application itself -----------------
def _usage_cases() -> list[tuple[str, str, Callable, str]]:
    """(command, case, argv builder, message fragment) for each command the app registers, from its parameters:
    a missing argument, an unknown and a misspelt option, each option given a bad value, and each path argument
    naming something that cannot be read as a file. A command added later is covered without editing this."""
    import typing

    import typer.main

    cases = []
    for name, command in typer.main.get_command(app).commands.items():
        hints = typing.get_type_hints(command.callback)
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        options = [p for p in command.params if p.param_type_name == "option"]
        given = [name] + ["x" for p in arguments if p.required]  # so that only the fault under test is wrong
        if any(p.required for p in arguments):
            cases.append((name, "missing argument", lambda t, n=name: [n], "missing argument"))
        cases.append((name, "unknown option", lambda t, g=given: [*g, "--bogus"], "no such option: --bogus"))
        long = next(o for p in options for o in p.opts if o.startswith("--"))
        cases.append((name, f"misspelt {long}", lambda t, g=given, o=long: [*g, o + o[-1]], f"Did you mean {long}"))
        for option in options:
            flag = option.opts[0]
            kind = next((k for k in (int, float) if k in (hints[option.name], *typing.get_args(hints[option.name]))), None)
            if option.is_flag:
                cases.append((name, f"{flag} given a value", lambda t, g=given, f=flag: [*g, f"{f}=x"], f"option '{flag}' does not take a value"))
            elif kind is not None:
                cases.append((name, f"{flag} not a number", lambda t, g=given, f=flag: [*g, f, "abc"], f"invalid value for '{flag}'"))
            else:
                cases.append((name, f"{flag} without a value", lambda t, g=given, f=flag: [*g, f], f"option '{flag}' requires an argument"))
        paths = [p for p in arguments if Path in (hints[p.name], *typing.get_args(hints[p.name]))]
        if paths:  # the first path argument (read first) is the faulty one; the other required ones are "x"
            first = paths[0]
            for what, make in PATH_FAULTS.items():
                def argv(t, n=name, m=make, first=first, arguments=arguments):
                    bad = str(m(t))
                    return [n, *[bad if p is first else "x" for p in arguments if p.required or p is first]]
                cases.append((name, f"{first.name} {what}", argv, "PATH"))
    return cases


def _unreadable(tmp: Path) -> Path:
    path = tmp / "secret.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    return path


PATH_FAULTS: dict[str, Callable[[Path], Path]] = {
    "is a folder": lambda t: t,
    "is a dangling symlink": lambda t: symlink(t, "dangling", "nowhere"),
    "is a symlink loop": lambda t: symlink(t, "loop", "loop"),
    "is a file without read permission": _unreadable,
}
USAGE_CASES = _usage_cases()


def test_the_usage_cases_cover_every_command_and_kind():
    from typer.main import get_command

    commands = set(get_command(app).commands)
    assert {c[0] for c in USAGE_CASES} == commands and {"train", "eval", "summary", "components"} <= commands
    for kind in ("missing argument", "unknown option", "misspelt", "not a number", "given a value", "without a value", *PATH_FAULTS):
        assert any(kind in c[1] for c in USAGE_CASES), kind


@pytest.mark.parametrize("command,case,build,fragment", USAGE_CASES, ids=[f"{c[0]}: {c[1]}" for c in USAGE_CASES])
def test_every_command_refuses_bad_usage_in_one_line(tmp_path, command, case, build, fragment):
    args = build(tmp_path)
    with without_root_file_access():
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, f"{args}\n{result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if fragment == "PATH":  # the file's own reader names it, with the reason
        bad = next(a for a in args[1:] if a != "x")
        assert bad in lines[0], lines[0]
        if "permission" in case:
            assert f"{bad}: cannot read (Permission denied)" in lines[0], lines[0]
    else:
        assert lines[0].startswith(f"error: nncli {command}: ") and fragment in lines[0], lines[0]
        assert lines[0].endswith(f"(see 'nncli {command} --help')"), lines[0]
    assert "Traceback" not in result.output and "╭" not in result.output and result.stdout == ""


# -- a real process: usage errors, and a closed stdout ---------------------------------------
def _nncli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nncli", *map(str, args)], stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_usage_error_is_one_line_from_a_real_process(world):
    process = _nncli("train", world.config_path, "--sed", "1", stdout=subprocess.PIPE, cwd=world.root)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == ""
    assert err.splitlines() == ["error: python -m nncli train: no such option: --sed. Did you mean --seed, --seeds or --set? (see 'python -m nncli train --help')"]


def test_a_closed_stdout_ends_every_command_quietly_with_141(world, tmp_path):
    """`nncli eval --json ... | head -c 10`: here the reader has gone before the first byte (deterministic, whatever
    the output's size), for JSON lines (typer.echo), Rich tables and Markdown: exit 141, no error, no traceback."""
    from typer.main import get_command

    import nncli

    memory = write_config(tmp_path / "mem.yaml", {"name": "mem", "data": {"source": "random_patterns", "neurons": 16, "patterns": 2},
                                                   "model": {"type": "hopfield"}})
    stored = nncli.train(memory, out=tmp_path / "mem").final_checkpoint
    commands = [
        ("eval", world.last, "--json"),
        ("eval", world.last),
        ("summary", world.config_path),
        ("components", "--markdown"),
        ("components",),
        ("train", world.config_path, "--out", tmp_path / "run"),
        ("compare-optimizers", world.csv_config_path, "--set", "compare={optimizers: [gd], max_iterations: 2}", "--out", tmp_path / "cmp"),
        ("plot", world.earlier, "--out", tmp_path / "plot.png"),
        ("predict", world.last, next(world.digits.glob("t10k-images*")), "--out", tmp_path / "predicted.csv"),
        ("recall", stored, "--out", tmp_path / "recall"),
        ("capacity", memory, "--patterns", "2:4:2", "--trials", "1", "--out", tmp_path / "capacity"),
        ("export", world.last, "--out", tmp_path / "model.onnx"),
        ("gradcheck", world.config_path, "--samples", "2", "--entries", "2"),
        ("sweep", world.config_path, "--engine", "serial", "--grid", "training.epochs=1", "--out", tmp_path / "sweep"),
        ("devices",),
        ("visualize", world.last, "--what", "weights", "--out", tmp_path / "viz"),
        ("report", world.earlier, "--out", tmp_path / "report.html"),
    ]
    assert {c[0] for c in commands} == set(get_command(app).commands)
    read, write = os.pipe()
    os.close(read)
    try:
        processes = [_nncli(*args, stdout=write, cwd=world.root) for args in commands]  # side by side: ~1 s each
    finally:
        os.close(write)
    for args, process in zip(commands, processes):
        err = process.stderr.read()  # progress lines, for train and compare-optimizers
        assert (process.wait(timeout=120), "error" in err or "Traceback" in err) == (141, False), (args, err)
