"""Image-folder trees, as folders or packed in `.tar`, `.tar.gz` or `.zip` archives, decoded
once into uint8 arrays and cached.

The tree is the one `trainers.data` reads from a folder: one subfolder per class, optionally
inside `train/` and `test/` (an archive may wrap it in one top folder). Tar and zip members
are read in place, never extracted. Decoding CIFAR-10's 60,000 JPEGs takes ~19 s on a 2-core
CPU, so the decoded splits are kept under `$EFFSEARCH_CACHE_DIR/datasets/` (never beside the
data, which may be read-only), keyed by the source's content (an archive's sha256; a folder's
file names, sizes and modification times), the decode size and `LOADER_VERSION`. The entry is
written atomically (a temporary file, then a rename) by one process under a file lock; workers
started together wait for it and read it, so no worker or trial decodes twice.

Hand-written rather than tfds's ImageFolder: that needs TensorFlow, which effsearch keeps
optional, and it has no archive reader or decoded cache.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from space import UserError

# Bump when what a cache entry holds changes (decoding, layout or resizing rules).
LOADER_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class ArchiveError(UserError):
    """An image tree that cannot be read: corrupt, empty, or not laid out by class."""


@dataclasses.dataclass(frozen=True)
class Decoded:
    """The decoded tree: train and (optionally) test images and labels, and the classes."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]


# One image of the tree: (split or "", class, file name, a reader of its bytes).
_Entry = tuple[str, str, str, Callable[[], bytes]]


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def load(path: Path, image_size: int | None = None,
         classes: tuple[str, ...] | None = None) -> Decoded:
    """The decoded image tree at `path` (a folder or an archive), from the cache if there.

    Args:
        path: an image folder, or a `.tar`, `.tar.gz`/`.tgz` or `.zip` of one.
        image_size: resize every image to this square size (default: the first image's).
        classes: the class names in label order (default: the train split's, sorted); a
            folder's class subfolders count even when empty.

    Raises:
        ArchiveError: one line naming the file, for a corrupt archive, an unreadable image,
            no images, or fewer than two classes.
    """
    return cached(_entry(path, image_size, classes),
                  lambda: _decode_tree(path, image_size, classes))


def cached(entry: Path, decode: Callable[[], Decoded]) -> Decoded:
    """The decoded splits in cache `entry`, or `decode()`'s, written there atomically by one
    process under a file lock: workers started together wait for it and read it."""
    if entry.exists():
        found = _read_entry(entry)
        if found is not None:
            return found
    entry.parent.mkdir(parents=True, exist_ok=True)
    import filelock

    with filelock.FileLock(f"{entry}.lock"):  # workers started together decode once
        found = _read_entry(entry) if entry.exists() else None
        if found is not None:
            return found
        decoded = decode()
        _write_entry(entry, decoded)
        return decoded


def _entry(path: Path, image_size: int | None, classes: tuple[str, ...] | None) -> Path:
    """The cache entry of the tree decoded at `image_size` with `classes`."""
    from trainers.runtime import cache_dir

    key = _source_key(path, image_size, classes)
    return cache_dir() / "datasets" / f"{_stem(path)}-{key[:24]}.npz"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "images"


def _source_key(path: Path, image_size: int | None, classes: tuple[str, ...] | None) -> str:
    """What the cached arrays depend on: the source's content, the size, the loader."""
    if path.is_file():
        stat = path.stat()
        return _hashed(path, (stat.st_size, stat.st_mtime_ns), image_size, classes)
    return _hashed.__wrapped__(path, None, image_size, classes)  # a folder: walked each time


