"""The steps of benchmarks/gpu_suite.sh that are no `effsearch` command, and its bookkeeping.

    python benchmarks/gpu_steps.py timm MODEL RES BATCH STEPS [--require-cuda]
    python benchmarks/gpu_steps.py depthwise MODEL RES BATCH STEPS
    python benchmarks/gpu_steps.py record NAME EXPECT RC SECONDS STEPDIR [--logs DIR]

`timm` times timm's model in PyTorch (trainers/torch_bench.py) in the compute dtype effsearch
picks on this device, or prints {"skipped": why} and exits 0 when torch or timm is absent.
`depthwise` times both depthwise-conv implementations at one size, the one "auto" picks
first: with the persistent cache of the bench step before it, that one is a cache hit and
only the other compiles. It prints a JSON line per implementation as soon as it is measured.
`record` turns a finished step's stdout, stderr and exit code into the step's result
(STEPDIR/NAME.json, printed as one line), appends its row to STEPDIR/rows.md and exits 0 only
if the step met EXPECT:
    json               exit 0 and a JSON stdout (one object, or one per line)
    failed:PREFIX      exit 0 and one JSON object with status "failed" and a one-line reason
                       starting with PREFIX
    stopped            exit 1, the last stderr line "effsearch search: stopped: ...", and no
                       traceback
    exit0              exit 0 (a command that prints no JSON, e.g. `effsearch search`)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a source tree that is not installed
    sys.path.insert(0, str(ROOT))

STOPPED_PREFIX = "effsearch search: stopped:"
# What a summary row shows of a result, in this order; other scalars follow while they fit.
_DIGEST_KEYS = ("skipped", "status", "reason", "impl", "backend", "device", "devices", "dtype",
                "resolution", "batch", "val_top1", "images_per_s", "step_ms", "forward_ms",
                "compile_s", "train_compile_s", "forward_compile_s", "init_s", "wall_s")
_ROW_CHARS = 320


def _print(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def cmd_timm(args: argparse.Namespace) -> int:
    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        _print({"skipped": f"{' and '.join(missing)} not installed"})
        return 0
    import torch

    if args.require_cuda and not torch.cuda.is_available():
        # A CPU build of torch on a GPU host would time B0 at 224 px for many minutes.
        _print({"skipped": f"torch {torch.__version__} sees no CUDA device"})
        return 0
    from trainers import torch_bench

    # The dtype effsearch's "auto" trains in: bfloat16 on accelerators, float32 on the CPU.
    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    _print(torch_bench.main(args.model, args.resolution, args.batch, args.steps, dtype))
    return 0


def cmd_depthwise(args: argparse.Namespace) -> int:
    from trainers import runtime

    runtime.configure()  # the bench step's cache: the implementation "auto" picks is a hit
    import space
    from space.model import DEPTHWISE_IMPLS, resolve_depthwise
    from trainers.probes import measure_latency

    spec = space.resolve(args.model)  # as `effsearch bench` builds it, so the HLO matches
    first = resolve_depthwise("auto")
    for impl in (first, *(i for i in DEPTHWISE_IMPLS if i != first)):
        lat = measure_latency(spec, batch=args.batch, resolution=args.resolution, warmup=3,
                              repeats=args.steps, depthwise=impl)
        _print({"impl": impl, "auto": impl == first, "resolution": lat.resolution,
                "batch": lat.batch, "dtype": lat.dtype, "device": lat.device,
                "forward_ms": lat.forward_p50_ms, "step_ms": lat.train_p50_ms,
                "images_per_s": lat.train_images_per_s,
                "forward_compile_s": lat.forward_compile_s,
                "train_compile_s": lat.train_compile_s})
    return 0


def _parse_json(text: str) -> Any:
    """One JSON object, or a list of the objects on each line; None if it is neither."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        return None


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "/").replace("\n", " ")


