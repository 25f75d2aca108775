import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from hypothesis import given, settings
from jax.extend import core as jcore
from strategies import archs

from space import EFFICIENTNET_B0, build_model, cost, cost_breakdown, decode, get_model_spec
from space.cost import batchnorm_statistics

GOLDEN = {k: v for k, v in json.loads(
    (Path(__file__).parent / "golden" / "complexity.json").read_text()).items()
    if not k.startswith("_")}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_named_models_match_public_numbers(name):
    spec, gold = get_model_spec(name), GOLDEN[name]
    c = cost(spec)
    assert c.params == gold["params"]
    assert (spec.stem_channels, spec.head_channels) == (gold["stem"], gold["head"])
    if "macs" in gold:  # pycls goldens: exact
        assert (c.macs, c.activations) == (gold["macs"], gold["activations"])
    else:  # torchvision publishes GMACs to 3 decimals
        assert round(c.macs / 1e9, 3) == gold["gmacs_3dp"]
    # Keras totals add the BatchNorm running statistics and its 7 normalization constants.
    assert c.params + batchnorm_statistics(spec) + 7 == gold["keras_total"]


def test_b0_headline_numbers():
    c = cost(EFFICIENTNET_B0)
    assert c.params == 5_288_548
    assert round(c.macs / 1e9, 3) == 0.386
    assert round(c.activations / 1e6, 1) == 6.7
    assert EFFICIENTNET_B0.num_blocks == 16


def test_b0_spatial_sizes_and_classifier():
    parts = cost_breakdown(EFFICIENTNET_B0)
    assert parts[0].out_size == 112
    stage_ends = [p.out_size for p in parts[1:-1]]
    assert [stage_ends[i] for i in (0, 2, 4, 7, 10, 14, 15)] == [112, 56, 28, 14, 14, 7, 7]
    head = parts[-1]
    assert head.in_size == 7
    fc = 1280 * 1000 + 1000
    assert head.params == 320 * 1280 + 2 * 1280 + fc


# B0's first two blocks, counted by hand, layer by layer, from the block definition (facts
# sheet §1.1 and §2: MBConv = [1x1 expand + BN] -> kxk depthwise + BN -> SE on the pooled
# vector, width int(0.25 * block *input* channels), two biased 1x1 convs -> 1x1 project + BN;
# SAME padding, so a stride-2 output is ceil(size / 2)). Conventions (pycls): a conv costs
# k*k*c_in*c_out/groups MACs per output pixel, a bias one add per output; BatchNorm has 2
# trainable params per channel; activations are the output elements of every conv/linear.
#
# block0 = MBConv1 k3 s1, 32 -> 16 channels at 112x112 (12,544 px), no expansion, c_se = 8:
#   depthwise 3x3 on 32 ch:  weights 9*32 = 288,   MACs 288*12,544 = 3,612,672, acts 32*12,544
#   BN(32):                  params 64
#   SE reduce 32->8 (+bias): params 32*8+8 = 264,  MACs 264,  acts 8
#   SE expand 8->32 (+bias): params 8*32+32 = 288, MACs 288,  acts 32
#   project 1x1 32->16:      weights 512,          MACs 512*12,544 = 6,422,528, acts 16*12,544
#   BN(16):                  params 32
# Keras' summary of EfficientNetB0 lists the same layers: block1a_dwconv 288, block1a_se_reduce
# 264, block1a_se_expand 288, block1a_project_conv 512 (its BN rows add the running stats).
B0_BLOCK0 = dict(
    in_size=112, out_size=112, in_channels=32, out_channels=16,
    params=288 + 64 + 264 + 288 + 512 + 32,  # 1,448
    macs=288 * 112 * 112 + 264 + 288 + 512 * 112 * 112,  # 10,035,752
    activations=32 * 112 * 112 + 8 + 32 + 16 * 112 * 112)  # 602,152
# block1 = MBConv6 k3 s2, 16 -> 24 channels, 112 -> 56 (3,136 px), c_mid = 6*16 = 96, c_se =
# int(0.25 * 16) = 4 (the block input, not c_mid):
#   expand 1x1 16->96 at 112x112: weights 1,536, MACs 1,536*12,544 = 19,267,584, acts 96*12,544
#   BN(96):                       params 192
#   depthwise 3x3/2 on 96 ch:     weights 864,   MACs 864*3,136 = 2,709,504,     acts 96*3,136
#   BN(96):                       params 192
#   SE 96->4->96 (+biases):       params (96*4+4) + (4*96+96) = 868, MACs 868, acts 4+96
#   project 1x1 96->24 at 56x56:  weights 2,304, MACs 2,304*3,136 = 7,225,344,   acts 24*3,136
#   BN(24):                       params 48
# Keras: block2a_expand_conv 1,536, block2a_dwconv 864, block2a_se_reduce 388,
# block2a_se_expand 480, block2a_project_conv 2,304.
B0_BLOCK1 = dict(
    in_size=112, out_size=56, in_channels=16, out_channels=24,
    params=1536 + 192 + 864 + 192 + 868 + 2304 + 48,  # 6,004
    macs=1536 * 112 * 112 + 864 * 56 * 56 + 868 + 2304 * 56 * 56,  # 29,203,300
    activations=96 * 112 * 112 + 96 * 56 * 56 + 4 + 96 + 24 * 56 * 56)  # 1,580,644


