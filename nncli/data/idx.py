"""MNIST-format IDX files (gzip'd or raw, told apart by their first bytes)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import Fraction, NonNegativeInt, PositiveInt, Probability
from .augment import Augment
from .base import (
    DATA_SOURCES,
    DataInfo,
    Dataset,
    DataSource,
    Split,
    encode_labels,
    existing,
    split_off,
    stratified_subset,
)

# IDX type byte -> big-endian dtype
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_BYTES = 1 << 32  # refuse to inflate anything claiming more than 4 GiB


def _open_bytes(path: Path, need: int | None) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic; at most `need` bytes (+1 to spot extra data)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw if need is None else raw[: need + 1]
    inflater = zlib.decompressobj(wbits=31)
    limit = _MAX_BYTES if need is None else need + 1
    try:
        data = inflater.decompress(raw, limit)
    except zlib.error as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def _header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length), checking the magic number."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or not 1 <= data[3] <= 4:
        magic = data[:4].hex() if data else "empty file"
        raise DataError(f"{path}: not an IDX file (magic number {magic}; expected 0000 then type and rank)")
    ndim = data[3]
    end = 4 + 4 * ndim
    if len(data) < end:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data[4:end], ">u4"))
    return np.dtype(_DTYPES[data[2]]), dims, end


def read_idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    dtype, dims, _ = _header(path, _open_bytes(path, 4 + 4 * 4))
    return dtype, dims


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file; magic number, dimensions and length validated."""
    dtype, dims, start = _header(path, _open_bytes(path, 4 + 4 * 4))
    expected = math.prod(dims) * dtype.itemsize  # Python ints: four 32-bit dimensions overflow int64
    shape_bytes = math.prod(d for d in dims if d) * dtype.itemsize  # a 0 anywhere must not hide a shape numpy refuses
    if expected > _MAX_BYTES or shape_bytes > _MAX_BYTES:
        raise DataError(f"{path}: header claims {dims}, {expected} bytes; refusing")
    data = _open_bytes(path, start + expected)
    body = len(data) - start
    if body < expected:
        raise DataError(f"{path}: truncated: header says {'×'.join(map(str, dims))} ({expected} bytes), file has {body}")
    if body > expected:
        raise DataError(f"{path}: {'×'.join(map(str, dims))} should take {expected} bytes, the file has more data")
    return np.frombuffer(data, dtype, count=math.prod(dims), offset=start).reshape(dims)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _nhwc(path: Path, array: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> NHWC, still in the file's dtype."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"{path}: expected images (N, rows, cols), got an array of shape {array.shape}")
    return array


def _is_pixels(array: np.ndarray) -> bool:
    return array.dtype.itemsize == 1 and array.dtype.kind == "u"


def _scaled(array: np.ndarray) -> np.ndarray:
    """8-bit pixels -> float32 in [0, 1]; anything else is float32 already (see IdxSource._read)."""
    return np.divide(array, 255, dtype=np.float32) if _is_pixels(array) else array


def _as_images(path: Path, array: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> NHWC float32; 8-bit pixels scaled to [0, 1]."""
    array = _nhwc(path, array)
    if _is_pixels(array):
        return _scaled(array)
    out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{path}: contains non-finite values")
    return out


def _labels(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise DataError(f"{path}: expected a vector of integer labels, got {array.dtype} of shape {array.shape}")
    return array.astype(np.int64)


@DATA_SOURCES.register("idx", "mnist")
class IdxSource(DataSource):
    """A folder of MNIST-format IDX files: training images and labels, and optionally a test pair.

    Options:
    path: folder holding the files (relative to the current directory)
    validation_split: fraction of the training images held out for validation (stratified, seeded)
    limit: train on a seeded, stratified subset of this many training images (quick experiments)
    train_images: file name (a .gz next to it is found too)
    train_labels: file name
    test_images: file name; the test split is absent when the file is
    test_labels: file name
    augment: random shifts, rotations, padded crops and flips of training batches
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    sequence: null: images (H, W, C); rows: H steps of W·C pixels; pixels: H·W steps of C; pixels_permuted: pixels in a fixed random order
    permutation_seed: seeds the pixels_permuted order (one order for training, validation and test)
    binarize: null, or a threshold in [0, 1]: pixels above it become +1, the rest −1 (bipolar patterns for a Hopfield network)
    """

    def __init__(
        self,
        path: str,
        validation_split: Fraction = 0.1,
        limit: PositiveInt | None = None,
        train_images: str = "train-images-idx3-ubyte",
        train_labels: str = "train-labels-idx1-ubyte",
        test_images: str = "t10k-images-idx3-ubyte",
        test_labels: str = "t10k-labels-idx1-ubyte",
        augment: Augment | None = None,
        split_seed: NonNegativeInt | None = None,
        sequence: Literal["rows", "pixels", "pixels_permuted"] | None = None,
        permutation_seed: NonNegativeInt = 0,
        binarize: Probability | None = None,
    ):
        if sequence is not None and augment is not None and augment.active:
            raise ConfigError(f"augmentation transforms images; it cannot be combined with sequence: {sequence}", ("data", "augment"))
        self.path = path
        self.binarize = binarize
        self.sequence = sequence
        self.permutation_seed = permutation_seed
        self.validation_split = validation_split
        self.split_seed = split_seed
        self.limit = limit
        self.augment = augment if augment is not None and augment.active else None
        self.files = {
            "train": (train_images, train_labels),
            "test": (test_images, test_labels),
        }

    def _pair(self, part: str, required: bool) -> tuple[Path, Path] | None:
        folder = existing(self.path, "folder")
        if not folder.is_dir():
            raise DataError(f"{self.path}: expected a folder of IDX files (data.source: idx)")
        images, labels = (_find(folder, name) for name in self.files[part])
        if images is None or labels is None:
            if not required and images is None and labels is None:
                return None
            missing = self.files[part][0] if images is None else self.files[part][1]
            raise DataError(f"{folder}: missing {missing} (or {missing}.gz)")
        return images, labels

    def inspect(self) -> DataInfo:
        images, labels = self._pair("train", required=True)
        _, dims = read_idx_header(images)
        shape = self._sequence_shape(tuple(dims[1:]) + ((1,) if len(dims) == 3 else ()))
        return DataInfo(shape, len(np.unique(_labels(labels, read_idx(labels)))), int(dims[0]))

    def _sequence_shape(self, image: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample shape `sequence` makes of an (H, W, C) image."""
        if len(image) != 3 or self.sequence is None:
            return image
        h, w, c = image
        return (h, w * c) if self.sequence == "rows" else (h * w, c)

    def _permutation(self, steps: int, preprocessing: dict) -> np.ndarray | None:
        """pixels_permuted's order of the `steps` pixel positions: the checkpoint's, else drawn from permutation_seed."""
        if self.sequence != "pixels_permuted":
            return None
        stored = preprocessing.get("permutation")
        if stored is None:
            return np.random.default_rng(self.permutation_seed).permutation(steps)
        order = np.asarray(stored)
        if order.shape != (steps,) or not np.array_equal(np.sort(order), np.arange(steps)):
            raise DataError(f"{self.path}: the checkpoint's pixel permutation does not fit images of {steps} pixels")
        return order.astype(np.intp)

    def _as_sequence(self, x: np.ndarray, order: np.ndarray | None) -> np.ndarray:
        """NHWC -> (N, steps, features): a view for rows and pixels, a copy (still 8-bit) for a permutation."""
        if self.sequence is None:
            return x
        x = x.reshape(len(x), *self._sequence_shape(x.shape[1:]))
        return x if order is None else x[:, order]

    def _read(self, part: str, required: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """NHWC images (8-bit pixels as they are, anything else as float32) and their labels."""
        pair = self._pair(part, required)
        if pair is None:
            return None
        images_path, labels_path = pair
        labels = _labels(labels_path, read_idx(labels_path))
        images = read_idx(images_path)
        if len(images) != len(labels):
            raise DataError(
                f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels"
            )
        # 8-bit pixels stay 8-bit until the rows to keep are chosen (a quarter of float32's memory)
        return (_nhwc(images_path, images) if _is_pixels(images) else _as_images(images_path, images)), labels

    def _values(self, x: np.ndarray) -> np.ndarray:
        """The kept images as float32: scaled to [0, 1], or ±1 with `binarize`."""
        x = _scaled(x)
        if self.binarize is None:
            return x
        return np.where(x > self.binarize, np.float32(1.0), np.float32(-1.0))

    def load(self, seed, preprocessing=None):
        x, labels = self._read("train", required=True)
        classes = (preprocessing or {}).get("classes") or sorted(int(c) for c in np.unique(labels))
        if len(classes) < 2:
            raise DataError(f"{self.path}: the training labels hold a single class ({classes[0]})")
        description = f"{self.path} (idx)"
        y = encode_labels(labels, classes, str(self.path))
        order = self._permutation(x.shape[1] * x.shape[2], preprocessing or {})
        image_shape = x.shape[1:]
        x = self._as_sequence(x, order)
        rng = np.random.default_rng(seed)
        if self.limit is not None:
            keep = stratified_subset(y, self.limit, rng)
            x, y = x[keep], y[keep]
        train_idx, val_idx = split_off(y, self.validation_split, rng, description, "validation")
        val = Split(self._values(x[val_idx]), y[val_idx]) if len(val_idx) else None
        train = Split(self._values(x[train_idx]), y[train_idx]) if len(val_idx) else Split(self._values(x), y)
        test = None
        test_pair = self._read("test", required=False)
        if test_pair is not None:
            tx, tlabels = test_pair
            if tx.shape[1:] != image_shape:
                raise DataError(f"{self.path}: test images are {tx.shape[1:]}, training images {image_shape}")
            test = Split(self._values(self._as_sequence(tx, order)), encode_labels(tlabels, classes, str(self.path)))
        return Dataset(
            train=train,
            val=val,
            test=test,
            input_shape=tuple(x.shape[1:]),
            classes=list(classes),
            preprocessing={
                "classes": list(classes),
                "image_shape": list(image_shape),
                **({"permutation": order.tolist()} if order is not None else {}),
                **({"binarize": self.binarize} if self.binarize is not None else {}),
            },
            description=description,
            augment=self.augment,
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """IDX image files, or pictures Pillow reads (PNG, JPEG, ...), greyscale or colour as the model was
        trained, resized to the training images' size (unless `resize` is False), scaled like them (`invert`
        for dark-on-light pictures), then binarised or read as sequences as in training. Names: file[i], file."""
        shape = tuple(preprocessing.get("image_shape") or self._image_shape(input_shape))
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(2)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})") from None
        if head in (b"\x00\x00", b"\x1f\x8b"):  # IDX, raw or gzip'd
            array = read_idx(path)
            images = _nhwc(path, array) if _is_pixels(array) else _as_images(path, array)  # as training reads them
            names = [f"{path.name}[{i}]" for i in range(len(images))]
            if images.shape[1:] != shape:
                raise DataError(f"{path}: holds images of {'×'.join(map(str, images.shape[1:]))}; the model was trained on {'×'.join(map(str, shape))}")
        else:
            images, names = _picture(path, shape, resize)[None], [path.name]
        if invert:
            images = 255 - images if _is_pixels(images) else 1.0 - images
        order = self._permutation(shape[0] * shape[1], preprocessing)
        return names, self._values(self._as_sequence(images, order))

    def _image_shape(self, input_shape) -> tuple[int, int, int]:
        """The training images' (H, W, C) from the model's input shape (checkpoints older than image_shape)."""
        if self.sequence is None:
            return tuple(input_shape)
        steps, features = input_shape
        if self.sequence == "rows":
            return steps, features, 1
        side = int(round(math.sqrt(steps)))
        return side, steps // side, features


def _picture(path: Path, shape: tuple[int, int, int], resize: bool) -> np.ndarray:
    """A picture file as 8-bit pixels (H, W, C) in the training images' size and channels."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is in the dev and images extras
        raise DataError(f"{path}: reading pictures needs Pillow: pip install 'nncli[images]'") from None
    height, width, channels = shape
    if channels not in (1, 3):
        raise DataError(f"{path}: the model takes {channels}-channel images; pictures give 1 (greyscale) or 3 (RGB)")
    try:
        with Image.open(path) as opened:
            picture = opened.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: neither an IDX file nor a picture Pillow can read ({exc})") from None
    if picture.size != (width, height):
        if not resize:
            raise DataError(
                f"{path}: is {picture.width}×{picture.height} pixels, the model takes {width}×{height}; leave out --no-resize to resize it"
            )
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(picture, np.uint8)
    return pixels[..., None] if channels == 1 else pixels
