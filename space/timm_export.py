"""effsearch networks as timm models, exact to the parameter and the logit, and back.

`to_timm(spec)` builds the network through timm's own `EfficientNet` class and arch-def decoder,
so a found family trains in any PyTorch code that takes a timm model. timm's defaults differ
from effsearch's (TF's) semantics in five places, each set here:

- Depth: the arch-def carries each stage's repeats already resolved (depth multiplier 1), so
  timm's ceil-and-spread of a stage's total depth changes nothing.
- Channels: `round_chs_fn=int` (timm rounds to 8 by default: 14 would become 16), the stem fixed.
  timm's inverted-residual block also rounds its expanded width to 8 with no way to ask
  otherwise; where effsearch's `round(in * expansion)` differs, the build runs with that
  rounding in its place (`exact_expansion` in the builder arguments says when).
- Expansion 1: timm's `ir` block keeps a 1x1 expansion conv even at e1; effsearch's has none,
  which is timm's `ds` (depthwise-separable) block.
- Squeeze-excitation: timm rounds `round(in * ratio)`, effsearch truncates
  `max(1, int(in * ratio))` (at 22 input channels and 0.25: 6 against 5).
- Padding and BatchNorm: TF's SAME padding (timm's `pad_type="same"`, as its `tf_` models), BN
  eps 1e-3 and momentum 0.01 (PyTorch's name for TF's decay 0.99).

Every build is checked against the spec (expanded and SE widths per block) and refused in one
line if timm made anything else. timm and torch are imported only when a model is built;
`timm_builder_args` (what a family file records) needs neither.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from space.arch_string import ArchStringError, decode_block, encode_block
from space.errors import UserError
from space.spec import ArchSpec, BlockSpec

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch's momentum is 1 - TF's decay (0.99)
# timm's data config for a member: ImageNet's statistics and timm's EfficientNet preprocessing,
# the defaults for a network to be trained on ImageNet-like data (pass others to `to_timm`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INSTALL = "pip install 'effsearch[timm]' && pip install --no-deps 'timm>=1.0,<2'"


class TimmExportError(UserError):
    """A network timm cannot build exactly, or a timm definition effsearch cannot express."""


def timm_block_string(stage: BlockSpec) -> str:
    """The timm arch-def string of one stage: effsearch's grammar with timm's block names."""
    text = encode_block(stage)
    if stage.expansion == 1:  # no expansion conv: timm's depthwise-separable block
        return text.replace("mb_", "ds_", 1).replace("_e1_", "_", 1)
    return text.replace("mb_", "ir_", 1)


def timm_arch_def(spec: ArchSpec) -> list[list[str]]:
    """timm's `arch_def` (one list of block strings per stage), repeats resolved."""
    return [[timm_block_string(stage)] for stage in spec.stages]


def _timm_make_divisible(value: float, divisor: int = 8) -> int:
    """timm's `make_divisible` at its defaults (round_limit 0.9), restated so that a family file
    can say whether a member needs `exact_expansion` without importing torch; checked against
    timm's in tests/test_timm_export.py."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def needs_exact_expansion(spec: ArchSpec) -> bool:
    """True when timm's expanded width (rounded to 8) differs from effsearch's in some block."""
    return any(stage.expansion != 1
               and _timm_make_divisible(c_in * stage.expansion) != stage.expanded(c_in)
               for _, c_in, _, stage in spec.blocks())


def check_se_widths(spec: ArchSpec) -> None:
    """Refuses (one line) a spec whose SE widths timm cannot build: timm sizes SE from the
    expanded width, `expanded * (ratio / expansion)`, which equals effsearch's `in * ratio`
    only while `expanded == in * expansion`; a fractional expansion rounds that away (stem 12,
    e1.2: timm 2 SE channels, effsearch 3)."""
    for idx, c_in, _, stage in spec.blocks():
        if stage.se_ratio > 0:
            timm = se_round(stage.expanded(c_in) * (stage.se_ratio / stage.expansion))
            if timm != stage.se_channels(c_in):
                raise TimmExportError(
                    f"block {idx}: timm sizes its SE from the expanded width and would build "
                    f"{timm} channels where the spec has {stage.se_channels(c_in)} (expansion "
                    f"{stage.expansion:g} at {c_in} input channels)")


def pretrained_cfg(spec: ArchSpec, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> dict[str, Any]:
    """The `pretrained_cfg` timm's `resolve_data_config` reads: the member's resolution and
    normalisation, timm's EfficientNet crop and interpolation."""
    return {"architecture": "effsearch", "input_size": (spec.in_channels, spec.resolution,
                                                        spec.resolution),
            "num_classes": spec.num_classes, "mean": tuple(mean), "std": tuple(std),
            "interpolation": "bicubic", "crop_pct": 0.875, "first_conv": "conv_stem",
            "classifier": "classifier"}


