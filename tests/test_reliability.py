"""Proxy reliability: the test-retest correlation of seeds over distinct networks at one
matched cost, its noise band and ceiling, resumable trainings, and `front`'s noise marks."""

import dataclasses
import hashlib
import json
import textwrap
import types

import numpy as np
import pytest
from toys import TINY_ARCH

import space
from search import reliability
from search.cli import main
from search.config import BaselineSearch, CoefficientSearch, SearchConfig
from space import UserError
from trainers.proxy import ProxyConfig

# Channels round to 2 and a wide tolerance: the toy's lattice then reaches several networks.
SEARCH = CoefficientSearch(baseline=TINY_ARCH, channel_divisor=2, tolerance=0.3)
CONFIG = SearchConfig(name="rel", search=SEARCH, proxy=ProxyConfig(
    dataset="digits", epochs=1, batch_size=128, resolution=8))
DIGITS = types.SimpleNamespace(num_classes=10, channels=1)  # what measure reads of a dataset


def fake_train(noise: float):
    """A trainer whose score is a fixed quality of the network plus seeded noise."""
    calls = []

    def train(proxy, dataset):
        calls.append((proxy.arch, proxy.seed))
        quality = int(hashlib.sha256(proxy.arch.encode()).hexdigest()[:6], 16) / 16**6
        jitter = np.random.default_rng([proxy.seed, len(proxy.arch)]).normal(0, noise)
        return types.SimpleNamespace(status="ok", reason=None, val_top1=quality + jitter,
                                     test_top1=quality, wall_s=1.0)

    return train, calls


def test_the_lattice_gives_distinct_networks_within_tolerance():
    baseline = space.decode(TINY_ARCH).replace(num_classes=10, in_channels=1)
    networks = reliability.lattice_networks(SEARCH, baseline, 0.1)
    assert len(networks) >= 5
    assert len({n.arch for n in networks}) == len(networks)
    assert all(abs(n.ratio / SEARCH.growth - 1) <= SEARCH.tolerance for n in networks)
    assert all(abs(sum(n.shares) - 1) < 1e-9 for n in networks)
    picked = reliability.choose(networks, 3, seed=0)
    assert len(picked) == 3 and picked == reliability.choose(networks, 3, seed=0)


def test_seeds_that_agree_are_reliable_and_noise_is_not(tmp_path):
    train, _ = fake_train(noise=0.0)
    same = reliability.measure(CONFIG, networks=6, seeds=2, results=tmp_path / "a.jsonl",
                               dataset=DIGITS, train=train)
    assert same.spearman == pytest.approx(1.0) and same.seed_std == pytest.approx(0.0)
    train, _ = fake_train(noise=10.0)  # noise far above the networks' spread
    noisy = reliability.measure(CONFIG, networks=6, seeds=3, results=tmp_path / "b.jsonl",
                                dataset=DIGITS, train=train)
    assert noisy.spearman < 0.9 and noisy.seed_std > 1
    assert noisy.seeds == (0, 1, 2) and all(len(r["scores"]) == 3 for r in noisy.rows)
    assert noisy.noise_band == pytest.approx(1.96 * 2**0.5 * noisy.seed_std)
    assert noisy.ceiling(same) == pytest.approx(max(noisy.spearman, 0) ** 0.5)
    back = reliability.Reliability.from_json(json.loads(json.dumps(noisy.to_json())))
    assert back == noisy


def test_the_noise_band_is_exceeded_by_seed_noise_one_time_in_twenty():
    rng = np.random.default_rng(3)
    quality = rng.normal(size=4000)
    rows = [{"scores": list(q + rng.normal(0, 0.01, 2))} for q in quality]
    found = reliability.summarize("val_top1", 2.0, [0, 1], rows)
    assert found.seed_std == pytest.approx(0.01, rel=0.05)
    fresh = rng.normal(0, 0.01, (20000, 2))  # two more seeds of one network, many times
    exceeded = np.mean(np.abs(fresh[:, 0] - fresh[:, 1]) > found.noise_band)
    assert 0.04 < exceeded < 0.06


def test_the_interval_narrows_with_more_networks():
    rng = np.random.default_rng(0)
    def rows(n):
        quality = rng.normal(size=n)
        return [{"scores": [q + rng.normal(0, 0.5), q + rng.normal(0, 0.5)]} for q in quality]
    small = reliability.summarize("val_top1", 2.0, [0, 1], rows(10))
    large = reliability.summarize("val_top1", 2.0, [0, 1], rows(200))
    width = lambda r: r.interval[1] - r.interval[0]  # noqa: E731
    assert reliability.summarize("val_top1", 2.0, [0, 1], [
        {"scores": [k, k]} for k in range(5)]).interval is None  # perfect: undefined
    assert width(large) < width(small) / 3
    assert large.interval[0] < large.spearman < large.interval[1]


