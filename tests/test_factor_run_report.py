"""experiments/factor_run_report.py: a factor study's trainings and answers, judged on a table."""

import importlib.util
import json
from pathlib import Path

import optuna
import pytest
from test_factor_rungs import FACTORS, factor_config, table_at

from search import ladder, records, storage
from search.replay import replay, replay_tolerance
from trainers.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def script():
    spec = importlib.util.spec_from_file_location("factor_run_report",
                                                  ROOT / "experiments" / "factor_run_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A factor study replayed into a journal (4x, 8x, 16x; its best moves with the factor),
    the table it was replayed from, and the replay's outcome."""
    table = table_at(FACTORS, [(0.2, 0.6, 0.2), (0.2, 0.45, 0.35), (0.2, 0.3, 0.5)])
    work = tmp_path_factory.mktemp("w")
    url = storage.storage_url(str(work), None)
    store = storage.open_storage(url)
    config = factor_config(trials=14)
    outcome = replay(config, table, seed=0, dataset=load_dataset("digits"), storage=store)
    return work, table, outcome, optuna.load_study(study_name=config.name, storage=store)


def test_the_report_counts_what_the_study_trained_and_judges_its_answers(replayed):
    _, table, outcome, study = replayed
    r = script().report(study, table, 16.0, [{"kind": "target-only", "compute_mean": 1000.0}])
    epochs = config_epochs(study)
    # One training per replayed score (a stopped trial and the promotion that continued it
    # are one), each epoch counted once.
    assert set(r["per_factor"]) == {"4", "8", "16"}
    for factor, v in r["per_factor"].items():
        here = [s for s in outcome.scores if s[1] == float(factor)]
        assert v["trainings"] == len(here)
        assert v["stopped"] == sum(s[3] < epochs for s in here)
    assert sum(v["epochs"] for v in r["per_factor"].values()) == round(
        outcome.trainings * epochs)
    assert r["per_factor"]["4"]["stopped"] > 0  # halving works at the lowest factor only
    assert r["per_factor"]["8"]["stopped"] == r["per_factor"]["16"]["stopped"] == 0
    # A climb trains the direction's network matched at the larger cost.
    per_epoch = {f: v["compute"] / v["epochs"] for f, v in r["per_factor"].items()}
    assert per_epoch["4"] < per_epoch["8"] < per_epoch["16"]
    # The replay runs no confirmation: no export is judged; the forecast from 4x and 8x is,
    # as the replay benchmark's judge would.
    assert "export" not in r
    f, best = r["forecast"], r["table_best"]
    tolerance = replay_tolerance(factor_config())
    assert best["rank"] == 1 and best["regret"] == 0 and best["within_se"]
    assert best["pooled_se"] == table.pooled_se(16.0, tolerance)
    assert f["regret"] == pytest.approx(table.regret(f["shares"], 16.0, tolerance))
    means = sorted((d.mean for d in table.directions(16.0, tolerance)), reverse=True)
    assert means[f["rank"] - 1] == pytest.approx(f["mean"]) and f["of"] == len(means)
    assert f["within_se"] == (means[0] - f["mean"] <= best["pooled_se"] + 1e-12)
    assert -1 <= f["spearman"] <= 1 and "held_out" not in f  # no training at 16x chose it
    assert isinstance(f["vague"], bool) and f["interval"][0] <= f["interval"][1]
    below = sum(v["compute"] for k, v in r["per_factor"].items() if k != "16")
    assert f["compute"] > below and f["compute_vs_target_only"] == f["compute"] / 1000.0


def config_epochs(study) -> int:
    return records.study_config(study)["proxy"]["epochs"]


def test_a_confirmed_export_is_judged_at_the_target(replayed):
    """With a confirmation recorded (one candidate at the largest factor), the export is the
    candidate, judged on the table, and its compute adds the confirmation's new seeds."""
    _, table, _, study = replayed
    top = max((r for r in records.trial_rows(study) if r.factor == 16.0),
              key=lambda r: r.score)
    row = {"factor": 16.0, "method": "searched", "role": "candidate", "trial": top.trial,
           "arch": top.arch, "macs": top.macs, "macs_ratio": 16.0, "val_top1": [top.score] * 3,
           "val_top1_mean": top.score, "val_top1_std": 0.001, "test_top1_mean": top.score}
    epochs = config_epochs(study)
    record = {"factors": [16.0], "seeds": [0, 1, 2], "top": 1, "epochs": epochs,
              "metric": "val_top1", "cost": "macs", "tolerance": 0.5, "rows": [row]}
    study.set_user_attr(ladder.LADDER_ATTR, json.dumps(record))
    try:
        r = script().report(study, table, 16.0)
    finally:
        study.set_user_attr(ladder.LADDER_ATTR, "")
    e = r["export"]
    assert e["shares"] == [top.depth_share, top.width_share, top.resolution_share]
    # The search trained one of the three seeds (the table's seed it drew): two are new.
    assert top.seed in (0, 1, 2)
    assert e["compute"] == pytest.approx(r["search_compute"] + 2 * top.macs * epochs)
    # Judged also without the proxy's seed, whose training at 16x chose it.
    held = [x["val_top1"] for x in table.nearest(e["shares"], 16.0, 0.5).rows if x["seed"] != 0]
    assert e["held_out"]["mean"] == pytest.approx(sum(held) / len(held))
    assert e["val_mean"] == top.score and e["seeds_trained"] == 3
    assert "compute_vs_target_only" not in e  # no replay to compare with
    text = script().markdown(r)
    assert "(c) the export (confirmed)" in text and "(f) the forecast" in text


def test_a_missing_study_or_table_is_one_line_and_exit_2(replayed, tmp_path, capsys):
    work, table, _, _ = replayed
    table.save(tmp_path / "t.jsonl")
    main = script().main
    for argv in (["--table", str(tmp_path / "none.jsonl")],
                 ["--table", str(tmp_path / "t.jsonl"), "--study", "nope"],
                 ["--table", str(tmp_path / "t.jsonl"), "--study", "replay", "--target", "5"]):
        with pytest.raises(SystemExit) as exit_:
            main(["--workdir", str(work), *argv])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["--workdir", str(work), "--table", str(tmp_path / "t.jsonl"), "--study",
                 "replay", "--target", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "replay"
