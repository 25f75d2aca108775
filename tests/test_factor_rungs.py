"""Factor rungs: cost factors as a fidelity (search/factor_rungs.py), in replay and for real."""

import dataclasses
import json
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from test_replay import config as replay_config
from test_replay import synthetic_table
from toys import TINY_ARCH, toy_search_config

from search import controller, factor_rungs, records, storage
from search.cli import main
from search.config import CoefficientSearch, Objective, SearchConfig
from search.halving import PROMOTED_FROM, PROMOTED_RUNG, Halving
from search.kinds.base import FACTOR
from search.replay import Table, replay
from space import UserError
from trainers.data import load_dataset

FACTORS = (4.0, 8.0, 16.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def table_at(factors, peaks) -> Table:
    """The synthetic table at several factors, its best direction at `peaks[i]` at factor i."""
    rows = []
    for factor, peak in zip(factors, peaks, strict=True):
        for r in synthetic_table(factor).rows:
            score = 0.95 - 0.4 * sum((a - b) ** 2 for a, b in zip(r["shares"], peak,
                                                                   strict=True))
            scale = score / r["curve"][-1]
            curve = [c * scale for c in r["curve"]]
            rows.append(r | {"curve": curve, "val_top1": curve[-1], "test_top1": curve[-1],
                             "arch": f"net-{factor:g}-{r['shares']}"})
    return Table(tuple(rows))


def factor_config(**changes) -> SearchConfig:
    base = replay_config(halving=Halving(min_epochs=1, eta=2), trials=12)
    search = dataclasses.replace(base.search, factors=FACTORS, factor_eta=2)
    return dataclasses.replace(base, search=search, **changes)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(("changes", "match"), [
    ({"factors": (4.0,)}, "two or more increasing"),
    ({"factors": (4.0, 4.0)}, "two or more increasing"),
    ({"factors": (8.0, 16.0)}, r"start where the search trains.*set phi=3"),
    ({"factors": (4.0, 8.0), "match": None}, "set match"),
    ({"factors": (4.0, 8.0), "factor_eta": 1}, "factor_eta must be an integer >= 2"),
    ({"factors": (4.0, 8.0), "factor_eta": 2.5}, "factor_eta must be an integer"),
    ({"factors": (4.0, 8.0), "parameterization": "coefficients"}, "parameterization=.shares."),
    ({"factors": ("a", 8)}, "factors must be numbers"),
])
def test_factor_settings_are_checked(changes, match):
    with pytest.raises(UserError, match=match):
        CoefficientSearch(baseline=TINY_ARCH, phi=2.0, **changes)


@pytest.mark.parametrize(("changes", "match"), [
    ({"objective": Objective(kind="pareto", cost="params")}, "a pareto objective would mix"),
    ({"objective": Objective(kind="metric"), "pruner": "median", "halving": None},
     "drop the pruner"),
    ({"ladder": (8.0,)}, "factors replace the ladder"),
])
def test_what_factors_cannot_be_combined_with_is_refused(changes, match):
    search = CoefficientSearch(baseline=TINY_ARCH, phi=2.0, factors=(4, 8))
    with pytest.raises(UserError, match=match):
        SearchConfig(name="x", search=search, **changes)


def test_a_study_stored_before_factors_reads_as_one_factor():
    record = dataclasses.asdict(CoefficientSearch(baseline=TINY_ARCH))
    del record["factors"], record["factor_eta"]
    assert CoefficientSearch.from_json(record).factors == ()
    stored = CoefficientSearch.from_json(dataclasses.asdict(
        CoefficientSearch(baseline=TINY_ARCH, phi=2.0, factors=[4, 8])))
    assert stored.factors == (4.0, 8.0)


# ----------------------------------------------------------------------------- the rule


def frozen(number, value=None, *, factor=4.0, state=TrialState.COMPLETE, **attrs):
    trial = create_trial(state=state, value=value, params={"x": 0.5},
                         distributions={"x": FloatDistribution(0, 1)},
                         user_attrs={FACTOR: factor, **attrs})
    trial.number = number
    return trial


def test_the_best_share_climbs_once():
    config = factor_config()
    assert factor_rungs.promotions(config, [frozen(1, 0.9)]) == []  # fewer than eta = 2
    with_more = [frozen(0, 0.5), frozen(1, 0.9), frozen(2, 0.7), frozen(3, 0.6)]
    chosen = [(t.number, f) for t, f in factor_rungs.promotions(config, with_more)]
    assert chosen == [(1, 8.0), (2, 8.0)]  # the best 4 // 2
    sent = [*with_more, frozen(4, factor=8.0, state=TrialState.RUNNING, **{PROMOTED_FROM: 1})]
    assert [t.number for t, _ in factor_rungs.promotions(config, sent)] == [2]
    # Duplicates (a network already trained) and stopped trials are not in the rung.
    dup = [frozen(0, 0.5), frozen(1, 0.99, duplicate_of=0),
           frozen(2, state=TrialState.PRUNED, stopped_at=1)]
    assert [t.number for t, _ in factor_rungs.promotions(config, dup, final=True)] == [0]


def test_a_noise_band_sends_the_near_misses_up_too_but_not_a_stuck_one():
    config = factor_config()
    trials = [frozen(0, 0.5), frozen(1, 0.9), frozen(2, 0.7), frozen(3, 0.69)]
    chosen = factor_rungs.promotions(config, trials, band=0.015)
    assert [t.number for t, _ in chosen] == [1, 2, 3]  # 0.69 is within 0.015 of 0.7
    stuck = [*trials, frozen(4, factor=8.0, state=TrialState.FAIL, **{PROMOTED_FROM: 2})]
    # 2's climb failed for good: 3 takes its place, and 0 is not within the band of 3.
    assert [t.number for t, _ in factor_rungs.promotions(config, stuck, band=0.015)] == [1, 3]

def test_fewer_than_eta_results_wait_unless_final():
    config = dataclasses.replace(factor_config(), search=dataclasses.replace(
        factor_config().search, factor_eta=3))
    rung = [frozen(0, 0.5), frozen(1, 0.9)]
    assert factor_rungs.promotions(config, rung) == []
    assert [t.number for t, _ in factor_rungs.promotions(config, rung, final=True)] == [1]


def test_a_climb_rejected_at_the_next_factor_lets_the_next_best_go():
    config = factor_config()
    trials = [frozen(0, 0.5), frozen(1, 0.9), frozen(2, 0.7),
              frozen(3, factor=8.0, state=TrialState.PRUNED, rejected="too far",
                     **{PROMOTED_FROM: 1})]
    assert [t.number for t, _ in factor_rungs.promotions(config, trials, final=True)] == [2]


def test_a_stuck_climb_keeps_its_share_for_the_next_and_is_not_sent_again():
    config = dataclasses.replace(factor_config(), search=dataclasses.replace(
        factor_config().search, factor_eta=3))
    rung = [frozen(i, v) for i, v in enumerate((0.9, 0.8, 0.7, 0.6, 0.5, 0.4))]
    assert [t.number for t, _ in factor_rungs.promotions(config, rung)] == [0, 1]  # 6 // 3
    failed = frozen(6, factor=8.0, state=TrialState.FAIL, failure="out of memory",
                    **{PROMOTED_FROM: 0})
    # The best's climb failed on its own: it is not queued again, and the next two of the
    # rung (still n // eta = 2 of all 6) go on.
    assert [t.number for t, _ in factor_rungs.promotions(config, [*rung, failed])] == [1, 2]
    # A dead worker's failed climb with its retry queued is not stuck.
    retried = frozen(7, factor=8.0, state=TrialState.WAITING, **{PROMOTED_FROM: 0})
    assert [t.number for t, _ in factor_rungs.promotions(config, [*rung, failed, retried])] \
        == [1]


def test_a_retried_climb_keeps_its_factor():
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.5}, user_attrs={FACTOR: 8.0, PROMOTED_FROM: 1})
    trial = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(trial, state=TrialState.FAIL)
    assert controller.retry(study, study.get_trials()[0], max_retries=2)
    queued = study.get_trials(states=(TrialState.WAITING,))[0]
    assert queued.user_attrs[FACTOR] == 8.0 and queued.user_attrs[PROMOTED_FROM] == 1


