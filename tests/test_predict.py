"""`nncli predict`: new inputs through the checkpoint's own preprocessing give exactly what the evaluated
model gives on the same inputs (pictures, IDX files, CSV rows, .ts cases; Hopfield recalls), and inputs that
do not fit are one line."""

import csv
import json

import numpy as np
import pytest
from helpers import cli, make_digits, mlp_config, one_error_line
from PIL import Image

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.data.idx import read_idx
from nncli.metrics import predict as predict_outputs


def reference(checkpoint_path, split):
    """What `nncli eval`'s model gives on a split of the checkpoint's own data: probabilities and classes."""
    checkpoint = read_checkpoint(checkpoint_path)
    experiment = checkpoint.experiment()
    data = experiment.data.load(experiment.seeds("data"), checkpoint.meta["preprocessing"])
    model = checkpoint.build_model(experiment)
    part = data.split(split)
    return predict_outputs(model, part.x, transform=experiment.loss.probabilities), data.classes, part


def predictions(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def digits_model(tmp_path):
    folder = make_digits(tmp_path / "digits", n_test=12)
    result = nncli.train(mlp_config(folder, epochs=2), out=tmp_path / "run")
    return folder, result.final_checkpoint


def test_pictures_and_idx_files_predict_what_eval_sees(tmp_path, digits_model):
    folder, checkpoint = digits_model
    expected, classes, _ = reference(checkpoint, "test")
    images = read_idx(next(folder.glob("t10k-images*")))
    pictures = []
    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"d{i}.png")
        pictures.append(tmp_path / f"d{i}.png")
    result = cli("predict", checkpoint, *pictures, next(folder.glob("t10k-images*")), "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "p.csv")
    rows = predictions(tmp_path / "p.csv")
    assert [r["input"] for r in rows[:4]] == ["d0.png", "d1.png", "d2.png", "t10k-images-idx3-ubyte.gz[0]"] and len(rows) == 3 + 12
    got = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    np.testing.assert_array_equal(got[:3], got[3:6])  # a picture of a test digit is that digit
    np.testing.assert_allclose(got[3:], expected, rtol=1e-6, atol=1e-7)
    assert [int(r["label"]) for r in rows[3:]] == [classes[k] for k in expected.argmax(axis=1)]
    # a dark-on-light picture of another size: inverted and resized; refused with --no-resize
    Image.fromarray(255 - images[0]).resize((16, 16)).save(tmp_path / "big.png")
    inverted = json.loads(cli("predict", checkpoint, tmp_path / "big.png", "--invert", "--json", "--top", "2", "--out", tmp_path / "q.csv").stdout.splitlines()[0])
    assert inverted["label"] == int(rows[0]["label"]) and len(inverted["probabilities"]) == 2
    one_error_line(cli("predict", checkpoint, tmp_path / "big.png", "--no-resize", "--out", tmp_path / "r.csv"), "big.png", "16×16", "8×8")
    assert not (tmp_path / "r.csv").exists()


def test_csv_rows_without_their_target_and_string_labels(tmp_path):
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "tested_positive", "tested_negative")
    table.write_text("a,b,c,outcome\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{t}\n" for r, t in zip(x, labels)))
    config = {"name": "t", "seed": 0, "data": {"source": "csv", "path": str(table), "target": "outcome", "test_split": 0.0, "validation_split": 0.0},
              "model": {"layers": [{"type": "dense", "units": 2}]}, "loss": "cross_entropy",
              "optimizer": {"type": "adam", "learning_rate": 0.05}, "training": {"epochs": 3, "batch_size": 10}}
    checkpoint = nncli.train(config, out=tmp_path / "run").final_checkpoint
    expected, classes, _ = reference(checkpoint, "train")  # no splits: the file's rows in order
    new = tmp_path / "new.csv"
    new.write_text("c,b,a\n" + "".join(f"{r[2]:.4f},{r[1]:.4f},{r[0]:.4f}\n" for r in x))  # columns by name, any order
    result = cli("predict", checkpoint, new, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = predictions(tmp_path / "p.csv")
    assert [r["input"] for r in rows[:2]] == ["new.csv:2", "new.csv:3"]
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in classes] for r in rows], expected, rtol=1e-6, atol=1e-7)
    assert {r["label"] for r in rows} <= {"tested_positive", "tested_negative"}
    with_target = cli("predict", checkpoint, table, "--json", "--out", tmp_path / "q.csv")
    assert json.loads(with_target.stdout.splitlines()[0])["label"] in ("tested_positive", "tested_negative")
    (tmp_path / "few.csv").write_text("a,b\n1,2\n")
    one_error_line(cli("predict", checkpoint, tmp_path / "few.csv", "--out", tmp_path / "r.csv"), "few.csv", "no column 'c'")
    (tmp_path / "bad.csv").write_text("a,b,c\n1,x,2\n")
    one_error_line(cli("predict", checkpoint, tmp_path / "bad.csv", "--out", tmp_path / "r.csv"), "bad.csv:2", "column 'b'")
    assert not (tmp_path / "r.csv").exists()


