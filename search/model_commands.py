"""`effsearch cost | scale | train | compare | bench`: models, families and proxy trainings.

Parsing lives in search/cli.py; these functions turn parsed arguments into library calls and
print the results. JAX is imported only inside the commands that train or time a network, so
`cost` and `scale` answer instantly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.table import Table

import space
from search.arguments import parse_phis
from search.terminal import console, err_console, metric_table, print_json
from space import UserError
from space.family import family_rows, fit_member, parse_fit


def _spec_from_args(name_or_arch: str, resolution: int | None = None,
                    classes: int | None = None) -> space.ArchSpec:
    spec = space.resolve(name_or_arch)
    changes: dict[str, int] = {}
    if resolution is not None:
        changes["resolution"] = resolution
    if classes is not None:
        changes["num_classes"] = classes
    return spec.replace(**changes) if changes else spec


# ----------------------------------------------------------------------------- cost


def _unit(values: Sequence[float]) -> tuple[str, float]:
    """The prefix (G, M or K) and its scale at which the largest of `values` is >= 1."""
    top = max(values, default=0)
    return next(((prefix, scale) for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3))
                 if top >= scale), ("", 1.0))


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
        print_json(record)
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
    phis = parse_phis(args.phi)
    rows = family_rows(baseline, coeffs, phis, args.resolution_multiple, args.channel_divisor)
    if args.family_json:
        from space.family_file import family_record, save_family

        save_family(family_record(coeffs, phis, baseline=baseline,
                                  resolution_multiple=args.resolution_multiple,
                                  channel_divisor=args.channel_divisor), args.family_json)
        sys.stderr.write(f"wrote {args.family_json}: {len(phis)} members\n")
    chosen = None
    if args.fit:
        key, budget = parse_fit(args.fit)
        chosen = fit_member(rows, key, budget,
                            _latency_probe(args.batch) if key == "latency" else None)
    if args.json:
        print_json({"baseline": space.encode(baseline), "alpha": coeffs.alpha,
                     "beta": coeffs.beta, "gamma": coeffs.gamma, "product": coeffs.product,
                     "target": coeffs.target, "family": rows,
                     **({"fit": args.fit, "chosen": chosen} if chosen else {})})
        return
    title = (f"{name} scaled by alpha={coeffs.alpha:g}, beta={coeffs.beta:g}, "
             f"gamma={coeffs.gamma:g} (alpha*beta^2*gamma^2 = {coeffs.product:.3f}, "
             f"{coeffs.deviation:+.1%} vs {coeffs.target:g})")
    table = Table(title=title)
    latency = any("latency_ms" in row for row in rows)
    # Units that fit the family: GMACs for ImageNet models, M or K for proxy-sized ones.
    (macs_unit, macs_scale), (params_unit, params_scale), (acts_unit, acts_scale) = (
        _unit([row[key] for row in rows]) for key in ("macs", "params", "activations"))
    for col in ("phi", "d", "w", "r", "res", "blocks", f"MACs ({macs_unit})",
                f"params ({params_unit})", f"acts ({acts_unit})", "MACs ratio",
                f"{coeffs.target:g}^phi", "(abg)^phi", *(("latency (ms)",) if latency else ())):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(f"{row['phi']:g}", f"{row['d']:.3f}", f"{row['w']:.3f}", f"{row['r']:.3f}",
                      str(row["resolution"]), str(row["blocks"]),
                      f"{row['macs'] / macs_scale:.3f}", f"{row['params'] / params_scale:.2f}",
                      f"{row['activations'] / acts_scale:.1f}",
                      f"{row['macs_ratio']:.2f}", f"{row['ideal_ratio']:.2f}",
                      f"{row['nominal_ratio']:.2f}",
                      *((f"{row['latency_ms']:.2f}" if "latency_ms" in row else "",)
                        if latency else ()),
                      style="bold green" if row is chosen else None)
    console().print(table)
    if chosen:
        sys.stdout.write(f"--fit {args.fit}: phi={chosen['phi']:g}, {chosen['resolution']} px, "
                         f"{chosen['macs'] / macs_scale:.3f} {macs_unit}MACs, "
                         f"{chosen['params'] / params_scale:.2f}{params_unit} params\n"
                         f"{chosen['arch']}\n")


# ----------------------------------------------------------------------------- train


def _proxy_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the proxy config with the command line's overrides, the loaded config file or None)."""
    from search.config import load_config_file
    from trainers.config import ProxyConfig

    loaded = None
    if getattr(args, "proxy", None):
        if args.target.endswith(".py"):
            raise UserError("--proxy trains an arch or a named model with its recipe, not a "
                            "config file: give one or the other")
        config = _proxy_file(args.proxy).for_spec(space.resolve(args.target))
    elif args.target.endswith(".py"):
        loaded = load_config_file(args.target)
        config = getattr(loaded, "proxy", loaded)
        if not isinstance(config, ProxyConfig):
            raise UserError(f"{args.target}: get_config() must return a ProxyConfig or a "
                            f"config with a .proxy ProxyConfig")
    else:
        space.resolve(args.target)  # a clear error for a bad name or arch string, up front
        config = ProxyConfig(arch=args.target)
    overrides: dict[str, Any] = {field: value for field, value in (
        ("dataset", args.dataset), ("data_dir", args.data_dir), ("epochs", args.epochs),
        ("resolution", args.resolution), ("batch_size", args.batch), ("seed", args.seed),
        ("width", args.width), ("depth", args.depth), ("optimizer", args.optimizer),
        ("learning_rate", args.lr), ("imbalance", args.imbalance),
        ("remedy", args.remedy), ("flip", False if args.no_flip else None))
        if value is not None}
    return dataclasses.replace(config, **overrides), loaded


