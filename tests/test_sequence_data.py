"""Sequence data: sktime .ts files (NaN-padded at the end) and IDX images read as sequences of rows or pixels."""

import numpy as np
import pytest
from conftest import REPO
from helpers import make_digits, write_idx

from nncli.checkpoint import _check_preprocessing
from nncli.data import DATA_SOURCES
from nncli.errors import CheckpointError, ConfigError, DataError

SEED = np.random.SeedSequence(0)
HEADER = "# a comment\n@problemName Toy\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n"


def ts(path, **options):
    return DATA_SOURCES.create({"source": "ts", "path": str(path), **options}, ("data",))


def case(length, label, seed):
    """One .ts case line of 2 series, and its (length, 2) values."""
    values = np.round(np.random.default_rng(seed).normal(size=(length, 2)) * 3 + [1, -5], 3)
    return ":".join(",".join(f"{v:g}" for v in values[:, d]) for d in range(2)) + f":{label}", values


def write_ts(path, lengths, header=HEADER):
    """A two-class file of cases of the given lengths; returns the path and each case's values."""
    cases = [case(n, "ab"[i % 2], seed=i + 100 * len(path.name)) for i, n in enumerate(lengths)]
    path.write_text(header + "".join(line + "\n" for line, _ in cases))
    return path, [values for _, values in cases]


def real_steps(x):
    return ~np.isnan(x).all(axis=-1)


def test_ts_pads_with_nan_at_the_end_to_the_longest_train_or_test_case(tmp_path):
    train, values = write_ts(tmp_path / "toy_TRAIN.ts", [3, 5, 2, 4, 3, 5, 2, 4, 3, 4])
    write_ts(tmp_path / "toy_TEST.ts", [7, 2, 3, 4])  # found from the name; longer than any training case
    source = ts(train, validation_split=0.0, standardize=False)
    data = source.load(SEED)
    assert data.input_shape == (7, 2) == source.inspect().input_shape and source.inspect().num_classes == 2
    assert data.train.x.dtype == np.float32 and data.train.x.shape == (10, 7, 2) and data.test.x.shape == (4, 7, 2)
    assert data.classes == ["a", "b"] and data.preprocessing == {"classes": ["a", "b"], "length": 7}
    for i, v in enumerate(values):  # no shuffling without a validation split: cases in file order
        np.testing.assert_allclose(data.train.x[i, : len(v)], v, rtol=1e-6)
        assert np.isnan(data.train.x[i, len(v) :]).all()
    np.testing.assert_array_equal(data.train.y, [0, 1] * 5)
    assert ts(train, test_path="", validation_split=0.0).load(SEED).test is None and ts(train, test_path="").inspect().input_shape == (5, 2)


def test_ts_standardises_with_the_training_parts_real_steps_only(tmp_path):
    train, _ = write_ts(tmp_path / "toy_TRAIN.ts", list(range(2, 22)))
    constant = tmp_path / "const.ts"
    constant.write_text(HEADER + "".join(f"5,5,5:1,{k},2:{'ab'[k % 2]}\n" for k in range(6)))
    data = ts(train, validation_split=0.25).load(SEED)
    steps = data.train.x[real_steps(data.train.x)]
    np.testing.assert_allclose(steps.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(steps.std(axis=0), 1, atol=1e-5)
    assert not np.allclose(data.val.x[real_steps(data.val.x)].mean(axis=0), 0, atol=1e-3)  # statistics came from training only
    assert np.isnan(data.val.x).any() and (np.isnan(data.val.x).all(axis=-1) == np.isnan(data.val.x).any(axis=-1)).all()
    assert ts(constant, validation_split=0.0).load(SEED).preprocessing["std"][0] == 1.0  # the first feature is constant


def test_ts_reload_with_stored_preprocessing_reproduces_x(tmp_path):
    train, _ = write_ts(tmp_path / "toy_TRAIN.ts", [4, 6, 3, 5] * 5)
    write_ts(tmp_path / "toy_TEST.ts", [8, 3, 5, 2])
    first = ts(train, validation_split=0.2).load(SEED)
    again = ts(train, validation_split=0.2).load(SEED, preprocessing=first.preprocessing)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, name).x, getattr(first, name).x)
        np.testing.assert_array_equal(getattr(again, name).y, getattr(first, name).y)
    _check_preprocessing(train, first.preprocessing)  # the checkpoint accepts what load stores
    # a checkpoint trained on longer sequences pads to its length; a longer case than it is refused
    longer = ts(train, test_path="").load(SEED, preprocessing={**first.preprocessing, "length": 10})
    assert longer.input_shape == (10, 2) and np.isnan(longer.train.x[:, 6:]).all()
    with pytest.raises(DataError, match=r"toy_TRAIN.ts:11: case has 6 steps, longer than the 5 the checkpoint was trained on"):
        ts(train, test_path="").load(SEED, preprocessing={**first.preprocessing, "length": 5})
    with pytest.raises(CheckpointError, match="length must be a positive integer"):
        _check_preprocessing(train, {**first.preprocessing, "length": 0})


