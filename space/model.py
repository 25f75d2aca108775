"""The Flax NNX EfficientNet built from any `ArchSpec` (official TF semantics).

Stem conv3x3/2 -> MBConv stages -> conv1x1 head -> global pool -> dropout -> linear. Each
MBConv: [1x1 expand, BN, swish] -> kxk depthwise, BN, swish -> SE (width relative to the block
*input* channels, biased 1x1 convs, swish, sigmoid gate) -> 1x1 project, BN -> identity skip with
drop-connect when stride 1 and in == out. BatchNorm uses momentum 0.99 and eps 1e-3 (TF
convention, as the official model); padding is SAME. Parameters are always float32; `dtype`
sets the compute dtype (bfloat16 on accelerators).

Depthwise convolution has two numerically equivalent implementations with identical parameters
(`DEPTHWISE_IMPLS`): XLA's grouped convolution, and a sum of k*k shifted, strided slices
(multiply-adds on the vector units), which on CPU is several times faster than XLA's grouped
kernel. "auto" picks per backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from space.spec import ArchSpec, BlockSpec

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
DEPTHWISE_IMPLS = ("xla", "shift")


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
    """Keras' VarianceScaling initialiser, drawn by JAX or, with `on_host`, by numpy.

    JAX's initialisers are XLA programs, one per parameter shape: building a network eagerly
    compiles each of them, and building it under `jit` compiles one program as large as the
    network (2-3 s for a small proxy on the 2-core CPU, every trial). The host path draws the
    same distribution with numpy and compiles nothing; `create_model` uses it. It re-states
    `jax.nn.initializers.variance_scaling`'s arithmetic (fans over the last two axes, the
    truncated normal's 0.8796 stddev correction at +-2 sigma), checked against it in
    tests/test_model.py. The numpy generator is seeded from the JAX key the layer is given,
    so a model is a pure function of its seed and each layer draws independently.
    """

    scale: float
    mode: Literal["fan_in", "fan_out", "fan_avg"]
    distribution: Literal["truncated_normal", "uniform"]
    on_host: bool = False

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Any:
        if not self.on_host:
            return nnx.initializers.variance_scaling(
                self.scale, self.mode, self.distribution)(key, shape, dtype)
        shape = tuple(shape)
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        variance = self.scale / max(1.0, fan[self.mode])
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape).astype(dtype)
        # Standard normal truncated to [-2, 2] by redrawing, then scaled so that the
        # truncated distribution has the intended variance (as JAX and Keras do).
        x = rng.standard_normal(shape)
        while (out := np.abs(x) > 2).any():
            x[out] = rng.standard_normal(int(out.sum()))
        return (x * math.sqrt(variance) / 0.87962566103423978).astype(dtype)


def _host_constant(value: float) -> Callable[..., np.ndarray]:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> np.ndarray:
        return np.full(shape, value, dtype)

    return init


class _Initializers(NamedTuple):
    """The official initialisers: convs VarianceScaling(2, fan_out, truncated normal); the
    depthwise kernel is stored (k, k, 1, C), whose *fan_in* (k*k) is TF's depthwise fan_out;
    the classifier VarianceScaling(1/3, fan_out, uniform); biases zero, BatchNorm scale one."""

    conv: Callable[..., Any]
    depthwise: Callable[..., Any]
    dense: Callable[..., Any]
    zeros: Callable[..., Any]
    ones: Callable[..., Any]


def _initializers(on_host: bool) -> _Initializers:
    return _Initializers(
        VarianceScaling(2.0, "fan_out", "truncated_normal", on_host),
        VarianceScaling(2.0, "fan_in", "truncated_normal", on_host),
        VarianceScaling(1.0 / 3.0, "fan_out", "uniform", on_host),
        _host_constant(0.0) if on_host else nnx.initializers.zeros_init(),
        _host_constant(1.0) if on_host else nnx.initializers.ones_init())


@contextlib.contextmanager
def _linear_time_tracing() -> Iterator[None]:
    """Works around quadratic tracing in JAX <= 0.10.2 (jax-ml/jax#40041).

    NNX probes `value.sharding` on every variable write (each RNG draw during construction);
    on a tracer that raises an AttributeError whose message walks every equation traced so
    far, so building a model under `eval_shape`/`jit` is O(n^2): 14.5 s for B7, 1.0 s with
    this. The upstream fix deletes that message; we blank it for the duration of model
    construction only, and do nothing where the private attribute no longer exists.
    """
    try:
        from jax._src.interpreters import partial_eval as pe
        tracer = pe.DynamicJaxprTracer
        original = tracer.__dict__["_origin_msg"]
    except (ImportError, AttributeError, KeyError):
        yield
        return
    tracer._origin_msg = lambda self: ""  # type: ignore[method-assign]  # the patch itself
    try:
        yield
    finally:
        tracer._origin_msg = original  # type: ignore[method-assign]


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def shift_depthwise_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], *,
                         feature_group_count: int, **_unused: Any) -> jax.Array:
    """Depthwise conv (NHWC input, (k, k, 1, C) kernel) as k*k shifted multiply-adds.

    A drop-in for `lax.conv_general_dilated` in `nnx.Conv` when feature_group_count == C and
    there is no dilation; accumulates in the input dtype like XLA's kernel does.
    """
    _, h, w, c = lhs.shape
    kh, kw = rhs.shape[0], rhs.shape[1]
    sh, sw = window_strides
    if feature_group_count != c or rhs.shape[2] != 1:
        raise ValueError("shift_depthwise_conv only computes depthwise convolutions")
    if isinstance(padding, str):
        pads = ([_same_pads(h, kh, sh), _same_pads(w, kw, sw)] if padding == "SAME"
                else [(0, 0), (0, 0)])
    else:
        pads = list(padding)
    x = jnp.pad(lhs, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = (x.shape[1] - kh) // sh + 1
    out_w = (x.shape[2] - kw) // sw + 1
    terms = (jax.lax.slice(x, (0, i, j, 0),
                           (x.shape[0], i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c),
                           (1, sh, sw, 1)) * rhs[i, j, 0]
             for i in range(kh) for j in range(kw))
    return functools.reduce(operator.add, terms)


def resolve_depthwise(impl: str) -> str:
    """Maps "auto" to the measured-fastest implementation for the default backend."""
    if impl == "auto":
        return "shift" if jax.default_backend() == "cpu" else "xla"
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise must be 'auto' or one of {DEPTHWISE_IMPLS}, got {impl!r}")
    return impl


class SqueezeExcite(nnx.Module):
    """SE gate: pool, reduce to `c_se` (relative to block input), swish, expand, sigmoid."""

    def __init__(self, c_mid: int, c_se: int, *, dtype: Any, rngs: nnx.Rngs,
                 init: _Initializers):
        dense = dict(dtype=dtype, kernel_init=init.conv, bias_init=init.zeros, rngs=rngs)
        self.reduce = nnx.Linear(c_mid, c_se, **dense)
        self.expand = nnx.Linear(c_se, c_mid, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = self.expand(nnx.swish(self.reduce(s)))
        return x * nnx.sigmoid(s)


class MBConv(nnx.Module):
    """One inverted-residual block with SE (MnasNet/EfficientNet MBConv)."""

    def __init__(self, c_in: int, stride: int, stage: BlockSpec, drop_rate: float, *,
                 dtype: Any, depthwise: str, rngs: nnx.Rngs, bn_momentum: float = BN_MOMENTUM,
                 init: _Initializers | None = None):
        init = init or _initializers(on_host=False)
        c_mid, c_out = stage.expanded(c_in), stage.out_channels
        bn = dict(momentum=bn_momentum, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs,
                  scale_init=init.ones, bias_init=init.zeros)
        expands = stage.expansion != 1
        self.expand = (nnx.Conv(c_in, c_mid, (1, 1), use_bias=False, dtype=dtype,
                                kernel_init=init.conv, rngs=rngs) if expands else None)
        self.expand_bn = nnx.BatchNorm(c_mid, **bn) if expands else None
        conv_fn = shift_depthwise_conv if depthwise == "shift" else jax.lax.conv_general_dilated
        self.depthwise = nnx.Conv(c_mid, c_mid, (stage.kernel, stage.kernel), strides=stride,
                                  feature_group_count=c_mid, use_bias=False, dtype=dtype,
                                  kernel_init=init.depthwise, conv_general_dilated=conv_fn,
                                  rngs=rngs)
        self.depthwise_bn = nnx.BatchNorm(c_mid, **bn)
        c_se = stage.se_channels(c_in)
        self.se = SqueezeExcite(c_mid, c_se, dtype=dtype, rngs=rngs, init=init) if c_se else None
        self.project = nnx.Conv(c_mid, c_out, (1, 1), use_bias=False, dtype=dtype,
                                kernel_init=init.conv, rngs=rngs)
        self.project_bn = nnx.BatchNorm(c_out, **bn)
        self.has_skip = stage.skip and stride == 1 and c_in == c_out
        # Drop-connect: one Bernoulli draw per sample, kept paths divided by the survival
        # probability; nnx.Dropout with the spatial and channel axes broadcast is exactly that.
        self.drop_path = (nnx.Dropout(drop_rate, broadcast_dims=(1, 2, 3), rngs=rngs)
                          if self.has_skip and drop_rate > 0 else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        if self.expand is not None and self.expand_bn is not None:
            y = nnx.swish(self.expand_bn(self.expand(y)))
        y = nnx.swish(self.depthwise_bn(self.depthwise(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project(y))
        if self.has_skip:
            if self.drop_path is not None:
                y = self.drop_path(y)
            y = y + x
        return y


class EfficientNet(nnx.Module):
    """An EfficientNet-style network for `spec`.

    Args:
        spec: the architecture.
        rngs: `nnx.Rngs` with a "params" stream (and "dropout" for training).
        dtype: compute dtype (None or float32, or bfloat16); parameters stay float32.
        depthwise: "auto", "xla" or "shift" (see module docstring).
        bn_momentum: BatchNorm running-average momentum (TF convention; official 0.99).
        init_on_host: draw the parameters with numpy (`VarianceScaling`): the same
            distributions, no XLA compile; the arrays are numpy until put on a device.

    Call `model.train()` / `model.eval()` to switch BatchNorm statistics and dropout.
    """

    def __init__(self, spec: ArchSpec, *, rngs: nnx.Rngs, dtype: Any = None,
                 depthwise: str = "auto", bn_momentum: float = BN_MOMENTUM,
                 init_on_host: bool = False):
        self.spec = spec
        self.dtype = dtype
        with _linear_time_tracing():
            self._build(spec, rngs, dtype, resolve_depthwise(depthwise), bn_momentum,
                        _initializers(init_on_host))

    def _build(self, spec: ArchSpec, rngs: nnx.Rngs, dtype: Any, depthwise: str,
               bn_momentum: float, init: _Initializers) -> None:
        bn = dict(momentum=bn_momentum, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs,
                  scale_init=init.ones, bias_init=init.zeros)
        self.stem = nnx.Conv(spec.in_channels, spec.stem_channels, (3, 3), strides=2,
                             use_bias=False, dtype=dtype, kernel_init=init.conv, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(spec.stem_channels, **bn)
        n = spec.num_blocks
        self.blocks = nnx.List([
            MBConv(c_in, stride, stage, spec.drop_connect_rate * idx / n, dtype=dtype,
                   depthwise=depthwise, rngs=rngs, bn_momentum=bn_momentum, init=init)
            for idx, c_in, stride, stage in spec.blocks()])
        self.head = nnx.Conv(spec.stages[-1].out_channels, spec.head_channels, (1, 1),
                             use_bias=False, dtype=dtype, kernel_init=init.conv, rngs=rngs)
        self.head_bn = nnx.BatchNorm(spec.head_channels, **bn)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.classifier = nnx.Linear(spec.head_channels, spec.num_classes, dtype=dtype,
                                     kernel_init=init.dense, bias_init=init.zeros, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled features before dropout and the classifier."""
        if self.dtype is not None:
            x = x.astype(self.dtype)
        x = nnx.swish(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = nnx.swish(self.head_bn(self.head(x)))
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits (float32) for NHWC images `x`."""
        return self.classifier(self.dropout(self.features(x))).astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (nnx.Param leaves) of a real or `nnx.eval_shape` model."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def create_model(spec: ArchSpec, *, seed: int = 0, dtype: Any = None,
                 depthwise: str = "auto", bn_momentum: float = BN_MOMENTUM) -> EfficientNet:
    """Builds and initialises a model without compiling its initialisers.

    The parameters are drawn on the host (`VarianceScaling`) and put on the default device in
    one transfer. Streams: "params" from `seed`, "dropout" from `seed + 1`.
    """
    model = EfficientNet(spec, rngs=nnx.Rngs(params=seed, dropout=seed + 1), dtype=dtype,
                         depthwise=depthwise, bn_momentum=bn_momentum, init_on_host=True)
    nnx.update(model, jax.device_put(nnx.state(model)))
    return model