def timm_builder_args(spec: ArchSpec) -> dict[str, Any]:
    """The arguments of timm's `EfficientNet` for `spec`, as JSON (a family file records them).

    Callables are named: `round_chs_fn` "int" (the identity on channel counts), `act_layer`
    "swish", `norm_layer` BatchNorm2d with `bn_eps`/`bn_momentum`, `se_rd_round_fn`
    effsearch's truncation; `exact_expansion` says the build needs effsearch's expanded widths.

    Raises:
        TimmExportError: SE widths timm cannot build (`check_se_widths`).
    """
    check_se_widths(spec)
    return {"arch_def": timm_arch_def(spec), "num_classes": spec.num_classes,
            "num_features": spec.head_channels, "in_chans": spec.in_channels,
            "stem_size": spec.stem_channels, "fix_stem": True, "round_chs_fn": "int",
            "pad_type": "same", "act_layer": "swish", "bn_eps": BN_EPS,
            "bn_momentum": BN_MOMENTUM, "se_rd_round_fn": "max(1, int(x + 1e-6))",
            "drop_rate": spec.dropout, "drop_path_rate": spec.drop_connect_rate,
            "exact_expansion": needs_exact_expansion(spec),
            "pretrained_cfg": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in pretrained_cfg(spec).items()}}


def se_round(x: float) -> int:
    """effsearch's SE width from timm's value: timm computes expanded * (ratio / expansion),
    which can land a hair under the integer that effsearch's in * ratio is; then truncate."""
    return max(1, int(x + 1e-6))


def _import_timm() -> Any:
    from space.torchvision_stand_in import use_torchvision_stand_in_if_broken

    try:
        import torch  # noqa: F401
    except ImportError:
        raise TimmExportError(f"PyTorch is not installed; {INSTALL}") from None
    use_torchvision_stand_in_if_broken()
    try:
        import timm
    except ImportError:
        raise TimmExportError(f"timm is not installed; {INSTALL}") from None
    # The builder arguments are timm 1.x's (checked against 1.0.31); another major may differ.
    if not timm.__version__.startswith("1."):
        raise TimmExportError(f"timm {timm.__version__} is installed; the export is built for "
                              f"timm 1.x: {INSTALL}")
    return timm


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _effsearch_expansion() -> Iterator[None]:
    """timm's expanded widths rounded as effsearch's while a model is built: timm's
    `InvertedResidual` calls `make_divisible(in * exp_ratio)` with no divisor argument. The
    patch is module-wide: the lock keeps two builds in this process from interleaving it (a
    timm model built meanwhile in another thread without `to_timm` would still see it)."""
    from timm.models import _efficientnet_blocks as blocks

    with _PATCH_LOCK:
        original = blocks.make_divisible
        blocks.make_divisible = lambda value, *_, **__: max(1, int(value + 0.5))
        try:
            yield
        finally:
            blocks.make_divisible = original


def _check_widths(spec: ArchSpec, net: Any) -> None:
    for (idx, c_in, _, stage), block in zip(spec.blocks(), _timm_blocks(net), strict=True):
        mid = block.conv_dw.out_channels
        se = block.se.conv_reduce.out_channels if hasattr(block.se, "conv_reduce") else 0
        want = (stage.expanded(c_in), stage.se_channels(c_in))
        if (mid, se) != want:
            raise TimmExportError(f"timm built block {idx} with {mid} expanded and {se} SE "
                                  f"channels where the spec has {want[0]} and {want[1]}")


def _timm_blocks(net: Any) -> list[Any]:
    return [block for stage in net.blocks for block in stage]


