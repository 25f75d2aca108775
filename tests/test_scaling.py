import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import archs

from space import (
    EFFICIENTNET_B0,
    PAPER,
    Coefficients,
    CoefficientsError,
    UserError,
    apply_multipliers,
    compound,
    cost,
    decode,
    get_model_spec,
    load_coefficients,
    round_filters,
    round_repeats,
    round_resolution,
    save_coefficients,
    scale,
)
from space.coefficients import parse_coefficients


@pytest.mark.parametrize(("channels", "width", "expected"), [
    (32, 1.1, 32),     # 35.2 -> 32 is within 10%
    (1280, 1.1, 1408),
    (32, 1.2, 40),     # 38.4 -> 40
    (1280, 1.4, 1792),
    (16, 1.2, 24),     # 19.2 -> 16 would lose 16.7%, so one divisor is added
    (3, 1.5, 8),       # minimum is the divisor
    (100, 0.5, 48),
])
def test_round_filters_official_rule(channels, width, expected):
    exact = channels * width
    new = round_filters(channels, width)
    assert new == expected
    assert new % 8 == 0 and new >= 0.9 * exact - 1e-9


@settings(max_examples=300)
@given(st.integers(1, 4096), st.floats(0.05, 8.0))
def test_round_filters_properties(channels, width):
    new = round_filters(channels, width)
    if width == 1:
        assert new == channels
    else:
        assert new % 8 == 0 and new >= 8
        assert new >= 0.9 * channels * width  # never loses more than 10%
        assert new <= max(8, channels * width + 8)


def test_round_repeats_is_ceil():
    assert [round_repeats(r, 1.1) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert round_repeats(3, 1.0) == 3
    assert round_repeats(1, 0.3) == 1
    assert round_repeats(5, 1.2) == 6  # 6.000000000000001 is not bumped to 7


def test_round_resolution():
    assert round_resolution(224, 1.15) == 256  # 257.6 -> nearest multiple of 8
    assert round_resolution(224, 1.15, multiple=4) == 256
    assert round_resolution(224, 1.15, multiple=1) == 258
    assert round_resolution(16, 1.15, multiple=2) == 18
    assert round_resolution(224, 1.0) == 224
    assert round_resolution(8, 0.1) == 8


def test_compound():
    assert compound(0, 1.2, 1.1, 1.15) == (1, 1, 1)
    d, w, r = compound(2, 1.2, 1.1, 1.15)
    assert (d, w, r) == pytest.approx((1.44, 1.21, 1.3225))


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-b4"])
def test_scale_phi_zero_returns_baseline(name):
    base = get_model_spec(name)
    assert scale(base, PAPER, 0) is base


@settings(max_examples=60, deadline=None)
@given(archs(max_resolution=256), st.floats(0.1, 3.0))
def test_scale_grows_every_dimension(base, phi):
    big = scale(base, PAPER, phi)
    assert all(b.repeats >= a.repeats for a, b in zip(base.stages, big.stages, strict=True))
    assert big.resolution >= base.resolution - 8
    assert all(b.kernel == a.kernel and b.stride == a.stride
               for a, b in zip(base.stages, big.stages, strict=True))


def test_paper_phi1_matches_official_b2_depth_and_width():
    # B2 is the phi = 1 model of the official table: d = 1.2, w = 1.1 exactly.
    ours, b2 = scale(EFFICIENTNET_B0, PAPER, 1), get_model_spec("efficientnet-b2")
    assert ours.stages == b2.stages
    assert (ours.stem_channels, ours.head_channels) == (b2.stem_channels, b2.head_channels)
    assert ours.resolution == 256  # 224 * 1.15 = 257.6, rounded to a multiple of 8


def test_realized_ratio_differs_from_nominal():
    base = cost(EFFICIENTNET_B0).macs
    ratio = cost(scale(EFFICIENTNET_B0, PAPER, 1)).macs / base
    assert ratio > PAPER.product  # ceil on depth inflates cost: 2.23 vs 1.92


def test_coefficients_validation_and_deviation():
    assert PAPER.product == pytest.approx(1.92, abs=1e-3)
    assert PAPER.deviation == pytest.approx(-0.04, abs=1e-3)
    with pytest.raises(CoefficientsError, match=r"alpha must be >= 1, got 0\.9"):
        Coefficients(0.9, 1.1, 1.1)
    with pytest.raises(CoefficientsError, match="gamma must be >= 1"):
        Coefficients(1.2, 1.1, float("nan"))
    Coefficients(1.2, 1.1, 1.15, tolerance=0.05)  # 4% off is within 5%
    with pytest.raises(CoefficientsError, match=r"1\.9203 is -4\.0% from the target 2"):
        Coefficients(1.2, 1.1, 1.15, tolerance=0.01)
    assert Coefficients(2.0, 1.0, 1.0, target=2.0, tolerance=0.0).deviation == 0


def test_coefficients_file_round_trip(tmp_path):
    path = save_coefficients(Coefficients(1.3, 1.05, 1.2), tmp_path / "c.json",
                             provenance={"dataset": "digits", "trial": 7})
    loaded = load_coefficients(path)
    assert loaded == Coefficients(1.3, 1.05, 1.2)
    assert loaded.provenance == {"dataset": "digits", "trial": 7}
    assert parse_coefficients(str(path)) == loaded
    assert parse_coefficients("1.2,1.1,1.15") == PAPER


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ('{"alpha": 1.2}', "is not an effsearch coefficients file"),
    ('[1, 2, 3]', "is not an effsearch coefficients file"),
    ('{"format": "effsearch.coefficients", "version": 9, "alpha": 1}', "format version 9"),
    ('{"format": "effsearch.coefficients", "version": 1, "alpha": 1.2}', "lacks beta, gamma"),
    ('{"format": "effsearch.coefficients", "version": 1, "alpha": 0.5, "beta": 1, "gamma": 1}',
     "alpha must be >= 1"),
])
def test_broken_or_foreign_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(CoefficientsError, match=message):
        load_coefficients(path)


