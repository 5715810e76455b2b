"""Checkpoints: .npz files readable with numpy.load(allow_pickle=False), checked before use.

Layout (CONTRACTS.md): `__nncli__` holds a JSON object (format, version,
resolved config, epoch, preprocessing, history, training state);
`param/<i>.<type>/<name>` the trainable arrays; `state/...` non-trainable
layer arrays; `optim/...` optimizer slots; `train/...` the epoch's sample
order. A checkpoint is data, never code: the loader reads the zip itself,
refuses anything but plain numeric .npy members of sane size, and only looks
component names up in nncli's own registries (through config validation).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import for_model, to_host
from .config import document_from_dict
from .errors import CheckpointError, ConfigError, dotted
from .files import atomic_write
from .training import Snapshot, TrainState

FORMAT = "nncli-checkpoint"
VERSION = 1
META_KEY = "__nncli__"
PREFIXES = ("param/", "state/", "optim/", "train/")
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 4 << 30  # no single array above 4 GiB
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 200  # uncompressed/compressed; savez does not compress, so a bigger ratio is a bomb
MAX_META_BYTES = 64 << 20
_EOCD_SIZE = 22  # the zip's end-of-central-directory record, last in the file (np.savez writes no comment)
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, strings (except meta), complex, structs


def model_arrays(model) -> dict[str, np.ndarray]:
    """param/... and state/... arrays of a model, keyed as in the checkpoint (host arrays, whatever the device)."""
    arrays = {f"param/{k}": to_host(v) for k, v in model.named_params()}
    arrays.update({f"state/{k}": to_host(v) for k, v in model.named_state()})
    return arrays


def run_checkpoint(model, snapshot: Snapshot, run_meta: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a run checkpoint: the one place its layout is written (`Checkpoint.snapshot` reads it).

    `run_meta` holds config, epoch, nncli_version, input_shape and preprocessing; the
    snapshot adds the training state, optimizer slots and counters, schedule and
    generator states, the epoch's sample order and early stopping's best weights.
    """
    arrays = model_arrays(model)
    arrays.update({f"optim/{k}": v for k, v in snapshot.optimizer.items() if isinstance(v, np.ndarray)})
    if snapshot.order is not None:
        arrays["train/order"] = snapshot.order
    if snapshot.best is not None:
        theta, state = snapshot.best
        arrays["train/best/theta"] = theta
        arrays.update({f"train/best/state/{k}": v for k, v in state.items()})
    meta = {
        **run_meta,
        "train_state": snapshot.state.to_meta(),
        "optimizer_state": {k: v for k, v in snapshot.optimizer.items() if not isinstance(v, np.ndarray)},
        "schedule_state": snapshot.schedule,
        "rng": snapshot.rng,
    }
    return meta, arrays


