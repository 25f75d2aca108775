"""Image trees in archives and folders: read in place, decoded once into a cache keyed by
content, one line for a corrupt archive, and a name found in $EFFSEARCH_DATA_DIR."""

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trainers import image_archives
from trainers.data import DATA_DIR_ENV, DatasetError, channel_stats, load_dataset

CIFAR = Path(__file__).parent.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSEARCH_CACHE_DIR", str(tmp_path / "cache"))


def make_tree(root: Path, train: int = 6, test: int = 2) -> Path:
    """train/ and test/ of three classes, PNG images of mixed sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for cls in ("cat", "dog", "eel"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                size = 12 if i % 2 else 10
                Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(
                    root / split / cls / f"{i}.png")
    return root


def pack(tree: Path, archive: Path, top: str = "") -> Path:
    """The tree as `archive` (.tar, .tar.gz or .zip), optionally inside a top folder."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as z:
            for f in files:
                z.write(f, top + f.relative_to(tree).as_posix())
    else:
        gz = archive.name.endswith((".gz", ".tgz"))
        with tarfile.open(archive, "w:gz" if gz else "w") as t:
            for f in reversed(files):  # archive order must not matter
                t.add(f, top + f.relative_to(tree).as_posix())
    return archive


@pytest.mark.parametrize("name, top", [("t.tar.gz", ""), ("t.tar", "images/"),
                                       ("t.tgz", "./"), ("t.zip", "a/b/")])
def test_an_archive_loads_as_its_folder_does(tmp_path, name, top):
    tree = make_tree(tmp_path / "tree")
    from_folder = load_dataset(str(tree), image_size=8, val_fraction=1 / 3)
    from_archive = load_dataset(str(pack(tree, tmp_path / name, top)), image_size=8,
                                val_fraction=1 / 3)
    assert from_archive.num_classes == 3 and from_archive.image_shape == (8, 8, 3)
    for part in ("train", "val", "test"):
        a, b = getattr(from_folder, part), getattr(from_archive, part)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert from_archive.source.startswith("image archive ")


def test_decoding_happens_once_and_the_cache_follows_the_content(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    archive = pack(tree, tmp_path / "t.tar.gz")
    decodes = []
    real = image_archives._decode_tree
    monkeypatch.setattr(image_archives, "_decode_tree",
                        lambda *a: decodes.append(a) or real(*a))
    first = load_dataset(str(archive), val_fraction=0.2)
    archive.chmod(0o444)  # the data may be read-only: nothing is written beside it
    second = load_dataset(str(archive), val_fraction=0.2)
    assert len(decodes) == 1 and np.array_equal(first.train.images, second.train.images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "t.tar.gz", "tree"]
    load_dataset(str(archive), image_size=6, val_fraction=0.2)  # other parameters: new entry
    assert len(decodes) == 2
    os.chmod(archive, 0o644)
    (tree / "train" / "cat" / "0.png").unlink()  # another content: decoded afresh
    pack(tree, archive)
    load_dataset(str(archive), val_fraction=0.2)
    assert len(decodes) == 3
    entries = list((tmp_path / "cache" / "datasets").glob("*.npz"))
    assert len(entries) == 3 and not list(entries[0].parent.glob("*.partial"))


def test_a_damaged_cache_entry_is_decoded_again(tmp_path):
    archive = pack(make_tree(tmp_path / "tree"), tmp_path / "t.zip")
    load_dataset(str(archive), val_fraction=0.2)
    (entry,) = (tmp_path / "cache" / "datasets").glob("*.npz")
    entry.write_bytes(b"PK\x03\x04 torn")
    assert load_dataset(str(archive), val_fraction=0.2).num_classes == 3


def test_folders_are_cached_too(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    load_dataset(str(tree), val_fraction=0.2)
    monkeypatch.setattr(image_archives, "_decode_tree", lambda *a: pytest.fail("decoded"))
    assert load_dataset(str(tree), val_fraction=0.2).num_classes == 3


def corrupt(kind):
    def make(tmp_path):
        archive = pack(make_tree(tmp_path / "tree"), tmp_path / f"t.{kind}")
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) // 2])  # cut short, like a broken download
        return archive
    return make


def one_bad_image(tmp_path):
    tree = make_tree(tmp_path / "tree")
    (tree / "train" / "dog" / "1.png").write_bytes(b"not a png")
    return pack(tree, tmp_path / "t.tar")


def no_classes(tmp_path):
    tree = tmp_path / "tree"
    (tree / "x").mkdir(parents=True)
    (tree / "x" / "a.txt").write_text("hello")
    return pack(tree, tmp_path / "t.zip")


def text_file(tmp_path):
    (tmp_path / "t.tar.gz").write_text("hello")
    return tmp_path / "t.tar.gz"


@pytest.mark.parametrize("make, pattern", [
    (corrupt("tar.gz"), r"cannot read .*t\.tar\.gz: it is not a readable archive"),
    (corrupt("zip"), r"cannot read .*t\.zip: it is not a readable archive"),
    (text_file, r"cannot read .*t\.tar\.gz: it is not a readable archive"),
    (one_bad_image, r"cannot read image .*t\.tar/train/dog/1\.png \(cannot identify"),
    (no_classes, r"no images \(.*\) under .*t\.zip"),
    (lambda tmp_path: tmp_path / "none.tar.gz", r"dataset archive not found: .*none\.tar\.gz"),
], ids=["torn tar.gz", "torn zip", "text", "bad image", "no images", "missing"])
def test_a_bad_archive_is_one_line(tmp_path, make, pattern):
    with pytest.raises(DatasetError, match=pattern) as raised:
        load_dataset(str(make(tmp_path)))
    assert "\n" not in str(raised.value)


def test_a_name_finds_its_archive_or_folder_in_the_data_dir(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    data = tmp_path / "data"
    data.mkdir()
    pack(tree, data / "toy-jpeg.tar.gz")
    shutil.copytree(tree, data / "plain")
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    toy = load_dataset("toy", val_fraction=0.2)
    assert toy.source.startswith(f"image archive {data / 'toy-jpeg.tar.gz'}")
    assert load_dataset("plain", val_fraction=0.2).source.startswith(
        f"image folder {data / 'plain'}")
    named = load_dataset("toy-jpeg.tar.gz", val_fraction=0.2)  # an archive's own name
    assert named.source == toy.source
    with pytest.raises(DatasetError, match="unknown dataset 'nothere'"):  # then TFDS's
        load_dataset("nothere")


def test_channel_stats_match_the_float64_ones_without_the_copy():
    images = np.random.default_rng(1).integers(0, 256, (1000, 9, 9, 3), np.uint8)
    mean, std = channel_stats(images, chunk=64)
    x = images.astype(np.float64)
    assert np.allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-12)
    assert np.allclose(std, x.std(axis=(0, 1, 2)), rtol=1e-9)
    flat = np.zeros((4, 2, 2, 1), np.uint8)
    assert channel_stats(flat)[1].tolist() == [1e-3]  # never divide by 0


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_file(), reason=f"no {CIFAR} (the shared data folder)")
def test_the_cifar10_archive(monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(CIFAR.parent))
    d = load_dataset("cifar10", val_fraction=0.1)
    assert d.num_classes == 10 and d.image_shape == (32, 32, 3)
    assert (len(d.train) + len(d.val), len(d.test)) == (50_000, 10_000)
    assert np.bincount(d.test.labels).tolist() == [1000] * 10
    mean, _ = d.stats()
    assert np.allclose(mean / 255, [0.4913, 0.4821, 0.4465], atol=2e-3)  # CIFAR-10's own


