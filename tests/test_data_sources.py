"""The data sources beyond the first CSV reader: the same table as CSV, Parquet, .npy pair and .npz trains,
evaluates and predicts alike; the fast CSV reader agrees with the exact one; the memory check refuses up
front; npy batches gather only their rows; progress while loading; the data benchmark runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import write_config
from typer.testing import CliRunner

import nncli
import nncli.data.csv as csv_source
from nncli import api
from nncli.checkpoint import read_checkpoint
from nncli.cli import app
from nncli.data import DATA_SOURCES, Rows
from nncli.errors import DataError

REPO = Path(__file__).resolve().parent.parent
SEED = np.random.SeedSequence(0)
LABELS = np.array(["cat", "dog", "owl"])


def make_table(folder: Path, n: int = 240, seed: int = 0) -> dict[str, dict]:
    """One learnable 3-class table (string labels) written as CSV, Parquet, an .npy pair and an .npz; the
    numbers are written with repr, so every file holds the same float64 values. -> data spec per source."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 50.0, 1.0, -2.0]
    score = np.stack([x[:, 0], (x[:, 1] - 50) / 10, (x[:, 2] - 1) / 0.1], axis=1)
    y = LABELS[np.argmax(score + 0.3 * rng.normal(size=score.shape), axis=1)]
    names = ["a", "b", "c", "d"]
    (folder / "t.csv").write_text("a,b,c,d,kind\n" + "".join(",".join(map(repr, row.tolist())) + f",{label}\n" for row, label in zip(x, y)))
    pq.write_table(pa.table({**{k: x[:, i] for i, k in enumerate(names)}, "kind": y.tolist()}), folder / "t.parquet", row_group_size=50)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "t.npz", features=x, kind=y)
    return {
        "csv": {"source": "csv", "path": str(folder / "t.csv"), "target": "kind"},
        "parquet": {"source": "parquet", "path": str(folder / "t.parquet"), "target": "kind"},
        "npy": {"source": "npy", "path": str(folder / "x.npy"), "labels": str(folder / "y.npy")},
        "npz": {"source": "npz", "path": str(folder / "t.npz"), "features": "features", "labels": "kind"},
    }


def config(data: dict) -> dict:
    return {
        "name": "same", "seed": 3, "data": {**data, "validation_split": 0.2, "test_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 3}]},
        "loss": "cross_entropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
        "training": {"epochs": 4, "batch_size": 16},
    }


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, dict]:
    return make_table(tmp_path_factory.mktemp("table"))


@pytest.fixture(scope="module")
def csv_run(specs, tmp_path_factory):
    return nncli.train(config(specs["csv"]), out=tmp_path_factory.mktemp("runs") / "csv")


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("source", ["parquet", "npy", "npz"])
def test_the_same_data_trains_evaluates_and_predicts_alike_in_every_source(specs, csv_run, source, tmp_path):
    run = nncli.train(config(specs[source]), out=tmp_path / source)
    # training: the same splits, statistics, batches and so the same history and weights
    mine, csvs_rows = _rows(run.history), _rows(csv_run.history)
    assert len(mine) == len(csvs_rows)
    for a, b in zip(mine, csvs_rows):  # row by row: pytest.approx compares flat mappings only
        assert a == pytest.approx(b, rel=1e-6)
    ours, theirs = read_checkpoint(run.final_checkpoint), read_checkpoint(csv_run.final_checkpoint)
    for key, value in theirs.meta["preprocessing"].items():
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value if isinstance(value, list) else [value]))
        expected = pytest.approx(value, rel=1e-12) if numbers else value  # statistics; names and classes exactly
        if source == "parquet" or key not in ("features", "target"):  # npy/npz: no column names; the labels file's
            assert ours.meta["preprocessing"][key] == expected, key
    assert ours.meta["preprocessing"]["classes"] == ["cat", "dog", "owl"]  # string labels kept
    # evaluation of the test split
    mine, csvs = (nncli.evaluate([c.final_checkpoint]).models[0].evaluation for c in (run, csv_run))
    assert mine.n == csvs.n and mine.accuracy == csvs.accuracy and mine.loss == pytest.approx(csvs.loss, rel=1e-6)
    np.testing.assert_array_equal(mine.confusion, csvs.confusion)
    # predict: the source's own file of inputs, with the checkpoint's preprocessing
    inputs = {"parquet": specs["parquet"]["path"], "npy": specs["npy"]["path"], "npz": specs["npz"]["path"]}[source]
    predicted = api.predict(run.final_checkpoint, [inputs], out=tmp_path / "p.csv")
    reference = api.predict(csv_run.final_checkpoint, [specs["csv"]["path"]], out=tmp_path / "c.csv")
    assert [r["label"] for r in predicted.rows] == [r["label"] for r in reference.rows]
    for a, b in zip(predicted.rows, reference.rows):
        assert [a[f"p_{c}"] for c in LABELS] == pytest.approx([b[f"p_{c}"] for c in LABELS], rel=1e-5, abs=1e-7)
    assert predicted.rows[0]["input"] == f"{Path(inputs).name}:1" and reference.rows[0]["input"] == "t.csv:2"


