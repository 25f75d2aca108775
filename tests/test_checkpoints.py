"""A training resumed from a checkpoint equals one straight through (trainers/checkpoints.py)."""

import dataclasses

import jax
import numpy as np
import pytest
from toys import TINY_ARCH

from trainers import checkpoints
from trainers.checkpoints import Checkpointing
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig, Stop, train_and_evaluate


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def stop_at(epoch):
    def callback(e, _):
        if e == epoch:
            raise Stop
    return callback


@pytest.mark.parametrize("ema", [None, pytest.param(0.9, marks=pytest.mark.slow)])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, digits, ema):
    """Parameters, optimizer and EMA state, BatchNorm statistics and the curve to 1e-6: the
    (seed, epoch) batches and step keys need no saving."""
    config = ProxyConfig(arch=TINY_ARCH, dataset="digits", epochs=3, batch_size=64,
                         resolution=8, ema_decay=ema)
    # Stopped at its last epoch: the same run, and its state saved to compare.
    whole = train_and_evaluate(config, dataset=digits, callback=stop_at(3),
                               checkpointing=Checkpointing(save_to=str(tmp_path / "whole"),
                                                           save_at=(1, 3)))
    assert not (tmp_path / "whole" / "epoch_1").exists()  # saved only where it stopped
    first = train_and_evaluate(config, dataset=digits, callback=stop_at(1),
                               checkpointing=Checkpointing(save_to=str(tmp_path / "part"),
                                                           save_at=(1,)))
    assert first.epochs_completed == 1
    resumed = train_and_evaluate(config, dataset=digits, callback=stop_at(3),
                                 checkpointing=Checkpointing(
                                     save_to=str(tmp_path / "part"), save_at=(3,),
                                     resume_from=checkpoints.path_of(tmp_path / "part", 1)))
    assert resumed.resumed_at == 1 and resumed.resume_error is None
    assert resumed.epochs_completed == 3 and len(resumed.curve) == 3
    for a, b in zip(whole.curve, resumed.curve, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], atol=1e-6)
    assert resumed.test_top1 == pytest.approx(whole.test_top1, abs=1e-6)
    like, _ = checkpoints.load(checkpoints.path_of(tmp_path / "whole", 3), _fresh(config,
                                                                                  digits))
    mine, _ = checkpoints.load(checkpoints.path_of(tmp_path / "part", 3), _fresh(config,
                                                                                 digits))
    for a, b in zip(jax.tree.leaves(like), jax.tree.leaves(mine), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):  # the dropout RNG's key
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_an_unreadable_checkpoint_is_one_line_and_the_run_trains_from_scratch(tmp_path,
                                                                             digits):
    config = ProxyConfig(arch=TINY_ARCH, dataset="digits", epochs=1, batch_size=64,
                         resolution=8)
    (tmp_path / "epoch_1").mkdir()
    (tmp_path / "epoch_1" / "junk").write_text("not a checkpoint")
    for path in (tmp_path / "missing", tmp_path / "epoch_1"):
        result = train_and_evaluate(config, dataset=digits,
                                    checkpointing=Checkpointing(resume_from=str(path)))
        assert result.status == "ok" and result.resumed_at is None
        assert str(path) in result.resume_error and "\n" not in result.resume_error
        assert result.epochs_completed == 1
    other = dataclasses.replace(config, arch=TINY_ARCH.replace("c16", "c24"))
    train_and_evaluate(other, dataset=digits, callback=stop_at(1), checkpointing=Checkpointing(
        save_to=str(tmp_path / "other"), save_at=(1,)))
    result = train_and_evaluate(config, dataset=digits, checkpointing=Checkpointing(
        resume_from=checkpoints.path_of(tmp_path / "other", 1)))
    assert result.resumed_at is None and result.resume_error  # another network's shapes
    # Same shapes, another training: another resolution or seed is refused by name.
    train_and_evaluate(config, dataset=digits, callback=stop_at(1), checkpointing=Checkpointing(
        save_to=str(tmp_path / "mine"), save_at=(1,)))
    for changes, what in (({"resolution": 12}, "arch"), ({"seed": 1}, "seed")):
        result = train_and_evaluate(dataclasses.replace(config, **changes), dataset=digits,
                                    checkpointing=Checkpointing(
                                        resume_from=checkpoints.path_of(tmp_path / "mine", 1)))
        assert result.resumed_at is None and f"of another training ({what} differ" in \
            result.resume_error


def _fresh(config, dataset):
    """A fresh TrainState of `config`'s network and optimizer: the structure to restore in."""
    from trainers import proxy

    spec = config.spec(dataset.num_classes, dataset.channels)
    split = proxy.training_split(config, dataset)
    plan = proxy._plan(config, len(split), mesh=proxy.pipeline.data_mesh())
    result = proxy._new_result(config, dataset, spec=spec, split=split, plan=plan,
                               mesh=proxy.pipeline.data_mesh())
    state, _, _ = proxy._setup(config, dataset, spec=spec, split=split, plan=plan,
                               result=result)
    return state
