"""Latency and throughput probes on the current device: p50/p90 after warm-up.

Used as a search objective (latency-aware scaling, EfficientNet-X) and by `effsearch bench`.
Inputs are random (only shapes matter for timing); every timed call is synchronised with
`block_until_ready`, and compile time is measured separately.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import space
from space.model import create_model

# The module, not its names: the step is looked up at call time, so a test can check that
# the probe times the proxy's own step.
from trainers import proxy


@dataclasses.dataclass
class Latency:
    """Milliseconds per call (p50, p90) of the jitted forward pass and train step."""

    forward_p50_ms: float
    forward_p90_ms: float
    train_p50_ms: float | None
    train_p90_ms: float | None
    forward_compile_s: float
    train_compile_s: float | None
    batch: int
    resolution: int
    dtype: str
    device: str

    @property
    def train_images_per_s(self) -> float | None:
        return None if self.train_p50_ms is None else self.batch / (self.train_p50_ms / 1e3)


def _time(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def timed_train_step(model: nnx.Module,
                     num_classes: int) -> tuple[proxy.TrainState, proxy.TrainStep]:
    """The proxy's train step as the probe times it, and its first state.

    The same `proxy.make_train_step` the proxy scans over its epochs, with plain SGD with
    momentum, no label smoothing, no imbalance remedy and no EMA: the cost of an update
    without the recipe's extras. Leaves `model` in train mode.
    """
    tx = optax.sgd(0.01, momentum=0.9)
    train_def, state = proxy.create_train_state(model, tx)
    loss_fn = proxy.make_loss_fn(train_def, num_classes, label_smoothing=0.0)
    return state, proxy.make_train_step(loss_fn, tx)


def measure_latency(spec: space.ArchSpec, *, batch: int = 1, resolution: int | None = None,
                    dtype: Any = None, train: bool = True, warmup: int = 3,
                    repeats: int = 20, depthwise: str = "auto") -> Latency:
    """Times the jitted forward pass (eval mode) and a full SGD train step.

    Args:
        spec: the architecture.
        batch: images per call.
        resolution: input size (default: the spec's).
        dtype: compute dtype (None: bfloat16 on accelerators, float32 on CPU).
        train: also time a train step (forward, backward, optimizer update): the proxy's
            own step, through `timed_train_step`.
        warmup, repeats: untimed and timed calls.
        depthwise: the depthwise convolution implementation (`space.model.create_model`).
    """
    if resolution:
        spec = spec.replace(resolution=resolution)
    dtype = proxy.compute_dtype() if dtype is None else dtype
    model = create_model(spec, dtype=dtype, depthwise=depthwise)
    x = jax.random.normal(jax.random.key(0), (batch, spec.resolution, spec.resolution,
                                              spec.in_channels), jnp.float32)
    y = jnp.zeros((batch,), jnp.int32)

    model.eval()
    eval_def, variables = nnx.split(model)
    start = time.perf_counter()
    forward = jax.jit(lambda v, x: nnx.merge(eval_def, v)(x)).lower(variables, x).compile()
    forward_compile = time.perf_counter() - start
    fwd = _time(lambda: forward(variables, x), warmup, repeats)

    train_times: tuple[float | None, float | None] = (None, None)
    train_compile = None
    if train:
        train_state, train_step = timed_train_step(model, spec.num_classes)
        start = time.perf_counter()
        compiled = jax.jit(train_step, donate_argnums=(0,)).lower(train_state, x, y).compile()
        train_compile = time.perf_counter() - start

        def run() -> Any:
            nonlocal train_state
            train_state, _ = compiled(train_state, x, y)
            return train_state.params

        train_times = _time(run, warmup, repeats)
    return Latency(fwd[0], fwd[1], train_times[0], train_times[1], forward_compile,
                   train_compile, batch, spec.resolution, jnp.dtype(dtype).name,
                   jax.devices()[0].device_kind)
