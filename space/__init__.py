"""space: the EfficientNet search space: specs, arch strings, named models, scaling, cost, model.

Imports nothing from `trainers` or `search`. JAX/Flax are imported only when a model is built,
and timm, PyTorch and keras-hub only when a model is built in them (`to_timm`, `to_keras_hub`),
so cost and scaling queries stay fast.
"""

from __future__ import annotations

from typing import Any

from space.arch_string import (
    ArchStringError,
    decode,
    decode_block,
    encode,
    load_arch,
    save_arch,
)
from space.coefficients import (
    PAPER,
    Coefficients,
    CoefficientsError,
    load_coefficients,
    parse_coefficients,
    save_coefficients,
)
from space.cost import Cost, PartCost, cost, cost_breakdown
from space.errors import UserError
from space.scaling import (
    DEFAULT_CHANNEL_DIVISOR,
    DEFAULT_RESOLUTION_MULTIPLE,
    PROXY_RESOLUTION_MULTIPLE,
    apply_multipliers,
    compound,
    round_filters,
    round_repeats,
    round_resolution,
    scale,
)
from space.spec import ArchSpec, BlockSpec, SpecError
from space.zoo import (
    EFFICIENTNET_B0,
    PROXY_BASELINE,
    get_model_spec,
    is_model_name,
    list_models,
)


def resolve(name_or_arch: str) -> ArchSpec:
    """A named model ("efficientnet-b0", "b3"), an arch string or an arch .json file, as a spec.

    Text without a block (every block has a "_") is taken as a model name, so a typo there
    gets the list of known models rather than a grammar error.
    """
    if name_or_arch.endswith(".json"):
        return load_arch(name_or_arch)
    if is_model_name(name_or_arch) or "_" not in name_or_arch:
        return get_model_spec(name_or_arch)
    return decode(name_or_arch)


def to_timm(spec: ArchSpec, model: Any = None, **kwargs: Any) -> Any:
    """`spec` as a timm EfficientNet, exact to the parameter and the logit; `model` (an effsearch
    model of `spec`) gives its weights. See `space.timm_export.to_timm`."""
    from space.timm_export import to_timm as build

    return build(spec, model, **kwargs)


def from_timm(arch_def: Any, *args: Any, **kwargs: Any) -> ArchSpec:
    """A timm arch definition as an effsearch spec; see `space.timm_export.from_timm`."""
    from space.timm_export import from_timm as read

    return read(arch_def, *args, **kwargs)


def to_keras_hub(spec: ArchSpec, model: Any = None) -> Any:
    """`spec` as a keras-hub EfficientNet on the JAX backend, exact to the parameter and the
    logit; `model` gives its weights. See `space.keras_hub_export.to_keras_hub`."""
    from space.keras_hub_export import to_keras_hub as build

    return build(spec, model)


def from_keras_hub(source: Any) -> ArchSpec:
    """A keras-hub EfficientNet (or its config) as an effsearch spec; see
    `space.keras_hub_export.from_keras_hub`."""
    from space.keras_hub_export import from_keras_hub as read

    return read(source)


def build_model(spec: ArchSpec, *, rngs: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """Builds the Flax NNX model of `spec`; see `space.model.EfficientNet` for the options."""
    from space.model import EfficientNet

    return EfficientNet(spec, rngs=rngs, dtype=dtype, **kwargs)


__all__ = [
    "DEFAULT_CHANNEL_DIVISOR", "DEFAULT_RESOLUTION_MULTIPLE", "EFFICIENTNET_B0", "PAPER",
    "PROXY_BASELINE", "PROXY_RESOLUTION_MULTIPLE",
    "ArchSpec", "ArchStringError", "BlockSpec", "Coefficients", "CoefficientsError", "Cost",
    "PartCost", "SpecError", "UserError", "apply_multipliers", "build_model", "compound", "cost",
    "cost_breakdown", "decode", "decode_block", "encode", "from_keras_hub", "from_timm",
    "get_model_spec", "is_model_name",
    "list_models", "load_arch", "load_coefficients", "parse_coefficients", "resolve",
    "round_filters", "round_repeats", "round_resolution", "save_arch", "save_coefficients",
    "scale", "to_keras_hub", "to_timm",
]
