"""Budgets end to end at toy size: Hyperband brackets, Optuna's pruners, `scale --fit latency`."""

import dataclasses
import json
import math

import optuna
import pytest
from optuna.trial import TrialState
from toys import TINY_ARCH

from search import controller, records, storage
from search.cli import main
from search.config import BaselineSearch, CoefficientSearch, Objective, SearchConfig
from search.halving import Halving, promote
from trainers.config import ProxyConfig
from trainers.data import load_dataset

PROXY = ProxyConfig(dataset="digits", epochs=4, batch_size=128, resolution=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def open_study(config: SearchConfig, tmp_path) -> optuna.Study:
    store = storage.open_storage(str(tmp_path / "s.journal"))
    study, created = controller.open_study(config, store, config.name)
    assert created
    return study


def counted(study: optuna.Study) -> int:
    return sum(controller.counts_toward_budget(t) for t in study.get_trials())


# ----------------------------------------------------------------------------- Hyperband


def _planted(values: list[float], rung: int) -> optuna.trial.FrozenTrial:
    """A finished trial that recorded `values` at `rung` and nothing else (no arch: never a
    twin, no metric: never a row)."""
    return optuna.trial.create_trial(values=values, user_attrs={f"rung_{rung}": values})


@pytest.mark.slow
def test_hyperband_brackets_decide_only_among_their_own_trials(tmp_path, digits):
    halving = Halving(min_epochs=1, eta=2, brackets=2)
    assert [halving.rungs(4, b) for b in (0, 1)] == [[1, 2], [2]]
    directions = ("maximize", "minimize")  # (val_top1, macs)
    # Not matched in cost (match=None), so MACs vary and are an objective.
    config = SearchConfig(name="hb", search=CoefficientSearch(baseline=TINY_ARCH, match=None),
                          proxy=PROXY, objective=Objective(kind="pareto"), sampler="random",
                          trials=8, startup_trials=0, halving=halving)
    assert config.objective.directions == directions
    study = open_study(config, tmp_path)
    # Trials 0-3 are planted before any trains, each holding values that beat every real
    # network (top-1 1.0 at 1 MAC) at one rung: bracket 0's (trials 0 and 2) at epoch 2, one
    # of its own rungs; bracket 1's (trials 1 and 3) at epoch 1, a rung bracket 1 never has.
    best = [1.0, 1.0]
    for number in range(4):
        study.add_trial(_planted(best, rung=2 if number % 2 == 0 else 1))
    controller.enqueue_design(study, config)
    report = controller.run_worker(config, study, trials=8, dataset=digits)
    trials = study.get_trials()
    # Candidates rejected before training take trial numbers but count for nothing; a
    # promotion continues a counted trial.
    fresh = [t for t in trials[4:] if not {"rejected", "promoted_from", "duplicate_of"}
             & t.user_attrs.keys()]
    promoted = [t for t in trials if "promoted_from" in t.user_attrs]
    assert counted(study) == 8 and len(fresh) == report.trained == 4
    assert len(promoted) == report.promoted
    for t in fresh + promoted:  # a trial halving stopped is PRUNED: only full budgets COMPLETE
        stopped = "stopped_at" in t.user_attrs
        assert t.state == (TrialState.PRUNED if stopped else TrialState.COMPLETE)

    for t in fresh:  # dealt to brackets by number; stopped only at a rung of their bracket
        a, rungs = t.user_attrs, halving.rungs(4, halving.bracket(t.number))
        assert a["bracket"] == halving.bracket(t.number) == t.number % 2
        assert {int(k.removeprefix("rung_")) for k in a if k.startswith("rung_")} <= set(rungs)
        if "stopped_at" in a:
            assert a["stopped_at"] in rungs and a["budget"] == a["stopped_at"]
        else:
            assert a["budget"] == a["max_budget"] == 4
        if t.number % 2 == 1:  # bracket 1's first rung is epoch 2: never stopped before it
            assert "rung_1" not in a and a["budget"] >= 2
    for t in promoted:  # in its original's bracket, judged only after the rung it passed
        source = trials[t.user_attrs["promoted_from"]]
        assert t.user_attrs["bracket"] == source.user_attrs["bracket"]
        assert t.user_attrs["promoted_rung"] == source.user_attrs["stopped_at"]
        assert all(int(k.removeprefix("rung_")) > t.user_attrs["promoted_rung"]
                   for k in t.user_attrs if k.startswith("rung_"))

    # Replay every rung decision (one worker: a trial decides after all earlier ones
    # finished) against the earlier trials of its own bracket that recorded that rung, and
    # find one that pooling all brackets would have decided the other way.
    decisions, separated = 0, 0
    for t in fresh + promoted:
        for rung in halving.rungs(4, t.user_attrs["bracket"]):
            key = f"rung_{rung}"
            if key not in t.user_attrs:
                continue
            earlier = [o for o in trials[:t.number] if key in o.user_attrs]
            own = [o.user_attrs[key] for o in earlier
                   if o.user_attrs.get("bracket", o.number % 2) == t.user_attrs["bracket"]]
            went_on = promote(t.user_attrs[key], own, directions, 2)
            assert went_on == (t.user_attrs.get("stopped_at") != rung), (t.number, rung)
            pooled = [o.user_attrs[key] for o in earlier]
            separated += went_on != promote(t.user_attrs[key], pooled, directions, 2)
            decisions += 1
    assert decisions >= 3 and separated >= 1

    rows = records.trial_rows(study)  # the planted trials record no metric: not rows
    assert [r.trial for r in rows] == [t.number for t in trials if t in fresh + promoted]
    assert {r.trial for r in records.front(rows)} == {
        t.number for t in fresh + promoted if t.user_attrs["budget"] == 4}


# ----------------------------------------------------------------------------- pruners


@pytest.fixture(scope="module", params=["sha", "hyperband"])
def pruned_study(request, tmp_path_factory, digits):
    """A 6-trial, 3-epoch single-objective study under one of Optuna's pruners."""
    pruner = request.param
    # A baseline search: its candidates are distinct networks at this size (a coefficient
    # search's matched-cost candidates collapse onto one or two networks of TINY_ARCH), and a
    # MACs target far above the space trains every candidate.
    search = BaselineSearch(seed=TINY_ARCH, macs_target=1e9, channel_divisor=2)
    config = SearchConfig(name=pruner, search=search, proxy=dataclasses.replace(PROXY, epochs=3),
                          objective=Objective(kind="metric"), sampler="random", trials=6,
                          startup_trials=5, pruner=pruner)
    study = open_study(config, tmp_path_factory.mktemp(pruner))
    controller.enqueue_design(study, config)
    report = controller.run_worker(config, study, trials=6, dataset=digits)
    return pruner, study, report


@pytest.mark.slow
def test_optuna_pruners_end_to_end(pruned_study):
    _, study, report = pruned_study
    # Candidates rejected before training take trial numbers but count for nothing.
    trials = [t for t in study.get_trials() if "rejected" not in t.user_attrs]
    assert report.trained == 6 and len(trials) == 6 and counted(study) == 6
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # Seeded: trial 0 completes (it sets the pruners' minimum resource), and a later one
    # whose epoch-1 top-1 trails an earlier trial's by ~0.03 is pruned at epoch 1.
    assert len(pruned) + len(complete) == 6 and complete and pruned
    assert any(t.user_attrs["budget"] == 1 for t in pruned)
    for t in trials:
        if "duplicate_of" in t.user_attrs:  # the same network as an earlier trial: its result
            twin = study.get_trials()[t.user_attrs["duplicate_of"]]
            assert twin.state == t.state == TrialState.COMPLETE and t.values == twin.values
            continue
        steps = t.intermediate_values
        assert sorted(steps) == list(range(1, t.user_attrs["budget"] + 1))  # every epoch
        assert t.user_attrs["val_top1"] == steps[t.user_attrs["budget"]]  # what it reached
        assert t.user_attrs["max_budget"] == 3
    for t in complete:
        assert t.user_attrs["budget"] == 3 and t.values == [t.user_attrs["val_top1"]]
        assert "test_top1" in t.user_attrs  # the full result is recorded
    for t in pruned:  # keeps what it reached (Optuna's value: the last report)
        assert t.values == [t.intermediate_values[t.user_attrs["budget"]]]
        assert "test_top1" not in t.user_attrs  # never evaluated past its last epoch

    rows = records.trial_rows(study)
    assert [(r.trial, r.state, r.budget) for r in rows] == [
        (t.number, t.state.name.lower(), t.user_attrs["budget"]) for t in trials]
    assert all(r.score == r.val_top1 for r in rows)
    # `front` ranks only trials told a value at the full budget.
    assert {r.trial for r in records.front(rows)} == {t.number for t in complete}


@pytest.mark.slow
def test_pruners_never_discard_a_fully_trained_trial(pruned_study):
    # Optuna's HyperbandPruner(max_resource=epochs) has a rung at the last epoch: a trial that
    # finished was pruned there and lost its result, until the controller stopped asking.
    _, study, _ = pruned_study
    pruned = [t for t in study.get_trials()
              if t.state == TrialState.PRUNED and "rejected" not in t.user_attrs]
    # Pruning saves epochs only before the last one; at the last it only loses the result.
    assert all(t.user_attrs["budget"] < t.user_attrs["max_budget"] for t in pruned), [
        (t.number, t.user_attrs["budget"]) for t in pruned]


# ----------------------------------------------------------------------------- scale --fit


def test_scale_fit_latency_measures_up_the_family_and_stops_over_budget(capsys, monkeypatch):
    # Batch 256 so compute, not dispatch, sets the time: at batch 1 these 8-16 px networks all
    # run in ~0.2 ms and their order is noise; at 256, phi 3 (8.7x phi 0's MACs) is ~6x slower.
    argv = ["scale", "--baseline", TINY_ARCH, "--phi", "0-3", "--batch", "256", "--json"]
    assert main([*argv, "--fit", "latency=1e9"]) == 0
    first = json.loads(capsys.readouterr()[0])
    assert first["chosen"]["phi"] == 3  # everything fits a huge budget ...
    latency = [row["latency_ms"] for row in first["family"]]  # ... so all were measured
    assert all(ms > 0 for ms in latency)

    # A budget midway (geometrically) between the smallest and largest member's, against the
    # latencies just measured, replayed: on a loaded CPU a second measurement can move a
    # member's p50 more than 2x, and what is tested here is where the command stops.
    from search import model_commands

    measured = {row["arch"]: row["latency_ms"] for row in first["family"]}
    probes = []
    monkeypatch.setattr(model_commands, "_latency_probe", lambda batch: lambda row: (
        probes.append(row["arch"]) or measured[row["arch"]]))
    budget = math.sqrt(latency[0] * latency[-1])
    assert main([*argv, "--fit", f"latency={budget}"]) == 0
    record = json.loads(capsys.readouterr()[0])
    family, chosen = record["family"], record["chosen"]
    assert record["fit"] == f"latency={budget}"
    assert chosen["latency_ms"] <= budget and chosen["phi"] < 3
    before = [r for r in family if r["phi"] < chosen["phi"]]
    after = [r for r in family if r["phi"] > chosen["phi"]]
    assert all(r["latency_ms"] <= budget for r in before)  # measured in order, all fitting
    # The command stops at the first member over budget: it was measured, later ones not.
    assert after[0]["latency_ms"] > budget
    assert all("latency_ms" not in r for r in after[1:])
    assert [r["arch"] for r in family] == [r["arch"] for r in first["family"]]
    assert probes == [r["arch"] for r in [*before, chosen, after[0]]]
