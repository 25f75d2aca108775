"""The `effsearch` command line: parsing only.

Each subcommand's arguments are declared here and handed to a function of
`search.model_commands` (cost, scale, train, compare, bench) or `search.study_commands`
(search, front, export, validate). Heavy imports (JAX, Optuna) happen inside the commands
that need them, and the study commands' module is imported only when one runs, so `effsearch
cost` and `scale` answer instantly. A `UserError` anywhere becomes one line on stderr and exit
code 2 (argument types reject bad values while parsing, see `search.arguments`); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

import search
import space
from search import arguments, model_commands, terminal
from search.paths import DEFAULT_WORKDIR, STORAGE_ENV
from search.terminal import Parser
from space import UserError
from space.errors import error_text, one_line
from trainers.config import ProxyConfig  # these three load no JAX: the help stays instant
from trainers.data import dataset_docs
from trainers.imbalance import REMEDIES, remedy_docs


def _listing(docs: dict[str, str]) -> str:
    """A registry's names with their docs, for help texts."""
    return "; ".join(f"{name} ({doc})" for name, doc in docs.items())


def _study_command(name: str) -> Callable[[argparse.Namespace], None]:
    """A study command, imported when it runs (its module loads Optuna)."""
    def run(args: argparse.Namespace) -> None:
        getattr(importlib.import_module("search.study_commands"), name)(args)

    return run


