"""A direction table's header retrains its rows: `effsearch train ROW_ARCH --proxy TABLE
--seed ROW_SEED` gives the row's result (issue 23, part 3)."""

import dataclasses
import json

import optuna
import pytest
from toys import TINY_ARCH

from search import controller, storage
from search.cli import main
from search.config import CoefficientSearch, SearchConfig
from search.replay import Table, rows_of_study, table_header
from trainers.proxy import ProxyConfig, load_proxy_dataset

# A table part as experiments/common.py builds one: a grid study at a matched factor, full
# epochs, a training seed of its own, a recipe unlike the defaults (fraction, validation
# share, batch, no flips) so that a header that lost a field would show.
PART = SearchConfig(
    name="table-4x-s1",
    search=CoefficientSearch(baseline=TINY_ARCH, phi=2.0, channel_divisor=2, tolerance=0.3,
                             grid_step=0.5, snap=0.0),
    proxy=ProxyConfig(dataset="digits", resolution=8, epochs=2, batch_size=32, fraction=0.5,
                      val_fraction=0.2, flip=False, seed=1),
    sampler="grid", trials=None, startup_trials=0, halving=None)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "direction_table.jsonl"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, _ = controller.open_study(PART, storage.open_storage(str(path.with_suffix(
        ".journal"))), PART.name)
    controller.enqueue_design(study, PART)
    controller.run_worker(PART, study, trials=1, dataset=load_proxy_dataset(PART.proxy))
    rows = rows_of_study(study.get_trials(), factor=PART.search.growth, part="4x-s1",
                         seed=PART.proxy.seed, epochs=PART.proxy.epochs)
    assert rows, "the study trained no direction"
    Table(tuple(rows)).save(path, **table_header(PART, tolerance=0.05))
    return path


def test_header_holds_what_retrains_a_row(table_path):
    table = Table.load(table_path)
    header = table.header
    assert ProxyConfig.from_json(header["proxy"]) == dataclasses.replace(PART.proxy, seed=0)
    assert header["baseline"] == TINY_ARCH and header["tolerance"] == 0.05
    assert header["rounding"]["channel_divisor"] == 2
    assert table.rows[0]["seed"] == 1


def test_a_row_retrained_from_the_header_gives_its_result(table_path, capsys):
    row = Table.load(table_path).rows[0]
    assert main(["train", row["arch"], "--proxy", str(table_path), "--seed", str(row["seed"]),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resolution"] == row["resolution"]
    assert (result["macs"], result["params"]) == (row["macs"], row["params"])
    assert [c["val_top1"] for c in result["curve"]] == row["curve"]
    assert (result["val_top1"], result["test_top1"]) == (row["val_top1"], row["test_top1"])


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read a JSON object"),
    ('{"proxy": 3}', "holds no ProxyConfig"),
    ('{"epochs": 2, "colour": "red"}', "unknown ProxyConfig field(s) colour"),
    ('{"epochs": 0}', "epochs must be >= 1"),
])
def test_a_bad_proxy_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "proxy.json"
    path.write_text(content)
    assert main(["train", TINY_ARCH, "--proxy", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_proxy_takes_an_arch_not_a_config_file(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text("{}")
    assert main(["train", str(tmp_path / "sweep.py"), "--proxy", str(path)]) == 2
    assert "not a config file" in capsys.readouterr().err


def test_the_table_stands_in_for_the_trainings_it_holds(table_path):
    from space import UserError

    table = Table.load(table_path)
    row = table.rows[0]
    lookup = table.recorded(PART.proxy)
    hit = lookup(row["arch"], row["seed"])
    assert (hit.status, hit.val_top1, hit.test_top1) == ("ok", row["val_top1"],
                                                         row["test_top1"])
    assert lookup(row["arch"], row["seed"] + 1) is None and lookup("other", row["seed"]) is None
    with pytest.raises(UserError, match=r"another recipe \(epochs differ\)"):
        table.recorded(dataclasses.replace(PART.proxy, epochs=3))


def test_a_ladder_reusing_the_table_trains_only_what_it_lacks(table_path, monkeypatch):
    from search import ladder
    from trainers import proxy as proxy_lib

    study = optuna.load_study(study_name=PART.name,
                              storage=storage.open_storage(str(table_path.with_suffix(
                                  ".journal"))))
    trained = []
    real = proxy_lib.train_and_evaluate
    monkeypatch.setattr(proxy_lib, "train_and_evaluate",
                        lambda config, **kw: trained.append(config.seed) or real(config, **kw))
    record = ladder.run_ladder(study, factors=[PART.search.growth], top=1, seeds=2,
                               references=False, reuse=Table.load(table_path))
    row = Table.load(table_path).rows[0]
    assert trained == [row["seed"] + 1]  # the table held the first seed's training
    (rung,) = record["rows"]
    assert rung["arch"] == row["arch"] and rung["val_top1"][0] == row["val_top1"]
