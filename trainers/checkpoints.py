"""Checkpoints of a training at an epoch, so that a promoted trial continues instead of
retraining from its first epoch (issue 27).

A checkpoint is the whole `TrainState` (parameters, BatchNorm statistics and RNG counts,
optimizer state, EMA, step count) written with Orbax, with the curve up to that epoch and
which training it is (network and seed) as JSON bytes in the same tree. Nothing else needs
saving: each epoch's batches and step keys come from (seed, epoch) alone
(`pipeline.epoch_indices`, `jax.random.fold_in`), so a run resumed after epoch e trains
epochs e+1... exactly as an uninterrupted one does.

Orbax writes into a temporary directory and renames it when complete, so a reader never sees
a half-written checkpoint; it opens local paths and the object stores it supports (gs://), so
workers on several hosts share checkpoints through any directory they all reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

META = "effsearch"  # the saved tree's entry holding the curve and identity, as JSON bytes


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """What a training saves and where it starts.

    Attributes:
        save_to: a directory to write `epoch_<e>` checkpoints into; None saves nothing.
        save_at: the epochs at which a run stopped by its callback (halving's rungs) saves
            a checkpoint first: where a promotion may continue.
        resume_from: a checkpoint (`epoch_<e>` directory) to continue from; None starts at
            the first epoch.
    """

    save_to: str | None = None
    save_at: tuple[int, ...] = ()
    resume_from: str | None = None


class CheckpointError(Exception):
    """A checkpoint that cannot be read back as this training's state."""


def path_of(folder: str | Path, epoch: int) -> str:
    """The checkpoint of epoch `epoch` in `folder`."""
    return f"{str(folder).rstrip('/')}/epoch_{epoch}"


def save(path: str, state: Any, curve: list[dict[str, Any]],
         identity: dict[str, Any] | None = None) -> None:
    """Writes `state` (any pytree of arrays) and the `curve` so far to `path`, atomically,
    with `identity` (the network and seed), which `load` checks.

    The leaves are saved flat, keyed by position (the state's structure, nnx.State and
    optax's named tuples, is rebuilt on restore from the resuming run's own fresh state);
    PRNG keys as their raw data; the curve and identity as JSON bytes in the same tree, so
    one atomic write holds all of it, read back by any Orbax release's plain restore.
    """
    import orbax.checkpoint as ocp

    tree: dict[str, Any] = {str(i): _plain(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    meta = json.dumps({"curve": curve, "identity": identity or {}}).encode()
    tree[META] = np.frombuffer(meta, dtype=np.uint8)
    # closing(): Orbax releases before 0.12 are no context managers.
    with contextlib.closing(ocp.StandardCheckpointer()) as checkpointer:
        checkpointer.save(path, tree, force=True)
        checkpointer.wait_until_finished()


def _plain(leaf: Any) -> Any:
    """A leaf Orbax saves everywhere: a typed PRNG key as its raw uint32 data."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(leaf)
    return leaf


def save_or_warn(path: str, state: Any, curve: list[dict[str, Any]],
                 identity: dict[str, Any] | None = None) -> bool:
    """`save`, or one warning line if it cannot be written (a full disk, a folder gone): the
    run goes on, and a promotion from here will retrain from the first epoch."""
    try:
        save(path, state, curve, identity)
    except Exception as e:  # Orbax and the filesystems under it raise many kinds
        logging.getLogger("effsearch").warning(
            "checkpoint %s not written (%s: %s); a promotion from it will retrain", path,
            type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
        return False
    return True


def load(path: str, like: Any, sharding: Any = None,
         identity: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The state saved at `path`, in the structure of `like` (a fresh state of the same
    network and optimizer), and the curve up to it.

    Args:
        sharding: where every leaf goes (a data-parallel state is replicated on the mesh, as
            a trained epoch leaves it); None: where `like`'s leaves are.
        identity: what the checkpoint must be of (`save`'s): a network of the same shapes
            but another resolution, or another seed, is refused.

    Raises:
        CheckpointError: missing, unreadable, or of another network or optimizer.
    """
    import orbax.checkpoint as ocp

    leaves, treedef = jax.tree.flatten(like)
    try:
        with contextlib.closing(ocp.StandardCheckpointer()) as checkpointer:
            restored = checkpointer.restore(path)
        meta = json.loads(np.asarray(restored.pop(META)).tobytes().decode())
        curve, stored = meta["curve"], meta["identity"]
    except Exception as e:  # Orbax raises many kinds: missing, torn, not ours
        raise CheckpointError(f"{path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                              if str(e) else f"{path}: {type(e).__name__}") from e
    if identity is not None and stored != identity:
        differ = sorted(k for k in {*identity, *stored} if identity.get(k) != stored.get(k))
        raise CheckpointError(f"{path}: of another training ({', '.join(differ)} differ)")
    expected = [_plain(leaf) for leaf in leaves]
    found = [restored.get(str(i)) for i in range(len(leaves))]
    if len(restored) != len(leaves) or any(
            f is None or f.shape != e.shape or f.dtype != e.dtype
            for f, e in zip(found, expected, strict=True)):
        raise CheckpointError(f"{path}: of another network or optimizer (its arrays differ)")
    placed = []
    for leaf, value in zip(leaves, found, strict=True):
        # A compiled epoch accepts only the shardings it was compiled for.
        value = jax.device_put(value, sharding or leaf.sharding)
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
        placed.append(value)
    return jax.tree.unflatten(treedef, placed), curve
