"""The replay test bed: the real controller run against a recorded table, without training.

The table here is synthetic (a smooth score over the share simplex plus seed noise, rising
curves, recorded times); the real one is experiments/results/mnist5k/direction_table.jsonl.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from toys import TINY_ARCH

from search.config import CoefficientSearch, Objective, SearchConfig
from search.halving import Halving
from search.manifold import Simplex, shares_of
from search.replay import SimulatedClock, Table, replay
from space import UserError
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig

EPOCHS = 4
PEAK = (0.2, 0.5, 0.3)  # the synthetic table's best direction


def synthetic_table(factor: float, seeds: int = 2, noise: float = 0.003,
                    epochs: int = EPOCHS) -> Table:
    rows = []
    simplex = Simplex()
    rng = np.random.default_rng(0)
    for params in simplex.grid(0.1):
        coeffs = simplex.coefficients(params)
        shares = [float(v) for v in shares_of(coeffs).values()]
        score = 0.95 - 0.4 * sum((a - b) ** 2 for a, b in zip(shares, PEAK, strict=True))
        for seed in range(seeds):
            final = score + noise * rng.standard_normal()
            curve = [final * (1 - math.exp(-1.5 * e)) / (1 - math.exp(-1.5 * epochs))
                     for e in range(1, epochs + 1)]
            rows.append({"factor": factor, "part": f"s{seed}", "seed": seed, "shares": shares,
                         "alpha": coeffs.alpha, "beta": coeffs.beta, "gamma": coeffs.gamma,
                         "phi": 1.0, "arch": "x", "resolution": 8, "macs": 1,
                         "params": int(1000 * (1 + 2 * shares[1])),
                         "activations": 1, "match_ratio": factor, "epochs": epochs,
                         "curve": curve, "val_top1": curve[-1], "test_top1": curve[-1],
                         "init_s": 0.5, "compile_s": 5.0 + 5 * shares[0],
                         "wall_s": 5.5 + 5 * shares[0] + epochs * (1 + 3 * shares[2])})
    return Table(tuple(rows))


def config(**changes) -> SearchConfig:
    base = SearchConfig(
        name="replay", search=CoefficientSearch(baseline=TINY_ARCH, channel_divisor=2,
                                                phi=2.0, tolerance=0.5, grid_step=0.1),
        proxy=ProxyConfig(dataset="digits", epochs=EPOCHS, resolution=8),
        objective=Objective(kind="metric"), sampler="tpe", trials=12, startup_trials=4,
        halving=None)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def table():
    return synthetic_table(4.0)


def test_table_round_trip_and_queries(tmp_path, table):
    path = tmp_path / "t.jsonl"
    table.save(path, dataset="synthetic")
    loaded = Table.load(path)
    assert loaded.rows == table.rows and loaded.factors() == [4.0]
    directions = loaded.directions(4.0)
    assert len(directions) == 66 and all(len(d.rows) == 2 for d in directions)
    best = loaded.best(4.0)
    assert np.allclose(best.shares, PEAK, atol=0.051)
    assert loaded.regret(best.shares, 4.0) == 0.0
    assert loaded.regret((1.0, 0.0, 0.0), 4.0) > 0.5
    (tmp_path / "old.jsonl").write_text('{"table_version": 0}\n')
    with pytest.raises(ValueError, match="table version 0"):
        Table.load(tmp_path / "old.jsonl")


def test_grid_replay_visits_every_direction_and_finds_the_best(table, digits):
    outcome = replay(config(sampler="grid", trials=None), table, seed=0, dataset=digits)
    # Every lattice direction and the paper's is proposed; on this toy many round to the same
    # network, and a network already trained is not trained again (its twin's result stands).
    assert 10 < outcome.trainings <= 67
    assert len(outcome.trace) == outcome.trainings  # one full training per trained trial
    assert outcome.regret < 0.1
    assert [p[0] for p in outcome.trace] == sorted(p[0] for p in outcome.trace)


def test_replay_is_deterministic_and_seeded(table, digits):
    a = replay(config(), table, seed=3, dataset=digits)
    b = replay(config(), table, seed=3, dataset=digits)
    c = replay(config(), table, seed=4, dataset=digits)
    assert a == b
    assert a.trace != c.trace


def test_halving_stops_trials_early_and_promotions_keep_their_seed(table, digits):
    outcome = replay(config(halving=Halving(min_epochs=1, eta=2), trials=10), table, seed=1,
                     dataset=digits)
    # Ten distinct trainings, most stopped at a rung: far fewer than ten full budgets.
    assert outcome.trainings < 8
    assert outcome.recommended is not None


def test_retrained_is_what_checkpoints_save(table, digits):
    import optuna

    storage = optuna.storages.InMemoryStorage()
    cfg = config(halving=Halving(min_epochs=1, eta=2), trials=10)
    retraining = replay(cfg, table, seed=1, dataset=digits, storage=storage, resume=False)
    trials = optuna.load_study(study_name=cfg.name, storage=storage).get_trials()
    promotions = [t for t in trials if "promoted_from" in t.user_attrs]
    assert promotions
    # A promotion retrained from epoch 1 spends its stopped original's epochs twice.
    again = sum(trials[t.user_attrs["promoted_from"]].user_attrs["budget"] for t in promotions)
    assert retraining.retrained == pytest.approx(again / cfg.proxy.epochs)
    assert 0 < retraining.retrained < retraining.trainings
    # Continuing from the checkpoints spends exactly that less, with the same decisions.
    resuming = replay(cfg, table, seed=1, dataset=digits)
    assert resuming.trainings == pytest.approx(retraining.trainings - retraining.retrained)
    assert resuming.recommended == retraining.recommended
    assert replay(config(trials=10), table, seed=1, dataset=digits).retrained == 0


def test_noise_promotions_send_on_what_the_seed_noise_cannot_tell_from_the_cutoff(table,
                                                                                 digits):
    """A band wider than every score difference promotes every stopped trial; one narrower
    than every difference decides as plain halving does; without a seed std, one line."""
    import optuna

    def promoted(**changes) -> tuple[set[int], list]:
        storage = optuna.storages.InMemoryStorage()
        cfg = config(halving=Halving(min_epochs=1, eta=2), trials=10, **changes)
        outcome = replay(cfg, table, seed=1, dataset=digits, storage=storage)
        trials = optuna.load_study(study_name=cfg.name, storage=storage).get_trials()
        stopped = {t.number for t in trials  # a twin's stop is its original's
                   if "stopped_at" in t.user_attrs and "duplicate_of" not in t.user_attrs}
        continued = {t.user_attrs["promoted_from"] for t in trials
                     if "promoted_from" in t.user_attrs}
        return stopped - continued, [outcome.trainings, outcome.recommended]

    plain_left, plain = promoted()
    assert plain_left  # plain halving leaves some trials stopped
    assert promoted(noise_promotions=True, noise_std=1e-9) == (plain_left, plain)
    wide_left, (trainings, _) = promoted(noise_promotions=True, noise_std=1.0)
    assert not wide_left and trainings > plain[0]
    with pytest.raises(UserError, match="noise_promotions needs the proxy's seed std"):
        promoted(noise_promotions=True)

def test_four_simulated_workers_share_the_clock(table, digits):
    one = replay(config(trials=8), table, seed=2, workers=1, dataset=digits)
    four = replay(config(trials=8), table, seed=2, workers=4, dataset=digits)
    again = replay(config(trials=8), table, seed=2, workers=4, dataset=digits)
    assert four == again  # threads, but one runs at a time: deterministic
    assert four.trainings == pytest.approx(one.trainings, abs=4)
    # Four workers finish the same budget in about a quarter of the simulated time.
    assert four.elapsed_s < 0.5 * one.elapsed_s
    assert one.elapsed_s == pytest.approx(one.seconds)


@pytest.mark.parametrize("sampler,trials,halving", [
    ("grid", None, None), ("tpe", 10, Halving(min_epochs=1, eta=2))])
def test_an_interrupted_replay_resumes_where_it_stopped(table, digits, monkeypatch, sampler,
                                                        trials, halving):
    """Ctrl-C in the fifth training: the study keeps what was done, the interrupted trial is
    retried first on resume, nothing done is redone, and the resumed search ends as an
    uninterrupted one would (the grid: the same trainings; TPE: the same budget)."""
    import optuna

    from search.replay import ReplayTrainer

    cfg = config(sampler=sampler, trials=trials, halving=halving)
    whole = replay(cfg, table, seed=5, dataset=digits)
    calls, train = 0, ReplayTrainer.__call__

    def interrupted(self, *args):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return train(self, *args)

    storage = optuna.storages.InMemoryStorage()
    monkeypatch.setattr(ReplayTrainer, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay(cfg, table, seed=5, dataset=digits, storage=storage)
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) >= 5 and done[-1].state == optuna.trial.TrialState.FAIL
    resumed = replay(cfg, table, seed=5, dataset=digits, storage=storage)
    retried = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == done[-1].number]
    assert len(retried) == 1 and retried[0].params == done[-1].params
    assert retried[0].state != optuna.trial.TrialState.FAIL
    trained = [t for t in study.get_trials() if "duplicate_of" not in t.user_attrs
               and t.state != optuna.trial.TrialState.FAIL and "rejected" not in t.user_attrs
               and "promoted_from" not in t.user_attrs]
    assert len({tuple(sorted(t.params.items())) for t in trained}) == len(trained)
    if sampler == "grid":  # the retry runs after the trials queued before it: same set
        assert (resumed.recommended, resumed.regret) == (whole.recommended, whole.regret)
        assert set(resumed.full) == set(whole.full)
        assert (resumed.trainings, resumed.seconds) == pytest.approx((whole.trainings,
                                                                      whole.seconds))
    else:
        assert len(trained) == trials
        assert resumed.trace[-1][0] == pytest.approx(resumed.trainings)


def test_simulated_clock_orders_wakeups():
    import threading

    clock, order = SimulatedClock(3), []

    def worker(index, name, naps):
        clock.enter(index)
        for nap in naps:
            clock.sleep(nap)
            order.append((clock.now, name))
        clock.done()

    threads = [threading.Thread(target=worker, args=(i, n, naps)) for i, (n, naps) in
               enumerate((("a", [3, 3]), ("b", [1, 1, 1]), ("c", [5])))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == [(1, "b"), (2, "b"), (3, "a"), (3, "b"), (5, "c"), (6, "a")]


def test_rows_of_study_keeps_full_budget_trainings_and_twins():
    from types import SimpleNamespace

    from search.replay import rows_of_study

    def trial(**attrs):
        base = {"status": "ok", "budget": EPOCHS, "depth_share": 0.2, "width_share": 0.3,
                "resolution_share": 0.5, "alpha": 1.1, "beta": 1.1, "gamma": 1.2, "phi": 1.0,
                "arch": "a", "resolution": 16, "macs": 10, "params": 5, "activations": 7,
                "match_ratio": 2.0, "curve": [{"val_top1": 0.5 + 0.1 * e} for e in range(4)],
                "val_top1": 0.8, "test_top1": 0.79, "init_s": 1.0, "compile_s": 2.0,
                "wall_s": 9.0}
        return SimpleNamespace(user_attrs={**base, **attrs})

    trials = [trial(), trial(duplicate_of=0, depth_share=0.3, width_share=0.2),
              trial(duplicate_of=0), trial(budget=2), trial(rejected="too far"),
              trial(status="failed")]
    for number, t in enumerate(trials):
        t.number = number
    rows = rows_of_study(trials, factor=2.0, part="2x-s0", seed=0, epochs=EPOCHS)
    # The training and another direction that rounds to its network (a twin); not the same
    # direction proposed again, nor the stopped, rejected or failed trials.
    assert len(rows) == 2 and rows[1]["shares"] == [0.3, 0.2, 0.5]
    assert rows[0]["curve"] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert rows[0]["shares"] == [0.2, 0.3, 0.5] and rows[0]["factor"] == 2.0


def test_export_report_reads_a_two_factor_table(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from export_direction_table import report

    rows = synthetic_table(2.0).rows + synthetic_table(4.0, noise=0.01).rows
    two = Table(tuple(dict(r, arch=str(r["shares"])) for r in rows))  # a network each
    report(two)
    out = capsys.readouterr()[0]
    assert "2x: 66 directions" in out and "4x: 66 directions" in out
    assert "paper" in out and "2x -> 4x over 66 directions: Spearman" in out
    assert "test-retest over 66 distinct networks, seeds [0, 1]" in out
    assert "noise ceiling" in out and "best direction by factor: 2x (" in out
    assert "chance of being best under seed noise: (" in out


def test_the_chance_of_being_best_follows_the_seed_noise():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from export_direction_table import best_chances

    rows = synthetic_table(2.0).rows
    table = Table(tuple(dict(r, arch=str(r["shares"])) for r in rows))  # a network each
    best = table.best(2.0).shares
    quiet = best_chances(table, 2.0, seed_std=1e-6)
    assert quiet[0] == (best, 1.0)
    loud = best_chances(table, 2.0, seed_std=1.0)  # noise swamps the differences
    assert loud[0][1] < 0.1 and sum(p for _, p in loud) == pytest.approx(1.0)
    # Directions that round to one network are one candidate, not several chances.
    twins = Table(tuple(dict(r, arch=str(i // 4)) for i, r in enumerate(rows)))
    assert len(best_chances(twins, 2.0, seed_std=0.01)) == len({r["arch"] for r in twins.rows})


def test_export_report_judges_each_forecast_model_by_extrapolation(capsys):
    import re
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from export_direction_table import report

    def law(shares, factor):  # the separable fit's own form: it should extrapolate it
        x = np.array(shares) * math.log2(factor)
        return 0.3 + float(np.sum([0.05, 0.08, 0.06] * x - [0.02, 0.01, 0.004] * x**2))

    rng = np.random.default_rng(1)
    rows = [dict(r, arch=f"{f}{r['shares']}", val_top1=law(r["shares"], f)
                 + 0.001 * rng.standard_normal())
            for f in (2.0, 4.0, 8.0) for r in synthetic_table(f).rows]
    report(Table(tuple(rows)))
    out = capsys.readouterr()[0]
    below = sum(r["factor"] < 8 for r in rows)
    assert f"forecast of 8x from 2x, 4x ({below} trainings) over its 66 directions" in out
    assert "forecast of 4x" not in out  # one factor below it: nothing to extrapolate from
    separable = float(re.search(r"separable \(7 parameters\): Spearman ([-.\d]+)", out)[1])
    assert separable > 0.95
    assert "iso-cost (12 parameters): Spearman" in out
    assert "4x's own ranking: Spearman" in out and "noise ceiling (the 2-seed" in out


def test_table_reliability_counts_each_network_once():
    rows = synthetic_table(2.0, noise=0.0).rows
    # Directions that round to one network (here: pairs of directions) count once.
    table = Table(tuple(dict(r, arch=str(i // 4)) for i, r in enumerate(rows)))
    r = table.reliability(2.0)
    assert r.networks == len({row["arch"] for row in table.rows})
    assert r.spearman > 0.99 and r.of_mean(2) >= r.spearman  # noise-free: seeds agree
    assert Table(tuple(x for x in rows if x["seed"] == 0)).reliability(2.0) is None


def test_hypervolume_gap(table):
    from search.replay import _hypervolume

    # Sorted by cost: (0.8, 5) dominates 0.3 x (10 - 5), then (0.9, 10) 0.4 x (20 - 10).
    assert _hypervolume([(0.9, 10), (0.8, 5)], (0.5, 20)) == pytest.approx(5.5)
    assert _hypervolume([(0.4, 1)], (0.5, 20)) == 0.0  # below the reference
    everything = [d.shares for d in table.directions(4.0)]
    assert table.hypervolume_gap(everything, 4.0) == pytest.approx(0.0)
    best_only = table.hypervolume_gap([table.best(4.0).shares], 4.0)
    assert 0 < best_only < 1
    assert table.hypervolume_gap([], 4.0) == pytest.approx(1.0)


def test_pareto_replay_reports_its_full_budget_set(table, digits):
    outcome = replay(config(objective=Objective(kind="pareto", cost="params"), trials=8),
                     table, seed=0, dataset=digits)
    assert outcome.full and 0 <= table.hypervolume_gap(outcome.full, 4.0) < 1


def test_regret_counts_only_directions_the_search_may_train():
    rows = synthetic_table(2.0, seeds=1).rows
    # The best direction's network misses the cost factor by 20%: a search with a 5% tolerance
    # rejects it, so it cannot define that search's regret.
    best = max(rows, key=lambda r: r["val_top1"])
    rows = tuple({**r, "match_ratio": 2.4} if r is best else r for r in rows)
    table = Table(rows)
    assert table.best(2.0).shares == tuple(round(s, 6) for s in best["shares"])
    admissible = table.best(2.0, tolerance=0.05)
    assert admissible.shares != table.best(2.0).shares
    assert table.regret(admissible.shares, 2.0, tolerance=0.05) == 0.0
    assert table.regret(admissible.shares, 2.0) > 0.0


REAL_TABLE = (Path(__file__).resolve().parents[1] / "experiments" / "results" / "mnist5k"
              / "direction_table.jsonl")


@pytest.mark.skipif(not REAL_TABLE.exists(), reason="the recorded table is not exported yet")
def test_replay_on_a_slice_of_the_recorded_table():
    """The MNIST direction search's own config (matched 2x MACs, 5% tolerance, halving 3 -> 9
    epochs) against the 2x directions of the recorded table on the 0.2 lattice."""
    import sys

    sys.path.insert(0, str(REAL_TABLE.parents[2]))
    from common import MNIST, direction_search

    table = Table.load(REAL_TABLE)
    on_lattice = tuple(r for r in table.rows if r["factor"] == 2.0 and all(
        abs(s * 5 - round(s * 5)) < 1e-6 for s in r["shares"]))
    part = Table(on_lattice)
    assert len(part.directions(2.0)) >= 15
    config = dataclasses.replace(direction_search("slice", MNIST, trials=8, ladder=()),
                                 startup_trials=2)
    mnist = load_dataset("mnist5k")
    one = replay(config, part, seed=0, dataset=mnist)
    four = replay(config, part, seed=0, workers=4, dataset=mnist)
    assert one.recommended is not None and four.recommended is not None
    assert 0 <= one.regret <= 1 and one.trainings < 8  # halving stopped some early
    assert four.elapsed_s < one.elapsed_s


def test_replay_refuses_a_table_that_cannot_stand_in(table, digits):
    with pytest.raises(ValueError, match="rows of \\[4\\] epochs"):
        replay(dataclasses.replace(config(), proxy=ProxyConfig(dataset="digits", epochs=9,
                                                               resolution=8)),
               table, seed=0, dataset=digits)
    with pytest.raises(ValueError, match="no rows at 2x"):
        replay(config(search=dataclasses.replace(config().search, phi=1.0)), table, seed=0,
               dataset=digits)


def test_gp_does_not_propose_a_rejected_point_again(monkeypatch):
    """GPSampler fits COMPLETE trials only; the controller's rejections (PRUNED, no value)
    would leave its optimum on the same infeasible point forever. Ours samples at random
    instead, until a new result changes the model."""
    pytest.importorskip("torch", reason="Optuna's GPSampler needs PyTorch")
    import optuna

    from search.gp import RejectionAwareGPSampler

    study = optuna.create_study(sampler=RejectionAwareGPSampler(seed=0, n_startup_trials=0))
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.2}, distributions=space,
                                              value=1.0))
    rejected = optuna.trial.create_trial(params={"x": 0.7}, distributions=space,
                                         state=optuna.trial.TrialState.PRUNED)
    rejected.set_user_attr("rejected", "misses the matched cost")
    study.add_trial(rejected)
    optimum = {"x": 0.7 + 1e-5}
    calls = []

    def gp(self, *args):
        calls.append(1)
        return dict(optimum)

    monkeypatch.setattr(optuna.samplers.GPSampler, "sample_relative", gp)
    trial = study.ask()
    assert study.sampler.sample_relative(study, trial, space) == {}
    assert study.sampler.sample_relative(study, trial, space) == {}  # unchanged model
    assert len(calls) == 1
    study.tell(trial, 0.5)  # a new result: the model is asked again
    optimum = {"x": 0.4}
    assert study.sampler.sample_relative(study, study.ask(), space) == {"x": 0.4}


@pytest.mark.slow
def test_replays_in_processes_equal_replays_in_turn(table, digits):
    from search.replay import replay_many

    jobs = [(config(trials=6), seed, workers) for seed, workers in ((0, 1), (1, 4), (2, 1))]
    in_turn = list(replay_many(jobs, table, dataset=digits))
    assert list(replay_many(jobs, table, processes=2, dataset=digits)) == in_turn
    assert in_turn[0] == replay(config(trials=6), table, seed=0, dataset=digits)
