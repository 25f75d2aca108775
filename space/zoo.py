"""Named models: EfficientNet-B0 exactly as published, and B1-B8, L2 from the official table.

B0 is Table 1 of Tan & Le (2019); the larger models apply the official (width, depth,
resolution, dropout) table of tensorflow/tpu `efficientnet_builder.efficientnet_params` through
the same rounding rules as any scaled family (`space.scaling.apply_multipliers`). Note that the
table is hand-rounded: it does not follow alpha^phi, beta^phi, gamma^phi exactly.
"""

from __future__ import annotations

from space.errors import UserError
from space.scaling import apply_multipliers
from space.spec import ArchSpec, BlockSpec

EFFICIENTNET_B0 = ArchSpec(
    stages=(
        BlockSpec(kernel=3, stride=1, expansion=1, out_channels=16, se_ratio=0.25, repeats=1),
        BlockSpec(kernel=3, stride=2, expansion=6, out_channels=24, se_ratio=0.25, repeats=2),
        BlockSpec(kernel=5, stride=2, expansion=6, out_channels=40, se_ratio=0.25, repeats=2),
        BlockSpec(kernel=3, stride=2, expansion=6, out_channels=80, se_ratio=0.25, repeats=3),
        BlockSpec(kernel=5, stride=1, expansion=6, out_channels=112, se_ratio=0.25, repeats=3),
        BlockSpec(kernel=5, stride=2, expansion=6, out_channels=192, se_ratio=0.25, repeats=4),
        BlockSpec(kernel=3, stride=1, expansion=6, out_channels=320, se_ratio=0.25, repeats=1),
    ),
    stem_channels=32, head_channels=1280, resolution=224, num_classes=1000, dropout=0.2,
    drop_connect_rate=0.2)

PROXY_BASELINE = ("stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-"
                  "mb_r2_k3_s2_e4_c32_se0.25-head128")
"""B0's first three stages at proxy width (SE, expansion 1/4/4, 16-32 channels): the baseline of
the CPU experiments, the quickstart and the proxy benchmarks. Full B0 at width 0.25 stays near
chance on digits within a few epochs; this one reaches ~0.9."""

# (width, depth, resolution, dropout), tensorflow/tpu efficientnet_builder.efficientnet_params.
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5),
    "efficientnet-b8": (2.2, 3.6, 672, 0.5),
    "efficientnet-l2": (4.3, 5.3, 800, 0.5),
}


def list_models() -> list[str]:
    """Names accepted by `get_model_spec`."""
    return list(EFFICIENTNET_PARAMS)


def _canonical(name: str) -> str:
    name = name.strip().lower().replace("_", "-")
    return name if name.startswith("efficientnet-") else f"efficientnet-{name}"


def is_model_name(name: str) -> bool:
    """True if `name` (also "b3" or "efficientnet_b3") names a model of the zoo."""
    return _canonical(name) in EFFICIENTNET_PARAMS


def get_model_spec(name: str) -> ArchSpec:
    """The spec of a named model, e.g. "efficientnet-b0" (also "b0", "efficientnet_b0").

    Raises:
        UserError: for an unknown name, listing the known ones.
    """
    key = _canonical(name)
    if key not in EFFICIENTNET_PARAMS:
        raise UserError(f"unknown model '{name}' (known: {', '.join(list_models())})")
    width, depth, resolution, dropout = EFFICIENTNET_PARAMS[key]
    return apply_multipliers(EFFICIENTNET_B0, depth=depth, width=width, resolution=resolution,
                             dropout=dropout)
