"""Property-based robustness: generated YAML, configs, CSV, IDX and .npz bytes never crash the loaders.

Every input either loads or raises the loader's own one-line error; nothing else escapes, and each
example stays within a time and memory bound.
"""

import io
import json
import tracemalloc
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
from helpers import make_digits, mlp_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nncli.checkpoint import read_checkpoint
from nncli.config import document_from_text, load_document
from nncli.data import DATA_SOURCES
from nncli.data.idx import read_idx
from nncli.errors import CheckpointError, ConfigError, DataError, NncliError
from nncli.experiment import from_document, load_experiment

FUZZ = settings(max_examples=int(__import__("os").environ.get("NNCLI_FUZZ_EXAMPLES", 150)), deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
MEMORY_LIMIT = 64 << 20  # bytes allocated at peak by one example


@contextmanager
def bounded_memory():
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_LIMIT, f"peak allocation {peak / 2**20:.1f} MiB"


def attempt(call, *allowed):
    with bounded_memory():
        try:
            call()
        except allowed as exc:
            assert "\n" not in str(exc), str(exc)


BYTE_LOADERS = {  # each loader, fed arbitrary bytes, loads or raises its own one-line error
    "config": (load_document, ConfigError),
    "csv": (lambda p: DATA_SOURCES.create({"source": "csv", "path": str(p)}).load(np.random.SeedSequence(0)), DataError),
    "idx": (read_idx, DataError),
}


@pytest.mark.parametrize("kind", sorted(BYTE_LOADERS))
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(tmp_path, kind, data):
    load, error = BYTE_LOADERS[kind]
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(data)
    attempt(lambda: load(path), error)


YAML_PIECES = st.sampled_from(
    ["a", "b:", " ", "\n", "- ", "[", "]", "{", "}", ",", ":", "&x", "*x", "!!", "!!python/object", "'", '"',
     "1e-3", "010", "0x1F", ".inf", ".nan", "~", "true", "yes", "#", "|", ">", "\t", "---", "...", "<<", "%YAML 1.1", "\x00", "é"]
)


@FUZZ
@given(st.lists(YAML_PIECES, max_size=60).map("".join))
def test_yaml_text_from_pieces(text):
    attempt(lambda: document_from_text(text, "fuzz.yaml"), ConfigError)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["name", "seed", "data", "model", "loss", "optimizer", "training", "layers", "type", "units",
                        "activation", "source", "path", "epochs", "learning_rate", "schedule", "early_stopping", "then"])


@FUZZ
@example({"a\nb": 1})  # a key path with a newline must still give a one-line message
@given(st.dictionaries(KEYS | st.text(max_size=8), JSONISH | st.dictionaries(KEYS, JSONISH, max_size=4), max_size=6))
def test_structured_configs(tree):
    attempt(lambda: from_document(document_from_text(json.dumps(tree), "fuzz.yaml")), NncliError)


@FUZZ
@given(
    st.sampled_from(["seed", "training.epochs", "optimizer.learning_rate", "model.layers.1.units", "model.layers.0", "data",
                     "training.schedule", "loss", "model.layers.-1.activation", "x.y.z"]),
    JSONISH,
)
def test_overrides(digits, key, value):
    override = f"{key}={json.dumps(value)}"
    attempt(lambda: load_experiment(mlp_config(digits), [override]), ConfigError)


CSV_CELLS = st.sampled_from(["1", "2.5", "-3e2", "", "NA", "x", "inf", "1e400", '"q,uoted"', "0", "1", "label"])


@FUZZ
@given(st.lists(st.lists(CSV_CELLS, min_size=0, max_size=5).map(",".join), max_size=30).map("\n".join), st.booleans())
def test_csv_text(tmp_path, text, standardize):
    path = tmp_path / "fuzz.csv"
    path.write_text(text)
    source = DATA_SOURCES.create({"source": "csv", "path": str(path), "standardize": standardize, "test_split": 0.2})
    attempt(lambda: source.load(np.random.SeedSequence(0)), DataError)


@FUZZ
@given(
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=5),
    st.binary(max_size=512),
    st.booleans(),
)
def test_idx_bytes(tmp_path, dtype, dims, body, gz):
    import gzip

    data = bytes([0, 0, dtype, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body
    path = tmp_path / "fuzz-idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    attempt(lambda: read_idx(path), DataError)


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    import nncli

    root = tmp_path_factory.mktemp("ckpt")
    digits = make_digits(root / "digits", n_train=40, n_test=10)
    return nncli.train(mlp_config(digits, epochs=1), out=root / "run").final_checkpoint


@FUZZ
@given(st.data())
def test_mutated_checkpoints(tmp_path, checkpoint_file, data):
    blob = bytearray(checkpoint_file.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        at = data.draw(st.integers(0, len(blob) - 1))
        if kind == "flip":
            blob[at] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del blob[at:]
        elif kind == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            blob[at : at + 8] = bytes(8)
        if not blob:
            break
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(blob))

    def load():
        ckpt = read_checkpoint(path)
        ckpt.build_model()

    attempt(load, CheckpointError)


NPY_ARRAYS = st.sampled_from([
    np.zeros(3, np.float32), np.zeros((2, 2), ">f8"), np.array([{"a": 1}], object), np.zeros(2, "i4,f4"),
    np.array("text"), np.zeros(4, complex), np.zeros((0, 3)), np.ones((64, 8), np.float32), np.array(json.dumps({"format": 1})),
])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["__nncli__.npy", "param/1.dense/W.npy", "param/x", "optim/m.npy", "../evil.npy", "train/order.npy"]),
                          NPY_ARRAYS, st.booleans()), max_size=5))
def test_generated_archives(tmp_path, members):
    import warnings

    path = tmp_path / "gen.npz"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
        warnings.simplefilter("ignore")  # duplicate names are part of the test
        for name, array, deflate in members:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, array, allow_pickle=True)
            z.writestr(name, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    attempt(lambda: read_checkpoint(path).build_model(), CheckpointError)
