"""Checkpoints: round trip, and refusal of anything that is not a well-formed nncli checkpoint."""

import json
import zipfile

import numpy as np
import pytest
from helpers import mlp_config, rewrite_checkpoint

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.errors import CheckpointError
from nncli.metrics import predict


@pytest.fixture
def trained(tmp_path, digits):
    return nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "run").final_checkpoint


def test_round_trip_restores_the_trained_model(tmp_path, digits):
    from nncli.training import Callback

    class Keep(Callback):
        def on_train_end(self, trainer):
            self.model, self.theta = trainer.model, trainer.model.theta.copy()

    keep = Keep()
    result = nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "run", callbacks=[keep])
    loaded = read_checkpoint(result.final_checkpoint).build_model()
    np.testing.assert_array_equal(loaded.theta, keep.theta)
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(predict(loaded, x), predict(keep.model, x))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda m: m.update(format="other"), "format is 'other'"),
        (lambda m: m.update(version=99), "format version 99 is newer"),
        (lambda m: m.pop("config"), "config is missing"),
        (lambda m: m["config"]["model"]["layers"][1].update(units=9), "has shape (64, 8), the config's model needs (64, 9)"),
        (lambda m: m["config"]["model"]["layers"][1].update(type="evil"), "embedded config is invalid"),
        (lambda m: m.update(input_shape=[0]), "input_shape"),
    ],
)
def test_bad_meta_is_refused(tmp_path, trained, damage, message):
    bad = rewrite_checkpoint(trained, tmp_path / "bad.npz", change_meta=damage)
    with pytest.raises(CheckpointError) as err:
        nncli.evaluate([bad])
    assert message in str(err.value) and str(bad) in str(err.value)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda a: a.update({"param/1.dense/W": np.full((64, 8), np.nan, np.float32)}), "non-finite"),
        (lambda a: a.pop("param/2.dense/b"), "missing param/2.dense/b"),
        (lambda a: a.update({"param/9.dense/W": np.zeros(2, np.float32)}), "unexpected param/9.dense/W"),
        (lambda a: a.update({"param/1.dense/W": np.zeros((64, 8), ">f4")}), "big-endian"),
        (lambda a: a.update({"param/1.dense/W": np.zeros((64, 8), np.complex64)}), "dtype complex64"),
        (lambda a: a.update({"junk/x": np.zeros(2)}), "unexpected member"),
    ],
)
def test_bad_arrays_are_refused(tmp_path, trained, damage, message):
    bad = rewrite_checkpoint(trained, tmp_path / "bad.npz", change_arrays=damage)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        nncli.evaluate([bad])


def test_object_arrays_are_refused_without_unpickling(tmp_path, trained):
    bad = tmp_path / "pickle.npz"
    with zipfile.ZipFile(trained) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        with dst.open("param/evil.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="object|dtype"):
        read_checkpoint(bad)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "not a readable .npz"),
        (b"hello world", "not a readable .npz"),
        (b"PK\x03\x04garbage", "not a readable .npz"),
    ],
)
def test_non_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_truncated_and_bit_flipped_files(tmp_path, trained):
    data = trained.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "cut.npz")
    flipped = bytearray(data)
    offset = data.index(b"param/1.dense/W.npy") + 400  # inside the array data
    flipped[offset] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt|CRC|Bad"):
        read_checkpoint(tmp_path / "flip.npz")


def test_meta_must_be_json(tmp_path, trained):
    ckpt = read_checkpoint(trained)
    path = tmp_path / "m.npz"
    np.savez(path, __nncli__=np.array("{not json"), **ckpt.arrays)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint(path)
    np.savez(path, __nncli__=np.array(json.dumps([1, 2])), **ckpt.arrays)
    with pytest.raises(CheckpointError, match="must be a JSON object"):
        read_checkpoint(path)


def test_a_weights_only_file_starts_a_new_run_with_weights_but_cannot_resume(tmp_path, trained, digits):
    weights_only = rewrite_checkpoint(
        trained, tmp_path / "weights.npz",
        change_meta=lambda m: [m.pop(k) for k in ("train_state", "optimizer_state", "schedule_state", "rng")],
        change_arrays=lambda a: [a.pop(k) for k in [k for k in a if not k.startswith(("param/", "state/"))]],
    )
    config = mlp_config(digits, epochs=1)
    with pytest.raises(CheckpointError, match="holds weights but no training state, so --resume cannot continue it; use --weights"):
        nncli.train(config, resume=weights_only, out=tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()
    assert nncli.train(config, weights=weights_only, out=tmp_path / "new").state.epoch == 1