@pytest.mark.parametrize("name, size", [("t.tar.gz", None), ("t.zip", 8), ("tree", None)])
def test_describe_says_what_load_gives_without_decoding(tmp_path, monkeypatch, name, size):
    """A parent that starts workers reads names, one image and the cache's headers, never
    the whole tree (issue 24)."""
    from trainers.data import describe_dataset

    tree = make_tree(tmp_path / "tree")
    path = tree if name == "tree" else pack(tree, tmp_path / name)
    decoded = []
    real = image_archives._decode
    monkeypatch.setattr(image_archives, "_decode",
                        lambda entries, *a: decoded.append(len(entries)) or real(entries, *a))
    info = describe_dataset(str(path), image_size=size, val_fraction=1 / 3)
    assert decoded in ([], [1])  # at most the image whose width sets the size
    assert not list((tmp_path / "cache").rglob("*.npz"))  # describing fills no cache
    loaded = load_dataset(str(path), image_size=size, val_fraction=1 / 3)
    assert info == loaded.info and info.nbytes == sum(
        s.images.nbytes for s in (loaded.train, loaded.val, loaded.test))
    decoded.clear()
    assert describe_dataset(str(path), image_size=size, val_fraction=1 / 3) == info
    assert decoded == []  # from the cache entry's headers now


def test_statistics_are_measured_once_per_dataset_and_kept_in_the_cache(tmp_path,
                                                                        monkeypatch):
    from trainers import data

    archive = pack(make_tree(tmp_path / "tree"), tmp_path / "t.tar.gz")
    measured = []
    real = data.channel_stats
    monkeypatch.setattr(data, "channel_stats", lambda x: measured.append(len(x)) or real(x))
    first = load_dataset(str(archive), image_size=8, val_fraction=1 / 3)
    mean, std = first.stats()
    assert first.stats()[0] is mean and measured == [len(first.train)]
    again = load_dataset(str(archive), image_size=8, val_fraction=1 / 3)  # another worker
    assert np.array_equal(again.stats()[0], mean) and np.array_equal(again.stats()[1], std)
    assert measured == [len(first.train)]  # read from the cache, exactly
    other = load_dataset(str(archive), image_size=8, val_fraction=0.5)  # another split
    other.stats()
    assert len(measured) == 2