def allow_cpu(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-cpu", action="store_true",
                   help="train on the CPU although a GPU or TPU is present (JAX found none it "
                        "can use: install effsearch[cuda] or [tpu]); JAX_PLATFORMS=cpu also "
                        "says so")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="effsearch", description=(
        "EfficientNet-style compound-scaling search: cost and scale models, train proxies, "
        "search scaling coefficients and baselines, read Pareto fronts, reuse what was found."))
    parser.add_argument("--version", action="version",
                        version=f"effsearch {search.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("cost", help="analytic MACs, params and activations of a model")
    p.add_argument("model", help="a named model (efficientnet-b0 ... -b7, -b8, -l2) or an arch "
                                 "string")
    p.add_argument("--resolution", type=arguments.positive(int, 0),
                   help="input size in pixels (default: the spec's)")
    p.add_argument("--classes", type=arguments.positive(int, 0),
                   help="number of classes (default: the spec's)")
    p.add_argument("--per-block", action="store_true", help="show stem, every block and head")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=model_commands.cmd_cost)

    p = sub.add_parser("scale", help="the compound-scaled family of a baseline")
    p.add_argument("--baseline", help="named model, arch string or arch .json (default: the "
                                       "coefficients file's baseline, else efficientnet-b0)")
    p.add_argument("--coeffs", default="1.2,1.1,1.15",
                   help="alpha,beta,gamma or a coefficients .json file from effsearch export, "
                        "which also carries the searched baseline and rounding (default: "
                        "%(default)s)")
    p.add_argument("--target", type=arguments.positive(float, 1), default=2.0,
                   help="alpha*beta^2*gamma^2 of a typed triple; it must be within "
                        f"{model_commands.COEFFS_TOLERANCE:.0%} (default: %(default)s)")
    p.add_argument("--phi", default="0-7", help="'0-7', '0,0.5,1' or '2' (default: %(default)s)")
    p.add_argument("--family-json", metavar="FILE", type=arguments.output(".json"),
                   help="also write the family file: the coefficients, the baseline, the "
                        "rounding and every member resolved stage by stage, with its costs")
    p.add_argument("--resolution-multiple", type=arguments.positive(int),
                   help="round scaled resolutions to this multiple (default: the coefficients "
                        f"file's, else {space.DEFAULT_RESOLUTION_MULTIPLE})")
    p.add_argument("--channel-divisor", type=arguments.positive(int),
                   help="round scaled channels to this multiple (default: the coefficients "
                        f"file's, else {space.DEFAULT_CHANNEL_DIVISOR})")
    p.add_argument("--fit", metavar="KEY=BUDGET",
                   help="pick the largest member within a budget: macs=2e9, params=1e7, "
                        "resolution=300, or latency=5 (ms, measured on this device)")
    p.add_argument("--batch", type=arguments.positive(int), default=1,
                   help="batch of the --fit latency probe (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=model_commands.cmd_scale)

    p = sub.add_parser("train", help="train one proxy and report accuracy, speed and cost")
    p.add_argument("target", metavar="CONFIG_OR_ARCH",
                   help="a config .py file (get_config()), a named model or an arch string")
    p.description = ("Options left out take the config file's (or --proxy's) values, else "
                     "the defaults shown (trainers.config.ProxyConfig).")
    d = ProxyConfig()
    p.add_argument("--proxy", metavar="FILE",
                   help="a ProxyConfig as JSON, or a direction table whose header holds one: "
                        "its recipe trains the arch at the arch's own resolution (retrain a "
                        "table row: ROW_ARCH --proxy TABLE.jsonl --seed ROW_SEED)")
    p.add_argument("--dataset", help=f"{_listing(dataset_docs())}, a TFDS name, an .npz file "
                                     f"or an image folder (default: {d.dataset})")
    p.add_argument("--data-dir", help="TFDS data directory (default: TFDS's own)")
    p.add_argument("--epochs", type=arguments.positive(int), help=f"(default: {d.epochs})")
    p.add_argument("--resolution", type=arguments.positive(int, 8),
                   help="input size in pixels (default: the arch's own, 224 for "
                        "efficientnet-b0)")
    p.add_argument("--batch", type=arguments.positive(int), help=f"(default: {d.batch_size})")
    p.add_argument("--seed", type=arguments.positive(int, 0), help=f"(default: {d.seed})")
    p.add_argument("--width", type=float,
                   help=f"extra width multiplier on the arch (default: {d.width:g})")
    p.add_argument("--depth", type=float,
                   help=f"extra depth multiplier on the arch (default: {d.depth:g})")
    p.add_argument("--optimizer", choices=("sgd", "rmsprop"), help=f"(default: {d.optimizer})")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 0.1 (sgd) or 0.016 "
                                            "(rmsprop) per 256 images)")
    p.add_argument("--no-flip", action="store_true",
                   help="no horizontal flips (digits and text are not mirror-symmetric)")
    p.add_argument("--imbalance", type=float, metavar="RATIO",
                   help="long-tailed train split: largest / smallest class, e.g. 10 or 100 "
                        "(default: none)")
    p.add_argument("--remedy", choices=REMEDIES, metavar="REMEDY",
                   help=f"class-imbalance remedy: {_listing(remedy_docs())} (default: "
                        f"{d.remedy})")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    allow_cpu(p)
    p.set_defaults(func=model_commands.cmd_train)

    p = sub.add_parser("compare", help="compound vs single-dimension scaling at equal MACs, "
                                       "several seeds (the paper's Figure 8 at proxy scale)")
    p.add_argument("target", metavar="CONFIG_OR_ARCH",
                   help="a proxy or search config .py, a named model or an arch string")
    p.add_argument("--baseline", help="the network to scale (default: the proxy's arch)")
    p.add_argument("--coeffs", action="append", metavar="NAME=A,B,G|FILE",
                   help="a compound method, repeatable (default: paper=1.2,1.1,1.15)")
    p.add_argument("--factors", type=arguments.factors, default=[4.0, 8.0],
                   help="MACs factors over the baseline, each >= 1 (default: 4,8)")
    p.add_argument("--seeds", type=arguments.positive(int), default=3,
                   help="training seeds per network (default: %(default)s)")
    p.add_argument("--latency", action="store_true", help="measure forward latency (batch 1)")
    p.add_argument("--resolution-multiple", type=arguments.positive(int),
                   help=f"default: the search config's, else {space.PROXY_RESOLUTION_MULTIPLE}")
    p.add_argument("--channel-divisor", type=arguments.positive(int),
                   help=f"default: the search config's, else {space.DEFAULT_CHANNEL_DIVISOR}")
    p.add_argument("-o", "--output", type=arguments.output(".json"), help="write the rows as JSON")
    p.add_argument("--plot", type=arguments.output(".png"), help="write the figure (.png)")
    p.add_argument("--json", action="store_true")
    for flag, kind in (("--dataset", str), ("--data-dir", str), ("--epochs", int),
                       ("--resolution", int), ("--batch", int), ("--seed", int),
                       ("--width", float), ("--depth", float), ("--lr", float),
                       ("--imbalance", float)):
        p.add_argument(flag, type=kind)
    p.add_argument("--no-flip", action="store_true")
    allow_cpu(p)
    p.set_defaults(func=model_commands.cmd_compare, optimizer=None, remedy=None)

    p = sub.add_parser("bench", help="training throughput, step and compile time on this device")
    p.add_argument("--model", default="efficientnet-b0", help="named model or arch string")
    p.add_argument("--resolution", type=arguments.positive(int), default=224,
                   help="input size in pixels (default: %(default)s)")
    p.add_argument("--batch", type=arguments.positive(int), default=256,
                   help="batch size (default: %(default)s)")
    p.add_argument("--steps", type=arguments.positive(int), default=20,
                   help="timed steps after 3 warm-up steps (default: %(default)s)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument("--compare-torch", action="store_true",
                   help="also time timm's model in PyTorch (separate process)")
    p.add_argument("--json", action="store_true")
    allow_cpu(p)
    p.set_defaults(func=model_commands.cmd_bench)


    p = sub.add_parser("env", help="the backend, devices and versions JAX sees here, and "
                                   "what each of --workers N would get; trains nothing")
    p.add_argument("--workers", type=arguments.positive(int),
                   help="the workers to plan for (default: one per GPU or TPU chip, else 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=model_commands.cmd_env)

    def storage_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", help=f"work directory of the embedded journal storage "
                                         f"(default: ./{DEFAULT_WORKDIR})")
        p.add_argument("--storage", help="an Optuna storage URL (postgresql://..., redis://..., "
                                         "grpc://host:port of `effsearch storage-proxy`) or a "
                                         f".journal file (default: ${STORAGE_ENV}, else "
                                         "--workdir's journal)")

    p = sub.add_parser("search", help="run (or resume) a search sweep from a config file")
    p.add_argument("config", help="a sweep config .py file with get_config()")
    storage_args(p)
    p.add_argument("--study", help="study name (default: the config's name)")
    p.add_argument("--workers", type=arguments.positive(int), default=1,
                   help="worker processes on this machine (default: %(default)s)")
    p.add_argument("--trials", type=arguments.positive(int),
                   help="trained trials to finish (default: the config's)")
    p.add_argument("--checkpoints", metavar="DIR",
                   help="where halving's stopped trials leave a checkpoint that their "
                        "promotion continues from: a folder every worker reaches (gs:// "
                        "too); 'none' retrains promotions (default: WORKDIR/checkpoints)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the checkpoints once the study is done (default: deleted)")
    allow_cpu(p)
    p.set_defaults(func=_study_command("cmd_search"))

    study_help = "study name or its config .py (default: the only study in the storage)"
    p = sub.add_parser("front", help="the Pareto front of a study: table, JSON or plot")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--all", action="store_true",
                   help="every trained trial: the full-budget ones by front (also the dominated "
                        "ones and proposals that reused a trained network's result), then the "
                        "ones stopped early")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--plot", metavar="FILE", type=arguments.output(".png", ".html"),
                   help="write the figure: front.png or front.html")
    p.add_argument("--forecast", metavar="FACTOR", type=arguments.positive(float, 1),
                   help="a study with factor rungs: forecast the best directions at this cost "
                        "factor (default: twice the largest trained; the table shows it)")
    p.set_defaults(func=_study_command("cmd_front"))

    p = sub.add_parser("export", help="write a result: coefficients (or a baseline arch) as JSON")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--pick", help="best, knee or a trial number (default: the best search "
                                  "direction at the ladder's largest factor if the study has a "
                                  "ladder, else knee for a Pareto study and best otherwise)")
    p.add_argument("-o", "--output", type=arguments.output(".json"),
                   help="the .json file to write (required unless --format prints code)")
    p.add_argument("--family", metavar="PHIS", type=arguments.parse_phis,
                   help="write a family file instead: the coefficients and every member of "
                        "these phis ('0-7', '0,1,2') resolved stage by stage, with its costs "
                        "and each library's builder arguments")
    p.add_argument("--format", choices=("json", "timm", "keras-hub", "torchvision", "keras"),
                   default="json",
                   help="json (default): the file -o names; timm or keras-hub: print Python "
                        "that builds the picked network (or --phi's member) in that library "
                        "alone, exact to the parameter (-o then also writes the .json export)")
    p.add_argument("--phi", type=float,
                   help="with --format: the member phi of the picked coefficients' family "
                        "(default: the network the trial trained)")
    p.set_defaults(func=_study_command("cmd_export"))

    p = sub.add_parser("reliability", help="test-retest: do two training seeds rank the "
                                           "same networks alike? (the proxy's noise)")
    p.add_argument("config", help="a sweep config .py whose search is a CoefficientSearch")
    p.add_argument("--networks", type=arguments.positive(int, 3), default=30,
                   help="distinct networks of the share lattice at the config's matched cost "
                        "(default: %(default)s)")
    p.add_argument("--seeds", type=arguments.positive(int, 2), default=2,
                   help="training seeds per network (default: %(default)s)")
    p.add_argument("--step", type=float, default=0.1,
                   help="the share lattice's step (default: %(default)s: 66 directions)")
    storage_args(p)
    p.add_argument("--store", metavar="STUDY",
                   help="record the result in this study: `front` then marks the differences "
                        "within noise")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    allow_cpu(p)
    p.set_defaults(func=_study_command("cmd_reliability"))

    p = sub.add_parser("validate", help="confirm the top trials: at larger matched costs with "
                                        "seeds (--factors: the scale ladder), or longer "
                                        "(--epochs alone: the proxy's rank correlation)")
    p.add_argument("study", nargs="?", help=study_help)
    storage_args(p)
    p.add_argument("--factors", type=arguments.factors,
                   help="the scale ladder: cost factors over the baseline, e.g. 4,8; retrains "
                        "the top directions and the references there, matched in cost")
    p.add_argument("--seeds", type=arguments.positive(int), default=3,
                   help="seeds per ladder rung (default: %(default)s)")
    p.add_argument("--no-references", action="store_true",
                   help="the ladder without the paper's direction and the controls")
    p.add_argument("--reuse", metavar="TABLE",
                   help="a direction table trained with the study's recipe: the ladder takes "
                        "the (network, seed) trainings it holds instead of training them")
    p.add_argument("--top", type=arguments.positive(int),
                   help="how many of the best distinct trials (default: 3 on the ladder; 5, "
                        "and >= 3, for the rank correlation)")
    p.add_argument("--epochs", type=arguments.positive(int),
                   help="the longer budget (rank correlation), or the ladder's epochs "
                        "(default: the proxy's)")
    p.add_argument("--json", action="store_true")
    allow_cpu(p)
    p.set_defaults(func=_study_command("cmd_validate"))

    p = sub.add_parser("storage-proxy", help="serve a PostgreSQL (or other RDB) storage to "
                                             "hundreds of workers through Optuna's gRPC proxy; "
                                             "workers then pass --storage grpc://HOST:PORT")
    p.add_argument("--storage", help=f"the RDB URL the proxy holds (default: ${STORAGE_ENV})")
    p.add_argument("--host", default="localhost",
                   help="the address to listen on (default: %(default)s; 0.0.0.0 for every "
                        "interface of a private network: the channel is not encrypted)")
    p.add_argument("--port", type=arguments.positive(int), default=13000,
                   help="(default: %(default)s)")
    p.set_defaults(func=_study_command("cmd_storage_proxy"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `effsearch` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        sys.stderr.write(error_text(f"effsearch {args.command}", e))
        return terminal.EXIT_USER_ERROR
    except terminal.Stopped as e:
        sys.stderr.write(f"effsearch {args.command}: stopped: {one_line(str(e))}\n")
        return terminal.EXIT_STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
