"""The paper's comparison (Figure 8 / Table 7) at proxy scale: scaling methods at equal cost.

From one baseline, each method has a one-parameter family: compound scaling with given
coefficients (phi), or depth, width or resolution alone (the multiplier). For each cost factor
(e.g. 4x and 8x the baseline's MACs), each method's member whose *realized* MACs come closest
to the factor is trained with several seeds; accuracy is reported as mean and standard
deviation, next to MACs, params and measured latency.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import space
from space import Coefficients, UserError
from space.family import match_phi
from trainers.config import ProxyConfig

KINDS = ("compound", "depth", "width", "resolution")
_CORNER = {"depth": (2.0, 1.0, 1.0), "width": (1.0, 2**0.5, 1.0), "resolution": (1.0, 1.0, 2**0.5)}


@dataclasses.dataclass(frozen=True)
class Method:
    """A scaling method: `kind` "compound" (with `coeffs`) or one single dimension.

    A single dimension is the corner of the constraint that spends all of it on that
    dimension (depth alone: alpha = 2, beta = gamma = 1), so every method is one compound
    family and one matching rule (`space.family.match_phi`) serves them all.
    """

    name: str
    kind: str
    coeffs: Coefficients | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"scaling kind must be one of {', '.join(KINDS)}, got {self.kind}")
        if (self.kind == "compound") != (self.coeffs is not None):
            raise UserError("compound scaling needs coefficients, single dimensions none")

    @property
    def family(self) -> Coefficients:
        return self.coeffs if self.coeffs is not None else Coefficients(*_CORNER[self.kind])

    def parameter(self, phi: float) -> float:
        """What the method calls its setting: phi for compound, else the dimension's
        multiplier (depth x2.1, ...)."""
        if self.kind == "compound":
            return phi
        return max(self.family.as_tuple()) ** phi


def single_dimension_methods() -> list[Method]:
    return [Method(f"{kind} only", kind) for kind in ("depth", "width", "resolution")]


def match_cost(baseline: space.ArchSpec, method: Method, factor: float,
               resolution_multiple: int = space.PROXY_RESOLUTION_MULTIPLE,
               channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR, cost_key: str = "macs"
               ) -> tuple[space.ArchSpec, float]:
    """The member of the method's family whose realized cost (`cost_key`: macs, params or
    activations) is closest to `factor` x the baseline's.

    Returns:
        (spec, the method's parameter: phi, or the single dimension's multiplier).
    """
    spec, phi, _ = match_phi(baseline, method.family, factor, cost_key=cost_key,
                             resolution_multiple=resolution_multiple,
                             channel_divisor=channel_divisor)
    return spec, method.parameter(phi)


def compare(baseline: space.ArchSpec, methods: Sequence[Method], factors: Sequence[float],
            seeds: Sequence[int], train: Callable[[space.ArchSpec, int], Any],
            latency: Callable[[space.ArchSpec], float] | None = None,
            resolution_multiple: int = space.PROXY_RESOLUTION_MULTIPLE,
            channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR,
            cost_key: str = "macs", metrics: Sequence[str] = (),
            done: Sequence[tuple[float, str]] = (),
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Trains every (factor, method) member with every seed; one row per (factor, method).

    Args:
        baseline: the network all methods scale.
        train: (spec, seed) -> a `ProxyResult`-like object with val_top1, test_top1,
            val_balanced_accuracy and `metrics`.
        latency: spec -> forward latency in ms on this device (None: not measured).
        cost_key: the realized cost matched ("macs", "params", "activations").
        metrics: more `ProxyResult` fields to summarise (mean, std) besides the defaults.
        done: (factor, method name) pairs to skip (already recorded: a resumed ladder).
        on_row: called with each row as soon as its trainings are done, to record it.
    """
    base = space.cost(baseline)
    keys = tuple(dict.fromkeys(("val_top1", "test_top1", "val_balanced_accuracy", *metrics)))
    rows = []
    for factor in factors:
        for method in methods:
            if (factor, method.name) in done:
                continue
            spec, t = match_cost(baseline, method, factor, resolution_multiple,
                                 channel_divisor, cost_key)
            results = [train(spec, seed) for seed in seeds]
            cost = space.cost(spec)
            matched = getattr(cost, cost_key) / getattr(base, cost_key)
            row = {"factor": factor, "method": method.name, "kind": method.kind,
                   "parameter": t, "arch": space.encode(spec), "resolution": spec.resolution,
                   "macs": cost.macs, "params": cost.params, "activations": cost.activations,
                   "macs_ratio": cost.macs / base.macs, "match_ratio": matched,
                   "seeds": list(seeds),
                   "latency_ms": latency(spec) if latency else None}
            for key in keys:
                values = [getattr(r, key) for r in results]
                row[key] = values
                row[f"{key}_mean"] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row["failed"] = sum(r.status != "ok" for r in results)
            if method.coeffs is not None:
                row.update(alpha=method.coeffs.alpha, beta=method.coeffs.beta,
                           gamma=method.coeffs.gamma)
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def run_comparison(proxy: ProxyConfig, baseline: str, methods: Sequence[Method],
                   factors: Sequence[float], seeds: Sequence[int], *,
                   resolution_multiple: int, channel_divisor: int, latency: bool = False,
                   on_trained: Callable[[space.ArchSpec, int, Any], None] | None = None,
                   reuse: Callable[[str, int], Any] | None = None,
                   dataset: Any = None, **options: Any) -> dict[str, Any]:
    """The comparison with real trainings: `compare` over `proxy`'s data and recipe.

    Args:
        proxy: the recipe every member trains with (its seed is the first of `seeds`).
        baseline: the network all methods scale (named model, arch string or file), adapted
            to the proxy's data and resolution as a search adapts its baseline.
        latency: also measure each member's forward latency (batch 1) on this device.
        on_trained: called with (spec, seed, result) after each training, for progress.
        reuse: (arch, seed) -> a recorded training of that network with this recipe, or
            None: what it returns is not trained again (`search.replay.Table.recorded`).
        dataset: the proxy's data, if already loaded.
        options: passed to `compare` (cost_key, metrics, done, on_row).

    Returns:
        The record `effsearch compare -o` writes: baseline, dataset, proxy, factors, seeds,
        rounding and the rows of `compare`.
    """
    from trainers.proxy import load_proxy_dataset, train_and_evaluate

    data = dataset if dataset is not None else load_proxy_dataset(proxy)  # once for all
    base = dataclasses.replace(proxy, arch=baseline).spec(data.num_classes, data.channels)

    def train(spec: space.ArchSpec, seed: int) -> Any:
        result = reuse(space.encode(spec), seed) if reuse else None
        if result is None:
            result = train_and_evaluate(proxy.for_spec(spec, seed=seed), dataset=data)
        if on_trained:
            on_trained(spec, seed, result)
        return result

    measure = None
    if latency:
        from trainers.probes import measure_latency

        def measure(spec: space.ArchSpec) -> float:
            return measure_latency(spec, batch=1, train=False).forward_p50_ms

    rows = compare(base, methods, factors, seeds, train, measure, resolution_multiple,
                   channel_divisor, **options)
    return {"baseline": space.encode(base), "dataset": data.summary(),
            "proxy": dataclasses.asdict(proxy), "factors": list(factors), "seeds": list(seeds),
            "resolution_multiple": resolution_multiple, "channel_divisor": channel_divisor,
            "rows": rows}


def comparison_figure(rows: Sequence[dict[str, Any]], metric: str = "test_top1") -> Any:
    """Accuracy (mean +- std over seeds) vs realized MACs, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, name in enumerate(dict.fromkeys(r["method"] for r in rows)):
        mine = sorted((r for r in rows if r["method"] == name), key=lambda r: r["macs"])
        ax.errorbar([r["macs"] / 1e6 for r in mine], [r[f"{metric}_mean"] for r in mine],
                    yerr=[r[f"{metric}_std"] for r in mine], marker="os^vD*"[i % 6],
                    capsize=3, label=name)
    ax.set_xlabel("realized MACs (millions)")
    ax.set_ylabel(f"{metric} (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
