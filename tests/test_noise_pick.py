"""The noise-aware final pick (search/noise_pick.py)."""

import json

import optuna
import pytest
from toys import TINY_ARCH, toy_search_config

from search import noise_pick, storage
from search.cli import main
from search.config import CoefficientSearch, Objective, SearchConfig
from search.records import TrialRow
from space import UserError


def row(trial, score, arch, **changes):
    base = {"trial": trial, "state": "complete", "metric": "val_top1", "score": score,
            "values": (score,), "arch": arch, "resolution": 8, "macs": 1, "params": 1,
            "budget": 3, "max_budget": 3}
    return TrialRow(**(base | changes))


def test_the_band_holds_the_distinct_networks_noise_cannot_tell_from_the_best():
    rows = [row(0, 0.50, "a"), row(1, 0.49, "b"), row(2, 0.47, "c"),
            row(3, 0.495, "b", duplicate_of=1), row(4, 0.60, "d", budget=1),
            row(5, 0.30, "e", state="pruned")]
    assert noise_pick.within_band(rows, std=0.005) == 2  # 1.96 sqrt(2) 0.005 = 0.0139
    assert noise_pick.within_band(rows, std=0.02) == 3
    assert noise_pick.within_band(rows, std=0.001) == 1  # the leader alone
    assert noise_pick.within_band([row(0, 0.5, "a", factor=2.0), row(1, 0.4, "b", factor=4.0)],
                                  std=0.01, factor=4.0) == 1


@pytest.mark.parametrize(("changes", "match"), [
    ({"noise_seeds": 0}, "noise_seeds must be integers >= 1"),
    ({"noise_seeds": 2.5}, "noise_seeds must be integers >= 1"),
    ({"noise_seeds": 2, "search": CoefficientSearch(baseline=TINY_ARCH, match=None)},
     "needs a coefficient search with match set"),
    ({"noise_seeds": 2, "ladder": (4,)}, "choose one"),
    ({"noise_std": 0.0}, "noise_std must be > 0"),
    ({"noise_promotions": True, "halving": None}, "needs halving"),
    ({"noise_promotions": True, "pruner": "median"}, "needs halving"),
    ({"noise_promotions": True, "objective": Objective(kind="pareto", cost="params")},
     "compares one objective"),
])
def test_noise_settings_are_checked(changes, match):
    with pytest.raises(UserError, match=match):
        SearchConfig(name="x", **({"search": CoefficientSearch(baseline=TINY_ARCH)} | changes))


def noise_config(name: str, std: str) -> str:
    return toy_search_config(name, phi=2.0, epochs=2, trials="3", startup_trials="3",
                             halving="None", noise_seeds="2", noise_std=std)


@pytest.mark.slow
def test_directions_within_the_band_get_a_second_seed_and_export_picks_the_best_mean(
        tmp_path, capsys):
    config = tmp_path / "noise.py"
    config.write_text(noise_config("noise", "1.0"))  # a band that holds every direction
    work = str(tmp_path / "w")
    assert main(["search", str(config), "--workdir", work, "--allow-cpu"]) == 0
    assert "get 2 seeds each" in capsys.readouterr().err
    store = storage.open_storage(storage.storage_url(work, None), create=False)
    study = optuna.load_study(study_name="noise", storage=store)
    ladder = json.loads(study.user_attrs["effsearch.ladder"])
    trained = {t.user_attrs["arch"] for t in study.trials if "duplicate_of" not in t.user_attrs}
    assert ladder["seeds"] == [0, 1] and {r["arch"] for r in ladder["rows"]} == trained
    best = max(ladder["rows"], key=lambda r: r["val_top1_mean"])
    out = tmp_path / "c.json"
    assert main(["export", "noise", "--workdir", work, "-o", str(out)]) == 0
    assert json.loads(out.read_text())["provenance"]["trial"] == best["trial"]
    # Without a seed std, one line; the study is kept.
    config.write_text(noise_config("nostd", "None"))
    assert main(["search", str(config), "--workdir", work, "--allow-cpu"]) == 2
    err = capsys.readouterr().err
    assert "needs the proxy's seed std" in err and "Traceback" not in err
    assert "nostd" in storage.study_names(store)