# ----------------------------------------------------------------------------- in replay


def replayed(config, table, seed, digits):
    store = optuna.storages.InMemoryStorage()
    outcome = replay(config, table, seed=seed, dataset=digits, storage=store)
    return outcome, optuna.load_study(study_name=config.name, storage=store).get_trials()


def test_directions_climb_the_factors_each_a_new_full_budget_network(digits):
    table = table_at(FACTORS, [(0.2, 0.5, 0.3)] * 3)
    config = factor_config()
    outcome, trials = replayed(config, table, 0, digits)
    done = [t for t in trials if "rejected" not in t.user_attrs and t.state != TrialState.FAIL]
    climbs = [t for t in done if factor_rungs.is_climb(t.user_attrs, FACTORS)]
    assert {t.user_attrs[FACTOR] for t in climbs} == {8.0, 16.0}
    for t in climbs:
        a = t.user_attrs
        source = trials[a[PROMOTED_FROM]].user_attrs
        # The next factor up from its source, a network matched at that cost, trained for the
        # full budget with no epoch rung (halving works inside the lowest factor).
        assert a[FACTOR] == FACTORS[FACTORS.index(source[FACTOR]) + 1]
        assert abs(a["match_ratio"] / a[FACTOR] - 1) <= config.search.tolerance
        assert a["arch"] != source["arch"] and a["budget"] == config.proxy.epochs
        assert PROMOTED_RUNG not in a and not any(k.startswith("rung_") for k in a)
        assert t.state == TrialState.COMPLETE
    sources = [t.user_attrs[PROMOTED_FROM] for t in climbs]
    assert len(sources) == len(set(sources))  # a direction climbs from a factor once
    # The budget is the distinct networks at the lowest factor; climbs do not count.
    assert sum(controller.counts_toward_budget(t) for t in trials) == config.trials
    assert all(t.user_attrs[FACTOR] == FACTORS[0] for t in done
               if "stopped_at" in t.user_attrs)
    # The recommendation is the best full-budget training at the largest factor.
    top = max((t for t in climbs if t.user_attrs[FACTOR] == FACTORS[-1]),
              key=lambda t: t.user_attrs["val_top1"])
    assert outcome.recommended == tuple(top.user_attrs[f"{d}_share"]
                                        for d in ("depth", "width", "resolution"))
    # Compute counts every epoch at its own cost.
    assert outcome.compute > 0


