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
from trainers.proxy import compute_dtype, make_loss_fn


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


def measure_latency(spec: space.ArchSpec, *, batch: int = 1, resolution: int | None = None,
                    dtype: Any = None, train: bool = True, warmup: int = 3,
                    repeats: int = 20, depthwise: str = "auto") -> Latency:
    """Times the jitted forward pass (eval mode) and a full SGD train step.

    Args:
        spec: the architecture.
        batch: images per call.
        resolution: input size (default: the spec's).
        dtype: compute dtype (None: bfloat16 on accelerators, float32 on CPU).
        train: also time a train step (forward, backward, optimizer update).
        warmup, repeats: untimed and timed calls.
    """
    if resolution:
        spec = spec.replace(resolution=resolution)
    dtype = compute_dtype() if dtype is None else dtype
    model = create_model(spec, dtype=dtype, depthwise=depthwise)
    x = jax.random.normal(jax.random.key(0), (batch, spec.resolution, spec.resolution,
                                              spec.in_channels), jnp.float32)
    y = jnp.zeros((batch,), jnp.int32)

    model.eval()
    eval_def, state = nnx.split(model)
    start = time.perf_counter()
    forward = jax.jit(lambda s, x: nnx.merge(eval_def, s)(x)).lower(state, x).compile()
    forward_compile = time.perf_counter() - start
    fwd = _time(lambda: forward(state, x), warmup, repeats)

    train_times, train_compile = (None, None), None
    if train:
        model.train()
        train_def, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optax.sgd(0.01, momentum=0.9)
        loss_fn = make_loss_fn(train_def, spec.num_classes, label_smoothing=0.0)

        def step(params, rest, opt_state, x, y):
            (_, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), rest, opt_state

        carry = [params, rest, tx.init(params)]
        start = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*carry, x, y).compile()
        train_compile = time.perf_counter() - start

        def run() -> Any:
            carry[:] = compiled(*carry, x, y)
            return carry[0]

        train_times = _time(run, warmup, repeats)
    return Latency(fwd[0], fwd[1], train_times[0], train_times[1], forward_compile,
                   train_compile, batch, spec.resolution, jnp.dtype(dtype).name,
                   jax.devices()[0].device_kind)
