"""Both searches end to end on CPU at toy size: trials, halving, front, export, validate."""

import dataclasses
import json
import os
import re
import subprocess
import time
import types

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from toys import TINY_ARCH

import space
from search import controller, records, storage
from search.cli import main
from search.config import BaselineSearch, CoefficientSearch, Objective, SearchConfig
from search.halving import Halving
from space.baseline_space import StageChoices
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig

ARCH = TINY_ARCH
PROXY = ProxyConfig(dataset="digits", epochs=2, batch_size=128, resolution=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def run(config: SearchConfig, tmp_path, digits, trials=None):
    store = storage.open_storage(str(tmp_path / "s.journal"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, created = controller.open_study(config, store, config.name)
    assert created
    controller.enqueue_design(study, config)
    report = controller.run_worker(config, study, trials=trials or controller.budget(config),
                                   dataset=digits)
    return study, report


def coefficient_config(**changes) -> SearchConfig:
    # Channels round to 2: at 8-16 channels the official 8 leaves width no room, and most
    # directions would round to the same few networks.
    # Matched at 4x, channels rounded to 2, 15% tolerance: at 8 px and 8-16 channels a toy's
    # directions have few distinct networks near 2x, and coarse steps between them.
    base = SearchConfig(name="coef", search=CoefficientSearch(
                            baseline=ARCH, channel_divisor=2, phi=2.0, tolerance=0.15),
                        proxy=PROXY, sampler="tpe", trials=5, startup_trials=1,
                        halving=Halving(min_epochs=1, eta=2))
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def coef_study(tmp_path_factory, digits):
    """One small coefficient study shared by the tests that read results back. Six trials:
    halving's final decisions then send at least 6 // eta = 3 networks to the full budget,
    whatever the scores, which the rank-correlation test needs."""
    path = tmp_path_factory.mktemp("coef")
    study, report = run(coefficient_config(trials=6), path, digits)
    return study, report, path


def test_coefficient_search_records_realized_cost_and_exports(coef_study, tmp_path, capsys):
    study, report, _ = coef_study
    trials = study.get_trials()
    assert report.trained == 6
    assert len(trials) == 6 + report.rejected + report.promoted + report.duplicates
    trained = [t for t in trials if "rejected" not in t.user_attrs]
    # Halving's stopped trials are PRUNED (rung values in user attrs), so Optuna's own views
    # (best_trials, the dashboard's front) hold only full-budget results.
    for t in trained:
        stopped = "stopped_at" in t.user_attrs
        assert t.state == (TrialState.PRUNED if stopped else TrialState.COMPLETE)
        assert (t.values is None) == stopped and (t.user_attrs["budget"] < 2) == stopped
    assert {t.number for t in study.best_trials} <= {
        t.number for t in trials if t.state == TrialState.COMPLETE}
    assert [t.user_attrs.get("reference") for t in trials[:4]] == [
        "paper", "depth-only", "width-only", "resolution-only"]
    for t in trials:
        a = t.user_attrs
        # Every direction, trained or not, is on the constraint; its shares say how it splits
        # the log-cost (the paper's triple is off the constraint by its rounding: 1.92).
        product = 1.2 * 1.1**2 * 1.15**2 if a.get("reference") == "paper" else 2.0
        assert a["alpha"] * a["beta"] ** 2 * a["gamma"] ** 2 == pytest.approx(product)
        assert a["depth_share"] + a["width_share"] + a["resolution_share"] == pytest.approx(1)
        assert a["alpha"] == pytest.approx(product ** a["depth_share"])
        assert a["match_ratio"] == pytest.approx(4.0 * (1 + a["match_error"]))
        if "rejected" in a:  # recorded untrained, with its reason
            assert t.state == TrialState.PRUNED and "val_top1" not in a
            assert abs(a["match_error"]) > 0.15 and "tolerance 15%" in a["rejected"]
            continue
        # Trained at the phi whose rounded network costs 4x the baseline's MACs (within 15%).
        spec = space.decode(a["arch"])
        assert a["macs"] == space.cost(spec).macs  # realized, after rounding
        assert a["macs_ratio"] == pytest.approx(a["match_ratio"])
        assert abs(a["match_error"]) <= 0.15
        assert t.values in ([a["val_top1"]], None)  # matched: the metric alone
        assert a["budget"] in (1, 2) and a["max_budget"] == 2

    rows = records.trial_rows(study)
    ranked = records.front(rows)
    assert ranked and ranked[0].rank == 0
    assert all(r.budget == 2 for r in ranked)  # stopped trials are not compared
    out = tmp_path / "coeffs.json"
    row = records.pick(rows, "best")
    records.export(study, row, out, "test")
    coeffs = space.load_coefficients(out)
    assert (coeffs.alpha, coeffs.beta, coeffs.gamma) == (row.alpha, row.beta,
                                                         row.gamma)
    prov = coeffs.provenance
    assert prov["trial"] == row.trial and prov["dataset"] == "digits"
    assert prov["baseline"] == ARCH and prov["realized_macs"] == row.macs
    assert space.decode(prov["baseline_arch"]).num_classes == 10
    assert prov["proxy_budget"]["epochs"] == 2 and prov["selection_metric"] == "val_top1"



def test_exported_coefficients_rebuild_every_searched_network(coef_study, tmp_path, capsys):
    """Round trip: each trial's network is `scale(file, phi)` of its exported file, exactly."""
    study, _, _ = coef_study
    for row in records.trial_rows(study):
        out = records.export(study, row, tmp_path / f"t{row.trial}.json", "test")
        coeffs = space.load_coefficients(out)
        assert coeffs.baseline == row.baseline_arch  # adapted: 8 px, 10 classes, 1 channel
        assert (coeffs.resolution_multiple, coeffs.channel_divisor) == (2, 2)
        assert coeffs.provenance["phi"] == row.phi  # each direction's own matched phi
        member = space.scale(None, coeffs, row.phi)
        assert space.encode(member) == row.arch
        assert space.cost(member).macs == row.macs  # to the unit
        assert main(["scale", "--coeffs", str(out), "--phi", f"0,{row.phi!r}", "--json"]) == 0
        family = json.loads(capsys.readouterr()[0])["family"]
        assert family[1]["arch"] == row.arch and family[1]["macs"] == row.macs
        assert family[0]["arch"] == row.baseline_arch

    # A flag overrides the file's rounding, and says so on stderr.
    assert main(["scale", "--coeffs", str(out), "--phi", "1", "--resolution-multiple", "8",
                 "--json"]) == 0
    err = capsys.readouterr()[1]
    assert "note: --resolution-multiple 8 overrides the coefficients file's 2" in err
    assert main(["scale", "--coeffs", str(out), "--phi", "1", "--baseline", "b0", "--json"]) == 0
    assert "--baseline b0 replaces the network the coefficients were found on" in (
        capsys.readouterr()[1])


def test_single_dimension_control_is_one_switch(tmp_path, digits, capsys):
    config = coefficient_config(
        # 8 px scales by 2 px steps: 12 px is 2.23x the MACs, the closest to 2x.
        search=CoefficientSearch(baseline=ARCH, dimensions=("resolution",), tolerance=0.15),
        trials=2, halving=None)
    store = storage.open_storage(str(tmp_path / "s.journal"))
    study, _ = controller.open_study(config, store, config.name)
    controller.enqueue_design(study, config)
    said = []
    report = controller.run_worker(config, study, trials=2, dataset=digits, max_duplicates=3,
                                   say=said.append)
    first, *again = study.get_trials()
    assert (first.user_attrs["alpha"], first.user_attrs["beta"]) == (1.0, 1.0)
    assert first.user_attrs["gamma"] == pytest.approx(2**0.5)
    assert first.user_attrs["resolution"] == 12  # 8 * 1.414 rounded to a multiple of 2
    # One free dimension leaves one network: later trials reuse the first's result, do not
    # count as trainings, and the worker stops after 3 of them, saying why.
    assert len(again) == 3 and report.trained == 1 and report.duplicates == 3
    for t in again:
        assert t.user_attrs["duplicate_of"] == 0 and t.values == first.values
        assert "compile_s" in t.user_attrs and not controller.counts_toward_budget(t)
    assert said == ["stopping: the last 3 proposals were networks already trained (rounding "
                    "maps many directions to one network); the study holds 1 of 2 distinct "
                    "trainings"]
    # The front ranks the one network once; --all lists its reuses too, tied with it.
    where = ["--storage", str(tmp_path / "s.journal"), "--json"]
    assert main(["front", *where]) == 0
    assert [r["trial"] for r in json.loads(capsys.readouterr()[0])] == [0]
    assert main(["front", *where, "--all"]) == 0
    every = json.loads(capsys.readouterr()[0])
    assert [(r["trial"], r["rank"]) for r in every] == [(0, 0), (1, 0), (2, 0), (3, 0)]


@pytest.mark.slow
def test_baseline_search_rejects_over_budget_candidates_before_training(tmp_path, digits):
    seed = space.decode(ARCH).replace(num_classes=10, in_channels=1)
    target = space.cost(seed).macs
    config = SearchConfig(
        name="base", search=BaselineSearch(seed=ARCH, macs_target=target, max_over=0.0,
                                           choices=StageChoices(widths=(1.0, 2.0))),
        proxy=PROXY, objective=Objective(kind="reward"), sampler="random", trials=3,
        startup_trials=6)
    study, report = run(config, tmp_path, digits)
    trials = study.get_trials()
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert report.trained == 3 and report.rejected == len(rejected) > 0
    for t in rejected:  # never trained
        assert t.state == TrialState.PRUNED and "val_top1" not in t.user_attrs
        assert "over the limit" in t.user_attrs["rejected"]
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    assert trials[0].user_attrs["reference"] == "seed"
    for t in trained:
        a = t.user_attrs
        assert a["macs"] <= target
        assert t.values[0] == pytest.approx(a["val_top1"] * (a["macs"] / target) ** -0.07)
    path = tmp_path / "arch.json"
    records.export(study, records.pick(records.trial_rows(study), "best"), path, "test")
    assert space.cost(space.resolve(str(path))).macs <= target


@pytest.mark.parametrize("sampler", ["grid", "tpe", "nsga2", "gp", "random"])
@pytest.mark.parametrize("parameterization", ["shares", "coefficients"])
def test_every_sampler_proposes_points_on_the_manifold(sampler, parameterization, tmp_path,
                                                       digits):
    if sampler == "gp":
        pytest.importorskip("torch", reason="Optuna's GPSampler needs PyTorch")
    search = CoefficientSearch(baseline=ARCH, parameterization=parameterization,
                               grid_step=0.1 if parameterization == "coefficients" else 0.25)
    config = coefficient_config(sampler=sampler, trials=None if sampler == "grid" else 12,
                                startup_trials=3, search=search)
    study, _ = controller.open_study(config, storage.open_storage(str(tmp_path / "s.journal")),
                                     "s")
    controller.enqueue_design(study, config)
    runner = controller.TrialRunner(config, study, digits)
    proposed, infeasible = [], 0
    for i in range(controller.budget(config)):
        trial = study.ask()
        candidate = runner.propose(trial)
        if isinstance(candidate, str):  # only the coefficient box has infeasible points
            infeasible += 1
            study.tell(trial, state=TrialState.PRUNED)
            continue
        # Stand-in scores (no training): this exercises the samplers' model updates only.
        if candidate.rejected:  # off the cost tolerance: feasible, but not trained
            assert "tolerance" in candidate.rejected
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, [0.5 + 0.01 * i])
        proposed.append(tuple(candidate.attrs[k] for k in ("alpha", "beta", "gamma")))
    if parameterization == "shares":
        assert infeasible == 0  # feasible by construction, for every sampler
    assert len(proposed) >= 4
    for alpha, beta, gamma in proposed[1:]:  # all but the paper's lie exactly on the manifold
        assert alpha * beta**2 * gamma**2 == pytest.approx(2.0) and min(alpha, beta, gamma) >= 1
    assert proposed[0] == (1.2, 1.1, 1.15)


@pytest.mark.slow
def test_balanced_accuracy_replaces_top1_as_the_objective(tmp_path, digits):
    config = coefficient_config(objective=Objective(kind="metric",
                                                    metric="val_balanced_accuracy"),
                                proxy=dataclasses.replace(PROXY, imbalance=10), halving=None,
                                trials=2)
    study, _ = run(config, tmp_path, digits)
    for t in study.get_trials():
        if "rejected" in t.user_attrs:
            continue
        assert t.values[0] == t.user_attrs["val_balanced_accuracy"]
        counts = t.user_attrs["train_class_counts"]
        assert counts[0] >= 9 * counts[-1]  # trained on the long-tailed split
    rows = records.trial_rows(study)
    assert {r.metric for r in rows} == {"val_balanced_accuracy"}
    path = records.export(study, records.pick(rows, "best"), tmp_path / "c.json", "test")
    provenance = space.load_coefficients(path).provenance
    assert provenance["selection_metric"] == "val_balanced_accuracy"
    assert provenance["objective"]["metric"] == "val_balanced_accuracy"


def test_channel_divisor_reaches_the_trials(tmp_path, digits):
    config = coefficient_config(search=CoefficientSearch(baseline=ARCH, channel_divisor=2,
                                                         match=None))
    study, _ = controller.open_study(config, storage.open_storage(str(tmp_path / "s.journal")),
                                     "s")
    controller.enqueue_design(study, config)
    runner = controller.TrialRunner(config, study, digits)
    candidate = runner.propose(study.ask())  # the paper's triple
    phi = candidate.attrs["phi"]
    assert phi == 1.0  # not matched: at the study's phi
    expected = space.scale(runner.baseline, space.PAPER, phi, resolution_multiple=2,
                           channel_divisor=2)
    assert candidate.spec == expected
    assert expected != space.scale(runner.baseline, space.PAPER, phi, resolution_multiple=2,
                                   channel_divisor=8)


def test_latency_as_the_cost_objective(tmp_path, digits):
    config = coefficient_config(objective=Objective(cost="latency"), halving=None, trials=1)
    study, _ = run(config, tmp_path, digits)
    (t,) = study.get_trials()
    assert t.user_attrs["latency_ms"] > 0
    assert t.values == [t.user_attrs["val_top1"], t.user_attrs["latency_ms"]]
    assert records.front(records.trial_rows(study), "latency_ms")[0].rank == 0


def test_optuna_pruner_for_single_objective_studies(tmp_path, digits):
    config = coefficient_config(objective=Objective(kind="metric"), halving=None,
                                pruner="median", trials=2, startup_trials=0,
                                proxy=dataclasses.replace(PROXY, epochs=3))
    study, report = run(config, tmp_path, digits)
    assert report.trained == 2
    for t in study.get_trials():
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if "duplicate_of" in t.user_attrs or "rejected" in t.user_attrs:
            continue
        assert t.intermediate_values  # reported every epoch
        assert t.user_attrs["budget"] == max(t.intermediate_values)
    assert len(records.trial_rows(study)) == 2  # pruned trials are listed with their budget


def test_cli_front_export_validate(coef_study, tmp_path, capsys):
    study, _, path = coef_study
    where = ["--storage", str(path / "s.journal")]
    assert main(["front", "coef", *where, "--json", "--plot", str(tmp_path / "f.png")]) == 0
    front = json.loads(capsys.readouterr()[0])
    assert front and {"trial", "alpha", "beta", "gamma", "val_top1", "macs", "params",
                      "budget"} <= set(front[0])
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert all(r["duplicate_of"] is None and r["budget"] == 2 for r in front)
    # --all: every trained trial; the ones halving stopped come last, unranked.
    assert main(["front", *where, "--all", "--json"]) == 0
    every = json.loads(capsys.readouterr()[0])
    assert sorted(r["trial"] for r in every) == [r.trial for r in records.trial_rows(study)]
    stopped = [r["budget"] < 2 for r in every]
    assert any(stopped) and stopped == sorted(stopped)
    assert all((r["rank"] is None) == s for r, s in zip(every, stopped, strict=True))
    assert main(["front", *where, "--all", "--plot", str(tmp_path / "f.html")]) == 0
    assert "<table" in (tmp_path / "f.html").read_text()
    assert "Pareto" not in capsys.readouterr()[1]
    assert main(["export", "coef", *where, "-o", str(tmp_path / "c.json")]) == 0
    assert "wrote" in capsys.readouterr()[0]
    assert main(["validate", "coef", *where, "--top", "3", "--epochs", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert len(report["rows"]) == 3 and report["long_epochs"] == 3
    # Spearman's rho by hand (Pearson on ranks; the rows' scores have no ties here, or the
    # correlation is undefined and reported as None).
    proxy = [r["proxy_score"] for r in report["rows"]]
    long = [r["long_score"] for r in report["rows"]]
    if len(set(proxy)) == len(proxy) and len(set(long)) == len(long):
        ranks = [np.argsort(np.argsort(v)) for v in (proxy, long)]
        assert report["spearman"] == pytest.approx(np.corrcoef(*ranks)[0, 1])
    elif len(set(proxy)) == 1 or len(set(long)) == 1:
        assert report["spearman"] is None
    assert json.loads(study.user_attrs["effsearch.validation"])["rows"] == report["rows"]


def test_report_script_tabulates_every_trial(coef_study, tmp_path):
    from test_comparison import load_report_script

    study, _, path = coef_study
    (tmp_path / storage.JOURNAL_NAME).write_bytes((path / "s.journal").read_bytes())
    load_report_script().main(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "### Study `coef`" in text and (tmp_path / "coef.front.png").exists()
    papers = sum(r.reference == "paper" for r in records.trial_rows(study))  # and promotions
    assert text.count("| paper |") == papers and "- **best**: trial" in text
    assert "- **knee**" not in text  # one objective: no knee
    assert "`val_top1` alone at matched 4x the baseline's macs" in text
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + len(
        records.trial_rows(study))


def test_resuming_with_another_search_is_refused(tmp_path, digits):
    config = coefficient_config(trials=1, halving=None)
    run(config, tmp_path, digits)
    store = storage.open_storage(str(tmp_path / "s.journal"))
    other = dataclasses.replace(config, objective=Objective(kind="pareto", cost="params"))
    with pytest.raises(space.UserError, match=r"exists with another config \(objective.cost: "
                       r"'macs' -> 'params'; objective.kind: 'metric' -> 'pareto'\); .* "
                       r"--study NEW_NAME"):
        controller.open_study(other, store, "coef")
    # Halving, sampler or seed change what later trials mean: refused, each named.
    changed = dataclasses.replace(config, halving=Halving(min_epochs=1, eta=3), seed=7,
                                  sampler="random")
    with pytest.raises(space.UserError) as e:
        controller.open_study(changed, store, "coef")
    assert ("halving: None -> {'min_epochs': 1, 'eta': 3, 'brackets': 1}; sampler: 'tpe' -> "
            "'random'; seed: 0 -> 7)") in str(e.value)
    # A larger budget and other timings are how a study is resumed: accepted.
    _, created = controller.open_study(dataclasses.replace(config, trials=9, grace_s=60.0),
                                       store, "coef")
    assert not created


def test_config_changes_compare_only_fields_both_sides_know():
    stored = {"kind": "coefficients", "search": {"phi": 1.0, "target": 2.0}, "trials": 5}
    mine = {"kind": "coefficients", "search": {"phi": 2.0, "target": 2.0, "new_field": 3},
            "trials": 9, "added_later": True}
    assert controller.config_changes(stored, mine) == ["search.phi: 1.0 -> 2.0"]


def test_stale_trials_are_failed_and_retried(tmp_path):
    store = storage.open_storage(str(tmp_path / "s.journal"))
    study = optuna.create_study(storage=store, study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("reference", "paper")
    trial.set_user_attr(controller.HEARTBEAT, 0.0)  # silent since 1970
    assert controller.fail_stale_trials(study, grace_s=60, max_retries=1) == [trial.number]
    old, new = study.get_trials()
    assert old.state == TrialState.FAIL and new.state == TrialState.WAITING
    assert new.system_attrs["fixed_params"] == old.params
    assert new.user_attrs["retry_of"] == old.number
    assert new.user_attrs["reference"] == "paper"
    assert controller.fail_stale_trials(study, grace_s=60, max_retries=1) == []


def _running_trial(study, machine, pid):
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(controller.WORKER_MACHINE, machine)
    trial.set_user_attr(controller.WORKER_PID, pid)
    trial.set_user_attr(controller.HEARTBEAT, time.time())  # fresh: the grace alone waits
    return trial.number


def test_a_dead_worker_on_this_machine_is_detected_at_once(tmp_path):
    study = optuna.create_study(storage=storage.open_storage(str(tmp_path / "s.journal")))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a PID that no process has now
    here = controller._machine()
    dead = _running_trial(study, here, gone.pid)
    _running_trial(study, here, os.getppid())  # alive
    _running_trial(study, "another-host/boot/ns", gone.pid)  # not ours to judge
    assert controller.fail_stale_trials(study, grace_s=3600, max_retries=0) == [dead]


def test_a_worker_waiting_on_another_says_for_what_and_until_when(tmp_path):
    config = coefficient_config(trials=1, halving=None, grace_s=1.0, heartbeat_s=0.5,
                                max_retries=0)
    study, _ = controller.open_study(config, storage.open_storage(str(tmp_path / "s.journal")),
                                     "wait")
    study.add_trial(optuna.create_trial(
        params={}, distributions={}, values=[0.5], user_attrs={"val_top1": 0.5}))
    other = _running_trial(study, "another-host/boot/ns", 1)
    said = []
    # The runner is never asked to train: nothing is left to; only its noise band is read.
    runner = types.SimpleNamespace(band=0.0)
    controller.run_worker(config, study, trials=1, runner=runner, poll_s=0.1, say=said.append)
    assert len(said) == 1, said  # once, not every poll
    assert re.fullmatch(rf"waiting for trial {other} \(worker \?, last heartbeat \d+ s ago\): "
                        r"it is failed and retried if still silent at \d\d:\d\d:\d\d "
                        r"\(grace_s=1\)", said[0]), said[0]
    assert study.get_trials()[other].state == TrialState.FAIL  # then the grace ran out


def test_a_line_per_finished_trial(coef_study):
    study, _, _ = coef_study
    lines = [records.trial_line(t, "val_top1") for t in study.get_trials()]
    assert lines[0].startswith("trial 0 [paper] ")
    assert all(re.match(rf"trial {i} .*(done|stopped by halving at epoch 1|reuses trial \d+ "
                        rf"\(same network\)): val_top1 0\.\d+, \d+\.\d+M MACs, \d+ px", line)
               or re.match(rf"trial {i} rejected before training: its closest rounded network "
                           rf"costs [\d.]+x the baseline's macs", line)
               for i, line in enumerate(lines)), lines


def test_a_twin_stands_in_and_a_stopped_one_is_left_to_its_promotion(digits):
    # halving rungs: epoch 1 of 2; two objectives (params vary at matched MACs)
    config = coefficient_config(objective=Objective(cost="params"))
    study = optuna.create_study(directions=config.objective.directions)
    runner = controller.TrialRunner(config, study, digits)

    def add(arch: str, rung: float, budget: int) -> None:
        attrs = {"arch": arch, "budget": budget, "rung_1": [rung, 100.0]}
        stopped = budget == 1
        if stopped:
            attrs["stopped_at"] = 1
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED if stopped else TrialState.COMPLETE,
            values=None if stopped else [rung, 100.0], user_attrs=attrs,
            distributions={"share_u": optuna.distributions.FloatDistribution(0, 1)},
            params={"share_u": 0.5}))

    add("x", 0.5, budget=1)  # trial 0: stopped at the rung
    add("y", 0.9, budget=2)  # trial 1: a better network went on
    assert runner._twin(5, "y").number == 1  # a full-budget twin stands in
    assert runner._twin(5, "x").number == 0  # a stopped one too: its promotion decides
    assert controller.promotions(config, study.get_trials()) == []  # 0.5 loses to 0.9
    for worse in (0.1, 0.2, 0.3):
        add("z", worse, budget=1)
    # Now 0.5 is among the best 5 // 2 at the rung: trial 0 is resumed, judged from epoch 2.
    due = controller.promotions(config, study.get_trials())
    assert [(t.number, rung) for t, rung in due] == [(0, 1)]
    controller.promote(study, config, *due[0])
    queued = study.get_trials()[-1]
    assert queued.state == TrialState.WAITING
    assert queued.system_attrs["fixed_params"] == {"share_u": 0.5}
    assert queued.user_attrs == {"promoted_from": 0, "promoted_rung": 1, "bracket": 0}
    assert controller.promotions(config, study.get_trials()) == []  # once
    assert not controller.counts_toward_budget(queued)  # it continues a counted trial


def test_a_rung_decides_only_with_eta_results_until_the_study_ends(digits):
    config = coefficient_config(objective=Objective(cost="params"),
                                halving=Halving(min_epochs=1, eta=3))
    study = optuna.create_study(directions=config.objective.directions)
    for rung in (0.5, 0.4):  # two stopped trials: too few to compare with eta 3
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED, user_attrs={"rung_1": [rung, 1.0], "stopped_at": 1}))
    assert controller.promotions(config, study.get_trials()) == []
    final = controller.promotions(config, study.get_trials(), final=True)
    assert [t.number for t, _ in final] == [0]  # max(1, 2 // 3) = 1: the better one


def test_every_trial_row_field_is_recorded_by_the_controller(coef_study):
    """TrialRow reads user attrs by field name: a renamed attr would silently read None."""
    study, _, _ = coef_study
    recorded = set().union(*(t.user_attrs for t in study.get_trials()))
    row_only = {"trial", "state", "metric", "score", "values", "rank"}
    row_only |= {"latency_ms", "duplicate_of"}  # recorded when measured or reused: tested above
    row_only |= {"factor"}  # recorded by factor rungs: tests/test_factor_rungs.py
    fields = {f.name for f in dataclasses.fields(records.TrialRow)}
    assert fields - row_only <= recorded, fields - row_only - recorded
    assert set(controller.RESULT_ATTRS) <= recorded  # and every result attr is written


def test_front_plot_holds_what_the_figure_draws(coef_study):
    from search.plots import front_plot

    study, _, _ = coef_study
    config = records.study_config(study)
    ranked = records.front(records.trial_rows(study))
    plot = front_plot(ranked, config, "t")
    assert sorted(plot.front + plot.dominated) == sorted((float(r.macs), r.score) for r in ranked)
    # One objective (matched cost): the best trial is highlighted, no Pareto front.
    best = max(ranked, key=lambda r: (r.score, -r.trial))
    assert not plot.pareto and plot.front == [(float(best.macs), best.score)]
    pareto = front_plot(ranked, {**config, "objective": {**config["objective"],
                                                         "kind": "pareto"}}, "t")
    assert pareto.front == sorted((float(r.macs), r.score) for r in ranked if r.rank == 0)
    paper = [r for r in ranked if r.reference == "paper"]
    assert plot.paper == [(float(r.macs), r.score) for r in paper]
    base = space.cost(space.decode(ranked[0].baseline_arch)).macs
    assert plot.iso_costs == [("baseline", base), ("target 4x baseline", 4 * base)]
    assert (plot.x_label, plot.y_label) == ("MACs", "val_top1")
