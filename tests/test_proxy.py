"""The proxy trainer and its device-side pipeline, on digits with tiny models (CPU, 2 devices)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import trainers.config
from space import UserError, decode
from space.model import create_model
from trainers import pipeline, probes, proxy
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig, Stop, TrainState, train_and_evaluate

ARCH = "stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-head64"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_epoch_indices_are_seeded_permutations():
    a = pipeline.epoch_indices(100, 16, seed=3, epoch=0)
    assert a.shape == (6, 16) and len(set(a.ravel())) == 96
    np.testing.assert_array_equal(a, pipeline.epoch_indices(100, 16, seed=3, epoch=0))
    assert not np.array_equal(a, pipeline.epoch_indices(100, 16, seed=3, epoch=1))
    index, mask = pipeline.eval_indices(10, 4)
    assert index.shape == (3, 4) and mask.sum() == 10 and index.max() == 9


def test_prepare_batch_resizes_normalises_and_augments(digits):
    images, labels = jnp.asarray(digits.train.images), jnp.asarray(digits.train.labels)
    mean, std = pipeline.normalisation(digits)
    idx = jnp.arange(64)
    kw = dict(resolution=16, mean=mean, std=std, dtype=jnp.float32)
    x, y = pipeline.prepare_batch(images, labels, idx, None, augment=None, **kw)
    assert x.shape == (64, 16, 16, 1) and (y == labels[:64]).all()
    assert abs(float(x.mean())) < 0.5
    aug = pipeline.Augment(crop_padding=0.25, flip=True)
    xa, _ = pipeline.prepare_batch(images, labels, idx, jax.random.key(0), augment=aug, **kw)
    xb, _ = pipeline.prepare_batch(images, labels, idx, jax.random.key(0), augment=aug, **kw)
    np.testing.assert_array_equal(xa, xb)  # seeded
    assert xa.shape == x.shape and not np.allclose(xa, x)
    # The splits go on the devices flat (TPU tiling, accelerator review row 11): the same
    # batch comes out.
    flat, _ = pipeline.put_split(digits.train, pipeline.data_mesh())
    assert flat.shape == (len(digits.train), int(np.prod(digits.image_shape)))
    xf, _ = pipeline.prepare_batch(flat, labels, idx, jax.random.key(0), augment=aug,
                                   image_shape=digits.image_shape, **kw)
    np.testing.assert_array_equal(xf, xa)


def test_batch_is_a_multiple_of_the_devices():
    mesh = pipeline.data_mesh()
    assert mesh.size == 2  # conftest: two virtual CPU devices
    assert pipeline.global_batch(65, 1000, mesh) == 64
    assert pipeline.global_batch(512, 33, mesh) == 32
    with pytest.raises(UserError, match="less than one example per device"):
        pipeline.global_batch(1, 100, mesh)


def test_trains_a_proxy_and_reports_everything(digits):
    seen = []
    result = train_and_evaluate(
        ProxyConfig(arch=ARCH, resolution=16, epochs=3, batch_size=64, flip=False),
        dataset=digits, callback=lambda epoch, m: seen.append((epoch, m["val_top1"])))
    assert result.status == "ok" and result.reason is None
    assert [e for e, _ in seen] == [1, 2, 3] and len(result.curve) == 3
    assert result.val_top1 == seen[-1][1] > 0.3  # far above the 10% of chance
    assert 0 <= result.test_top1 <= 1
    assert result.compile_s > 0 and result.images_per_s > 0 and result.step_time_s > 0
    assert result.steps == 3 * (len(digits.train) // 64) and result.batch_size == 64
    assert result.device.endswith("x2") and result.resolution == 16
    assert "in1" in result.arch and "cls10" in result.arch
    record = json.loads(json.dumps(result.to_json()))
    assert record["config"]["arch"] == ARCH and record["params"] == result.params > 0


def test_same_seed_same_result(digits):
    config = ProxyConfig(arch=ARCH, resolution=8, epochs=1, batch_size=128, fraction=0.5)
    a, b = (train_and_evaluate(config, dataset=digits) for _ in range(2))
    assert a.curve == b.curve


def test_divergence_is_a_failed_result_not_a_crash(digits):
    result = train_and_evaluate(ProxyConfig(arch=ARCH, resolution=8, epochs=3, batch_size=128,
                                            learning_rate=1e6), dataset=digits)
    assert result.status == "failed" and "diverged" in result.reason
    assert result.epochs_completed == 0


def test_out_of_memory_is_a_failed_result(digits):
    def oom(epoch, metrics):  # what XLA raises when an allocation fails
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.0GiB")

    result = train_and_evaluate(ProxyConfig(arch=ARCH, resolution=8, epochs=2, batch_size=128),
                                dataset=digits, callback=oom)
    assert result.status == "failed" and result.reason.startswith("out of memory")


def test_callback_can_stop_and_other_errors_propagate(digits):
    def stop(epoch, metrics):
        raise Stop

    config = ProxyConfig(arch=ARCH, resolution=8, epochs=3, batch_size=128, ema_decay=0.99,
                         optimizer="rmsprop")
    result = train_and_evaluate(config, dataset=digits, callback=stop)
    assert result.status == "ok" and result.epochs_completed == 1

    def boom(epoch, metrics):
        raise KeyError("pruned")

    with pytest.raises(KeyError):
        train_and_evaluate(config, dataset=digits, callback=boom)


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("optimizer", "adam"), ("fraction", 0), ("dtype", "fp16")])
def test_bad_config_is_a_user_error(field, value):
    with pytest.raises(UserError, match="proxy config"):
        ProxyConfig(**{field: value})


def test_measure_latency_percentiles():
    lat = probes.measure_latency(decode(ARCH + "-res16"), batch=4, repeats=5, train=True)
    assert 0 < lat.forward_p50_ms <= lat.forward_p90_ms
    assert 0 < lat.train_p50_ms <= lat.train_p90_ms
    assert lat.train_images_per_s > 0 and lat.resolution == 16 and lat.dtype == "float32"


def test_config_module_imports_no_jax():
    # The CLI shows ProxyConfig's defaults and validates it without paying for JAX.
    code = ("import sys, trainers.config; "
            "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
    assert proxy.ProxyConfig is trainers.config.ProxyConfig  # still importable from proxy


def test_train_step_updates_params_ema_and_count_by_hand():
    # loss = sum((w - x)^2) with SGD at lr 1: w <- w - 2 (w - x), so from w = 1, x = 0 the
    # weight flips 1 -> -1 -> 1. EMA warm-up decay min(0.9, (1 + n) / (10 + n)): 0.1 at the
    # first update (ema = 0.1 * 1 + 0.9 * -1 = -0.8), 2/11 at the second
    # (ema = 2/11 * -0.8 + 9/11 * 1 = 7.4 / 11).
    def loss_fn(params, rest, x, y):
        return jnp.sum((params["w"] - x) ** 2), rest

    tx = optax.sgd(1.0)
    params = {"w": jnp.ones(())}
    state = TrainState(params, {}, tx.init(params), params, jnp.zeros(()))
    step = jax.jit(proxy.make_train_step(loss_fn, tx, ema_decay=0.9))
    state, loss = step(state, jnp.zeros(()), None)
    assert float(loss) == 1 and float(state.params["w"]) == -1 and float(state.step) == 1
    assert float(state.ema["w"]) == pytest.approx(-0.8)
    assert state.eval_params is state.ema
    state, _ = step(state, jnp.zeros(()), None)
    assert float(state.params["w"]) == 1 and float(state.step) == 2
    assert float(state.ema["w"]) == pytest.approx(7.4 / 11)
    assert state._replace(ema=None).eval_params is state.params


def test_proxy_and_probe_time_one_and_the_same_train_step(monkeypatch, digits):
    # The probe must time the step the proxy trains with, not a copy of it: both build it
    # through proxy.make_train_step, and the probe's step is that function's product.
    built = []

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    real = proxy.make_train_step
    monkeypatch.setattr(proxy, "make_train_step", spy)
    train_and_evaluate(ProxyConfig(arch=ARCH, resolution=8, epochs=1, batch_size=128,
                                   fraction=0.2), dataset=digits)
    assert len(built) == 1
    spec = decode(ARCH + "-res8")
    _, step = probes.timed_train_step(create_model(spec, dtype=jnp.float32),
                                      spec.num_classes)
    assert len(built) == 2 and step is built[-1]
    probes.measure_latency(spec, batch=2, warmup=0, repeats=1)
    assert len(built) == 3
