"""Data sources: IDX and CSV reading, validation of bad files, splits and preprocessing."""

import gzip

import numpy as np
import pytest
from helpers import make_digits, write_idx

from nncli.data import DATA_SOURCES
from nncli.errors import ConfigError, DataError

SEED = np.random.SeedSequence(0)


def idx(path, **options):
    return DATA_SOURCES.create({"source": "idx", "path": str(path), **options})


def csv(path, **options):
    return DATA_SOURCES.create({"source": "csv", "path": str(path), **options})


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_gzip_or_raw_as_nhwc_float32_in_unit_range(tmp_path, gz):
    folder = make_digits(tmp_path / "d", n_train=100, n_test=30, gz=gz)
    data = idx(folder, validation_split=0.2).load(SEED)
    assert data.train.x.dtype == np.float32 and data.train.x.shape[1:] == (8, 8, 1)
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 30
    assert data.classes == [0, 1, 2]
    assert idx(folder).inspect().input_shape == (8, 8, 1)


def test_idx_gz_is_detected_from_bytes_not_name(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=50, n_test=10, gz=True)
    for f in folder.iterdir():  # drop the .gz suffix: content decides
        f.rename(folder / f.name[:-3])
    assert len(idx(folder, validation_split=0.0).load(SEED).train) == 50


def test_idx_pixels_match_the_file(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", np.array([0, 1], np.uint8))
    data = idx(folder, validation_split=0.0).load(SEED)
    np.testing.assert_allclose(data.train.x[..., 0], images / 255.0, rtol=1e-6)
    assert data.test is None


def test_real_mnist_headers():
    from conftest import REPO

    info = idx(REPO / "datasets/mnist").inspect()
    assert info.input_shape == (28, 28, 1) and info.num_classes == 10


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"\x00" * 5, "has more data"),
        (lambda b: b"", "not an IDX file (magic number empty file"),
    ],
)
def test_idx_damaged_files_are_refused(tmp_path, damage, message):
    folder = make_digits(tmp_path / "d", n_train=20, n_test=5, gz=False)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DataError) as err:
        idx(folder).load(SEED)
    assert message in str(err.value) and str(target) in str(err.value)


def test_idx_truncated_gzip(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=20, n_test=5, gz=True)
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:60])
    with pytest.raises(DataError, match="truncated"):
        idx(folder).load(SEED)


def test_idx_counts_must_agree(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=20, n_test=5)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but train-labels-idx1-ubyte.gz has 19 labels"):
        idx(folder).load(SEED)


def test_idx_missing_files_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="data.path: .*nowhere: no such folder"):  # the config's data.path is wrong
        idx(tmp_path / "nowhere").load(SEED)
    folder = make_digits(tmp_path / "d", n_train=20, n_test=5)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte"):
        idx(folder).load(SEED)


def test_validation_split_is_stratified_seeded_and_disjoint(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=300, n_test=10)
    a = idx(folder, validation_split=0.2).load(SEED)
    b = idx(folder, validation_split=0.2).load(SEED)
    c = idx(folder, validation_split=0.2).load(np.random.SeedSequence(1))
    np.testing.assert_array_equal(a.val.x, b.val.x)
    assert not np.array_equal(a.val.x, c.val.x)
    full = np.bincount(np.concatenate([a.train.y, a.val.y]))
    np.testing.assert_allclose(np.bincount(a.val.y) / full, 0.2, atol=0.02)
    rows = {r.tobytes() for r in a.train.x}
    assert not any(r.tobytes() in rows for r in a.val.x)


def test_limit_takes_a_stratified_subset(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=300, n_test=10)
    data = idx(folder, validation_split=0.0, limit=60).load(SEED)
    assert len(data.train) == 60 and set(data.train.y) == {0, 1, 2}


def test_csv_pima_like_loading(table):
    data = csv(table, test_split=0.25, validation_split=0.2).load(SEED)
    assert data.input_shape == (3,) and data.classes == [0, 1]
    assert len(data.train) + len(data.val) + len(data.test) == 200
    assert data.train.x.dtype == np.float32
    # standardised with training-part statistics only
    np.testing.assert_allclose(data.train.x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.train.x.std(axis=0), 1, atol=1e-5)
    assert not np.allclose(data.test.x.mean(axis=0), 0, atol=1e-3)
    assert data.preprocessing["features"] == ["a", "b", "c"]
    assert len(data.preprocessing["mean"]) == 3


def test_csv_target_by_name_or_index_and_string_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("kind,x,y\n" + "".join(f"{'cat' if i % 2 else 'dog'},{i},{i * 2}\n" for i in range(40)))
    by_name = csv(path, target="kind", test_split=0.0, validation_split=0.0).load(SEED)
    by_index = csv(path, target=0, test_split=0.0, validation_split=0.0).load(SEED)
    assert by_name.classes == ["cat", "dog"] == by_index.classes
    np.testing.assert_array_equal(by_name.train.y, by_index.train.y)


