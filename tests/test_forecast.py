"""The forecast of the best direction at a factor not trained, on synthetic laws with a known
answer (search/forecast.py)."""

import math

import numpy as np
import pytest

from search.forecast import check, forecast
from search.manifold import Simplex, shares_of

LATTICE = [tuple(float(v) for v in shares_of(Simplex().coefficients(p)).values())
           for p in Simplex().grid(0.1)]
A = np.array([0.010, 0.030, 0.020])  # per-dimension gain per doubling, at first
B = np.array([0.0005, 0.0060, 0.0030])  # and how fast it saturates: depth slowest


def separable_law(shares, factor):
    x = np.asarray(shares) * math.log2(factor)
    return 0.5 + float(A @ x - B @ x**2)


def points_of(law, factors, noise, seed=0, seeds=2):
    rng = np.random.default_rng(seed)
    return [(s, f, law(s, f) + noise * rng.standard_normal())
            for f in factors for s in LATTICE for _ in range(seeds)]


def true_best(law, factor):
    return max(LATTICE, key=lambda s: law(s, factor))


def test_the_separable_fit_extrapolates_a_best_direction_that_moves_with_scale():
    # The law's best direction at 2x and 4x is not its best at 16x: a forecast that only
    # repeated the fitted factors' best would miss it.
    assert true_best(separable_law, 16) != true_best(separable_law, 4)
    result = forecast(points_of(separable_law, (2, 4), noise=0.002), 16, LATTICE,
                      resamples=50)
    assert result.parameters == 7 and result.fitted_on == {2.0: 132, 4.0: 132}
    best = np.array(true_best(separable_law, 16))
    assert np.abs(np.array(result.best) - best).max() <= 0.1 + 1e-9
    truth = [separable_law(s, 16) for s in result.candidates]
    assert np.corrcoef(np.argsort(np.argsort(truth)),
                       np.arange(len(truth))[::-1])[0, 1] > 0.9
    # The interval covers the truth for most directions and the top direction wins often.
    inside = [lo <= t <= hi for lo, t, hi in zip(result.low, truth, result.high, strict=True)]
    assert np.mean(inside) > 0.8
    assert result.p_best[0] == max(result.p_best) and sum(result.p_best) == pytest.approx(1)


def test_more_noise_widens_the_interval():
    quiet = forecast(points_of(separable_law, (2, 4), noise=0.001), 16, LATTICE, resamples=40)
    loud = forecast(points_of(separable_law, (2, 4), noise=0.01), 16, LATTICE, resamples=40)
    width = [np.mean(np.array(f.high) - np.array(f.low)) for f in (quiet, loud)]
    assert width[1] > 2 * width[0]
    assert max(loud.p_best) < max(quiet.p_best) + 1e-9


def test_the_iso_cost_fit_extrapolates_per_factor_quadratics():
    def law(shares, factor):  # a quadratic whose peak moves linearly in log2(f)
        peak = np.array([0.2, 0.6, 0.2]) + (math.log2(factor) - 1) * np.array([0.1, -0.1, 0])
        return 0.8 - 0.5 * float(((np.asarray(shares) - peak) ** 2).sum())

    result = forecast(points_of(law, (2, 4), noise=0.001), 16, LATTICE, model="iso-cost",
                      resamples=30)
    assert result.parameters == 12
    assert np.abs(np.array(result.best) - np.array(true_best(law, 16))).max() <= 0.1 + 1e-9


@pytest.mark.parametrize(("points", "model", "match"), [
    ([((0.2, 0.5, 0.3), 2.0, 0.5)] * 10, "separable", "two factors at least"),
    ([((0.2, 0.5, 0.3), 2.0, 0.5), ((0.2, 0.5, 0.3), 4.0, 0.6)], "separable",
     "7 parameters and only 2"),
    (points_of(separable_law, (2,), 0.0)[:6] + points_of(separable_law, (4,), 0.0)[:4],
     "iso-cost", "six directions"),
    ([], "cubic", "must be one of"),
])
def test_what_cannot_be_fitted_says_why(points, model, match):
    assert match in check(points, model)
    with pytest.raises(ValueError, match=match):
        forecast(points, 16, LATTICE, model=model)


def test_trainings_stopped_late_count_with_an_offset_and_early_ones_are_left_out():
    """Halving leaves most trainings at 1 or 3 of 4 epochs. Those at 3 inform the fit with an
    offset for their budget; those at 1 rank directions another way (here: the law upside
    down), and counting them would turn the forecast around."""
    rng = np.random.default_rng(1)
    full = [(s, f, separable_law(s, f), 4) for f in (2, 4) for s in LATTICE[::3]]
    late = [(s, f, separable_law(s, f) - 0.05 + 0.001 * rng.standard_normal(), 3)
            for f in (2, 4) for s in LATTICE]
    early = [(s, f, 0.3 - separable_law(s, f), 1) for f in (2, 4) for s in LATTICE for _ in "xyz"]
    mixed = forecast(full[:4] + full[-4:] + late + early, 16, LATTICE, resamples=20)
    assert mixed.parameters == 8  # 7 and one offset: the 1-epoch trainings are not fitted
    assert mixed.fitted_on == {2.0: 4 + len(LATTICE), 4.0: 4 + len(LATTICE)}
    assert mixed.left_out == len(early) and mixed.summary()["left_out"] == len(early)
    alone = forecast(points_of(separable_law, (2, 4), noise=0.0), 16, LATTICE, resamples=0)
    assert np.abs(np.array(mixed.best) - np.array(alone.best)).max() <= 0.1 + 1e-9
    assert mixed.predicted[0] == pytest.approx(alone.predicted[0], abs=0.005)
    why = check(full[:4] + full[-2:] + [(LATTICE[0], 2, 0.5, 1)] * 3, "separable")
    assert "7 parameters and only 6 trainings (3 stopped before 50%" in why


def test_a_forecast_from_a_handful_of_trainings_says_its_order_is_a_shortlist():
    """A table's worth of trainings pins the fit; what a factor search leaves (a few
    directions at its lowest rung, one climbed) does not, and the forecast says so."""
    full = forecast(points_of(separable_law, (2, 4), noise=0.002), 16, LATTICE, resamples=50)
    assert full.spread > 0 and not full.vague and full.summary()["vague"] is False
    few = points_of(separable_law, (2,), noise=0.002, seeds=1)[::8]
    climbed = max(few, key=lambda p: p[2])[0]
    thin = forecast([*few, (climbed, 4.0, separable_law(climbed, 4))], 16, LATTICE,
                    resamples=50)
    assert thin.vague and thin.summary()["vague"] is True
    assert not forecast(few + points_of(separable_law, (4,), 0.002, seeds=1), 16, LATTICE,
                        resamples=0).vague  # no intervals, nothing to judge by


def test_front_says_when_a_forecast_is_only_a_shortlist(monkeypatch, capsys):
    from search import forecast as forecast_module
    from search import study_commands

    few = points_of(separable_law, (2,), noise=0.002, seeds=1)[::8]
    thin = forecast([*few, (few[0][0], 4.0, 0.6)], 16, LATTICE, resamples=50)
    monkeypatch.setattr(forecast_module, "study_forecast", lambda *args: thin)
    study_commands._print_forecast("s", [], None, 16.0)
    text = " ".join(capsys.readouterr().out.split())
    assert "wider than the fitted trainings' whole range" in text and "shortlist" in text