def test_a_killed_measurement_resumes_without_training_again(tmp_path):
    results = tmp_path / "r.jsonl"
    train, calls = fake_train(noise=0.01)
    first = reliability.measure(CONFIG, networks=4, seeds=2, results=results, dataset=DIGITS,
                                train=train)
    assert len(calls) == 8
    with open(results, "a") as f:
        f.write('{"key": "torn')  # a kill mid-write
    again = reliability.measure(CONFIG, networks=4, seeds=2, results=results,
                                dataset=DIGITS, train=train)
    assert len(calls) == 8 and again == first
    assert len(results.read_text().splitlines()) == 9  # the torn line stays, ended
    more = reliability.measure(CONFIG, networks=4, seeds=3, results=results, dataset=DIGITS,
                               train=train)
    assert len(calls) == 12 and [r["scores"][:2] for r in more.rows] == \
        [r["scores"] for r in first.rows]
    # Another recipe is another training, even for the same network and seed.
    longer = dataclasses.replace(CONFIG, proxy=dataclasses.replace(CONFIG.proxy, epochs=2))
    reliability.measure(longer, networks=4, seeds=2, results=results, dataset=DIGITS,
                        train=train)
    assert len(calls) == 20


def test_what_cannot_be_measured_is_one_line(tmp_path):
    train, _ = fake_train(noise=0.0)
    with pytest.raises(UserError, match="at least 3 networks and 2 seeds"):
        reliability.measure(CONFIG, networks=4, seeds=1, results=tmp_path / "r",
                            dataset=DIGITS, train=train)
    tight = dataclasses.replace(CONFIG, search=dataclasses.replace(SEARCH, tolerance=1e-6))
    with pytest.raises(UserError, match=r"distinct networks of the 0\.1 lattice lie within"):
        reliability.measure(tight, networks=4, seeds=2, results=tmp_path / "r",
                            dataset=DIGITS, train=train)
    baseline = SearchConfig(name="b", search=BaselineSearch(seed=TINY_ARCH, macs_target=1e6))
    with pytest.raises(UserError, match="a baseline search"):
        reliability.measure(baseline, networks=4, seeds=2, results=tmp_path / "r",
                            dataset=DIGITS, train=train)


def write_config(path, name: str, epochs: int):
    """The toy's coefficient search as a sweep config file, as a user writes one."""
    path.write_text(textwrap.dedent(f"""
        from search.config import CoefficientSearch, SearchConfig
        from trainers.proxy import ProxyConfig

        def get_config():
            return SearchConfig(
                name="{name}", search=CoefficientSearch(baseline="{TINY_ARCH}",
                                                        channel_divisor=2, tolerance=0.3),
                proxy=ProxyConfig(dataset="digits", epochs={epochs}, batch_size=128,
                                  resolution=8),
                sampler="grid", trials=None, halving=None)
        """))
    return path


def test_the_command_stores_it_and_front_marks_what_noise_cannot_tell(tmp_path, capsys,
                                                                       monkeypatch):
    import trainers.proxy

    config = write_config(tmp_path / "rel.py", "rel", epochs=1)
    workdir = str(tmp_path / "w")
    train, _ = fake_train(noise=0.05)  # a stand-in for real training
    monkeypatch.setattr(trainers.proxy, "train_and_evaluate",
                        lambda proxy, dataset=None, **_: train(proxy, dataset))
    assert main(["reliability", str(config), "--networks", "4", "--workdir", workdir,
                 "--store", "rel"]) == 2  # no such study yet: refused before training
    assert "no study storage" in capsys.readouterr().err
    import optuna

    from search import controller, storage
    from search.config import load_search_config

    loaded = load_search_config(str(config))
    study, _ = controller.open_study(loaded, storage.open_storage(
        str(tmp_path / "w" / storage.JOURNAL_NAME)), "rel")
    for value, arch in ((0.90, "a"), (0.88, "b"), (0.50, "c")):
        study.add_trial(optuna.create_trial(
            values=[value], user_attrs={"val_top1": value, "arch": arch, "resolution": 8,
                                        "macs": 1, "params": 1, "budget": 1,
                                        "max_budget": 1}))
    longer = tmp_path / "longer.py"  # another proxy: its noise is not this study's
    longer.write_text(config.read_text().replace("epochs=1", "epochs=2"))
    assert main(["reliability", str(longer), "--networks", "4", "--workdir", workdir,
                 "--store", "rel"]) == 2
    assert "(proxy.epochs differ)" in capsys.readouterr().err
    assert main(["reliability", str(config), "--networks", "4", "--workdir", workdir,
                 "--store", "rel", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["networks"] == 4 and record["seeds"] == [0, 1]
    stored = reliability.Reliability.from_json(study.user_attrs[reliability.ATTR])
    assert stored.spearman == record["spearman"]
    assert main(["front", "rel", "--workdir", workdir, "--json"]) == 0
    rows = {r["arch"]: r for r in json.loads(capsys.readouterr().out)}
    top = 0.90
    for arch, value in (("a", 0.90), ("b", 0.88), ("c", 0.50)):
        assert rows[arch]["within_noise"] == (top - value <= stored.noise_band)
    assert rows["a"]["within_noise"] and not rows["c"]["within_noise"]
    assert main(["front", "rel", "--workdir", workdir]) == 0
    out, err = capsys.readouterr()
    assert "within noise" in out and err.startswith("within noise: at most ")


@pytest.mark.slow
def test_a_real_measurement_on_digits(tmp_path, capsys):
    config = write_config(tmp_path / "rel.py", "real", epochs=2)
    argv = ["reliability", str(config), "--networks", "4", "--workdir", str(tmp_path / "w"),
            "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["networks"] == 4 and -1 <= record["spearman"] <= 1
    assert 0 < record["seed_std"] < 0.5 and err.count("seed ") >= 8  # a line per training
    lines = (tmp_path / "w" / "reliability" / "real.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert main(argv) == 0  # resumed: nothing left to train
    assert json.loads(capsys.readouterr().out) == record