def save_checkpoint(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: the previous file at `path` survives any failure or kill."""
    meta = {"format": FORMAT, "version": VERSION, **meta}
    payload = {META_KEY: np.array(json.dumps(meta, allow_nan=False))}
    payload.update({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    atomic_write(path, lambda f: np.savez(f, **payload))


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]

    def group(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    @property
    def config(self) -> dict:
        return self.meta["config"]

    def experiment(self, device: str | None = None):
        """The Experiment from the embedded config (errors name the checkpoint), computing on `device` (default the
        CPU, whatever device trained it: the arrays are host NumPy either way)."""
        from . import plugins
        from .experiment import from_document

        plugins.load_entry_points()  # installed plugins; the config's own `plugins:` are never imported here
        config, training = self.config, self.config.get("training")
        wanted = device or "cpu"
        if wanted != (training.get("device", "cpu") if isinstance(training, dict) else "cpu"):
            config = {**config, "training": {**(training if isinstance(training, dict) else {}), "device": wanted}}
        doc = document_from_dict(config, source=f"{self.path} (embedded config)")
        try:
            return from_document(doc)
        except ConfigError as exc:
            missing = plugins.missing_plugins(self.config)
            if exc.unknown is not None and missing:
                kind, name = exc.unknown
                where = dotted(exc.path[:-1] if exc.path[-1:] == ("type",) else exc.path)
                if len(missing) == 1:
                    source = f"it comes from plugin {missing[0]}, which is not loaded; pass --plugin {missing[0]} if you trust it"
                else:
                    listed = ", ".join(missing)
                    source = f"it comes from one of the plugins {listed}, which are not loaded; pass --plugin for the one you trust"
                raise CheckpointError(f"{self.path}: {where}: unknown {kind} {name!r} — {source}") from None
            raise CheckpointError(f"{self.path}: embedded config is invalid: {exc}") from None

    def require_resumable(self) -> None:
        """--resume needs the training state; a file of weights alone can only start a new run (--weights)."""
        if "train_state" not in self.meta:
            raise CheckpointError(
                f"{self.path}: holds weights but no training state, so --resume cannot continue it; "
                "use --weights to start a new run from its weights"
            )

    def snapshot(self) -> Snapshot:
        """The training state a resume continues from (the inverse of `run_checkpoint`); KeyError if absent."""
        best = None
        if "train/best/theta" in self.arrays:
            best = (self.arrays["train/best/theta"], self.group("train/best/state/"))
        return Snapshot(
            state=TrainState.from_meta(self.meta["train_state"]),
            optimizer={**self.meta["optimizer_state"], **self.group("optim/")},
            schedule=self.meta["schedule_state"],
            rng=self.meta["rng"],
            order=self.arrays.get("train/order"),
            best=best,
        )

    def require_input_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse data whose per-sample shape is not the one this checkpoint was trained on."""
        trained = tuple(self.meta["input_shape"])
        if trained != tuple(shape):
            raise CheckpointError(f"{self.path}: trained on inputs of shape {trained}, this data has {tuple(shape)}")

    def build_model(self, experiment=None):
        """A model with this checkpoint's architecture, weights and layer state."""
        experiment = experiment or self.experiment()
        prep = self.meta.get("preprocessing", {})
        classes = prep.get("classes")
        shape, num_classes = tuple(self.meta["input_shape"]), len(classes) if classes else None
        targets = len(prep["targets"]) if prep.get("task") == "regression" else None
        try:
            described = experiment.plan(shape, num_classes).num_params  # from shapes: nothing allocated yet
            if described * np.dtype(experiment.training.dtype).itemsize > MAX_TOTAL_BYTES:  # no checkpoint holds that
                held = sum(a.size for a in self.group("param/").values())
                raise CheckpointError(
                    f"{self.path}: its embedded config describes {described:,} parameters but it holds {held:,}; "
                    "the config or the arrays were changed"
                )
            model = experiment.build_model(shape, num_classes, targets=targets)
        except ConfigError as exc:
            raise CheckpointError(f"{self.path}: embedded config does not build: {exc}") from None
        self.load_into(model)
        return model

    def load_into(self, model) -> None:
        """Copy weights and layer state into `model`, checking names, shapes and finiteness."""
        for prefix, named in (("param/", model.named_params()), ("state/", model.named_state())):
            stored = self.group(prefix)
            expected = dict(named)
            missing = sorted(set(expected) - set(stored))
            extra = sorted(set(stored) - set(expected))
            if missing or extra:
                what = f"missing {prefix}{missing[0]}" if missing else f"unexpected {prefix}{extra[0]}"
                raise CheckpointError(f"{self.path}: {what} for the model its config describes")
            for key, target in expected.items():
                array = stored[key]
                if array.shape != target.shape and prefix == "param/" and hasattr(model, "resize_param"):
                    # an array whose size the data set (a modern Hopfield net's stored patterns); None: refused
                    resized = model.resize_param(key, array.shape)
                    target = target if resized is None else resized
                if array.shape != target.shape:
                    raise CheckpointError(
                        f"{self.path}: {prefix}{key} has shape {array.shape}, the config's model needs {target.shape}"
                    )
                if array.dtype.kind != "f":
                    raise CheckpointError(f"{self.path}: {prefix}{key} has dtype {array.dtype}, expected floats")
                if not np.isfinite(array).all():
                    raise CheckpointError(f"{self.path}: {prefix}{key} holds non-finite values")
                target[...] = for_model(model, array)  # host arrays to the model's device


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}")


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member, its header checked before any data is read."""
    name = info.filename
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
            else:
                raise ValueError(f"npy version {version}")
        except zipfile.BadZipFile as exc:
            raise _fail(path, f"member {name} is corrupt ({exc})") from None
        except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
            raise _fail(path, f"member {name} is not a valid .npy array ({type(exc).__name__})") from None
        key = name[: -len(".npy")]
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise _fail(path, f"{key} has a {dtype} dtype; only plain numeric arrays are allowed")
        allowed = "U" if key == META_KEY else _NUMERIC_KINDS
        if dtype.kind not in allowed:
            raise _fail(path, f"{key} has dtype {dtype}; expected {'text' if key == META_KEY else 'numbers'}")
        if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian):
            raise _fail(path, f"{key} is big-endian; nncli writes little-endian arrays")
        if any((not isinstance(d, int)) or d < 0 for d in shape):
            raise _fail(path, f"{key} has an invalid shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MAX_MEMBER_BYTES or nbytes > info.file_size:
            raise _fail(path, f"{key}: header declares {shape} {dtype} ({nbytes} bytes) but the member holds {info.file_size}")
        try:
            data = f.read(nbytes + 1)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _fail(path, f"{key} is corrupt ({exc})") from None
        if len(data) != nbytes:
            raise _fail(path, f"{key}: expected {nbytes} bytes of data, found {len(data)}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy()


def _check_framing(path: Path, f, archive: zipfile.ZipFile) -> None:
    """The zip is the whole file, as np.savez writes it: no bytes in front of it or after its end.

    zipfile itself tolerates both (self-extracting archives, appended data).
    """
    start = min((i.header_offset for i in archive.infolist()), default=0)
    if start != 0:
        raise _fail(path, f"not an nncli checkpoint ({start} bytes before the zip archive)")
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _EOCD_SIZE))
    end = f.read()
    if not (end.startswith(b"PK\x05\x06") and len(end) == _EOCD_SIZE and end[-2:] == b"\0\0"):
        raise _fail(path, "not an nncli checkpoint (data after the end of the zip archive)")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Open and verify a checkpoint; any problem is a one-line CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    try:
        with open(path, "rb") as f:
            return _read_open_checkpoint(path, f)
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None


def _read_open_checkpoint(path: Path, f) -> Checkpoint:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _fail(path, f"not an nncli checkpoint (not a readable .npz/zip archive: {exc})") from None
    with archive:
        _check_framing(path, f, archive)
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _fail(path, f"{len(infos)} members; refusing")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise _fail(path, f"member {dup} appears twice")
        total = 0
        for info in infos:
            key = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else None
            if key is None or not (key == META_KEY or key.startswith(PREFIXES)):
                raise _fail(path, f"unexpected member {info.filename!r}")
            if info.flag_bits & 0x1:
                raise _fail(path, f"member {info.filename} is encrypted")
            total += info.file_size
            if info.file_size > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
                raise _fail(path, f"member {info.filename} declares {info.file_size} bytes; refusing")
            if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise _fail(path, f"member {info.filename} compresses {info.file_size}:{info.compress_size}; refusing a zip bomb")
        if f"{META_KEY}.npy" not in names:
            raise _fail(path, f"not an nncli checkpoint (no {META_KEY} member)")
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            try:
                arrays[info.filename[:-4]] = _read_member(path, archive, info)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
                raise _fail(path, f"member {info.filename} is corrupt ({exc})") from None
    meta_array = arrays.pop(META_KEY)
    if meta_array.shape != () or meta_array.nbytes > MAX_META_BYTES:
        raise _fail(path, f"{META_KEY} must be a single string")
    try:
        meta = json.loads(str(meta_array[()]), object_pairs_hook=_json_object)
        flaw = _first_flaw(meta)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise _fail(path, f"{META_KEY} is not valid JSON ({exc})") from None
    if flaw is not None:
        where, problem = flaw
        raise _fail(path, f"{dotted((META_KEY, *where))}: {problem}")
    _check_meta(path, meta)
    return Checkpoint(path, meta, arrays)


class _Duplicated(dict):
    """A JSON object that held `key` more than once (json.loads alone would keep the last copy)."""

    key: str


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    names = [name for name, _ in pairs]
    duplicated = _Duplicated(obj)
    duplicated.key = next(name for i, name in enumerate(names) if name in names[:i])
    return duplicated


def _first_flaw(value: object, where: tuple = ()) -> tuple[tuple, str] | None:
    """(key path, problem) of the first duplicate key or non-finite number in parsed JSON, or None.

    nncli writes neither (json.dumps(allow_nan=False), one key per name): a
    checkpoint holding one was written by something else or damaged.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return where, f"{value} is not a finite number"
    if isinstance(value, _Duplicated):
        return (*where, value.key), f"duplicate key {value.key!r}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        flaw = _first_flaw(item, (*where, key))
        if flaw is not None:
            return flaw
    return None