@functools.lru_cache(maxsize=16)
def _hashed(path: Path, version: tuple[int, int] | None, image_size: int | None,
            classes: tuple[str, ...] | None) -> str:
    """`_source_key`, once per process for an unchanged archive (`version`: its size and
    modification time): a worker hashes it to find its cache entry, then again to key the
    dataset's statistics."""
    digest = hashlib.sha256(f"v{LOADER_VERSION} size={image_size} classes={classes}\n"
                            .encode())
    if path.is_dir():
        # Reading 60,000 files to hash them would cost what decoding them does; a file's name,
        # size and modification time change whenever it is replaced.
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                          .encode())
    else:
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as e:
            raise ArchiveError(f"cannot read {path} ({e.strerror or e})") from None
    return digest.hexdigest()


def _read_entry(entry: Path) -> Decoded | None:
    """A cache entry, or None if it cannot be read (then it is decoded and written again)."""
    try:
        with np.load(entry) as data:
            test = "test_images" in data.files
            return Decoded(data["train_images"], data["train_labels"],
                           data["test_images"] if test else None,
                           data["test_labels"] if test else None,
                           tuple(str(c) for c in data["classes"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def _write_entry(entry: Path, decoded: Decoded) -> None:
    arrays: dict[str, Any] = {"train_images": decoded.train_images,
                              "train_labels": decoded.train_labels,
                              "classes": np.asarray(decoded.classes)}
    if decoded.test_images is not None:
        arrays |= {"test_images": decoded.test_images, "test_labels": decoded.test_labels}
    partial = entry.with_name(f"{entry.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as f:
            np.savez(f, **arrays)
        os.replace(partial, entry)  # readers see the whole entry or none
    except OSError:
        partial.unlink(missing_ok=True)  # a full or read-only cache: decode again next time


# ----------------------------------------------------------------------------- reading


def _members(path: Path, contents: bool = True) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(member path, reader) of every regular file in the folder or archive. With
    `contents`, an archive's members are read as they are listed (a .tar.gz is read front to
    back once); without, only their names are, and a reader opens the archive again."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            yield file.relative_to(path).as_posix(), file.read_bytes
    elif path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
                    # Read now: the archive is closed once the loop ends.
                    yield info.filename, (_constant(archive.read(info)) if contents else
                                          _reopen_zip(path, info.filename))
    else:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    if not contents:
                        yield member.name, _reopen_tar(path, member.name)
                        continue
                    data = archive.extractfile(member)
                    assert data is not None  # a regular file always has contents
                    yield member.name, _constant(data.read())


def _reopen_zip(path: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    return read


def _reopen_tar(path: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with tarfile.open(path, "r:*") as archive:
            data = archive.extractfile(name)
            assert data is not None
            return data.read()
    return read


def _constant(content: bytes) -> Callable[[], bytes]:
    return lambda: content


def _entries(path: Path, contents: bool = True) -> list[_Entry]:
    """The tree's images as (split, class, file name, reader), in sorted order."""
    # "./train/cat/1.jpg" (tar -C DIR .) is "train/cat/1.jpg"; hidden files are skipped.
    named = ((posixpath.normpath(name).lstrip("/").split("/"), read)
             for name, read in _members(path, contents))
    files = [(parts, read) for parts, read in named
             if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES
             and not any(part.startswith(".") for part in parts)]
    # An archive may wrap the tree in top folders ("cifar10/train/cat/1.jpg"): drop the
    # components every member shares, as long as a class and a file remain.
    while files and len({parts[0] for parts, _ in files}) == 1 and \
            min(len(parts) for parts, _ in files) > 2 and files[0][0][0] not in ("train",
                                                                                  "test"):
        files = [(parts[1:], read) for parts, read in files]
    split_tree = any(parts[0] == "train" and len(parts) >= 3 for parts, _ in files)
    entries = []
    for parts, read in files:
        if split_tree and len(parts) == 3 and parts[0] in ("train", "test"):
            entries.append((parts[0], parts[1], parts[2], read))
        elif not split_tree and len(parts) == 2:
            entries.append(("", parts[0], parts[1], read))
    return sorted(entries, key=lambda e: e[:3])


def _tree(path: Path, classes: tuple[str, ...] | None, contents: bool = True
          ) -> tuple[list[_Entry], list[_Entry], tuple[str, ...]]:
    """The tree's train and test entries and its classes (default: train's, sorted)."""
    try:
        entries = _entries(path, contents)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ArchiveError(f"cannot read {path}: it is not a readable "
                           f"{'folder' if path.is_dir() else 'archive'} ({_reason(e)})") from None
    train_split = "train" if any(e[0] == "train" for e in entries) else ""
    classes = classes or tuple(sorted({e[1] for e in entries if e[0] == train_split}))
    if not entries:
        raise ArchiveError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
    if len(classes) < 2:
        raise ArchiveError(f"{path} must hold one subfolder per class (found "
                           f"{len(classes)}), optionally inside train/ and test/")
    label = set(classes)
    train = [e for e in entries if e[0] == train_split and e[1] in label]
    # test/ may lack a class that train/ has, but not hold one train/ lacks.
    test = [e for e in entries if e[0] == "test" and e[1] in label]
    return train, test, classes


def source_key(path: Path, image_size: int | None = None,
               classes: tuple[str, ...] | None = None) -> str:
    """The tree's identity as its decoded cache keys it (content, decode size, loader)."""
    return _source_key(path, image_size, classes)


def npz_shapes(path: Path, keys: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The shapes of the arrays `keys` that an .npz file holds, from their headers alone
    (nothing decompressed beyond them)."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        members = {Path(n).stem: n for n in archive.namelist()}
        for key in keys:
            if key in members:
                with archive.open(members[key]) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shapes[key] = read(f)[0]
    return shapes


def describe(path: Path, image_size: int | None = None, classes: tuple[str, ...] | None = None
             ) -> tuple[tuple[int, int, int], int, int, int]:
    """(decoded image shape, classes, train images, test images) of what `load` would give,
    without decoding the tree: from the cache entry's array headers if it has one, else from
    the members' names and the one image whose width sets the decoded size."""
    entry = _entry(path, image_size, classes)
    if entry.exists():
        try:
            shapes = npz_shapes(entry, ("train_images", "test_images"))
            with np.load(entry) as data:
                count = len(data["classes"])
            shape = shapes["train_images"]
            return (tuple(shape[1:]), count, shape[0],  # type: ignore[return-value]
                    shapes["test_images"][0] if "test_images" in shapes else 0)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # a torn entry: describe the tree itself
    train, test, classes = _tree(path, classes, contents=False)
    size = image_size or _decode(train[:1], None, path)[1]
    return (size, size, 3), len(classes), len(train), len(test)


def _decode_tree(path: Path, image_size: int | None,
                 classes: tuple[str, ...] | None) -> Decoded:
    train, test, classes = _tree(path, classes)
    label = {name: i for i, name in enumerate(classes)}
    size = image_size
    splits: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for part in (train, test):
        if not part:
            splits.append((None, None))
            continue
        images, size = _decode(part, size, path)
        splits.append((images, np.asarray([label[e[1]] for e in part], np.int32)))
    (train_x, train_y), (test_x, test_y) = splits
    assert train_x is not None and train_y is not None
    return Decoded(train_x, train_y, test_x, test_y, classes)


def _decode(entries: list[_Entry], size: int | None,
            path: Path) -> tuple[np.ndarray, int]:
    """The entries' images as one uint8 array of RGB squares of `size` (default: the first
    image's width), and that size."""
    from PIL import Image

    out: np.ndarray | None = None
    for i, (split, klass, name, read) in enumerate(entries):
        where = "/".join(p for p in (split, klass, name) if p)
        try:
            with Image.open(io.BytesIO(read())) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ArchiveError(f"cannot read image {path}/{where} ({_reason(e)})") from None
        size = size or image.size[0]
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        if out is None:
            out = np.empty((len(entries), size, size, 3), np.uint8)
        out[i] = np.asarray(image, dtype=np.uint8)
    assert out is not None and size is not None
    return out, size


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