def to_timm(spec: ArchSpec, model: Any = None, *, mean: Sequence[float] = IMAGENET_MEAN,
            std: Sequence[float] = IMAGENET_STD) -> Any:
    """`spec` as a timm `EfficientNet` (a `torch.nn.Module`), in training mode.

    Args:
        spec: the network, e.g. `space.scale(None, space.load_coefficients(path), phi)`.
        model: an effsearch `EfficientNet` of the same spec, whose weights and BatchNorm
            statistics are copied in; None keeps timm's initialisation.
        mean, std: the normalisation timm's data config gives (`pretrained_cfg`).

    Where torchvision cannot be imported (CPU-only machines), timm's import of it is served
    by `space.torchvision_stand_in` for the rest of the process.

    Raises:
        TimmExportError: timm or PyTorch missing, a model of another spec, or a build that
            is not the spec (one line).
    """
    _import_timm()
    import torch
    from timm.layers import get_act_layer
    from timm.models.efficientnet import EfficientNet, SqueezeExcite, decode_arch_def

    if model is not None and getattr(model, "spec", None) != spec:
        raise TimmExportError("the model to copy weights from was built for another spec")
    check_se_widths(spec)
    exact = _effsearch_expansion() if needs_exact_expansion(spec) else contextlib.nullcontext()
    with exact:
        net = EfficientNet(
            decode_arch_def(timm_arch_def(spec)), num_classes=spec.num_classes,
            num_features=spec.head_channels, in_chans=spec.in_channels,
            stem_size=spec.stem_channels, fix_stem=True, round_chs_fn=int, pad_type="same",
            act_layer=get_act_layer("swish"),
            norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM),
            se_layer=functools.partial(SqueezeExcite, rd_round_fn=se_round),
            drop_rate=spec.dropout,
            drop_path_rate=spec.drop_connect_rate)
    _check_widths(spec, net)
    # timm's models carry these as plain attributes (torch's stubs type Module attributes).
    net.pretrained_cfg = net.default_cfg = pretrained_cfg(spec, mean, std)  # type: ignore[assignment]
    if model is not None:
        copy_weights(model, net)
    return net


def copy_weights(model: Any, net: Any) -> None:
    """Copies an effsearch `EfficientNet`'s parameters and BatchNorm statistics into the timm
    model `to_timm` built for the same spec (NHWC/HWIO kernels to PyTorch's OIHW)."""
    import numpy as np
    import torch

    def put(dst: Any, value: Any, axes: tuple[int, ...] | None = None) -> None:
        array = np.asarray(value[...], dtype=np.float32)
        array = array.transpose(axes) if axes else array
        if tuple(dst.shape) != array.shape:
            raise TimmExportError(f"weight shape {array.shape} does not fit timm's "
                                  f"{tuple(dst.shape)}")
        dst.copy_(torch.from_numpy(np.array(array)))  # a writable copy

    def conv(dst: Any, src: Any) -> None:  # (kh, kw, in, out) -> (out, in, kh, kw)
        put(dst.weight, src.kernel, (3, 2, 0, 1))

    def dense(dst: Any, src: Any) -> None:  # Linear (in, out) -> conv 1x1 or Linear (out, in)
        put(dst.weight, src.kernel[...].T.reshape(tuple(dst.weight.shape)))
        put(dst.bias, src.bias)

    def bn(dst: Any, src: Any) -> None:
        for name, value in (("weight", src.scale), ("bias", src.bias),
                            ("running_mean", src.mean), ("running_var", src.var)):
            put(getattr(dst, name), value)

    with torch.no_grad():
        conv(net.conv_stem, model.stem)
        bn(net.bn1, model.stem_bn)
        for block, src in zip(_timm_blocks(net), model.blocks, strict=True):
            if src.expand is not None:  # timm's ir: conv_pw, bn1, conv_dw, bn2, se, pwl, bn3
                conv(block.conv_pw, src.expand)
                bn(block.bn1, src.expand_bn)
                dw_bn, project, project_bn = block.bn2, block.conv_pwl, block.bn3
            else:  # timm's ds: conv_dw, bn1, se, conv_pw, bn2
                dw_bn, project, project_bn = block.bn1, block.conv_pw, block.bn2
            conv(block.conv_dw, src.depthwise)
            bn(dw_bn, src.depthwise_bn)
            if src.se is not None:
                dense(block.se.conv_reduce, src.se.reduce)
                dense(block.se.conv_expand, src.se.expand)
            conv(project, src.project)
            bn(project_bn, src.project_bn)
        conv(net.conv_head, model.head)
        bn(net.bn2, model.head_bn)
        dense(net.classifier, model.classifier)


