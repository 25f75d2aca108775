"""Proxy reliability: do two training seeds of the same networks rank them alike?

A search ranks networks by one short training each, so its answer can be no better than the
proxy's test-retest reliability: the Spearman correlation, over distinct networks at one cost
factor, between the scores of two training seeds. On MNIST 5k (400 validation images) it was
0.53-0.58, as large a noise as the differences the search looks for. `measure` trains the
distinct networks that a coefficient search's share lattice reaches at its matched cost, with
several seeds, and reports that correlation (with a Fisher-z interval), the seed standard
deviation of a score, and what follows from them: the noise ceiling on a correlation between
two such rankings (at two factors, say: sqrt of the two reliabilities, since noise attenuates
a correlation by it) and the difference between two single-seed scores that noise alone
exceeds one time in twenty (1.96 sqrt(2) seed std), which `front` marks.

Trainings are appended to a JSON-lines file as they finish, keyed by the network, the seed
and the whole proxy config, so a killed measurement resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import space
from search.config import SearchConfig
from search.kinds.coefficients import CoefficientSearch
from search.manifold import Simplex
from space import UserError
from space.family import match_phi

ATTR = "reliability"  # the study user attr `--store` writes and `front` reads
MIN_NETWORKS = 3  # below this a rank correlation is not defined usefully
ADVISED_NETWORKS = 30  # the interval is about +-0.3 below it


def noise_band(seed_std: float) -> float:
    """How far apart two single-seed scores of one network lie in 95% of seed pairs: 1.96
    standard deviations of a difference of two scores, 1.96 sqrt(2) seed stds."""
    return 1.96 * math.sqrt(2) * seed_std


@dataclasses.dataclass(frozen=True)
class Network:
    """One distinct network of the lattice at the matched cost."""

    shares: tuple[float, float, float]  # depth, width, resolution
    arch: str
    ratio: float  # its realized cost over the baseline's


def lattice_networks(kind: CoefficientSearch, baseline: space.ArchSpec,
                     step: float) -> list[Network]:
    """The distinct networks of the share lattice (step `step`) at the kind's matched cost,
    within its tolerance: the first direction in lattice order stands for each network."""
    if not kind.match:
        raise UserError("reliability needs a search matched in cost (CoefficientSearch(match="
                        "'macs'), the default): its networks are compared at one cost")
    if not isinstance(kind.directions, Simplex):
        raise UserError("reliability walks the share lattice: use CoefficientSearch("
                        "parameterization='shares'), the default")
    directions = dataclasses.replace(kind.directions, snap=0.0)
    seen: dict[str, Network] = {}
    for params in directions.grid(step):
        coeffs = directions.coefficients(params)
        spec, _, ratio = match_phi(
            baseline, coeffs, kind.growth, cost_key=kind.match,
            resolution_multiple=kind.resolution_multiple, channel_divisor=kind.channel_divisor)
        if abs(ratio / kind.growth - 1) > kind.tolerance:
            continue
        shares = directions.shares(params)
        arch = space.encode(spec)
        seen.setdefault(arch, Network((shares["depth"], shares["width"], shares["resolution"]),
                                      arch, ratio))
    return list(seen.values())


def choose(networks: Sequence[Network], n: int, seed: int = 0) -> list[Network]:
    """`n` of the networks (all if there are no more), drawn without replacement, seeded."""
    if len(networks) <= n:
        return list(networks)
    picked = np.random.default_rng(seed).choice(len(networks), size=n, replace=False)
    return [networks[i] for i in sorted(picked)]


@dataclasses.dataclass(frozen=True)
class Reliability:
    """What the seeds say about the proxy at one cost factor."""

    metric: str
    factor: float
    seeds: tuple[int, ...]
    networks: int
    spearman: float  # mean over the seed pairs
    # 95%, Fisher z with Fieller, Hartley and Pearson's variance 1.06 / (n - 3) for
    # Spearman's rho; None when undefined (a perfect correlation, or 3 networks).
    interval: tuple[float, float] | None
    seed_std: float  # a score's std across seeds, pooled over networks
    spread: float  # std across networks of their mean scores
    rows: tuple[dict[str, Any], ...]  # arch, shares, ratio, scores (one per seed)

    @property
    def noise_band(self) -> float:
        """The difference of two single-seed scores that seed noise exceeds 5% of the time
        (1.96 standard deviations of a difference of two scores)."""
        return noise_band(self.seed_std)

    def of_mean(self, seeds: int) -> float:
        """The reliability of a ranking by the mean over `seeds` seeds (Spearman-Brown)."""
        r = max(self.spearman, 0.0)
        return seeds * r / (1 + (seeds - 1) * r)

    def ceiling(self, other: Reliability, seeds: int = 1) -> float:
        """The highest correlation a ranking at this factor can show with one at `other`'s
        factor, given both rankings' noise (Spearman's attenuation), for rankings by the
        mean over `seeds` seeds."""
        return math.sqrt(self.of_mean(seeds) * other.of_mean(seeds))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"noise_band": self.noise_band}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Reliability:
        fields = {f.name for f in dataclasses.fields(cls)}
        record = {k: v for k, v in record.items() if k in fields}
        interval = record["interval"]
        return cls(**record | {"seeds": tuple(record["seeds"]),
                               "interval": tuple(interval) if interval else None,
                               "rows": tuple(record["rows"])})


def summarize(metric: str, factor: float, seeds: Sequence[int],
              rows: Sequence[dict[str, Any]]) -> Reliability:
    """The reliability of `rows` (each with one score per seed, in `seeds` order)."""
    from scipy import stats

    scores = np.array([r["scores"] for r in rows], dtype=float)  # networks x seeds
    n = len(rows)
    pairs = [stats.spearmanr(scores[:, i], scores[:, j])[0]
             for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
    rho = float(np.mean(pairs))
    interval: tuple[float, float] | None
    if n > 3 and abs(rho) < 1 - 1e-9:
        half = 1.96 * math.sqrt(1.06 / (n - 3))
        interval = (math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half))
    else:
        interval = None
    return Reliability(metric=metric, factor=factor, seeds=tuple(seeds), networks=n,
                       spearman=rho, interval=interval,
                       # Pooled: the median of 2-seed stds would be ~0.67 of the std.
                       seed_std=float(np.sqrt(np.mean(scores.var(axis=1, ddof=1)))),
                       spread=float(scores.mean(axis=1).std(ddof=1)), rows=tuple(rows))


Trainer = Callable[[Any, Any], Any]  # (ProxyConfig, dataset) -> ProxyResult


def measure(config: SearchConfig, *, networks: int, seeds: int, step: float = 0.1,
            results: Path, dataset: Any = None, train: Trainer | None = None,
            on_trained: Callable[[int, int, Network, int, float], None] | None = None
            ) -> Reliability:
    """Trains `networks` distinct lattice networks at the config's matched cost with `seeds`
    training seeds each (the proxy's seed, then the next ones) and summarizes their scores.

    Args:
        config: a search config whose search is a `CoefficientSearch` matched in cost.
        networks: how many distinct networks (at least 3; 30 for a usable interval).
        seeds: training seeds per network (at least 2).
        step: the share lattice's step (0.1: 66 directions).
        results: the JSON-lines file of finished trainings (resumed from, appended to).
        dataset: the loaded dataset (default: the proxy's).
        train: trains one proxy (default `trainers.proxy.train_and_evaluate`).
        on_trained: called with (done, total, network, seed, score) after each training.
    """
    if not isinstance(config.search, CoefficientSearch):
        raise UserError(f"reliability measures a coefficient search's proxy; "
                        f"'{config.name}' is a {config.kind} search")
    Simplex.steps(step)  # a bad step is refused before the data loads
    if networks < MIN_NETWORKS or seeds < 2:
        raise UserError(f"reliability needs at least {MIN_NETWORKS} networks and 2 seeds, got "
                        f"{networks} and {seeds}")
    from trainers.proxy import load_proxy_dataset, train_and_evaluate

    dataset = dataset if dataset is not None else load_proxy_dataset(config.proxy)
    train = train or (lambda proxy, data: train_and_evaluate(proxy, dataset=data))
    baseline = dataclasses.replace(config.proxy, arch=config.search.start).spec(
        dataset.num_classes, dataset.channels)
    reachable = lattice_networks(config.search, baseline, step)
    if len(reachable) < MIN_NETWORKS:
        raise UserError(f"only {len(reachable)} distinct networks of the {step:g} lattice lie "
                        f"within {config.search.tolerance:.0%} of {config.search.growth:g}x: "
                        f"use a finer step, a wider tolerance or another baseline")
    chosen = choose(reachable, networks, config.seed)
    seed_list = [config.proxy.seed + k for k in range(seeds)]
    done = _read(results)
    metric = config.objective.metric
    rows = []
    count, total = 0, len(chosen) * len(seed_list)
    for net in chosen:
        scores = []
        for seed in seed_list:
            proxy = config.proxy.for_spec(net.arch, seed=seed)
            key = _key(proxy)
            if key not in done:
                result = train(proxy, dataset)
                if result.status != "ok":
                    raise UserError(f"training {net.arch} with seed {seed} failed: "
                                    f"{result.reason}")
                done[key] = {"key": key, "arch": net.arch, "seed": seed,
                             "score": float(getattr(result, metric)),
                             "test_top1": result.test_top1, "wall_s": result.wall_s}
                _append(results, done[key])
            scores.append(done[key]["score"])
            count += 1
            if on_trained:
                on_trained(count, total, net, seed, scores[-1])
        rows.append({"arch": net.arch, "shares": list(net.shares), "ratio": net.ratio,
                     "scores": scores})
    return summarize(metric, config.search.growth, seed_list, rows)


def _key(proxy: Any) -> str:
    """A training's identity: its whole proxy config (network, seed, recipe, data)."""
    text = json.dumps(dataclasses.asdict(proxy), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill mid-write: trained again
            continue
        out[record["key"]] = record
    return out


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        torn = False
        if f.seek(0, 2) > 0:
            f.seek(-1, 2)
            torn = f.read(1) != b"\n"
        # A line torn by a kill is ended first, so that this record stays a line of its own.
        f.write((b"\n" if torn else b"") + json.dumps(record).encode() + b"\n")