def digest(result: Any) -> str:
    """A result in one short line: the keys that decide, else its first scalars."""
    if isinstance(result, list):
        line = "; ".join(digest(r) for r in result)
    elif isinstance(result, dict):
        keys = [k for k in _DIGEST_KEYS if result.get(k) is not None]
        if len(keys) < 3:  # a record of another kind (`effsearch env`): what it holds
            keys += [k for k, v in result.items() if k not in keys and v is not None
                     and isinstance(v, (str, int, float, bool))]
        line = ", ".join(f"{k}={_scalar(result[k])}" for k in keys)
    else:
        line = _scalar(result)
    return line if len(line) <= _ROW_CHARS else line[:_ROW_CHARS - 3] + "..."


def _tail(path: Path, lines: int) -> list[str]:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return [line[:300] for line in text.strip().splitlines()[-lines:]]


def check(expect: str, rc: int, result: Any, stderr_lines: list[str]) -> str | None:
    """Why the step did not meet its expectation, or None if it did."""
    last = stderr_lines[-1] if stderr_lines else ""
    if rc == 124 or rc == 137:
        return f"timed out (exit {rc})"
    if expect == "stopped":
        if rc != 1:
            return f"exit {rc}, not 1"
        if not last.startswith(STOPPED_PREFIX):
            return f"last stderr line is not {STOPPED_PREFIX!r}: {last[:120]}"
        if any(line.startswith("Traceback") for line in stderr_lines):
            return "a traceback on stderr"
        return None
    if rc != 0:
        return f"exit {rc}: {last[:160]}"
    if expect == "exit0":
        return None
    if result is None:
        return "no JSON on stdout"
    if expect.startswith("failed:"):
        prefix = expect.split(":", 1)[1]
        if not isinstance(result, dict) or result.get("status") != "failed":
            return "status is not 'failed'"
        reason = str(result.get("reason"))
        if "\n" in reason or not reason.startswith(prefix):
            return f"reason is not one line starting {prefix!r}: {reason[:120]}"
        if any(line.startswith("Traceback") for line in stderr_lines):
            return "a traceback on stderr"
    return None


def cmd_record(args: argparse.Namespace) -> int:
    steps = Path(args.stepdir)
    out = _parse_json((steps / f"{args.name}.stdout").read_text(errors="replace")
                      if (steps / f"{args.name}.stdout").is_file() else "")
    stderr_lines = _tail(steps / f"{args.name}.stderr", 400)
    problem = check(args.expect, args.rc, out, stderr_lines)
    record: dict[str, Any] = {"step": args.name, "exit": args.rc, "seconds": args.seconds,
                              "expect": args.expect, "ok": problem is None,
                              "problem": problem, "stderr_last": stderr_lines[-1:] or None,
                              "result": out}
    if args.logs:
        record["logs"] = {p.name: _tail(p, 4) for p in sorted(Path(args.logs).glob("*.log"))}
    (steps / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    _print(record)
    if problem:
        shown = problem
    elif out is not None:
        shown = digest(out)
    else:
        shown = (stderr_lines[-1:] or [""])[0][:_ROW_CHARS].replace("|", "/")
    if args.logs and record["logs"]:
        shown += "; " + "; ".join(f"{name}: {(tail[-1:] or [''])[0][:100]}"
                                  for name, tail in record["logs"].items())
    with open(steps / "rows.md", "a") as rows:
        rows.write(f"| {args.name} | {args.seconds} | {args.rc} | "
                   f"{'ok' if problem is None else 'FAIL'} | {shown.replace('|', '/')} |\n")
    return 0 if problem is None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("timm", cmd_timm), ("depthwise", cmd_depthwise)):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("resolution", type=int)
        p.add_argument("batch", type=int)
        p.add_argument("steps", type=int)
        p.set_defaults(func=func)
        if name == "timm":
            p.add_argument("--require-cuda", action="store_true",
                           help="skip when torch sees no CUDA device")
    p = sub.add_parser("record")
    p.add_argument("name")
    p.add_argument("expect")
    p.add_argument("rc", type=int)
    p.add_argument("seconds", type=int)
    p.add_argument("stepdir")
    p.add_argument("--logs", help="a folder of worker logs whose tails the result keeps")
    p.set_defaults(func=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
