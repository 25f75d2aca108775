"""Train batches streamed from the host with grain, for splits that do not fit on a device.

The default input pipeline (trainers/pipeline.py) puts every split on every device once and
walks it with batches of indices. A split larger than a device's memory budget is streamed
instead: the same seeded permutation of indices per (seed, epoch) (`pipeline.epoch_indices`)
is gathered on the host, a batch at a time, by grain's threads (the loader tfds documents for
`tfds.data_source`), prefetched onto the devices (sharded along the batch) while the step
before runs, and fed to the same jitted augmentation (`pipeline.augment_batch`) and train
step. So both pipelines give the same batches and, for the same seed, the same training.

The host side is any random-access array of uint8 images: a decoded split in host memory, or
`LazyImages`, a TFDS `array_record` data source decoded (and resized) per record, for
datasets whose decoded splits would not fit the host either.

Validation and test splits stay on the devices (they are a fraction of train and evaluated
every epoch); `device_budget` and `fits` say whether the splits do.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

# What the splits may take of a device's memory: the rest is the model, its optimizer state,
# activations and XLA's workspace (a B0-sized proxy at batch 256 needs several GB).
DEVICE_SHARE = 0.5


class LazyImages:
    """A TFDS data source's images as a read-only uint8 array (N x H x W x C), decoded per
    record when indexed: `images[index]` for an int, a slice or an index array."""

    def __init__(self, source: Any, key: str, shape: tuple[int, int, int],
                 image_size: int | None, index: np.ndarray | None = None) -> None:
        self.source, self.key, self.image_size = source, key, image_size
        self.index = np.arange(len(source)) if index is None else index
        self.shape = (len(self.index), *shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size

    def _decode(self, i: int) -> np.ndarray:
        from trainers.data import _fit  # the resize every TFDS decode uses

        return _fit(np.asarray(self.source[int(i)][self.key]), self.image_size)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self._decode(self.index[index])
        picked = self.index[index]
        out = np.empty((len(picked), *self.shape[1:]), np.uint8)
        for n, i in enumerate(picked):
            out[n] = self._decode(i)
        return out

    def subset(self, index: np.ndarray) -> LazyImages:
        """The images at `index`, still lazy."""
        return LazyImages(self.source, self.key, self.shape[1:], self.image_size,
                          self.index[index])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All of it decoded: for the small splits (validation, test) put on the devices."""
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


def device_budget() -> int | None:
    """Bytes the splits may take on each local device (`DEVICE_SHARE` of the smallest one's
    limit), or None where the backend reports no limit (the CPU: host memory is the limit,
    checked when the data is decoded)."""
    limits = []
    for device in jax.local_devices():
        try:
            stats = device.memory_stats()
        except Exception:  # backends without memory stats raise different errors
            return None
        if not stats or "bytes_limit" not in stats:
            return None
        limits.append(int(stats["bytes_limit"]))
    return int(DEVICE_SHARE * min(limits)) if limits else None


def fits(nbytes: int, budget: int | None) -> bool:
    return budget is None or nbytes <= budget


def host_batches(images: Any, labels: np.ndarray, index: np.ndarray, *, threads: int = 4,
                 prefetch: int = 8) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The uint8 images and labels of each row of `index` (steps x batch), in order,
    gathered by grain's `threads` with `prefetch` batches read ahead."""
    import grain

    dataset = grain.MapDataset.range(len(index)).map(
        lambda step: (np.asarray(images[index[step]]), labels[index[step]]))
    yield from dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                         prefetch_buffer_size=prefetch))


def on_device(batches: Iterator[tuple[np.ndarray, np.ndarray]], sharding: NamedSharding,
              ahead: int = 2) -> Iterator[tuple[jax.Array, jax.Array]]:
    """`batches` put on the devices `ahead` batches before they are used: the copy of the
    next overlaps the step on this one (JAX's transfers are asynchronous). Hand-written:
    flax's prefetch_to_device shards over pmap's leading device axis, not a NamedSharding."""
    queue: collections.deque[tuple[jax.Array, jax.Array]] = collections.deque()
    for images, labels in batches:
        queue.append((jax.device_put(images, sharding), jax.device_put(labels, sharding)))
        if len(queue) > ahead:
            yield queue.popleft()
    yield from queue
