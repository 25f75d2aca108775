"""Every sweep config under experiments/ loads, and the direction table covers what it says."""

from pathlib import Path

import pytest

from search.config import SearchConfig, load_config_file
from search.manifold import Simplex

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
CONFIGS = sorted(p for p in EXPERIMENTS.glob("*.py") if "def get_config" in p.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_experiment_config_loads(path):
    assert isinstance(load_config_file(str(path)), SearchConfig)


def test_direction_table_parts(monkeypatch):
    """2x: the 0.1 lattice (>= 40 directions, the corners among them) with 3 seeds; 4x: >= 10
    directions with 2 seeds; full curves (no halving); every part its own study."""
    names, seeds = set(), {2.0: set(), 4.0: set()}
    for part in ("2x-s0", "2x-s1", "2x-s2", "4x-s0", "4x-s1"):
        monkeypatch.setenv("TABLE_PART", part)
        config = load_config_file(str(EXPERIMENTS / "direction_table.py"))
        names.add(config.name)
        assert config.sampler == "grid" and config.halving is None
        search = config.search
        lattice = Simplex().grid(search.grid_step)
        assert len(lattice) >= (40 if search.growth == 2.0 else 10)
        seeds[search.growth].add(config.proxy.seed)
    assert len(names) == 5 and len(seeds[2.0]) == 3 and len(seeds[4.0]) == 2


def test_cifar10_proxy_candidates_reach_enough_networks_at_2x(monkeypatch):
    """The screening trains 12 distinct networks per candidate, the table 30: both must be
    reachable at 2x within the 5% tolerance (counted with the cost model)."""
    import space
    from search.reliability import lattice_networks

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from cifar10_proxy import CANDIDATES

    for name, candidate in CANDIDATES.items():
        monkeypatch.setenv("CIFAR_PROXY", name)
        config = load_config_file(str(EXPERIMENTS / "cifar10_proxy.py"))
        assert config.search.growth == 2.0 and config.search.tolerance == 0.05
        baseline = space.decode(config.search.start).replace(
            resolution=candidate.resolution, num_classes=10, in_channels=3)
        assert len(lattice_networks(config.search, baseline, 0.1)) >= 30, name