def _proxy_file(path: str) -> Any:
    """The ProxyConfig a JSON file holds: the object itself (a result's or study's `proxy`),
    or the first line of a direction table (search/replay.py), whose `proxy` it is."""
    import json

    from trainers.config import ProxyConfig

    try:
        with open(path) as f:
            record = json.loads(f.readline() if path.endswith(".jsonl") else f.read())
    except (OSError, ValueError) as e:
        raise UserError(f"--proxy {path}: cannot read a JSON object ({e})") from None
    record = record.get("proxy", record) if isinstance(record, dict) else None
    if not isinstance(record, dict):
        raise UserError(f"--proxy {path}: holds no ProxyConfig object")
    return ProxyConfig.from_json(record, where=f"--proxy {path}")


def cmd_train(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from trainers import runtime
    from trainers.proxy import load_proxy_dataset, train_and_evaluate

    config, _ = _proxy_config(args)
    runtime.start(args.allow_cpu)
    dataset = load_proxy_dataset(config)  # a bad --dataset fails here, before the bar draws
    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task(f"training {config.dataset}", total=None)
        result = train_and_evaluate(
            config, dataset=dataset,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    record = result.to_json()
    if args.json:
        print_json(record)
        return
    keys = ("val_top1", "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
            "val_loss", "test_top1", "test_balanced_accuracy", "epochs_completed", "steps",
            "batch_size", "images_per_s", "step_time_s", "compile_s", "init_s", "wall_s",
            "macs", "params", "resolution", "device", "peak_memory_bytes")
    title = f"proxy {result.status}" + (f": {result.reason}" if result.reason else "")
    console().print(metric_table(title, [(k, record[k]) for k in keys]))
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

    from search.comparison import comparison_figure, run_comparison
    from trainers import runtime

    proxy, loaded = _proxy_config(args)
    # A search config: scale its start network with its rounding, unless the command line
    # says otherwise.
    search = getattr(loaded, "search", None)
    baseline_name = args.baseline or getattr(search, "start", proxy.arch)
    multiple = args.resolution_multiple or getattr(search, "resolution_multiple",
                                                   space.PROXY_RESOLUTION_MULTIPLE)
    divisor = args.channel_divisor or getattr(search, "channel_divisor",
                                              space.DEFAULT_CHANNEL_DIVISOR)
    methods = _methods(args.coeffs)
    seeds = list(range(proxy.seed, proxy.seed + args.seeds))
    runtime.start(args.allow_cpu)
    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task("training", total=len(args.factors) * len(methods) * len(seeds))

        def on_trained(spec: space.ArchSpec, seed: int, result: Any) -> None:
            bar.advance(task)
            # One line per training: the bar alone shows nothing when stderr is a log file.
            bar.console.print(f"{result.macs / 1e6:.3f}M MACs, {spec.resolution} px, seed "
                              f"{seed}: {result.status}, val top-1 {result.val_top1:.3f}, "
                              f"{result.wall_s:.0f} s", markup=False)

        record = run_comparison(proxy, baseline_name, methods, args.factors, seeds,
                                resolution_multiple=multiple, channel_divisor=divisor,
                                latency=args.latency, on_trained=on_trained)
    rows = record["rows"]
    if args.output:
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
    if args.plot:
        import matplotlib.pyplot as plt

        fig = comparison_figure(rows)
        fig.savefig(args.plot)
        plt.close(fig)
    if args.json:
        print_json(record)
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


def _torch_baseline(model: str, resolution: int, batch: int, steps: int,
                    dtype: str) -> dict | str:
    """timm's model timed in a separate process in the same compute dtype, or why it was not."""
    import importlib.util
    import subprocess

    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        return f"skipped: {' and '.join(missing)} not installed"
    if not space.is_model_name(model):
        return "skipped: timm has only the named EfficientNets, not an arch string"
    done = subprocess.run([sys.executable, "-m", "trainers.torch_bench", model, str(resolution),
                           str(batch), str(steps), dtype], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def cmd_bench(args: argparse.Namespace) -> None:
    if args.compare_torch:
        # Before JAX starts its backend: it would otherwise hold 75% of the GPU while timm
        # runs in its subprocess (the user's own setting wins).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from trainers import runtime

    runtime.start(args.allow_cpu)
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
        torch = _torch_baseline(args.model, lat.resolution, args.batch, args.steps, lat.dtype)
        record["torch"] = torch
        if isinstance(torch, dict):
            record["speedup_vs_torch"] = lat.train_images_per_s / torch["images_per_s"]
    if args.json:
        print_json(record)
        return
    rows = [(k, v) for k, v in record.items() if k not in ("model", "torch")]
    if "torch" in record:
        torch = record["torch"]
        rows.append((f"torch (timm, eager {lat.dtype})", torch if isinstance(torch, str) else
                     f"{torch['images_per_s']:.1f} img/s on {torch['device']}"))
    console().print(metric_table(f"{args.model} train step, batch {lat.batch} at "
                                   f"{lat.resolution}px, {lat.dtype}, on {lat.device}", rows))




def cmd_env(args: argparse.Namespace) -> None:
    """`effsearch env`: what JAX runs on here and what each of `--workers N` would get."""
    from search import devices
    from trainers import runtime

    host = devices.detect_host()
    workers = args.workers or devices.max_workers(host) or max(len(host.gpus), 1)
    runtime.configure()
    info = runtime.backend_info()
    try:
        runtime.check_backend(allow_cpu=False)
        problem = None
    except UserError as e:  # the refusal a search would meet, shown rather than raised
        problem = str(e)
    try:
        devices.check_workers(workers, host)
        refused = None
    except UserError as e:
        refused = str(e)
    rows = devices.assignment(workers, host)
    record = info | {"accelerator": runtime.accelerator_present(), "cpu_fallback": problem,
                     "cache_dir": str(runtime.cache_dir()),
                     "cache_max_bytes": runtime.cache_max_bytes(), "workers": workers,
                     "workers_refused": refused, "assignment": rows}
    if args.json:
        print_json(record)
        return
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    table = metric_table("effsearch env", [
        ("backend", info["backend"]), ("device kind", info["device_kind"]),
        ("local devices", info["local_devices"]),
        ("devices (all processes)", info["devices"]), ("processes", info["processes"]),
        ("accelerator on the host", record["accelerator"] or "none"),
        ("compilation cache", f"{record['cache_dir']} (at most "
                              f"{record['cache_max_bytes'] / 2**30:.0f} GB)"
         if record["cache_max_bytes"] != -1 else f"{record['cache_dir']} (unbounded)"),
        ("versions", versions)])
    console().print(table)
    for line in ([refused] if refused else devices.describe(rows)):
        sys.stdout.write(f"--workers {workers}: {line}\n")
    if problem:
        sys.stderr.write(f"warning: {problem}\n")
