"""An `ArchSpec` as a keras-hub EfficientNet, and back: reuse found networks in Keras (issue 25).

keras-hub's `EfficientNetBackbone` computes effsearch's network exactly on one path, checked
against `space.model` by tests/test_keras_hub_export.py (logits, weights, parameter counts):

- explicit per-stack filters and repeats, width and depth coefficients 1 and
  `depth_divisor=min_depth=1`, so keras-hub's channel rounding is the identity;
- `include_stem_padding=False, stem_conv_padding="same"`: Keras' "same" on JAX is
  `lax.conv_general_dilated(padding="SAME")`, TF-SAME, as effsearch's stride-2 stem;
- stages that expand use the "unfused" `MBConvBlock`: TF-SAME depthwise, SE of width
  `max(1, int(in * se_ratio))` with biased 1x1 convs, `nores` for `skip=False`. Without
  expansion that block projects with a kxk conv, so stages with expansion 1 use the "v1" block,
  whose symmetric depthwise padding equals TF-SAME at stride 1 only and which adds the residual
  whenever in == out (it ignores `nores`);
- BatchNorm epsilon 1e-3, drop-connect `rate * i / N` as effsearch, head conv `num_features`,
  and `EfficientNetImageClassifier(pooling="avg", activation=None)`: pool, dropout, logits.

The input size lives where keras-hub keeps it, in the classifier's image converter (which
only resizes: effsearch normalises images in its data pipeline). BatchNorm momentum (0.99 here)
is a training setting that `ArchSpec` does not hold (`create_model(bn_momentum=...)`).
keras-hub 0.32's `EfficientNetBackbone.get_config()` drops `num_features` and
`stackwise_nores_option`; the backbones built here write them back, so a saved model reloads.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from space.errors import UserError
from space.spec import ArchSpec, BlockSpec

INSTALL_HINT = ("pip install 'effsearch[keras-hub]' && pip install --no-deps "
                "'keras-hub>=0.32,<1' (keras-hub's tensorflow-text requirement pulls "
                "TensorFlow, which this model does not need)")
# The settings of keras-hub's channel rounding that make it the identity.
_IDENTITY_ROUNDING = {"depth_divisor": 1, "min_depth": 1, "use_depth_divisor_as_min_depth": False,
                      "cap_round_filter_decrease": False}
# Backbone arguments read into the spec (momentum: a training setting the spec does not hold);
# every other one must equal what `keras_hub_builder_args` gives the spec read.
_STAGE_KEYS = {"kernel": "stackwise_kernel_sizes", "stride": "stackwise_strides",
               "expansion": "stackwise_expansion_ratios",
               "out_channels": "stackwise_output_filters",
               "se_ratio": "stackwise_squeeze_and_excite_ratios",
               "repeats": "stackwise_num_repeats"}
_NOT_COMPARED = {*_STAGE_KEYS.values(), "stackwise_nores_option", "num_features", "dropout",
                 "input_shape", "batch_norm_momentum"}


class KerasHubExportError(UserError):
    """The network has no exact keras-hub equivalent, or keras-hub cannot be used here."""


def _block_type(i: int, stage: BlockSpec, c_in: int) -> str:
    """The keras-hub block that computes stage `i` exactly, or a one-line refusal."""
    if not stage.expansion.is_integer():
        raise KerasHubExportError(
            f"stage {i}: expansion {stage.expansion:g}: keras-hub sizes the expanded layer as "
            f"in * ratio and builds only whole-number ratios")
    if stage.expansion != 1:
        return "unfused"
    if stage.stride != 1:
        raise KerasHubExportError(
            f"stage {i}: keras-hub has no exact stride-2 block without expansion (its 'v1' "
            f"block pads symmetrically, not TF-SAME; 'unfused' projects with a kxk conv)")
    if not stage.skip and (c_in == stage.out_channels or stage.repeats > 1):
        raise KerasHubExportError(
            f"stage {i}: skip=False without expansion: keras-hub's 'v1' block always adds the "
            f"residual when in == out")
    return "v1"


def keras_hub_builder_args(spec: ArchSpec) -> dict[str, Any]:
    """The keras-hub arguments that build `spec` exactly; JSON-serialisable, no Keras needed.

    Returns:
        {"backbone": kwargs of `keras_hub.models.EfficientNetBackbone`, "classifier": kwargs of
        `keras_hub.models.EfficientNetImageClassifier` besides the backbone, "image_size":
        the input resolution, the image converter's `image_size`}.

    Raises:
        KerasHubExportError: `spec` has no exact keras-hub equivalent (one line saying why).
    """
    stages, n = spec.stages, len(spec.stages)
    ins = [spec.stem_channels] + [s.out_channels for s in stages[:-1]]
    types = [_block_type(i, s, c) for i, (s, c) in enumerate(zip(stages, ins, strict=True))]
    backbone = {
        "stackwise_width_coefficients": [1.0] * n,
        "stackwise_depth_coefficients": [1.0] * n,
        "stackwise_kernel_sizes": [s.kernel for s in stages],
        "stackwise_num_repeats": [s.repeats for s in stages],
        "stackwise_input_filters": ins,
        "stackwise_output_filters": [s.out_channels for s in stages],
        # ints: keras-hub sizes layers as in * ratio, and a float there is not a shape.
        "stackwise_expansion_ratios": [int(s.expansion) for s in stages],
        "stackwise_squeeze_and_excite_ratios": [s.se_ratio for s in stages],
        "stackwise_strides": [s.stride for s in stages],
        "stackwise_block_types": types,
        "stackwise_force_input_filters": [0] * n,
        "stackwise_nores_option": [not s.skip for s in stages],
        "dropout": spec.drop_connect_rate,
        **_IDENTITY_ROUNDING,
        "input_shape": [None, None, spec.in_channels],
        "activation": "swish",
        "include_stem_padding": False,
        "stem_conv_padding": "same",
        "batch_norm_momentum": 0.99,
        "batch_norm_epsilon": 1e-3,
        "projection_activation": None,
        "num_features": spec.head_channels,
    }
    classifier = {"num_classes": spec.num_classes, "dropout": spec.dropout, "pooling": "avg",
                  "activation": None}
    return {"backbone": backbone, "classifier": classifier, "image_size": spec.resolution}


def keras_hub_snippet(spec: ArchSpec, title: str) -> str:
    """A runnable Python snippet that builds `spec` in keras-hub alone (no effsearch needed)."""
    args = keras_hub_builder_args(spec)
    kwargs = "".join(f"    {k}={v!r},\n" for k, v in args["backbone"].items())
    head = ", ".join(f"{k}={v!r}" for k, v in args["classifier"].items())
    size = args["image_size"]
    return (
        f"# {title}\n"
        "import math\nimport os\n\n"
        "os.environ.setdefault(\"KERAS_BACKEND\", \"jax\")  # where the export is checked\n"
        "import keras_hub  # noqa: E402\n\n"
        f"kwargs = dict(\n{kwargs})\n"
        "backbone = keras_hub.models.EfficientNetBackbone(**kwargs)\n"
        "# keras-hub 0.32's get_config() drops num_features and stackwise_nores_option: add\n"
        "# them back, or a saved model loads with another head or residuals.\n"
        "config = backbone.get_config\n"
        "backbone.get_config = lambda: {**kwargs, **config()}\n"
        "model = keras_hub.models.EfficientNetImageClassifier(\n"
        f"    backbone, {head},\n"
        "    preprocessor=keras_hub.models.EfficientNetImageClassifierPreprocessor(\n"
        f"        keras_hub.layers.EfficientNetImageConverter(image_size=({size}, {size}))))\n"
        "print(f\"{sum(math.prod(w.shape) for w in model.trainable_weights):,} params at "
        f"{size} px\")\n")


def _import_keras_hub() -> Any:
    keras = sys.modules.get("keras")
    # Keras reads KERAS_BACKEND once, at its first import: set it before, check it after.
    backend = (keras.backend.backend() if keras
               else os.environ.setdefault("KERAS_BACKEND", "jax"))
    if backend != "jax":
        raise KerasHubExportError(
            f"Keras runs on the {backend!r} backend; the keras-hub export needs JAX: set "
            f"KERAS_BACKEND=jax before Keras is first imported")
    try:
        import keras_hub
    except ImportError as e:
        raise KerasHubExportError(f"keras-hub is not usable ({e}): {INSTALL_HINT}") from None
    return keras_hub


def _flax_arrays(model: Any) -> list[np.ndarray]:
    """The model's weights and BatchNorm statistics, in the order Keras lists its weights."""
    def bn(m: Any) -> list[Any]:
        return [m.scale, m.bias, m.mean, m.var]  # Keras: gamma, beta, moving mean, variance

    out = [model.stem.kernel, *bn(model.stem_bn)]
    for b in model.blocks:
        if b.expand is not None:
            out += [b.expand.kernel, *bn(b.expand_bn)]
        out += [b.depthwise.kernel, *bn(b.depthwise_bn)]
        if b.se is not None:
            out += [b.se.reduce.kernel, b.se.reduce.bias, b.se.expand.kernel, b.se.expand.bias]
        out += [b.project.kernel, *bn(b.project_bn)]
    out += [model.head.kernel, *bn(model.head_bn), model.classifier.kernel,
            model.classifier.bias]
    return [np.asarray(v[...]) for v in out]


def to_keras_hub(spec: ArchSpec, model: Any = None) -> Any:
    """A `keras_hub.models.EfficientNetImageClassifier` (JAX backend) computing `spec`'s logits.

    Args:
        spec: the network.
        model: optional effsearch `EfficientNet` of `spec`; its weights and BatchNorm running
            statistics are copied in, so both give the same eval-mode logits.

    Raises:
        KerasHubExportError: no exact equivalent, keras-hub missing, Keras on another backend,
            or `model` built for another spec.
    """
    args = keras_hub_builder_args(spec)
    if model is not None and getattr(model, "spec", None) != spec:
        raise KerasHubExportError("to_keras_hub: the model was built for another spec")
    keras_hub = _import_keras_hub()
    size = args["image_size"]
    backbone = keras_hub.models.EfficientNetBackbone(**args["backbone"])
    # keras-hub 0.32's get_config() drops num_features and stackwise_nores_option, so a saved
    # model would load with a 1280-wide head (and fail) or with residuals skip=False removed.
    # This instance writes them (the class' __init__ reads them back).
    config = backbone.get_config
    backbone.get_config = lambda: {**args["backbone"], **config()}
    classifier = keras_hub.models.EfficientNetImageClassifier(
        backbone,
        preprocessor=keras_hub.models.EfficientNetImageClassifierPreprocessor(
            keras_hub.layers.EfficientNetImageConverter(image_size=(size, size))),
        **args["classifier"])
    if model is not None:
        # Flax's depthwise (k, k, 1, C) and SE (in, out) kernels hold Keras' (k, k, C, 1) and
        # (1, 1, in, out) in the same memory order: a reshape is the whole conversion. The
        # squeezed shapes must agree, so a misaligned pair fails here rather than silently.
        pairs = list(zip(classifier.weights, _flax_arrays(model), strict=True))
        for w, a in pairs:
            if np.squeeze(a).shape != tuple(d for d in w.shape if d != 1):
                raise AssertionError(f"{w.path} {tuple(w.shape)} got an array {a.shape}")
        for w, a in pairs:
            w.assign(a.reshape(w.shape))
    return classifier


def _resolve_rounding(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with keras-hub's width/depth coefficients and channel rounding applied."""
    n = len(cfg["stackwise_kernel_sizes"])
    widths, depths = cfg["stackwise_width_coefficients"], cfg["stackwise_depth_coefficients"]
    rounding = {k: cfg[k] for k in _IDENTITY_ROUNDING}
    if {*widths, *depths} == {1} and rounding["depth_divisor"] == rounding["min_depth"] == 1:
        return cfg  # multiples of 1, coefficients 1: the rounding changes nothing
    # keras-hub's own functions, so these are the channels it builds.
    from keras_hub.src.models.efficientnet.efficientnet_backbone import (
        round_filters,
        round_repeats,
    )

    def width(filters: int, coefficient: float) -> int:
        return int(round_filters(filters, coefficient, **rounding))

    return {**cfg, **_IDENTITY_ROUNDING, "stackwise_width_coefficients": [1.0] * n,
            "stackwise_depth_coefficients": [1.0] * n,
            **{key: [width(f, w) for f, w in zip(cfg[key], widths, strict=True)]
               for key in ("stackwise_input_filters", "stackwise_output_filters")},
            "stackwise_num_repeats": [round_repeats(r, d) for r, d
                                      in zip(cfg["stackwise_num_repeats"], depths, strict=True)],
            "num_features": width(cfg.get("num_features", 1280), widths[-1])}


def _parts(source: Any) -> tuple[dict[str, Any], dict[str, Any], Any, int | None]:
    """(backbone config, classifier settings, image size, built head width) of a source."""
    head: dict[str, Any] = {}
    size = None
    if hasattr(source, "backbone"):  # a keras-hub ImageClassifier
        size = getattr(getattr(source.preprocessor, "image_converter", None), "image_size", None)
        head = {k: getattr(source, k) for k in ("num_classes", "dropout", "pooling",
                                                "activation")}
        source = source.backbone
    if hasattr(source, "get_config"):  # a backbone
        # What keras-hub 0.32's get_config() drops (unless to_keras_hub built it), its layers
        # hold: the head's width, and each "unfused" stack's nores ('v1' stacks ignore it).
        cfg, layers = source.get_config(), {layer.name: layer for layer in source.layers}
        nores = [getattr(layers.get(f"block{i + 1}a_"), "nores", False)
                 for i in range(len(cfg["stackwise_kernel_sizes"]))]
        return {"stackwise_nores_option": nores, **cfg}, head, size, layers["top_conv"].filters
    if "backbone" in source:  # keras_hub_builder_args()
        return source["backbone"], source["classifier"], source["image_size"], None
    return source, {}, None, None


def from_keras_hub(source: Any) -> ArchSpec:
    """The effsearch spec of a keras-hub EfficientNet: the inverse of `to_keras_hub`.

    Args:
        source: an `EfficientNetImageClassifier`, an `EfficientNetBackbone`, a backbone's
            `get_config()` (keras-hub 0.32's lacks `stackwise_nores_option` and
            `num_features`, which a config dict must then carry; a built backbone is read from
            its layers), or `keras_hub_builder_args()`'s dict. The resolution is the image
            converter's size (or "image_size", or a fixed input shape's), num_classes and
            dropout the classifier's; what the source lacks takes `ArchSpec`'s defaults.

    Raises:
        KerasHubExportError: the network is not one effsearch builds (one line saying why).
    """
    cfg, head, size, built_head = _parts(source)
    if missing := sorted(_CONFIG_KEYS - set(cfg)):
        raise KerasHubExportError(f"not an EfficientNetBackbone config: no {', '.join(missing)}")
    n = len(cfg["stackwise_kernel_sizes"])
    # keras-hub indexes its per-stack lists by stack; its defaults are 7 long whatever n is.
    cfg = {k: list(v)[:n] if k.startswith("stackwise_") and isinstance(v, list | tuple) else v
           for k, v in _resolve_rounding(cfg).items()}
    types = cfg["stackwise_block_types"]
    if set(types) - {"v1", "unfused"}:
        raise KerasHubExportError(f"block types {types}: effsearch builds MBConv blocks "
                                  f"('v1', 'unfused'), not 'fused' or 'cba'")
    for key, value in (("pooling", "avg"), ("activation", None)):
        if head.get(key, value) != value:
            raise KerasHubExportError(f"classifier {key}={head[key]!r}: effsearch's head is "
                                      f"{key}={value!r}")
    shape = cfg["input_shape"]
    size = size or (shape[:2] if None not in shape[:2] else None)
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise KerasHubExportError(f"effsearch takes square inputs, not {tuple(size)}")
        size = size[0]
    stages = tuple(BlockSpec(**{f: cfg[key][i] for f, key in _STAGE_KEYS.items()},
                             skip=not cfg["stackwise_nores_option"][i]) for i in range(n))
    defaults = ArchSpec(stages)
    spec = ArchSpec(stages, stem_channels=cfg["stackwise_input_filters"][0],
                    head_channels=built_head or cfg.get("num_features", 1280),
                    resolution=size or defaults.resolution,
                    num_classes=head.get("num_classes", defaults.num_classes),
                    dropout=head.get("dropout", defaults.dropout),
                    drop_connect_rate=cfg["dropout"], in_channels=shape[-1])
    for key, value in keras_hub_builder_args(spec)["backbone"].items():
        got = cfg.get(key)
        if key not in _NOT_COMPARED and ("swish" if got == "silu" else got) != value:
            raise KerasHubExportError(f"keras-hub {key}={got!r}: effsearch builds only "
                                      f"{key}={value!r} (see space/keras_hub_export.py)")
    return spec


# What every config must hold (all a backbone's get_config() has; num_features it drops).
_CONFIG_KEYS = set(keras_hub_builder_args(ArchSpec((BlockSpec(3, 1, 1, 8),)))["backbone"]) - {
    "num_features"}