def test_missing_file_and_bad_triple():
    with pytest.raises(CoefficientsError, match="not found"):
        parse_coefficients("/nonexistent/c.json")
    with pytest.raises(CoefficientsError, match="alpha,beta,gamma"):
        parse_coefficients("1.2,1.1")


def test_saved_file_is_plain_json(tmp_path):
    record = json.loads(save_coefficients(PAPER, tmp_path / "p.json").read_text())
    assert record["format"] == "effsearch.coefficients"
    assert math.isclose(record["product"], 1.92, rel_tol=1e-3)


def test_channel_divisor_resolves_small_width_multipliers():
    proxy = decode("stem16-mb_r1_k3_s1_e1_c16-mb_r2_k3_s2_e4_c24-head128-res16")
    coarse = scale(proxy, Coefficients(1.2, 1.1, 1.15), 1)
    fine = scale(proxy, Coefficients(1.2, 1.1, 1.15), 1, channel_divisor=2)
    # Multiples of 8 (the official rule): 16 * 1.1 rounds back to 16, beta is lost.
    assert [s.out_channels for s in coarse.stages] == [16, 24]
    assert [s.out_channels for s in fine.stages] == [18, 26] and fine.head_channels == 140
    assert [s.repeats for s in fine.stages] == [s.repeats for s in coarse.stages]
    with pytest.raises(UserError, match="channel divisor must be >= 1"):
        apply_multipliers(proxy, width=1.1, channel_divisor=0)


# ----------------------------------------------------------------------------- matched cost


@settings(max_examples=25, deadline=None)
@given(baseline=archs(max_stages=3, max_channels=48, max_resolution=32),
       shares=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(
           lambda s: sum(s) > 0.05),
       factor=st.sampled_from([2.0, 4.0, 8.0]), key=st.sampled_from(["macs", "activations"]),
       divisor=st.sampled_from([2, 8]))
