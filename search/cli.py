"""The `effsearch` command line.

Every subcommand parses its arguments here and calls library code; heavy imports (JAX, Optuna)
happen inside the subcommand that needs them, so `effsearch cost` answers instantly. A
`UserError` anywhere becomes one line on stderr and exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

import space
from space import UserError
from space.errors import error_text, one_line

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)


def _positive(kind: type, minimum: float = 1) -> Any:
    """An argparse type: an int or finite float >= `minimum`, else a one-line usage error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got '{text}'")
        return value

    return parse


def _factors(text: str) -> list[float]:
    """`compare --factors`: comma-separated cost factors, each finite and >= 1."""
    try:
        factors = [float(f) for f in text.split(",")]
    except ValueError:
        factors = []
    if not factors or not all(math.isfinite(f) and f >= 1 for f in factors):
        raise argparse.ArgumentTypeError(f"expected cost factors >= 1 like '4,8', got '{text}'")
    return factors


def _output(*suffixes: str) -> Any:
    """An argparse type for a file to write: its folder must exist (checked before any work,
    so a minutes-long command never fails at its last step), and its suffix must fit."""
    def parse(text: str) -> str:
        path = Path(text).expanduser()
        if suffixes and path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"'{text}' must end in {' or '.join(suffixes)}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is a directory, not a file")
        folder = path.parent
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write '{text}': folder '{folder}' does "
                                             f"not exist")
        return text

    return parse


def _top(text: str) -> int:
    top = _positive(int)(text)
    if top < 3:
        raise argparse.ArgumentTypeError(
            f"{top} point{'s' if top > 1 else ''} cannot measure a rank correlation (a pair is "
            f"always perfectly ranked one way or the other); use 3 or more, got '{text}'")
    return top


def console() -> Console:
    # Tables must not be squeezed when piped to a file or a CI log.
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size().columns, 200)
    return Console(width=width, highlight=False)