@pytest.mark.parametrize(("index", "expected"), [(1, B0_BLOCK0), (2, B0_BLOCK1)],
                         ids=["mbconv1-se-s1", "mbconv6-se-s2"])
def test_b0_blocks_match_a_count_by_hand(index, expected):
    part = cost_breakdown(EFFICIENTNET_B0)[index]
    assert part.name == f"block{index - 1}"
    assert {k: getattr(part, k) for k in expected} == expected


def test_ragged_stride_two_block_by_hand():
    # MBConv4 k5 s2, 8 -> 12 channels, no SE, on a 7x7 map: SAME gives ceil(7/2) = 4 (16 px).
    # c_mid = 32: expand 8*32 = 256 weights at 49 px; depthwise 25*32 = 800 at 16 px;
    # project 32*12 = 384 at 16 px; BN 2*32 + 2*32 + 2*12.
    spec = decode("stem8-mb_r1_k5_s2_e4_c12-head16-res14-in1")  # stem: 14 -> 7
    part = cost_breakdown(spec)[1]
    assert (part.in_size, part.out_size) == (7, 4)
    assert part.params == 256 + 800 + 384 + 64 + 64 + 24
    assert part.macs == 256 * 49 + 800 * 16 + 384 * 16
    assert part.activations == 32 * 49 + 32 * 16 + 12 * 16


def _traced(fn, *args) -> tuple[int, int, tuple[int, ...]]:
    """(MACs, activations, output shape) of the convs and matmuls `fn` runs, read off its jaxpr.

    An output element of a conv is a dot product over one kernel window of one group:
    rhs.size / c_out multiply-adds; of a dot_general, over the contracted lhs dims.
    """
    closed = jax.make_jaxpr(fn)(*args)
    macs = acts = 0

    def walk(jaxpr) -> None:
        nonlocal macs, acts
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name in ("conv_general_dilated", "dot_general"):
                out = eqn.outvars[0].aval
                lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
                if name == "conv_general_dilated":
                    per_output = math.prod(rhs) // rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
                else:
                    (contracting, _), _ = eqn.params["dimension_numbers"]
                    per_output = math.prod(lhs[i] for i in contracting)
                macs += out.size * per_output
                acts += out.size
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jcore.Jaxpr):
                        walk(sub)

    walk(closed.jaxpr)
    return macs, acts, tuple(closed.out_avals[0].shape)


def _bias_adds(module) -> int:
    # The model's only biased layers (SE and classifier) act on pooled 1x1 maps at batch 1:
    # one add per bias entry.
    return sum(int(m.bias.size) for _, m in nnx.iter_graph(module)
               if isinstance(m, nnx.Linear | nnx.Conv) and m.bias is not None)


def _run(module, x):
    graphdef, state = nnx.split(module)
    return _traced(lambda s, x: nnx.merge(graphdef, s)(x), state, x)


def _params(module) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


@settings(max_examples=25, deadline=None)
@given(archs(max_stages=3, max_channels=24, max_repeats=2, max_resolution=40))
def test_every_part_matches_the_flax_model_layer_by_layer(spec):
    """Each part against its own Flax submodule: parameters from the model's state, MACs and
    activations from the convs/matmuls in the traced forward pass, sizes and channels from the
    traced shapes (each part fed the previous part's traced output). Abstract: no compile."""
    model = nnx.eval_shape(lambda: build_model(spec, rngs=nnx.Rngs(0), depthwise="xla"))
    model.eval()
    parts = cost_breakdown(spec)
    x = jax.ShapeDtypeStruct((1, spec.resolution, spec.resolution, spec.in_channels),
                             jnp.float32)
    whole_macs, whole_acts, logits = _run(model, x)
    whole_macs += _bias_adds(model)
    assert logits == (1, spec.num_classes)
    seen = [0, 0, 0]  # MACs, params, activations of the stem and blocks
    for part, module in zip(parts[:-1], [model.stem, *model.blocks], strict=True):
        macs, acts, shape = _run(module, x)
        params = _params(module)
        if module is model.stem:
            params += _params(model.stem_bn)
        got = (x.shape[1], shape[1], x.shape[3], shape[3], macs + _bias_adds(module), params,
               acts)
        assert got == part[1:], part.name
        assert shape[1] == shape[2]
        seen = [a + b for a, b in zip(seen, (got[4], got[5], got[6]), strict=True)]
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
    head = parts[-1]  # everything the model does after the last block
    assert (head.in_size, head.in_channels) == (x.shape[1], x.shape[3])
    assert (head.out_size, head.out_channels) == (1, logits[1])
    assert (head.macs, head.params, head.activations) == (
        whole_macs - seen[0], _params(model) - seen[1], whole_acts - seen[2])


@settings(max_examples=100)
@given(archs(max_resolution=128))
def test_params_ignore_resolution_and_macs_grow_with_it(spec):
    total = cost(spec)
    assert cost(spec.replace(resolution=spec.resolution + 8)).params == total.params
    assert cost(spec.replace(resolution=spec.resolution + 8)).macs > total.macs


def test_resolution_not_a_multiple_of_32_pays_for_ragged_maps():
    # 260 px runs 130-65-33-17-9: the last stages compute on 9x9 instead of 8x8.
    b2 = get_model_spec("efficientnet-b2")
    assert cost(b2).macs / cost(b2.replace(resolution=256)).macs > 1.15
