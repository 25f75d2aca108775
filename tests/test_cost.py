import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from strategies import archs

from space import EFFICIENTNET_B0, cost, cost_breakdown, get_model_spec
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


@settings(max_examples=200)
@given(archs(max_resolution=128))
def test_breakdown_sums_to_total_and_params_ignore_resolution(spec):
    parts = cost_breakdown(spec)
    total = cost(spec)
    assert sum(p.macs for p in parts) == total.macs
    assert sum(p.params for p in parts) == total.params
    assert sum(p.activations for p in parts) == total.activations
    assert cost(spec.replace(resolution=spec.resolution + 8)).params == total.params
    assert cost(spec.replace(resolution=spec.resolution + 8)).macs > total.macs


def test_resolution_not_a_multiple_of_32_pays_for_ragged_maps():
    # 260 px runs 130-65-33-17-9: the last stages compute on 9x9 instead of 8x8.
    b2 = get_model_spec("efficientnet-b2")
    assert cost(b2).macs / cost(b2.replace(resolution=256)).macs > 1.15
