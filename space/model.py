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
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from space.spec import ArchSpec, BlockSpec

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
DEPTHWISE_IMPLS = ("xla", "shift")

# Keras/official initialisers: convs VarianceScaling(2, fan_out, truncated normal); the
# depthwise kernel is stored (k, k, 1, C), whose *fan_in* (k*k) is TF's depthwise fan_out;
# the classifier VarianceScaling(1/3, fan_out, uniform).
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
_dw_init = nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
_dense_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


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
    tracer._origin_msg = lambda self: ""
    try:
        yield
    finally:
        tracer._origin_msg = original


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def shift_depthwise_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], *,
                         feature_group_count: int, **_: Any) -> jax.Array:
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
    y = None
    for i in range(kh):
        for j in range(kw):
            patch = jax.lax.slice(x, (0, i, j, 0),
                                  (x.shape[0], i + (out_h - 1) * sh + 1,
                                   j + (out_w - 1) * sw + 1, c), (1, sh, sw, 1))
            term = patch * rhs[i, j, 0]
            y = term if y is None else y + term
    return y


def resolve_depthwise(impl: str) -> str:
    """Maps "auto" to the measured-fastest implementation for the default backend."""
    if impl == "auto":
        return "shift" if jax.default_backend() == "cpu" else "xla"
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise must be 'auto' or one of {DEPTHWISE_IMPLS}, got {impl!r}")
    return impl


class SqueezeExcite(nnx.Module):
    """SE gate: pool, reduce to `c_se` (relative to block input), swish, expand, sigmoid."""

    def __init__(self, c_mid: int, c_se: int, *, dtype: Any, rngs: nnx.Rngs):
        self.reduce = nnx.Linear(c_mid, c_se, dtype=dtype, kernel_init=_conv_init, rngs=rngs)
        self.expand = nnx.Linear(c_se, c_mid, dtype=dtype, kernel_init=_conv_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = self.expand(nnx.swish(self.reduce(s)))
        return x * nnx.sigmoid(s)


class MBConv(nnx.Module):
    """One inverted-residual block with SE (MnasNet/EfficientNet MBConv)."""

    def __init__(self, c_in: int, stride: int, stage: BlockSpec, drop_rate: float, *,
                 dtype: Any, depthwise: str, rngs: nnx.Rngs, bn_momentum: float = BN_MOMENTUM):
        c_mid, c_out = stage.expanded(c_in), stage.out_channels
        bn = dict(momentum=bn_momentum, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs)
        expands = stage.expansion != 1
        self.expand = (nnx.Conv(c_in, c_mid, (1, 1), use_bias=False, dtype=dtype,
                                kernel_init=_conv_init, rngs=rngs) if expands else None)
        self.expand_bn = nnx.BatchNorm(c_mid, **bn) if expands else None
        conv_fn = shift_depthwise_conv if depthwise == "shift" else jax.lax.conv_general_dilated
        self.depthwise = nnx.Conv(c_mid, c_mid, (stage.kernel, stage.kernel), strides=stride,
                                  feature_group_count=c_mid, use_bias=False, dtype=dtype,
                                  kernel_init=_dw_init, conv_general_dilated=conv_fn, rngs=rngs)
        self.depthwise_bn = nnx.BatchNorm(c_mid, **bn)
        c_se = stage.se_channels(c_in)
        self.se = SqueezeExcite(c_mid, c_se, dtype=dtype, rngs=rngs) if c_se else None
        self.project = nnx.Conv(c_mid, c_out, (1, 1), use_bias=False, dtype=dtype,
                                kernel_init=_conv_init, rngs=rngs)
        self.project_bn = nnx.BatchNorm(c_out, **bn)
        self.has_skip = stage.skip and stride == 1 and c_in == c_out
        # Drop-connect: one Bernoulli draw per sample, kept paths divided by the survival
        # probability; nnx.Dropout with the spatial and channel axes broadcast is exactly that.
        self.drop_path = (nnx.Dropout(drop_rate, broadcast_dims=(1, 2, 3), rngs=rngs)
                          if self.has_skip and drop_rate > 0 else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        if self.expand is not None:
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

    Call `model.train()` / `model.eval()` to switch BatchNorm statistics and dropout.
    """

    def __init__(self, spec: ArchSpec, *, rngs: nnx.Rngs, dtype: Any = None,
                 depthwise: str = "auto", bn_momentum: float = BN_MOMENTUM):
        self.spec = spec
        self.dtype = dtype
        with _linear_time_tracing():
            self._build(spec, rngs, dtype, resolve_depthwise(depthwise), bn_momentum)

    def _build(self, spec: ArchSpec, rngs: nnx.Rngs, dtype: Any, depthwise: str,
               bn_momentum: float) -> None:
        bn = dict(momentum=bn_momentum, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs)
        self.stem = nnx.Conv(spec.in_channels, spec.stem_channels, (3, 3), strides=2,
                             use_bias=False, dtype=dtype, kernel_init=_conv_init, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(spec.stem_channels, **bn)
        n = spec.num_blocks
        self.blocks = nnx.List([
            MBConv(c_in, stride, stage, spec.drop_connect_rate * idx / n, dtype=dtype,
                   depthwise=depthwise, rngs=rngs, bn_momentum=bn_momentum)
            for idx, c_in, stride, stage in spec.blocks()])
        self.head = nnx.Conv(spec.stages[-1].out_channels, spec.head_channels, (1, 1),
                             use_bias=False, dtype=dtype, kernel_init=_conv_init, rngs=rngs)
        self.head_bn = nnx.BatchNorm(spec.head_channels, **bn)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.classifier = nnx.Linear(spec.head_channels, spec.num_classes, dtype=dtype,
                                     kernel_init=_dense_init, rngs=rngs)

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


# Initialisers run once, so their compile time is all that counts: compile at -O0.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0,
                          "xla_llvm_disable_expensive_passes": True}


def create_model(spec: ArchSpec, *, seed: int = 0, dtype: Any = None,
                 depthwise: str = "auto", bn_momentum: float = BN_MOMENTUM) -> EfficientNet:
    """Builds and initialises a model with one XLA compile of its whole initialiser.

    Eager NNX construction compiles every random op separately (18 s for B0 on a 2-core
    CPU); tracing the constructor once and compiling it without optimisations is several
    times faster. Streams: "params" from `seed`, "dropout" from `seed + 1`.
    """
    def init() -> tuple[nnx.GraphDef, nnx.State]:
        return nnx.split(EfficientNet(spec, rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                                      dtype=dtype, depthwise=depthwise,
                                      bn_momentum=bn_momentum))

    graphdef, _ = nnx.eval_shape(init)
    compiled = jax.jit(lambda: init()[1]).lower().compile(_INIT_COMPILER_OPTIONS)
    return nnx.merge(graphdef, compiled())