def test_csv_stored_preprocessing_is_reused(table):
    first = csv(table).load(SEED)
    again = csv(table).load(SEED, preprocessing={**first.preprocessing, "mean": [0, 0, 0], "std": [1, 1, 1]})
    assert not np.allclose(again.test.x, first.test.x)  # raw features: statistics came from the stored ones
    np.testing.assert_allclose(again.test.x, first.test.x * np.asarray(first.preprocessing["std"]) + first.preprocessing["mean"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,b,label\n1,2,0\n3,4\n", "t.csv:3: expected 3 columns as in the header, got 2"),
        ("a,b,label\n1,x,0\n3,4,1\n", "t.csv:2: column 'b': value 'x' is not a finite number"),
        ("a,b,label\n1,,0\n3,4,1\n", "t.csv:2: column 'b': value is missing"),
        ("a,b,label\n1,NA,0\n3,4,1\n", "column 'b': value is missing"),
        ("a,b,label\n1,inf,0\n3,4,1\n", "'inf' is not a finite number"),
        ("1,2,3\n4,5,6\n", "the first row is all numbers"),
        ("", "empty file"),
        ("a,b,label\n", "has a header but no data rows"),
        ("a,a,label\n1,2,0\n", "column 'a' appears twice"),
        ("a,b,label\n1,2,0\n3,4,0\n5,6,0\n7,8,0\n", "holds a single class"),
        ("a,b,label\n1,2,0\n3,4,1\n5,6,\n", "t.csv:4: column 'label': class label is missing"),
    ],
)
def test_csv_bad_files(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        csv(path, test_split=0.0, validation_split=0.0).load(SEED)
    assert message in str(err.value)


def test_csv_missing_target_column_suggests(table):
    with pytest.raises(DataError, match="no column named 'lable'. Did you mean 'label'?"):
        csv(table, target="lable").load(SEED)
    with pytest.raises(DataError, match="index 9 is out of range"):
        csv(table, target=9).load(SEED)


def test_too_few_rows_for_the_splits(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,0\n2,1\n3,0\n")
    with pytest.raises(DataError, match="too few rows for the splits|holds out none"):
        csv(path, test_split=0.2, validation_split=0.2).load(SEED)


def test_binary_and_gzip_csv_are_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(gzip.compress(b"a,label\n1,0\n"))
    with pytest.raises(DataError, match="binary file|not UTF-8"):
        csv(path).load(SEED)


def _reorder(source, target, order):
    rows = [line.split(",") for line in source.read_text().splitlines()]
    target.write_text("".join(",".join(row[i] for i in order) + "\n" for row in rows))
    return target


def test_csv_with_a_checkpoints_preprocessing_selects_columns_by_name(table, tmp_path):
    first = csv(table, target="label").load(SEED)  # header a,b,c,label
    swapped = _reorder(table, tmp_path / "swapped.csv", [2, 3, 0, 1])  # c,label,a,b
    again = csv(swapped, target="label").load(SEED, preprocessing=first.preprocessing)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, name).x, getattr(first, name).x)
        np.testing.assert_array_equal(getattr(again, name).y, getattr(first, name).y)
    # the target too is found by its name, even when the config names it by position
    by_index = csv(swapped, target=-1).load(SEED, preprocessing=first.preprocessing)
    np.testing.assert_array_equal(by_index.test.x, first.test.x)


def test_csv_missing_a_trained_column_names_file_and_column(table, tmp_path):
    first = csv(table, target="label").load(SEED)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(table.read_text().replace("a,b,c,label", "a,bee,c,label", 1))
    with pytest.raises(DataError, match=r"renamed.csv: no column named 'b', which the checkpoint was trained on"):
        csv(renamed, target="label").load(SEED, preprocessing=first.preprocessing)


def test_idx_keeps_8_bit_pixels_until_the_rows_are_chosen(tmp_path):
    import tracemalloc

    folder = make_digits(tmp_path / "d", n_train=12000, n_test=10, size=28, gz=False)
    whole_float32 = 12000 * 28 * 28 * 4
    tracemalloc.start()
    try:
        data = idx(folder, limit=600, validation_split=0.5).load(SEED)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_float32 / 2, f"peak {peak >> 20} MiB: the whole training set was converted to float32"
    # and the pixels are exactly those of converting first and selecting afterwards
    from nncli.data.idx import read_idx

    images = np.divide(read_idx(folder / "train-images-idx3-ubyte"), 255, dtype=np.float32)[..., None]
    rng = np.random.default_rng(SEED)
    from nncli.data.base import encode_labels, split_off, stratified_subset

    labels = read_idx(folder / "train-labels-idx1-ubyte").astype(np.int64)
    y = encode_labels(labels, [0, 1, 2], "")
    keep = stratified_subset(y, 600, rng)
    train, val = split_off(y[keep], 0.5, rng, "", "validation")
    np.testing.assert_array_equal(data.train.x, images[keep][train])
    np.testing.assert_array_equal(data.val.x, images[keep][val])
    assert data.train.x.dtype == np.float32 and data.test.x.dtype == np.float32


def test_idx_refuses_zero_items_of_an_impossible_shape(tmp_path):
    import struct

    from nncli.data.idx import read_idx

    path = tmp_path / "zero"
    for dims in ((0, 3_036_988_439, 3_037_012_561), (3_036_988_439, 0, 3_037_012_561)):
        path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *dims))
        with pytest.raises(DataError, match="refusing"):
            read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 0, 28, 28))  # zero items of a sane shape: fine
    assert read_idx(path).shape == (0, 28, 28)