def test_ts_integer_labels_stay_integers_and_explicit_test_path(tmp_path):
    header = HEADER.replace("@classLabel true a b", "@classLabel true 3 1 2")
    train = tmp_path / "train.ts"
    train.write_text(header + "".join(f"1,2:3,4:{k % 3 + 1}\n" for k in range(9)))
    test = tmp_path / "other.ts"
    test.write_text(header + "1,2,3:3,4,5:2\n")
    data = ts(train, test_path=str(test), validation_split=0.0).load(SEED)
    assert data.classes == [1, 2, 3] and data.test.y.tolist() == [1] and data.input_shape == (3, 2)
    with pytest.raises(ConfigError, match=r"data.test_path: .*nowhere.ts: no such test file"):
        ts(train, test_path=str(tmp_path / "nowhere.ts")).load(SEED)
    with pytest.raises(ConfigError, match="data.path: .*missing.ts: no such file"):
        ts(tmp_path / "missing.ts").inspect()


D = "1,2,3:4,5,6"  # a good case's series
BAD = [
    (HEADER + f"{D}:a\n1,2,3:4,5:b\n", 11, "series of one case differ in length (dimension 1 has 3 values, dimension 2 has 2)"),
    (HEADER + f"{D}:a\n1,2:3,4:5,6:b\n", 11, "case has 3 dimensions, expected 2 (@dimensions)"),
    (HEADER + f"{D}:a\n{D}:c\n", 11, "label 'c' is not one of the declared classes (@classLabel a b)"),
    (HEADER + f"{D}:a\n1,x,3:4,5,6:b\n", 11, "dimension 1: value 'x' is not a number"),
    (HEADER + f"{D}:a\n1,2,3:4,?,6:b\n", 11, "dimension 2: missing values ('?') are not supported"),
    (HEADER + f"{D}:a\n1,2,3:4,nan,6:b\n", 11, "dimension 2: value 'nan' is not finite"),
    (HEADER + f"{D}:a\n{D}\n", 11, "case has no class label"),
    (HEADER + f"{D}:a\n{D}:\n", 11, "case has no class label"),
    (HEADER + f"{D}:a\n@dimensions 2\n", 11, "header line '@dimensions' after @data"),
    (HEADER.replace("@timeStamps false", "@timeStamps true"), 3, "@timeStamps true (time-stamped values) is not supported"),
    (HEADER.replace("@classLabel true a b", "@classLabel false"), 8, "@classLabel false: the cases have no class labels"),
    (HEADER.replace("@classLabel true a b", "@classLabel true a"), 8, "@classLabel declares 1 class label(s); need two or more"),
    (HEADER.replace("@classLabel true a b", "@targetLabel true"), 8, "@targetLabel (regression targets) is not supported"),
    (HEADER.replace("@classLabel true a b\n", ""), 8, "@data before any @classLabel header"),
    (HEADER.replace("@dimensions 2", "@dimensions two"), 6, "@dimensions takes a positive integer, got two"),
    (HEADER.replace("@missing false", "@missing maybe"), 4, "@missing takes true or false, got maybe"),
    (HEADER.replace("@problemName Toy", "@colour blue"), 2, "unknown header '@colour'"),
    (HEADER.replace("@data\n", "") + f"{D}:a\n", 9, "data before the @data line"),
]


@pytest.mark.parametrize("text,line,message", BAD, ids=[m[:30] for _, _, m in BAD])
def test_ts_bad_files_name_the_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        ts(path, validation_split=0.0).load(SEED)
    assert f"bad.ts:{line}: {message}" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "bad.ts: empty file"),
        (b"# only a comment\n", "bad.ts: no @data line"),
        (HEADER.encode(), "bad.ts: has a header but no cases after @data"),
        (b"\x1f\x8b\x08\x00\x00binary", "bad.ts: binary file, not .ts text"),
        (HEADER.encode() + b"1,2:3,\xff:a\n", r"bad.ts: not UTF-8 text \(byte"),
    ],
)
def test_ts_empty_binary_and_non_utf8_files(tmp_path, content, message):
    path = tmp_path / "bad.ts"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        ts(path).inspect()