def test_the_sampler_learns_from_the_lowest_factor_only(digits, monkeypatch):
    """Climbs are complete trials scored at a larger factor: TPE must not see them, or it
    would count a climbed direction twice, the second time scoring higher."""
    seen = []
    relative = optuna.samplers.TPESampler.sample_relative

    def spy(self, study, trial, search_space):
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        real = study._study.get_trials(deepcopy=False)  # behind the sampler's view
        seen.append(([t.user_attrs.get(FACTOR) for t in trials],
                     sum(factor_rungs.is_climb(t.user_attrs, FACTORS) for t in real)))
        return relative(self, study, trial, search_space)

    monkeypatch.setattr(optuna.samplers.TPESampler, "sample_relative", spy)
    replayed(factor_config(trials=14), table_at(
        FACTORS, [(0.2, 0.5, 0.3)] * 3), 0, digits)
    assert any(climbs for _, climbs in seen)  # TPE sampled while climbs were in the study
    assert all(f in (None, FACTORS[0]) for factors, _ in seen for f in factors)


def test_factor_rungs_find_the_largest_factors_best_better_than_the_lowest_alone(digits):
    """Where the best direction moves with the factor (here from width-heavy at 4x to
    resolution-heavy at 16x), the recommendation of a search with factor rungs is judged at
    16x, and over seeds it is closer to 16x's best than that of the same search at 4x."""
    peaks = [(0.2, 0.6, 0.2), (0.2, 0.45, 0.35), (0.2, 0.3, 0.5)]
    table = table_at(FACTORS, peaks)
    plain = factor_config()
    plain = dataclasses.replace(plain, search=dataclasses.replace(plain.search, factors=()))
    rungs, alone = [], []
    for seed in range(4):
        rungs.append(replayed(factor_config(), table, seed, digits)[0])
        alone.append(replayed(plain, table, seed, digits)[0].recommended)
    regret_alone = [table.regret(r, 16.0, 0.5) for r in alone]
    assert np.mean([o.regret for o in rungs]) < np.mean(regret_alone)
    # ... and pays for it in compute at the larger factors.
    assert all(o.compute > 0 for o in rungs)