def test_matched_phi_gives_the_closest_rounded_network(baseline, shares, factor, key, divisor):
    """For random baselines and directions: the member `match_phi` returns is rebuilt by
    `scale` at its phi, its ratio is what it reports, and no phi on an independent grid over
    the scanned range comes closer to the factor."""
    from space.family import match_phi

    total = sum(shares)
    coeffs = Coefficients(*(2.0 ** (s / total / e) for s, e in zip(shares, (1, 2, 2),
                                                                   strict=True)))
    rounding = {"resolution_multiple": 2, "channel_divisor": divisor}
    spec, phi, ratio = match_phi(baseline, coeffs, factor, cost_key=key, **rounding)
    base = getattr(cost(baseline), key)
    assert scale(baseline, coeffs, phi, **rounding) == spec
    assert ratio == getattr(cost(spec), key) / base
    gap = abs(math.log(ratio / factor))
    for t in np.linspace(0, 3 * math.log(factor) / math.log(2) + 0.5, 301):
        try:
            other = getattr(cost(scale(baseline, coeffs, float(t), **rounding)), key) / base
        except UserError:  # past a physical bound
            break
        assert abs(math.log(other / factor)) >= gap - 1e-9, (t, other, ratio)


def _scanned_phi(baseline, coeffs, factor, key, steps=2000, **rounding):
    """The reference `match_phi` bisects: every grid point scanned left to right, stopping
    past a physical bound or three times the factor; of the run of points giving the closest
    network, the middle one (kept here as the rule the fast version must reproduce)."""
    base = getattr(cost(baseline), key)
    target = math.log(factor)
    best_gap, best_value, run, previous = math.inf, None, [], None
    for phi in np.linspace(0.0, 3 * target / math.log(coeffs.target) + 0.5, steps):
        try:
            spec = scale(baseline, coeffs, float(phi), **rounding)
        except UserError:
            break
        value = getattr(cost(spec), key)
        if value > 3 * factor * base:
            break
        gap = abs(math.log(value / base) - target)
        if value == best_value == previous:
            run.append(float(phi))
        elif gap < best_gap - 1e-12:
            best_gap, best_value, run = gap, value, [float(phi)]
        previous = value
    for phi in (run[len(run) // 2], run[0]):
        if getattr(cost(scale(baseline, coeffs, phi, **rounding)), key) == best_value:
            return phi, best_value / base
    raise AssertionError("unreachable")


@settings(max_examples=40, deadline=None)
@given(baseline=archs(max_stages=3, max_channels=48, max_resolution=32),
       shares=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(
           lambda s: sum(s) > 0.05),
       factor=st.sampled_from([1.0, 1.3, 2.0, 4.0, 8.0]),
       key=st.sampled_from(["macs", "params", "activations"]),
       divisor=st.sampled_from([2, 8]), steps=st.sampled_from([2, 7, 300]))
def test_matched_phi_bisection_equals_a_full_scan(baseline, shares, factor, key, divisor,
                                                  steps):
    """`match_phi` bisects the phi grid (cost is non-decreasing for phi > 0); it must return
    exactly the phi and ratio of scanning every grid point, baselines with channel counts and
    resolutions off the rounding multiples included."""
    from space.family import match_phi

    total = sum(shares)
    coeffs = Coefficients(*(2.0 ** (s / total / e) for s, e in zip(shares, (1, 2, 2),
                                                                   strict=True)))
    rounding = {"resolution_multiple": 8, "channel_divisor": divisor}
    _, phi, ratio = match_phi(baseline, coeffs, factor, cost_key=key, steps=steps, **rounding)
    assert (phi, ratio) == _scanned_phi(baseline, coeffs, factor, key, steps, **rounding)