def test_ts_test_file_must_fit_the_training_file(tmp_path):
    train, _ = write_ts(tmp_path / "toy_TRAIN.ts", [3, 4] * 4)
    (tmp_path / "toy_TEST.ts").write_text(HEADER.replace("@dimensions 2", "@dimensions 1") + "1,2:a\n")
    with pytest.raises(DataError, match=r"toy_TEST.ts: cases have 1 dimensions, those of .*toy_TRAIN.ts 2"):
        ts(train).inspect()
    (tmp_path / "toy_TEST.ts").write_text(HEADER.replace("a b", "a b c") + f"{D}:c\n")
    with pytest.raises(DataError, match=r"toy_TEST.ts: label 'c' is not one of the classes \['a', 'b'\]"):
        ts(train, validation_split=0.0).load(SEED)


def test_real_japanese_vowels():
    source = ts(REPO / "datasets/JapaneseVowels/JapaneseVowels_TRAIN.ts", validation_split=0.1)
    info = source.inspect()
    assert info.input_shape == (29, 12) and info.num_classes == 9 and info.rows == 270
    data = source.load(SEED)
    assert len(data.train) + len(data.val) == 270 and len(data.test) == 370
    assert data.classes == list(range(1, 10)) and data.input_shape == (29, 12)
    np.testing.assert_array_equal(np.bincount(data.test.y), [31, 35, 88, 44, 29, 24, 40, 50, 29])
    for part, (shortest, longest) in ((np.concatenate([data.train.x, data.val.x]), (7, 26)), (data.test.x, (7, 29))):
        real = real_steps(part)
        lengths = real.sum(axis=1)
        assert (lengths.min(), lengths.max()) == (shortest, longest)
        assert (real == (np.arange(29) < lengths[:, None])).all()  # padding only at the end
        assert np.isnan(part[~real]).all() and not np.isnan(part[real]).any()  # all features of a padded step
    steps = data.train.x[real_steps(data.train.x)]
    np.testing.assert_allclose(steps.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(steps.std(axis=0), 1, atol=1e-4)


# -- IDX images as sequences -------------------------------------------------------


def idx(path, **options):
    return DATA_SOURCES.create({"source": "idx", "path": str(path), **options}, ("data",))


@pytest.fixture
def images(tmp_path):
    """A 6×5 IDX folder whose pixel values tell their position (and image)."""
    folder = tmp_path / "img"
    folder.mkdir()
    pixels = (np.arange(12 * 6 * 5).reshape(12, 6, 5) % 251).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", pixels[:8])
    write_idx(folder / "train-labels-idx1-ubyte", np.array([0, 1] * 4, np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", pixels[8:])
    write_idx(folder / "t10k-labels-idx1-ubyte", np.array([0, 1] * 2, np.uint8))
    return folder, pixels / np.float32(255)


@pytest.mark.parametrize("sequence,shape", [("rows", (6, 5)), ("pixels", (30, 1)), ("pixels_permuted", (30, 1))])
def test_idx_sequences_have_the_sequence_shape(images, sequence, shape):
    folder, _ = images
    data = idx(folder, sequence=sequence, validation_split=0.0).load(SEED)
    assert data.input_shape == shape == idx(folder, sequence=sequence).inspect().input_shape
    assert data.train.x.shape == (8, *shape) and data.test.x.shape == (4, *shape) and data.train.x.dtype == np.float32


def test_idx_rows_and_pixels_are_the_images_rows_and_pixels_in_order(images):
    folder, pixels = images
    rows = idx(folder, sequence="rows", validation_split=0.0).load(SEED)
    np.testing.assert_array_equal(rows.train.x, pixels[:8])
    np.testing.assert_array_equal(rows.test.x, pixels[8:])
    flat = idx(folder, sequence="pixels", validation_split=0.0).load(SEED)
    np.testing.assert_array_equal(flat.test.x[..., 0], pixels[8:].reshape(4, 30))
    assert "permutation" not in flat.preprocessing


def test_idx_pixels_permuted_is_one_fixed_order_for_every_split_and_load(images):
    folder, pixels = images
    first = idx(folder, sequence="pixels_permuted", validation_split=0.0).load(SEED)
    order = np.array(first.preprocessing["permutation"])
    assert sorted(order) == list(range(30)) and not np.array_equal(order, np.arange(30))
    np.testing.assert_array_equal(first.train.x[..., 0], pixels[:8].reshape(8, 30)[:, order])
    np.testing.assert_array_equal(first.test.x[..., 0], pixels[8:].reshape(4, 30)[:, order])
    again = idx(folder, sequence="pixels_permuted", validation_split=0.0).load(np.random.SeedSequence(5))
    assert again.preprocessing["permutation"] == first.preprocessing["permutation"]
    other = idx(folder, sequence="pixels_permuted", permutation_seed=1, validation_split=0.0).load(SEED)
    assert other.preprocessing["permutation"] != first.preprocessing["permutation"]
    # eval: the checkpoint's order wins over the seed, and must fit the images
    stored = idx(folder, sequence="pixels_permuted", permutation_seed=1, validation_split=0.0).load(SEED, preprocessing=first.preprocessing)
    np.testing.assert_array_equal(stored.test.x, first.test.x)
    _check_preprocessing(folder, first.preprocessing)
    with pytest.raises(DataError, match="permutation does not fit images of 30 pixels"):
        idx(folder, sequence="pixels_permuted", validation_split=0.0).load(SEED, preprocessing={"classes": [0, 1], "permutation": [1, 0]})
    with pytest.raises(CheckpointError, match="permutation must list the pixel positions"):
        _check_preprocessing(folder, {"permutation": [0, 0, 1]})


def test_idx_sequence_refuses_augmentation(tmp_path):
    folder = make_digits(tmp_path / "d", n_train=30, n_test=6)
    with pytest.raises(ConfigError, match=r"data.augment: augmentation transforms images; it cannot be combined with sequence: rows"):
        idx(folder, sequence="rows", augment={"shift": 1})
    assert idx(folder, sequence="rows", augment={"shift": 0}).augment is None  # nothing to do: allowed
    assert idx(folder).sequence is None and idx(folder).inspect().input_shape == (8, 8, 1)


def test_configs_with_sequence_data_resolve_and_plan(tmp_path):
    from helpers import mlp_config

    from nncli import load_experiment

    vowels = REPO / "datasets/JapaneseVowels/JapaneseVowels_TRAIN.ts"
    config = {**mlp_config(tmp_path), "data": {"source": "sktime", "path": str(vowels)}}
    experiment = load_experiment(config)
    assert experiment.data.spec == {"source": "ts", "path": str(vowels), "test_path": None, "validation_split": 0.1, "standardize": True, "limit": None, "split_seed": None}
    info = experiment.data_info()
    assert (info.input_shape, info.num_classes) == ((29, 12), 9)
    assert experiment.plan().input_shape == (29, 12)
    folder = make_digits(tmp_path / "d", n_train=30, n_test=6)
    with pytest.raises(ConfigError, match="data.augment: augmentation transforms images"):
        load_experiment({**mlp_config(folder), "data": {"source": "idx", "path": str(folder), "sequence": "pixels", "augment": {"rotation": 5}}})


def test_train_then_eval_reapplies_the_stored_length_and_permutation(tmp_path):
    """Through a checkpoint: eval pads to the trained length and applies the trained pixel order (flatten + dense)."""
    from helpers import mlp_config

    from nncli import api
    from nncli.checkpoint import read_checkpoint

    train, _ = write_ts(tmp_path / "eq_TRAIN.ts", [4] * 20)  # equal lengths: no NaN for a dense model
    write_ts(tmp_path / "eq_TEST.ts", [4] * 6)
    folder = make_digits(tmp_path / "d", n_train=60, n_test=12)
    for data in ({"source": "ts", "path": str(train)}, {"source": "idx", "path": str(folder), "sequence": "pixels_permuted"}):
        config = {**mlp_config(folder, epochs=1), "data": {**data, "validation_split": 0.2}}
        config["model"]["layers"][-1]["units"] = 2 if data["source"] == "ts" else 3
        result = api.train(config, out=tmp_path / f"run-{data['source']}")
        stored = read_checkpoint(result.final_checkpoint).meta["preprocessing"]
        if data["source"] == "ts":
            assert stored["length"] == 4
        else:
            assert len(stored["permutation"]) == 64
        report = api.evaluate([result.final_checkpoint])
        assert report.models[0].evaluation.n == (6 if data["source"] == "ts" else 12)