def test_ts_cases_predict_what_eval_sees(tmp_path):
    from test_sequence_data import HEADER, write_ts

    train, _ = write_ts(tmp_path / "toy_TRAIN.ts", [4, 6, 3, 5, 2, 6] * 4)
    test, _ = write_ts(tmp_path / "toy_TEST.ts", [3, 6, 2, 5, 4])
    config = {"name": "ts", "seed": 0, "data": {"source": "ts", "path": str(train), "validation_split": 0.0},
              "model": {"layers": [{"type": "gru", "units": 4}, {"type": "dense", "units": 2}]}, "loss": "cross_entropy",
              "optimizer": {"type": "adam", "learning_rate": 0.01}, "training": {"epochs": 2, "batch_size": 8}}
    checkpoint = nncli.train(config, out=tmp_path / "run").final_checkpoint
    expected, classes, _ = reference(checkpoint, "test")
    result = cli("predict", checkpoint, test, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = predictions(tmp_path / "p.csv")
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in classes] for r in rows], expected, rtol=1e-6, atol=1e-7)
    assert {r["label"] for r in rows} <= {"a", "b"}
    unlabelled = tmp_path / "new.ts"
    unlabelled.write_text(HEADER.replace("@classLabel true a b", "@classLabel false") + "1,2,3:4,5,6\n")
    assert cli("predict", checkpoint, unlabelled, "--out", tmp_path / "q.csv").exit_code == 0
    (tmp_path / "three.ts").write_text(HEADER.replace("@dimensions 2", "@dimensions 3") + "1,2:3,4:5,6:a\n")
    one_error_line(cli("predict", checkpoint, tmp_path / "three.ts", "--out", tmp_path / "r.csv"), "three.ts", "3 dimensions", "trained on 2")
    (tmp_path / "long.ts").write_text(HEADER + ",".join(["1"] * 9) + ":" + ",".join(["2"] * 9) + ":a\n")
    one_error_line(cli("predict", checkpoint, tmp_path / "long.ts", "--out", tmp_path / "r.csv"), "long.ts:10", "longer than the 6")


def test_a_hopfield_checkpoint_recalls_each_input(tmp_path):
    config = {"name": "mem", "seed": 0, "data": {"source": "random_patterns", "neurons": 16, "patterns": 2}, "model": {"type": "hopfield"}}
    checkpoint = nncli.train(config, out=tmp_path / "run").final_checkpoint
    experiment = read_checkpoint(checkpoint).experiment()
    patterns = experiment.data.load(experiment.seeds("data")).train.x
    noisy = patterns[1].copy()
    noisy[:2] *= -1
    (tmp_path / "probes.txt").write_text(",".join(f"{v:g}" for v in noisy) + "\n")
    result = cli("predict", checkpoint, tmp_path / "probes.txt", "--json", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    recalled = json.loads(result.stdout.splitlines()[0])
    assert recalled["nearest"] == 1 and recalled["outcome"] == "recalled" and recalled["overlap"] == 1.0
    assert recalled["state"] == " ".join(f"{v:g}" for v in patterns[1])
    (tmp_path / "short.txt").write_text("1,-1\n")
    one_error_line(cli("predict", checkpoint, tmp_path / "short.txt", "--out", tmp_path / "r.csv"), "short.txt:1", "16 comma-separated")


def test_unreadable_and_missing_inputs_are_one_line(tmp_path, digits_model):
    _, checkpoint = digits_model
    (tmp_path / "junk.png").write_bytes(b"not a picture at all")
    one_error_line(cli("predict", checkpoint, tmp_path / "junk.png", "--out", tmp_path / "r.csv"), "junk.png", "neither an IDX file nor a picture")
    one_error_line(cli("predict", checkpoint, tmp_path / "nowhere.png", "--out", tmp_path / "r.csv"), "nowhere.png", "no such file")
    one_error_line(cli("predict", checkpoint, tmp_path / "junk.png", "--top", "0"), "--top")
    assert not (tmp_path / "r.csv").exists()
