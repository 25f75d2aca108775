"""The networks that the reuse parity tests build in timm and keras-hub (issue 25).

B0-B7, and the families phi = 0..7 of two directions on two baselines: B0 with the official
rounding (channels to 8), and the CPU proxy baseline with channels rounded to 2, whose odd
widths (18, 26, 22, ...) are what a library's own rounding to 8 or SE rounding would change.
"""

from __future__ import annotations

import space

ZOO = tuple(f"efficientnet-b{i}" for i in range(8))
DIRECTIONS = {"paper": space.Coefficients(1.2, 1.1, 1.15),
              "wide": space.Coefficients(1.1, 1.2, 1.12)}
BASELINES = {"b0": (space.EFFICIENTNET_B0, 8, 8),  # (spec, channel divisor, res multiple)
             "proxy": (space.decode(space.PROXY_BASELINE), 2, 2)}
PHIS = tuple(range(8))


def family_cases() -> list[tuple[str, space.ArchSpec]]:
    """(id, spec) of every family member the parity tests build."""
    cases = []
    for base_name, (base, divisor, multiple) in BASELINES.items():
        for direction, coeffs in DIRECTIONS.items():
            for phi in PHIS:
                spec = space.scale(base, coeffs, phi, channel_divisor=divisor,
                                   resolution_multiple=multiple)
                cases.append((f"{base_name}-{direction}-phi{phi}", spec))
    return cases


def zoo_cases() -> list[tuple[str, space.ArchSpec]]:
    return [(name, space.get_model_spec(name)) for name in ZOO]


def all_cases() -> list[tuple[str, space.ArchSpec]]:
    return zoo_cases() + family_cases()


def trained_like_model(spec: space.ArchSpec, seed: int = 0):
    """An effsearch model in eval mode whose BatchNorm scale, bias, mean and variance and whose
    SE and classifier biases are drawn away from their initial values, so that a BatchNorm or
    a bias copied to the wrong place changes the logits.

    Residual branches end in a BatchNorm scaled by 0.3-0.7, as trained networks' are small:
    with scales near 1 the 61 blocks of b0-paper-phi7 grow the activations until float32
    rounding alone moves its logits by 4e-4 (effsearch's "xla" vs "shift" depthwise, same
    weights); damped, they agree to 7e-7, and the tolerance measures the mapping again.
    Depthwise "xla": the reference is compiled whole (`reference_logits`).
    """
    import numpy as np
    from flax import nnx

    from space.model import create_model

    model = create_model(spec, seed=seed, depthwise="xla")
    rng = np.random.default_rng(seed)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            n = module.scale.shape
            module.scale[...] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            module.bias[...] = rng.normal(0, 0.1, n).astype(np.float32)
            module.mean[...] = rng.normal(0, 0.1, n).astype(np.float32)
            module.var[...] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        elif isinstance(module, nnx.Linear):
            module.bias[...] = rng.normal(0, 0.1, module.bias.shape).astype(np.float32)
    for block in model.blocks:
        if block.has_skip:
            scale = block.project_bn.scale
            scale[...] = rng.uniform(0.3, 0.7, scale.shape).astype(np.float32)
    model.eval()
    return model


def reference_logits(model, x):
    """effsearch's eval-mode logits, compiled once (about 5x faster than eager dispatch)."""
    from flax import nnx

    return nnx.jit(lambda m, x: m(x))(model, x)


def images(n: int, size: int, channels: int = 3, seed: int = 0):
    """Seeded NHWC float32 inputs."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, size, size, channels)).astype(
        np.float32)


def max_relative_difference(a, b) -> float:
    """max |a - b| over max |a|: the parity measure (logits of two frameworks)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