def from_timm(arch_def: Sequence[Sequence[str]], stem_size: int = 32, num_features: int = 1280,
              resolution: int = 224, num_classes: int = 1000, *, in_chans: int = 3,
              dropout: float = 0.2, drop_path_rate: float = 0.2) -> ArchSpec:
    """A timm arch definition (as `to_timm` takes, repeats resolved) as an effsearch spec.

    With `timm_builder_args(spec)`'s arch_def, stem_size, num_features, num_classes,
    in_chans, drop_rate and drop_path_rate and the spec's resolution it gives `spec` back. Read the
    network as TF-SAME padded (timm's `tf_` models); timm's other EfficientNets pad
    symmetrically, which effsearch's model does not compute.

    Raises:
        TimmExportError: a block effsearch cannot express (one line, naming it).
    """
    stages = []
    for stage in arch_def:
        if isinstance(stage, str):
            raise TimmExportError(f"arch_def must be a list of lists of block strings, got a "
                                  f"bare string {stage!r} for a stage")
        for text in stage:
            stages.append(_from_timm_block(str(text)))
    if not stages:
        raise TimmExportError("arch_def has no blocks")
    try:
        return ArchSpec(tuple(stages), stem_channels=stem_size, head_channels=num_features,
                        resolution=resolution, num_classes=num_classes, dropout=dropout,
                        drop_connect_rate=drop_path_rate, in_channels=in_chans)
    except UserError as e:
        raise TimmExportError(f"timm network: {e}") from None


def _from_timm_block(text: str) -> BlockSpec:
    kind, _, rest = text.partition("_")
    tokens = rest.split("_")
    expansions = [t[1:] for t in tokens if t[:1] == "e" and t[1:2].isdigit()]
    try:
        expansion = float(expansions[0]) if expansions else 1.0
    except ValueError:
        raise TimmExportError(f"timm block '{text}': bad expansion '{expansions[0]}'") from None
    if kind == "ir":
        if expansion == 1:
            raise TimmExportError(f"timm block '{text}': an ir block with e1 keeps a 1x1 "
                                  "expansion conv that effsearch's expansion-1 block lacks; "
                                  "write it as ds")
    elif kind == "ds":  # timm ignores an expansion on ds blocks and writes e1 on its own
        if expansion != 1:
            raise TimmExportError(f"timm block '{text}': a ds block does not expand")
        if not expansions:
            rest += "_e1"
    else:
        raise TimmExportError(f"timm block '{text}': effsearch builds MBConv blocks only "
                              f"(timm's ir and ds); '{kind}' has no equivalent")
    try:
        return decode_block(f"mb_{rest}")
    except ArchStringError as e:
        raise TimmExportError(f"timm block '{text}': {e}") from None


def timm_snippet(spec: ArchSpec, title: str) -> str:
    """A runnable Python snippet that builds `spec` in timm alone (no effsearch needed)."""
    args = timm_builder_args(spec)
    arch_def = ",\n    ".join(json.dumps(stage) for stage in args["arch_def"])
    cfg = pretrained_cfg(spec)
    lines = [f"# {title}", "import functools", "", "import torch",
             "from timm.layers import get_act_layer",
             *(["from timm.models import _efficientnet_blocks"] if args["exact_expansion"]
               else []),
             "from timm.models.efficientnet import EfficientNet, SqueezeExcite, "
             "decode_arch_def", "",
             f"arch_def = [\n    {arch_def},\n]"]
    build = (
        "model = EfficientNet(\n"
        "    decode_arch_def(arch_def), "
        f"num_classes={spec.num_classes}, num_features={spec.head_channels},\n"
        f"    in_chans={spec.in_channels}, stem_size={spec.stem_channels}, fix_stem=True, "
        "round_chs_fn=int, pad_type=\"same\",\n"
        "    act_layer=get_act_layer(\"swish\"),\n"
        f"    norm_layer=functools.partial(torch.nn.BatchNorm2d, eps={BN_EPS}, "
        f"momentum={BN_MOMENTUM}),\n"
        "    se_layer=functools.partial(SqueezeExcite, rd_round_fn=lambda x: "
        "max(1, int(x + 1e-6))),\n"
        f"    drop_rate={spec.dropout}, drop_path_rate={spec.drop_connect_rate})")
    if args["exact_expansion"]:
        lines += ["# timm rounds expanded widths to 8; this member's are not: round as effsearch",
                  "divisible = _efficientnet_blocks.make_divisible",
                  "_efficientnet_blocks.make_divisible = lambda v, *a, **k: max(1, int(v + 0.5))",
                  build, "_efficientnet_blocks.make_divisible = divisible"]
    else:
        lines += [build]
    lines += [f"model.pretrained_cfg = model.default_cfg = {_literal(cfg)}",
              "print(f\"{sum(p.numel() for p in model.parameters()):,} params at "
              f"{spec.resolution} px\")"]
    return "\n".join(lines) + "\n"


def _literal(mapping: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in mapping.items()) + "}"