def test_a_study_interrupted_in_a_climb_resumes_it_at_its_factor(digits, monkeypatch):
    """Ctrl-C in the first training above the lowest factor: on resume that climb is retried
    at its factor first, and the search goes on to the largest factor as it would have."""
    from search.replay import ReplayTrainer

    table = table_at(FACTORS, [(0.2, 0.5, 0.3)] * 3)
    config = factor_config()
    train = ReplayTrainer.__call__

    def interrupted(self, proxy, trial, callback):
        if factor_rungs.is_climb(trial.user_attrs, FACTORS):
            raise KeyboardInterrupt
        return train(self, proxy, trial, callback)

    store = optuna.storages.InMemoryStorage()
    monkeypatch.setattr(ReplayTrainer, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay(config, table, seed=2, dataset=digits, storage=store)
    monkeypatch.setattr(ReplayTrainer, "__call__", train)
    failed = [t for t in optuna.load_study(study_name=config.name, storage=store).trials
              if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs[FACTOR] == 8.0
    replay(config, table, seed=2, dataset=digits, storage=store)
    trials = optuna.load_study(study_name=config.name, storage=store).trials
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert retry.user_attrs[FACTOR] == 8.0 and retry.state == TrialState.COMPLETE
    assert retry.user_attrs[PROMOTED_FROM] == failed[0].user_attrs[PROMOTED_FROM]
    climbs = [t for t in trials if t.state != TrialState.FAIL
              and factor_rungs.is_climb(t.user_attrs, FACTORS)]
    assert max(t.user_attrs[FACTOR] for t in climbs) == 16.0
    sources = [t.user_attrs[PROMOTED_FROM] for t in climbs]
    assert len(sources) == len(set(sources))


def test_a_table_without_a_factor_cannot_stand_in(digits):
    with pytest.raises(ValueError, match="no rows at 16x"):
        replay(factor_config(), table_at(FACTORS[:2], [(0.2, 0.5, 0.3)] * 2), seed=0,
               dataset=digits)


def test_front_and_export_of_a_factor_study_show_factors_and_the_forecast(
        tmp_path, digits, capsys):
    """A replayed study in a journal, read back as a user would: front ranks each factor on
    its own and prints the forecast at twice the largest factor; export defaults to the best
    at the largest factor (unconfirmed: a replay runs no confirmation) with the forecast."""
    table = table_at((*FACTORS, 32.0), [(0.2, 0.6, 0.2), (0.2, 0.45, 0.35), (0.2, 0.3, 0.5),
                                         (0.2, 0.2, 0.6)])
    config = factor_config(halving=None, trials=14)
    store = storage.open_storage(str(tmp_path / "s.journal"))
    replay(config, table, seed=0, dataset=digits, storage=store)
    work = ["--storage", str(tmp_path / "s.journal")]
    assert main(["front", "replay", *work, "--forecast", "32"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # as rich wrapped it, unwrapped
    assert "each factor ranked on its own" in text and "forecast at 32x" in text
    assert main(["front", "replay", *work, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    for factor in FACTORS:  # ranks start at 0 within each factor
        assert min(r["rank"] for r in shown if r["factor"] == factor) == 0
    path = tmp_path / "c.json"
    assert main(["export", "replay", *work, "-o", str(path)]) == 0
    assert "at 16x, the largest factor reached (one seed" in capsys.readouterr().out
    provenance = json.loads(path.read_text())["provenance"]
    assert provenance["cost_factor"] == 16.0 and provenance["forecast"]["factor"] == 32.0
    forecast = provenance["forecast"]
    assert forecast["model"] == "separable" and len(forecast["directions"]) == 5
    assert forecast["left_out"] == 0  # without halving every training has the full budget
    assert all(d["low"] <= d["predicted"] <= d["high"] for d in forecast["directions"])


# ----------------------------------------------------------------------------- for real


@pytest.mark.slow
def test_search_with_factors_confirms_at_the_largest_and_exports_it(tmp_path, capsys):
    """Real trainings: three directions at 2x, the best climbs to 4x, the confirmation trains
    one more seed there (the search's own training is the first), front shows the factors,
    and export defaults to the confirmed best at 4x."""
    config = tmp_path / "factors.py"
    config.write_text(toy_search_config(
        "factors", phi=1.0, epochs=2, search="factors=(2, 4)", trials="3",
        startup_trials="3", halving="None", ladder_top="1", ladder_seeds="2"))
    work = str(tmp_path / "w")
    assert main(["search", str(config), "--workdir", work, "--allow-cpu"]) == 0
    err = capsys.readouterr().err
    assert "trained again at larger factors" in err and "at 4x" in err
    store = storage.open_storage(storage.storage_url(work, None), create=False)
    study = optuna.load_study(study_name="factors", storage=store)
    rows = records.trial_rows(study)
    assert factor_rungs.largest_reached(rows) == 4.0
    ladder = json.loads(study.user_attrs["effsearch.ladder"])
    assert ladder["factors"] == [4.0] and ladder["seeds"] == [0, 1]
    (row,) = ladder["rows"]
    top = max((r for r in rows if r.factor == 4.0), key=lambda r: r.score)
    assert row["trial"] == top.trial and row["arch"] == top.arch
    assert row["val_top1"][0] == pytest.approx(top.score)  # seed 0 is the search's training
    assert main(["front", "factors", "--workdir", work, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["factor"] for r in shown} == {2.0, 4.0}
    assert [r["factor"] for r in shown] == sorted((r["factor"] for r in shown), reverse=True)
    out = tmp_path / "c.json"
    assert main(["export", "factors", "--workdir", work, "-o", str(out)]) == 0
    exported = json.loads(out.read_text())
    provenance = exported["provenance"]
    assert provenance["trial"] == top.trial and provenance["cost_factor"] == 4.0
    assert provenance["factors"] == [2.0, 4.0]
    assert math.isclose(exported["phi"] if "phi" in exported else provenance["phi"],
                        top.phi, rel_tol=1e-9)