def _check_meta(path: Path, meta: object) -> None:
    if not isinstance(meta, dict):
        raise _fail(path, f"{META_KEY} must be a JSON object")
    if meta.get("format") != FORMAT:
        raise _fail(path, f"format is {meta.get('format')!r}, not {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"invalid format version {version!r}")
    if version > VERSION:
        raise _fail(path, f"format version {version} is newer than this nncli reads ({VERSION}); upgrade nncli")
    for key, kind in (("config", dict), ("epoch", int), ("input_shape", list), ("preprocessing", dict)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise _fail(path, f"{META_KEY}.{key} is missing or not a {kind.__name__}")
    shape = meta["input_shape"]
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 1 << 20 for d in shape):
        raise _fail(path, f"{META_KEY}.input_shape {shape!r} is not a list of positive integers")
    _check_preprocessing(path, meta["preprocessing"])


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_preprocessing(path: Path, prep: dict) -> None:
    """What eval will apply to the data: class labels (or a regression's target names and statistics), standardisation statistics one per feature, a sequence's padded length and pixel order."""
    where = f"{META_KEY}.preprocessing"
    classes = prep.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or len(classes) < 2:
            raise _fail(path, f"{where}.classes must list at least two classes")
        if not all(isinstance(c, str) or _number(c) for c in classes):
            raise _fail(path, f"{where}.classes: class labels must be strings or numbers")
        if len(set(classes)) < len(classes):
            twice = next(c for i, c in enumerate(classes) if c in classes[:i])
            raise _fail(path, f"{where}.classes lists {twice!r} twice")
    features = prep.get("features")
    if features is not None and not (isinstance(features, list) and all(isinstance(n, str) for n in features)):
        raise _fail(path, f"{where}.features must be a list of column names")
    for key in ("mean", "std"):
        if key not in prep:
            continue
        values = prep[key]
        if not (isinstance(values, list) and all(_number(v) for v in values)):
            raise _fail(path, f"{where}.{key} must be a list of numbers")
        if features is not None and len(values) != len(features):
            raise _fail(path, f"{where}.{key} has {len(values)} values for {len(features)} features")
        if key == "std" and not all(v > 0 for v in values):
            raise _fail(path, f"{where}.std: standard deviations must be positive, got {next(v for v in values if not v > 0)}")
    if ("mean" in prep) != ("std" in prep):
        raise _fail(path, f"{where}: mean and std come together; one is missing")
    task = prep.get("task", "classification")
    if task not in ("classification", "regression"):
        raise _fail(path, f"{where}.task must be classification or regression, got {task!r}")
    targets = prep.get("targets")
    if task == "regression":
        if classes:
            raise _fail(path, f"{where}.classes: a regression has no classes")
        if not (isinstance(targets, list) and targets and all(isinstance(n, str) for n in targets)):
            raise _fail(path, f"{where}.targets must list the regression's target column names")
    for key in ("target_mean", "target_std"):
        if key not in prep:
            continue
        values = prep[key]
        if task != "regression":
            raise _fail(path, f"{where}.{key}: target statistics belong to a regression (task: regression)")
        if not (isinstance(values, list) and all(_number(v) for v in values) and len(values) == len(targets)):
            raise _fail(path, f"{where}.{key} must be a list of {len(targets)} numbers, one per target")
        if key == "target_std" and not all(v > 0 for v in values):
            raise _fail(path, f"{where}.target_std: standard deviations must be positive, got {next(v for v in values if not v > 0)}")
    if ("target_mean" in prep) != ("target_std" in prep):
        raise _fail(path, f"{where}: target_mean and target_std come together; one is missing")
    length = prep.get("length")  # sequences (data.source: ts) are padded to it
    if length is not None and not (isinstance(length, int) and not isinstance(length, bool) and length >= 1):
        raise _fail(path, f"{where}.length must be a positive integer (the padded sequence length), got {length!r}")
    order = prep.get("permutation")  # idx sequence: pixels_permuted
    if order is not None and not (isinstance(order, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in order) and sorted(order) == list(range(len(order)))):
        raise _fail(path, f"{where}.permutation must list the pixel positions 0..n-1 once each")