def test_the_fast_csv_reader_agrees_with_the_exact_one(specs, monkeypatch):
    made = []
    real = csv_source._Table.__init__
    monkeypatch.setattr(csv_source._Table, "__init__", lambda self, *a, **k: (made.append(a[0]), real(self, *a, **k))[1])
    source = DATA_SOURCES.create(specs["csv"])
    fast = source.load(SEED)
    assert made == []  # a clean file never needs the exact reader
    source._exact = True
    exact = source.load(SEED)
    assert made  # ... which read it this time
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(fast, name).x, getattr(exact, name).x)
        np.testing.assert_array_equal(getattr(fast, name).y, getattr(exact, name).y)
    assert fast.preprocessing == exact.preprocessing


def test_odd_but_good_csv_files_read_as_before(tmp_path, monkeypatch):
    """CRLF, a BOM, quoted and padded cells (the fast reader), blank lines and rows of empty cells (the exact
    one): the same data, and line numbers in messages that stay the file's own."""
    rows = [f'{i},"{i % 3}", {"yes" if i % 2 else "no"} \r\n' for i in range(30)]
    clean, blanks = tmp_path / "clean.csv", tmp_path / "blanks.csv"
    clean.write_bytes(("\ufeffa,b,label\r\n" + "".join(rows)).encode())
    blanks.write_bytes(("\ufeffa,b,label\r\n\r\n" + "".join(rows[:5]) + ",,\r\n" + "".join(rows[5:])).encode())
    spec = {"source": "csv", "test_split": 0, "validation_split": 0}
    exact = DATA_SOURCES.create({**spec, "path": str(blanks)}).load(SEED)
    monkeypatch.setattr(csv_source._Table, "__init__", lambda *a, **k: pytest.fail("the exact reader was not needed"))
    fast = DATA_SOURCES.create({**spec, "path": str(clean)}).load(SEED)
    assert fast.classes == exact.classes == ["no", "yes"] and len(fast.train) == len(exact.train) == 30
    np.testing.assert_array_equal(fast.train.x, exact.train.x)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(9)) + "9,1e39,1\n")
    with pytest.raises(DataError, match=r"bad.csv:12: column 'b': value is too large for float32 training"):
        DATA_SOURCES.create({**spec, "path": str(bad), "standardize": False}).load(SEED)


def test_csv_names_the_line_of_a_missing_label_found_by_the_fast_reader(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "".join(f"{i},{'x' if i % 2 else 'y'}\n" for i in range(20)) + "\n7,NA\n")
    monkeypatch.setattr(csv_source._Table, "__init__", lambda *a, **k: pytest.fail("the exact reader was not needed"))
    with pytest.raises(DataError, match=r"t.csv:23: column 'label': class label is missing"):
        DATA_SOURCES.create({"source": "csv", "path": str(path)}).load(SEED)


@pytest.mark.parametrize("source", ["csv", "parquet", "npz"])
def test_a_source_too_large_for_memory_is_refused_up_front(specs, source, tmp_path, monkeypatch):
    monkeypatch.setenv("NNCLI_MEMORY_LIMIT", "4096")
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed before the memory check"))
    cfg = write_config(tmp_path / "c.yaml", config(specs[source]))
    result = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert "240 rows × " in lines[0] and "columns need about" in lines[0] and "but 4.0 KiB is available" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_npy_splits_are_index_sets_and_batches_read_only_their_rows(specs, tmp_path, monkeypatch):
    data = DATA_SOURCES.create(specs["npy"]).load(SEED)
    assert isinstance(data.train.x, Rows) and isinstance(data.train.x.base, np.memmap)
    x = np.load(specs["npy"]["path"])
    mean, std = np.array(data.preprocessing["mean"]), np.array(data.preprocessing["std"])
    rows = data.train.x.index[[5, 0, 3]]
    np.testing.assert_array_equal(data.train.x[[5, 0, 3]], ((x[rows] - mean) / std).astype(np.float32))
    # training by mini-batches never gathers a whole split
    monkeypatch.setattr(Rows, "__array__", lambda *a, **k: pytest.fail("a whole split was gathered"))
    run = nncli.train(config(specs["npy"]), out=tmp_path / "run")
    assert len(run.history) == 4


def test_loading_a_large_file_shows_progress_and_the_summary_its_time(specs, tmp_path, monkeypatch):
    monkeypatch.setattr(csv_source, "PROGRESS_MIN_BYTES", 0)  # every file counts as large
    cfg = write_config(tmp_path / "c.yaml", config(specs["csv"]))
    result = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "reading t.csv (" in result.stderr and "reading t.csv: done in" in result.stderr
    assert "data load" in result.stdout


def test_the_data_benchmark_runs_at_tiny_sizes(capsys):
    spec = importlib.util.spec_from_file_location("bench_data", REPO / "benchmarks" / "bench_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--rows", "300", "--train"])  # each measurement is a fresh process: one tiny size is enough
    out = capsys.readouterr().out.splitlines()
    assert "loadtxt s" in out[1] and "npy s" in out[1] and "train peak MB" in out[1]
    assert [line.split()[0] for line in out[2:]] == ["300"]


def test_rich_progress_shows_a_load_bar_and_removes_it():
    import io

    from rich.console import Console

    from nncli.console import RichProgress

    bar = RichProgress(Console(file=io.StringIO(), force_terminal=True))
    for done in (0, 40, 100):
        bar.on_load_progress("reading t.csv", done, 100)
    assert bar._loading is None and not bar.progress.tasks  # gone before the training bars start