def _metric_table(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    """A two-column metric/value table; floats to 4 significant digits."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _spec_from_args(name_or_arch: str, resolution: int | None = None,
                    classes: int | None = None) -> space.ArchSpec:
    spec = space.resolve(name_or_arch)
    changes: dict[str, int] = {}
    if resolution is not None:
        changes["resolution"] = resolution
    if classes is not None:
        changes["num_classes"] = classes
    return spec.replace(**changes) if changes else spec


MAX_PHIS = 101  # a family table longer than this is a typo (0-1000000000), not a request


def parse_phis(text: str) -> list[float]:
    """"0-7" (integer range), "0,0.5,1" (list) or "2" (one value); finite, at most 101."""
    try:
        if "," in text:
            phis = [float(p) for p in text.split(",")]
        elif "-" in text.lstrip("-"):
            lo, hi = text.lstrip("-").split("-", 1)
            start = -int(lo) if text.startswith("-") else int(lo)
            if int(hi) < start:
                raise ValueError
            # Capped before the range is built: `0-1000000000` must not allocate 1e9 floats.
            phis = [float(p) for p in range(start, min(int(hi), start + MAX_PHIS) + 1)]
        else:
            phis = [float(text)]
    except ValueError:
        raise UserError(f"--phi must look like '0-7', '0,0.5,1' or '2', got '{text}'") from None
    bad = [p for p in phis if not math.isfinite(p)]
    if bad:
        raise UserError(f"--phi values must be finite numbers, got {bad[0]} in '{text}'")
    if len(phis) > MAX_PHIS:
        raise UserError(f"--phi '{text}' gives more than {MAX_PHIS} values")
    return phis


# ----------------------------------------------------------------------------- cost


def cmd_cost(args: argparse.Namespace) -> None:
    spec = _spec_from_args(args.model, args.resolution, args.classes)
    total = space.cost(spec)
    record: dict[str, Any] = {"model": args.model, "arch": space.encode(spec),
                              "resolution": spec.resolution, "macs": total.macs,
                              "params": total.params, "activations": total.activations}
    parts = space.cost_breakdown(spec) if args.per_block else []
    if args.json:
        if parts:
            record["parts"] = [p._asdict() for p in parts]
        _print_json(record)
        return
    table = Table(title=f"{args.model} at {spec.resolution}px, {spec.num_classes} classes")
    for col in ("part", "size", "channels", "MACs (M)", "params", "acts (M)"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for p in parts:
        table.add_row(p.name, f"{p.in_size}->{p.out_size}", f"{p.in_channels}->{p.out_channels}",
                      f"{p.macs / 1e6:.2f}", f"{p.params:,}", f"{p.activations / 1e6:.3f}")
    table.add_row("total", str(spec.resolution), f"{spec.num_blocks} blocks",
                  f"{total.macs / 1e6:.2f}", f"{total.params:,}",
                  f"{total.activations / 1e6:.3f}", style="bold")
    console().print(table)


# ----------------------------------------------------------------------------- scale


def family_rows(baseline: space.ArchSpec | None, coeffs: space.Coefficients,
                phis: Sequence[float], resolution_multiple: int | None = None,
                channel_divisor: int | None = None) -> list[dict[str, Any]]:
    """One row per phi: multipliers, rounded spec, costs and realized vs ideal cost ratios.

    `baseline`, `resolution_multiple` and `channel_divisor` default to the coefficients'
    family, as in `space.scale`.
    """
    if baseline is None:
        baseline = space.scale(None, coeffs, 0)
    base = space.cost(baseline)
    rows = []
    for phi in phis:
        try:
            spec = space.scale(baseline, coeffs, phi, resolution_multiple=resolution_multiple,
                               channel_divisor=channel_divisor)
        except UserError as e:
            raise UserError(f"phi={phi:g}: {e}") from None
        d, w, r = space.compound(phi, *coeffs.as_tuple())
        c = space.cost(spec)
        rows.append({
            "phi": phi, "d": d, "w": w, "r": r, "resolution": spec.resolution,
            "blocks": spec.num_blocks, "macs": c.macs, "params": c.params,
            "activations": c.activations, "macs_ratio": c.macs / base.macs,
            "nominal_ratio": coeffs.product**phi, "ideal_ratio": coeffs.target**phi,
            "arch": space.encode(spec)})
    return rows


FIT_KEYS = ("macs", "params", "resolution", "latency")


def parse_fit(text: str) -> tuple[str, float]:
    """"macs=2e9" -> ("macs", 2e9); latency is in milliseconds."""
    key, _, value = text.partition("=")
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if key not in FIT_KEYS or not budget > 0:
        raise UserError(f"--fit must be one of {', '.join(k + '=N' for k in FIT_KEYS)} with "
                        f"N > 0, got '{text}'")
    return key, budget


def fit_member(rows: Sequence[dict[str, Any]], key: str, budget: float,
               measure: Any = None) -> dict[str, Any]:
    """The largest family member (highest phi) whose `key` is within `budget`.

    Args:
        rows: from `family_rows`, in any order.
        key: "macs", "params", "resolution", or "latency" (then `measure(row) -> ms` is
            called in increasing phi and stops at the first member over budget, since cost
            grows with phi).
    """
    fitting = None
    for row in sorted(rows, key=lambda r: r["phi"]):
        value = measure(row) if key == "latency" else row[key]
        if key == "latency":
            row["latency_ms"] = value
        if value > budget:
            if key == "latency":
                break
            continue
        fitting = row
    if fitting is None:
        smallest = min(rows, key=lambda r: r["phi"])
        value = smallest.get("latency_ms" if key == "latency" else key)
        raise UserError(f"no family member fits {key} <= {budget:g}; the smallest listed "
                        f"(phi={smallest['phi']:g}) has {key} {value:g}")
    return fitting


def _latency_probe(batch: int) -> Any:
    from trainers import runtime

    runtime.configure()
    from trainers.probes import measure_latency

    return lambda row: measure_latency(space.decode(row["arch"]), batch=batch,
                                       train=False).forward_p50_ms


COEFFS_TOLERANCE = 0.25  # typed triples only; the paper's own is 4% under its target


def _family(args: argparse.Namespace) -> tuple[str, space.ArchSpec, space.Coefficients]:
    """(baseline's name, baseline, coefficients) of `scale`: flags over the file's family."""
    coeffs = space.parse_coefficients(args.coeffs, target=args.target,
                                      tolerance=COEFFS_TOLERANCE)
    notes = [f"--{flag.replace('_', '-')} {getattr(args, flag)} overrides the coefficients "
             f"file's {getattr(coeffs, flag)}"
             for flag in ("resolution_multiple", "channel_divisor")
             if getattr(args, flag) is not None and getattr(coeffs, flag) is not None
             and getattr(args, flag) != getattr(coeffs, flag)]
    if args.baseline:
        name, baseline = args.baseline, space.resolve(args.baseline)
        if coeffs.baseline is not None and space.encode(baseline) != coeffs.baseline:
            notes.append(f"--baseline {args.baseline} replaces the network the coefficients "
                         f"were found on ({coeffs.baseline})")
    elif coeffs.baseline is not None:
        name, baseline = "the searched baseline", space.decode(coeffs.baseline)
    else:
        name = (coeffs.provenance or {}).get("baseline") or "efficientnet-b0"
        baseline = space.resolve(name)
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    return name, baseline, coeffs


def cmd_scale(args: argparse.Namespace) -> None:
    name, baseline, coeffs = _family(args)
    rows = family_rows(baseline, coeffs, parse_phis(args.phi), args.resolution_multiple,
                       args.channel_divisor)
    chosen = None
    if args.fit:
        key, budget = parse_fit(args.fit)
        chosen = fit_member(rows, key, budget,
                            _latency_probe(args.batch) if key == "latency" else None)
    if args.json:
        _print_json({"baseline": space.encode(baseline), "alpha": coeffs.alpha,
                     "beta": coeffs.beta, "gamma": coeffs.gamma, "product": coeffs.product,
                     "target": coeffs.target, "family": rows,
                     **({"fit": args.fit, "chosen": chosen} if chosen else {})})
        return
    title = (f"{name} scaled by alpha={coeffs.alpha:g}, beta={coeffs.beta:g}, "
             f"gamma={coeffs.gamma:g} (alpha*beta^2*gamma^2 = {coeffs.product:.3f}, "
             f"{coeffs.deviation:+.1%} vs {coeffs.target:g})")
    table = Table(title=title)
    latency = any("latency_ms" in row for row in rows)
    for col in ("phi", "d", "w", "r", "res", "blocks", "MACs (G)", "params (M)", "acts (M)",
                "MACs ratio", f"{coeffs.target:g}^phi", "(abg)^phi",
                *(("latency (ms)",) if latency else ())):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(f"{row['phi']:g}", f"{row['d']:.3f}", f"{row['w']:.3f}", f"{row['r']:.3f}",
                      str(row["resolution"]), str(row["blocks"]), f"{row['macs'] / 1e9:.3f}",
                      f"{row['params'] / 1e6:.2f}", f"{row['activations'] / 1e6:.1f}",
                      f"{row['macs_ratio']:.2f}", f"{row['ideal_ratio']:.2f}",
                      f"{row['nominal_ratio']:.2f}",
                      *((f"{row['latency_ms']:.2f}" if "latency_ms" in row else "",)
                        if latency else ()),
                      style="bold green" if row is chosen else None)
    console().print(table)
    if chosen:
        sys.stdout.write(f"--fit {args.fit}: phi={chosen['phi']:g}, {chosen['resolution']} px, "
                         f"{chosen['macs'] / 1e9:.3f} GMACs, {chosen['params'] / 1e6:.2f}M "
                         f"params\n{chosen['arch']}\n")


# ----------------------------------------------------------------------------- train


def _proxy_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the proxy config with the command line's overrides, the loaded config file or None)."""
    from search.config import load_config_file
    from trainers.proxy import ProxyConfig

    loaded = None
    if args.target.endswith(".py"):
        loaded = load_config_file(args.target)
        config = getattr(loaded, "proxy", loaded)
        if not isinstance(config, ProxyConfig):
            raise UserError(f"{args.target}: get_config() must return a ProxyConfig or a "
                            f"config with a .proxy ProxyConfig")
    else:
        space.resolve(args.target)  # a clear error for a bad name or arch string, up front
        config = ProxyConfig(arch=args.target)
    overrides = {field: value for field, value in (
        ("dataset", args.dataset), ("data_dir", args.data_dir), ("epochs", args.epochs),
        ("resolution", args.resolution), ("batch_size", args.batch), ("seed", args.seed),
        ("width", args.width), ("depth", args.depth), ("optimizer", args.optimizer),
        ("learning_rate", args.lr), ("imbalance", args.imbalance),
        ("remedy", args.remedy), ("flip", False if args.no_flip else None))
        if value is not None}
    return dataclasses.replace(config, **overrides), loaded


def cmd_train(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from trainers import runtime
    from trainers.proxy import load_proxy_dataset, train_and_evaluate

    config, _ = _proxy_config(args)
    runtime.configure()
    dataset = load_proxy_dataset(config)  # a bad --dataset fails here, before the bar draws
    with Progress(console=Console(stderr=True, soft_wrap=True), transient=True) as bar:
        task = bar.add_task(f"training {config.dataset}", total=None)
        result = train_and_evaluate(
            config, dataset=dataset,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    record = result.to_json()
    if args.json:
        _print_json(record)
        return
    keys = ("val_top1", "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
            "val_loss", "test_top1", "test_balanced_accuracy", "epochs_completed", "steps",
            "batch_size", "images_per_s", "step_time_s", "compile_s", "init_s", "wall_s",
            "macs", "params", "resolution", "device", "peak_memory_bytes")
    title = f"proxy {result.status}" + (f": {result.reason}" if result.reason else "")
    console().print(_metric_table(title, [(k, record[k]) for k in keys]))
    if result.status != "ok":
        raise UserError(f"training failed: {result.reason}")


# ----------------------------------------------------------------------------- compare


def _methods(specs: Sequence[str] | None) -> list[Any]:
    from search.comparison import Method, single_dimension_methods

    methods = []
    for text in specs or ["paper=1.2,1.1,1.15"]:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise UserError(f"--coeffs must be NAME=alpha,beta,gamma or NAME=FILE.json, got "
                            f"'{text}'")
        methods.append(Method(name, "compound", space.parse_coefficients(
            value, tolerance=COEFFS_TOLERANCE)))
    return methods + single_dimension_methods()


def cmd_compare(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from search.comparison import compare, comparison_figure
    from trainers import runtime
    from trainers.proxy import load_proxy_dataset, train_and_evaluate

    proxy, loaded = _proxy_config(args)
    # A coefficient-search config: scale its baseline with its rounding rules, unless the
    # command line says otherwise.
    search = getattr(loaded, "search", None)
    baseline_name = args.baseline or getattr(search, "baseline", proxy.arch)
    multiple = args.resolution_multiple or getattr(search, "resolution_multiple", 2)
    divisor = args.channel_divisor or getattr(search, "channel_divisor",
                                              space.DEFAULT_CHANNEL_DIVISOR)
    methods = _methods(args.coeffs)
    factors = args.factors
    seeds = list(range(proxy.seed, proxy.seed + args.seeds))
    runtime.configure()
    data = load_proxy_dataset(proxy)
    baseline = dataclasses.replace(proxy, arch=baseline_name).spec(data.num_classes,
                                                                   data.channels)
    latency = None
    if args.latency:
        from trainers.probes import measure_latency

        def latency(spec: space.ArchSpec) -> float:
            return measure_latency(spec, batch=1, train=False).forward_p50_ms

    with Progress(console=Console(stderr=True, soft_wrap=True), transient=True) as bar:
        task = bar.add_task("training", total=len(factors) * len(methods) * len(seeds))

        def train(spec: space.ArchSpec, seed: int) -> Any:
            result = train_and_evaluate(dataclasses.replace(
                proxy, arch=space.encode(spec), width=1.0, depth=1.0,
                resolution=spec.resolution, seed=seed), dataset=data)
            bar.advance(task)
            # One line per training: the bar alone shows nothing when stderr is a log file.
            bar.console.print(f"{result.macs / 1e6:.3f}M MACs, {spec.resolution} px, seed "
                              f"{seed}: {result.status}, val top-1 {result.val_top1:.3f}, "
                              f"{result.wall_s:.0f} s")
            return result

        rows = compare(baseline, methods, factors, seeds, train, latency, multiple, divisor)
    record = {"baseline": space.encode(baseline), "dataset": data.summary(),
              "proxy": dataclasses.asdict(proxy), "factors": factors, "seeds": seeds,
              "resolution_multiple": multiple, "channel_divisor": divisor, "rows": rows}
    if args.output:
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
    if args.plot:
        import matplotlib.pyplot as plt

        fig = comparison_figure(rows)
        fig.savefig(args.plot)
        plt.close(fig)
    if args.json:
        _print_json(record)
        return
    table = Table(title=f"scaling methods at equal realized MACs from {baseline_name} "
                        f"({len(seeds)} seeds, {proxy.epochs} epochs on {proxy.dataset})")
    for col in ("factor", "method", "setting", "res", "MACs ratio", "params", "latency ms",
                "val top-1", "test top-1"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        setting = (f"phi={r['parameter']:.3f}" if r["kind"] == "compound"
                   else f"x{r['parameter']:.3f}")
        table.add_row(f"{r['factor']:g}x", r["method"], setting, str(r["resolution"]),
                      f"{r['macs_ratio']:.2f}", f"{r['params']:,}",
                      "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
                      f"{r['val_top1_mean']:.3f} +- {r['val_top1_std']:.3f}",
                      f"{r['test_top1_mean']:.3f} +- {r['test_top1_std']:.3f}")
    console().print(table)


# ----------------------------------------------------------------------------- bench


def _torch_baseline(model: str, resolution: int, batch: int, steps: int) -> dict | str:
    """timm's model timed in a separate process, or why it was not."""
    import importlib.util
    import subprocess

    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        return f"skipped: {' and '.join(missing)} not installed"
    done = subprocess.run([sys.executable, "-m", "trainers.torch_bench", model, str(resolution),
                           str(batch), str(steps)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def cmd_bench(args: argparse.Namespace) -> None:
    from trainers import runtime

    runtime.configure()
    import jax.numpy as jnp

    from trainers.probes import measure_latency

    spec = space.resolve(args.model)
    dtype = {"auto": None, "float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    lat = measure_latency(spec, batch=args.batch, resolution=args.resolution, dtype=dtype,
                          warmup=3, repeats=args.steps)
    record: dict[str, Any] = {
        "model": args.model, "resolution": lat.resolution, "batch": lat.batch,
        "dtype": lat.dtype, "device": lat.device, "images_per_s": lat.train_images_per_s,
        "step_ms": lat.train_p50_ms, "step_p90_ms": lat.train_p90_ms,
        "compile_s": lat.train_compile_s, "forward_ms": lat.forward_p50_ms,
        "forward_compile_s": lat.forward_compile_s}
    if args.compare_torch:
        torch = _torch_baseline(args.model, lat.resolution, args.batch, args.steps)
        record["torch"] = torch
        if isinstance(torch, dict):
            record["speedup_vs_torch"] = lat.train_images_per_s / torch["images_per_s"]
    if args.json:
        _print_json(record)
        return
    rows = [(k, v) for k, v in record.items() if k not in ("model", "torch")]
    if "torch" in record:
        torch = record["torch"]
        rows.append(("torch (timm, eager bf16)", torch if isinstance(torch, str) else
                     f"{torch['images_per_s']:.1f} img/s on {torch['device']}"))
    console().print(_metric_table(f"{args.model} train step, batch {lat.batch} at "
                                   f"{lat.resolution}px, {lat.dtype}, on {lat.device}", rows))


# ----------------------------------------------------------------------------- main


# ProxyConfig's defaults as `train --help` shows them; written out so that the parser imports
# no JAX (tests/test_cli_errors.py checks them against ProxyConfig).
TRAIN_DEFAULTS = {"dataset": "digits", "epochs": 5, "resolution": "the arch's own, 224 for "
                  "efficientnet-b0", "batch_size": 128, "seed": 0, "width": 1.0, "depth": 1.0,
                  "optimizer": "sgd", "learning_rate": "0.1 (sgd) or 0.016 (rmsprop) per 256 "
                  "images", "remedy": "none"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="effsearch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("cost", help="analytic MACs, params and activations of a model")
    p.add_argument("model", help="a named model (efficientnet-b0 ... -b7, -b8, -l2) or an arch "
                                 "string")
    p.add_argument("--resolution", type=_positive(int, 0),
                   help="input size in pixels (default: the spec's)")
    p.add_argument("--classes", type=_positive(int, 0),
                   help="number of classes (default: the spec's)")
    p.add_argument("--per-block", action="store_true", help="show stem, every block and head")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("scale", help="the compound-scaled family of a baseline")
    p.add_argument("--baseline", help="named model, arch string or arch .json (default: the "
                                       "coefficients file's baseline, else efficientnet-b0)")
    p.add_argument("--coeffs", default="1.2,1.1,1.15",
                   help="alpha,beta,gamma or a coefficients .json file from effsearch export, "
                        "which also carries the searched baseline and rounding (default: "
                        "%(default)s)")
    p.add_argument("--target", type=_positive(float, 1), default=2.0,
                   help="alpha*beta^2*gamma^2 of a typed triple; it must be within "
                        f"{COEFFS_TOLERANCE:.0%} (default: %(default)s)")
    p.add_argument("--phi", default="0-7", help="'0-7', '0,0.5,1' or '2' (default: %(default)s)")
    p.add_argument("--resolution-multiple", type=_positive(int),
                   help="round scaled resolutions to this multiple (default: the coefficients "
                        f"file's, else {space.DEFAULT_RESOLUTION_MULTIPLE})")
    p.add_argument("--channel-divisor", type=_positive(int),
                   help="round scaled channels to this multiple (default: the coefficients "
                        f"file's, else {space.DEFAULT_CHANNEL_DIVISOR})")
    p.add_argument("--fit", metavar="KEY=BUDGET",
                   help="pick the largest member within a budget: macs=2e9, params=1e7, "
                        "resolution=300, or latency=5 (ms, measured on this device)")
    p.add_argument("--batch", type=_positive(int), default=1,
                   help="batch of the --fit latency probe (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("train", help="train one proxy and report accuracy, speed and cost")
    p.add_argument("target", metavar="CONFIG_OR_ARCH",
                   help="a config .py file (get_config()), a named model or an arch string")
    p.description = ("Options left out take the config file's values, else the defaults "
                     "shown (trainers.proxy.ProxyConfig).")
    d = TRAIN_DEFAULTS
    p.add_argument("--dataset", help="digits, mnist5k, a TFDS name, an .npz or image folder "
                                     f"(default: {d['dataset']})")
    p.add_argument("--data-dir", help="TFDS data directory (default: TFDS's own)")
    p.add_argument("--epochs", type=_positive(int), help=f"(default: {d['epochs']})")
    p.add_argument("--resolution", type=_positive(int, 8),
                   help=f"input size in pixels (default: {d['resolution']})")
    p.add_argument("--batch", type=_positive(int), help=f"(default: {d['batch_size']})")
    p.add_argument("--seed", type=_positive(int, 0), help=f"(default: {d['seed']})")
    p.add_argument("--width", type=float,
                   help=f"extra width multiplier on the arch (default: {d['width']:g})")
    p.add_argument("--depth", type=float,
                   help=f"extra depth multiplier on the arch (default: {d['depth']:g})")
    p.add_argument("--optimizer", choices=("sgd", "rmsprop"),
                   help=f"(default: {d['optimizer']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default: {d['learning_rate']})")
    p.add_argument("--no-flip", action="store_true",
                   help="no horizontal flips (digits and text are not mirror-symmetric)")
    p.add_argument("--imbalance", type=float, metavar="RATIO",
                   help="long-tailed train split: largest / smallest class, e.g. 10 or 100 "
                        "(default: none)")
    # Checked by ProxyConfig, so that this parser does not import JAX for `effsearch cost`.
    p.add_argument("--remedy", help="class-imbalance remedy: class-balanced, logit-adjust, "
                                    "logit-adjust-posthoc, focal, sqrt-sampling, "
                                    f"inverse-sampling (default: {d['remedy']})")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="compound vs single-dimension scaling at equal MACs, "
                                       "several seeds (the paper's Figure 8 at proxy scale)")
    p.add_argument("target", metavar="CONFIG_OR_ARCH",
                   help="a proxy or search config .py, a named model or an arch string")
    p.add_argument("--baseline", help="the network to scale (default: the proxy's arch)")
    p.add_argument("--coeffs", action="append", metavar="NAME=A,B,G|FILE",
                   help="a compound method, repeatable (default: paper=1.2,1.1,1.15)")
    p.add_argument("--factors", type=_factors, default=[4.0, 8.0],
                   help="MACs factors over the baseline, each >= 1 (default: 4,8)")
    p.add_argument("--seeds", type=_positive(int), default=3,
                   help="training seeds per network (default: %(default)s)")
    p.add_argument("--latency", action="store_true", help="measure forward latency (batch 1)")
    p.add_argument("--resolution-multiple", type=_positive(int),
                   help="default: the search config's, else 2")
    p.add_argument("--channel-divisor", type=_positive(int),
                   help=f"default: the search config's, else {space.DEFAULT_CHANNEL_DIVISOR}")
    p.add_argument("-o", "--output", type=_output(".json"), help="write the rows as JSON")
    p.add_argument("--plot", type=_output(".png"), help="write the figure (.png)")
    p.add_argument("--json", action="store_true")
    for flag, kind in (("--dataset", str), ("--data-dir", str), ("--epochs", int),
                       ("--resolution", int), ("--batch", int), ("--seed", int),
                       ("--width", float), ("--depth", float), ("--lr", float),
                       ("--imbalance", float)):
        p.add_argument(flag, type=kind)
    p.add_argument("--no-flip", action="store_true")
    p.set_defaults(func=cmd_compare, optimizer=None, remedy=None)

    p = sub.add_parser("bench", help="training throughput, step and compile time on this device")
    p.add_argument("--model", default="efficientnet-b0", help="named model or arch string")
    p.add_argument("--resolution", type=_positive(int), default=224,
                   help="input size in pixels (default: %(default)s)")
    p.add_argument("--batch", type=_positive(int), default=256,
                   help="batch size (default: %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=20,
                   help="timed steps after 3 warm-up steps (default: %(default)s)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument("--compare-torch", action="store_true",
                   help="also time timm's model in PyTorch (separate process)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    from search import study_commands as sc
    from search.storage import DEFAULT_WORKDIR

    def storage_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", help=f"work directory of the embedded journal storage "
                                         f"(default: ./{DEFAULT_WORKDIR})")
        p.add_argument("--storage", help="an Optuna storage URL (postgresql://..., redis://...) "
                                         "or a .journal file; overrides --workdir")

    p = sub.add_parser("search", help="run (or resume) a search sweep from a config file")
    p.add_argument("config", help="a sweep config .py file with get_config()")
    storage_args(p)
    p.add_argument("--study", help="study name (default: the config's name)")
    p.add_argument("--workers", type=_positive(int), default=1,
                   help="worker processes on this machine (default: %(default)s)")
    p.add_argument("--trials", type=_positive(int),
                   help="trained trials to finish (default: the config's)")
    p.set_defaults(func=sc.cmd_search)

    study_help = "study name or its config .py (default: the only study in the storage)"
    p = sub.add_parser("front", help="the Pareto front of a study: table, JSON or plot")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--all", action="store_true", help="also the dominated trials, by front")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--plot", metavar="FILE", type=_output(".png", ".html"),
                   help="write the figure: front.png or front.html")
    p.set_defaults(func=sc.cmd_front)

    p = sub.add_parser("export", help="write a result: coefficients (or a baseline arch) as JSON")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--pick", default="knee", help="best, knee (default) or a trial number")
    p.add_argument("-o", "--output", required=True, type=_output(".json"),
                   help="the .json file to write")
    p.set_defaults(func=sc.cmd_export)

    p = sub.add_parser("validate", help="retrain the top trials longer; rank correlation")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--top", type=_top, default=5,
                   help="how many of the best trials, >= 3 (default: %(default)s)")
    p.add_argument("--epochs", type=_positive(int), required=True, help="the longer budget")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=sc.cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `effsearch` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        sys.stderr.write(error_text(f"effsearch {args.command}", e))
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
