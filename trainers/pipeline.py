"""The device-side input pipeline: the dataset lives on the accelerators, batches are indices.

Proxy datasets are small (digits: 0.1 MB, CIFAR-10: 150 MB as uint8), so each split is put on
every local device once, at its native size, and a batch is a vector of indices. Gathering,
resizing to the trial's resolution, random crop with padding, flip and normalisation all run
inside the jitted train step, fused with the model by XLA. The host then does nothing per step
but draw a permutation, which is why no host loader (grain, tf.data) is used for in-memory
data: there is nothing left for it to overlap. Batches are sharded over all local devices
along the batch axis (data parallelism); parameters are replicated.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from space import UserError
from trainers.data import Dataset, Split


@dataclasses.dataclass(frozen=True)
class Augment:
    """Train-time augmentation; `crop_padding` is a fraction of the resolution (CIFAR: 4/32)."""

    crop_padding: float = 0.125
    flip: bool = True


def data_mesh() -> Mesh:
    """A 1-D mesh named "data" over all local devices, with automatic (GSPMD) sharding."""
    # Local devices, passed explicitly: by default make_mesh takes the global jax.devices() and
    # truncates, so on a multi-host TPU slice host 1's mesh would hold host 0's chips.
    local = jax.local_devices()
    return jax.make_mesh((len(local),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=local)


def global_batch(requested: int, examples: int, mesh: Mesh) -> int:
    """The batch actually used: at most the split size, a multiple of the device count."""
    devices = mesh.size
    batch = min(requested, examples) // devices * devices
    if batch < devices:
        raise UserError(f"batch size {requested} with {examples} examples leaves less than one "
                        f"example per device ({devices} devices)")
    return batch


def put_split(split: Split, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """Images (uint8, flattened to N x H*W*C) and labels, replicated on every device of
    `mesh`. Flat, because XLA:TPU tiles an array's two minor dimensions to 128 lanes: an
    N x H x W x 3 array would pad its channels 3 -> 128 (~40x the memory; accelerator
    review row 11); `prepare_batch` restores the shape after the gather."""
    replicated = NamedSharding(mesh, P())
    # np.asarray: a lazily read split (trainers/streaming.LazyImages) is decoded here.
    images = np.asarray(split.images)
    flat = images.reshape(len(images), int(np.prod(images.shape[1:])))  # -1 fails at N = 0
    return (jax.device_put(flat, replicated),
            jax.device_put(split.labels, replicated))


def epoch_indices(n: int, batch: int, seed: int, epoch: int,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """A seeded permutation of `n` examples as (steps, batch), dropping the remainder.

    With per-example `weights` (class-balanced sampling), the epoch's n // batch batches are
    drawn with replacement with those probabilities instead.
    """
    rng = np.random.default_rng([seed, epoch])
    steps = n // batch
    if weights is not None:
        return rng.choice(n, size=(steps, batch), p=weights).astype(np.int32)
    return rng.permutation(n)[: steps * batch].reshape(steps, batch).astype(np.int32)


def eval_indices(n: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """All `n` examples in order as (batches, batch), padded; and the validity mask."""
    batches = -(-n // batch)
    index = np.arange(batches * batch, dtype=np.int32)
    return np.minimum(index, n - 1).reshape(batches, batch), (index < n).reshape(batches, batch)


def normalisation(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    mean, std = dataset.stats()
    return mean.astype(np.float32), std.astype(np.float32)


def prepare_batch(images: jax.Array, labels: jax.Array, index: jax.Array, key: jax.Array | None,
                  *, resolution: int, mean: np.ndarray, std: np.ndarray,
                  augment: Augment | None, dtype: jnp.dtype,
                  image_shape: tuple[int, ...] | None = None) -> tuple[jax.Array, jax.Array]:
    """Gathers a batch and turns it into normalised model input at `resolution` (jit-able).

    `images` are N x H x W x C, or flat N x H*W*C (`put_split`) with `image_shape` (H, W, C).
    `key` None (or `augment` None) means evaluation: resize and normalise only.
    """
    batch = images[index]
    if batch.ndim == 2:
        assert image_shape is not None, "flat images need their image_shape"
        batch = batch.reshape(batch.shape[0], *image_shape)
    return augment_batch(batch, labels[index], key, resolution=resolution, mean=mean,
                         std=std, augment=augment, dtype=dtype)


def augment_batch(batch: jax.Array, labels: jax.Array, key: jax.Array | None, *,
                  resolution: int, mean: np.ndarray, std: np.ndarray,
                  augment: Augment | None, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """A gathered uint8 batch as normalised model input (jit-able): what `prepare_batch`
    does after the gather, and what streamed batches (trainers/streaming.py) go through."""
    x = batch.astype(jnp.float32)
    b, h, w, c = x.shape
    if (h, w) != (resolution, resolution):
        # Antialiased when shrinking, bilinear when growing (8x8 digits to a 16-32 px proxy).
        x = jax.image.resize(x, (b, resolution, resolution, c), "bilinear")
    x = (x - mean) / std
    if key is not None and augment is not None:
        crop_key, flip_key = jax.random.split(key)
        pad = round(augment.crop_padding * resolution)
        if pad > 0:
            # Zero padding after normalisation pads with the dataset mean.
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * pad + 1)
            x = jax.vmap(lambda img, o: jax.lax.dynamic_slice(
                img, (o[0], o[1], 0), (resolution, resolution, c)))(x, offsets)
        if augment.flip:
            flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1, :], x)
    return x.astype(dtype), labels
