"""Every user mistake the CLI can meet: exit code 2, one line naming the problem, nothing written.

A table of argument lists. `{tmp}` stands for a folder prepared with the files in `FILES`
(a valid config, broken journals, a broken coefficients file, ...). The test runs each command
from inside that folder and checks that no file there was created, changed or removed, so a
mistake never costs a study or a result. A new command or option adds its rows here.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from toys import TINY_ARCH

from search.cli import main

ARCH = TINY_ARCH
CONFIG = textwrap.dedent(f"""
    from search.config import CoefficientSearch, SearchConfig
    from trainers.proxy import ProxyConfig

    def get_config():
        return SearchConfig(name="ok", search=CoefficientSearch(baseline="{ARCH}"),
                            proxy=ProxyConfig(epochs=1, resolution=8), trials=1)
    """)
# One complete Optuna journal record, then a broken one, then a complete one again.
RECORD = ('{"op_code": 0, "worker_id": "w", "study_name": "s", '
          '"directions": [1]}\n')


def _files(tmp: Path) -> None:
    (tmp / "ok.py").write_text(CONFIG)
    (tmp / "halving.py").write_text(CONFIG.replace("epochs=1", "epochs=3"))  # halving on
    (tmp / "config.txt").write_text(CONFIG)
    (tmp / "raises.py").write_text("def get_config():\n    return 1 / 0\n")
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "adir").mkdir()
    (tmp / "broken.json").write_text('{"format": "effsearch.coefficients", "alpha": ')
    (tmp / "middle.journal").write_text(RECORD + '{"op_code": 4, "worker\n' + RECORD)
    (tmp / "random.journal").write_bytes(bytes(range(256)) * 4)
    np.savez(tmp / "empty.npz", x_train=np.zeros((0, 8, 8), np.uint8),
             y_train=np.zeros((0,), np.int64))


QUICKSTART = str(Path(__file__).resolve().parents[1] / "experiments" / "quickstart.py")
CASES = [
    (["env", "--workers", "0"], r"argument --workers: must be >= 1, got '0'"),
    (["reliability", QUICKSTART, "--networks", "2"],
     r"argument --networks: must be >= 3, got '2'"),
    (["reliability", QUICKSTART, "--seeds", "1"], r"argument --seeds: must be >= 2, got '1'"),
    (["reliability", QUICKSTART, "--step", "0.3"], r"0\.3"),
    # scale: phi, coefficients, rounding
    (["scale", "--phi", "nan"], r"--phi values must be finite numbers, got nan"),
    (["scale", "--phi", "inf"], r"--phi values must be finite numbers, got inf"),
    (["scale", "--phi", "0-1000000000"], r"--phi '0-1000000000' gives more than 101 values"),
    (["scale", "--phi=--"], r"--phi must look like .*, got ''"),
    (["scale", "--phi", "a-b"], r"--phi must look like '0-7', '0,0.5,1' or '2'"),
    (["scale", "--phi", "0-100"], r"phi=\d+: .* must be an integer in \[1, \d+\]"),
    (["scale", "--coeffs", "1000,1,1", "--phi", "0-7"],
     r"alpha\*beta\^2\*gamma\^2 = 1000.0000 is \+49900.0% from the target 2"),
    (["scale", "--coeffs", "0.9,1.2,1.1"], r"alpha must be >= 1, got 0.9"),
    (["scale", "--coeffs", "{tmp}/broken.json"], r"coefficients file .*broken.json is not valid"),
    (["scale", "--coeffs", "{tmp}/missing.json"], r"coefficients file not found"),
    (["scale", "--target", "0.5"], r"argument --target: must be >= 1, got '0.5'"),
    (["scale", "--channel-divisor", "0"], r"argument --channel-divisor: must be >= 1"),
    (["scale", "--fit", "flops=1"], r"--fit must be one of macs=N"),
    (["scale", "--batch", "0"], r"argument --batch: must be >= 1"),
    # cost: arch strings and sizes
    (["cost", "mb_r100000000_k3_s1_c8"], r"repeats must be an integer in \[1, 512\]"),
    (["cost", "mb_r1_k3_s1_c100000000"], r"out_channels must be an integer in \[1, 65536\]"),
    (["cost", "b0", "--resolution", "100000"], r"resolution must be an integer in \[1, 8192\]"),
    (["cost", "efficientnet-b9"], r"unknown model 'efficientnet-b9'"),
    # config files and storage
    (["search", "{tmp}/config.txt"], r"config.txt must be a Python file \(\.py\)"),
    (["search", "{tmp}/nope.py"], r"config file not found"),
    (["search", "{tmp}/ok.py", "--workdir", "{tmp}/afile"], r"afile is a file"),
    (["search", "{tmp}/ok.py", "--workdir", "{tmp}/afile/sub"], r"afile is a file"),
    (["search", "{tmp}/ok.py", "--storage", "{tmp}/adir"], r"adir is a directory"),
    (["search", "{tmp}/halving.py", "--checkpoints", "{tmp}/afile/sub"],
     r"--checkpoints .*afile/sub: cannot create it"),
    (["search", "{tmp}/ok.py", "--workers", "0"], r"argument --workers: must be >= 1"),
    (["search", "{tmp}/ok.py", "--trials", "0"], r"argument --trials: must be >= 1"),
    (["front", "--storage", "{tmp}/middle.journal"], r"middle.journal.* line 2"),
    (["front", "--storage", "{tmp}/random.journal"], r"random.journal is not an Optuna journal"),
    (["front", "--storage", "{tmp}/adir"], r"adir is a directory"),
    (["front", "--workdir", "{tmp}/none"], r"no study storage"),
    (["front", "--storage", "grpc://host:port"], r"a storage proxy URL is grpc://HOST:PORT"),
    (["front", "--storage", "grpc://:13000"], r"a storage proxy URL is grpc://HOST:PORT"),
    # storage-proxy
    (["storage-proxy"], r"needs the storage it holds: --storage URL or \$EFFSEARCH_STORAGE_URL"),
    (["storage-proxy", "--storage", "{tmp}/x.journal"], r"not a journal \(optuna#6084\)"),
    (["storage-proxy", "--storage", "grpc://h:13000"], r"not another proxy"),
    (["storage-proxy", "--storage", "sqlite:///{tmp}/x.db", "--port", "70000"],
     r"--port must be at most 65535, got 70000"),
    (["storage-proxy", "--storage", "sqlite:///x.db", "--port", "0"],
     r"argument --port: must be >= 1, got '0'"),
    # outputs into folders that do not exist, checked before any work
    (["export", "-o", "{tmp}/missing/c.json"], r"folder '.*missing' does not exist"),
    (["export", "-o", "{tmp}/c.txt"], r"'.*c.txt' must end in .json"),
    (["export", "--format", "onnx"], r"argument --format: invalid choice: 'onnx'"),
    (["export", "--format", "timm", "--phi", "two"], r"argument --phi: invalid float value"),
    (["export", "--format", "torchvision"], r"torchvision's EfficientNet pads symmetrically"),
    (["export"], r"export needs -o FILE.json"),
    (["front", "--plot", "{tmp}/missing/f.png"], r"folder '.*missing' does not exist"),
    (["front", "--plot", "{tmp}/f.pdf"], r"must end in .png or .html"),
    (["front", "--forecast", "x16"], r"--forecast: expected a number, got 'x16'"),
    (["front", "--forecast", "0.5"], r"--forecast: must be >= 1"),
    (["compare", "{tmp}/ok.py", "--plot", "{tmp}/missing/f.png"], r"does not exist"),
    (["compare", "{tmp}/ok.py", "-o", "{tmp}/missing/r.json"], r"does not exist"),
    # numbers
    (["compare", "{tmp}/ok.py", "--factors", "abc"], r"expected cost factors >= 1 like '4,8'"),
    (["compare", "{tmp}/ok.py", "--factors", "4,0.5"], r"expected cost factors >= 1"),
    (["compare", "{tmp}/ok.py", "--seeds", "0"], r"argument --seeds: must be >= 1"),
    (["bench", "--steps", "0"], r"argument --steps: must be >= 1, got '0'"),
    (["bench", "--batch", "-1"], r"argument --batch: must be >= 1"),
    (["validate", "--top", "2", "--epochs", "9"],
     r"2 points cannot measure a rank correlation"),
    (["validate", "--top", "1", "--epochs", "9"], r"1 point cannot measure a rank correlation"),
    (["validate"], r"give --factors \(the scale ladder\) or --epochs"),
    (["validate", "--factors", "0.5"], r"expected cost factors >= 1"),
    (["validate", "--epochs", "9", "--no-references"],
     r"--no-references is an option of the scale ladder: give --factors"),
    (["train", ARCH, "--epochs", "0"], r"argument --epochs: must be >= 1"),
    # data
    (["train", ARCH, "--dataset", "{tmp}/empty.npz"], r"holds no images"),
    (["train", ARCH, "--dataset", "foo/bar:1.0"], r"foo/bar:1.0"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("argv", "pattern"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys,
                                                           argv, pattern):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default workdir would be created here
    before = _snapshot(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), err
    assert _snapshot(tmp_path) == before


def test_a_config_that_raises_shows_only_the_users_frames(tmp_path, capsys):
    (tmp_path / "helper.py").write_text("def boom(x):\n    return 1 / x\n")
    (tmp_path / "raises.py").write_text(
        "from helper import boom\n\n\ndef get_config():\n    return boom(0)\n")
    assert main(["search", str(tmp_path / "raises.py")]) == 2
    first, *frames = capsys.readouterr()[1].splitlines()
    assert first == (f"effsearch search: error: config file {tmp_path / 'raises.py'} raised "
                     f"ZeroDivisionError: division by zero")
    files = [line.split('"')[1] for line in frames if line.startswith("  File ")]
    assert files == [str(tmp_path / "raises.py"), str(tmp_path / "helper.py")]
    assert "return 1 / x" in "\n".join(frames)


def test_train_help_shows_the_proxy_defaults(capsys):
    from trainers.config import ProxyConfig
    from trainers.data import dataset_docs
    from trainers.imbalance import remedy_docs

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    # argparse wraps lines, also after a hyphen
    text = " ".join(capsys.readouterr()[0].split()).replace("- ", "-")
    defaults = ProxyConfig()
    for field in ("dataset", "epochs", "batch_size", "seed", "optimizer", "remedy"):
        assert f"(default: {getattr(defaults, field)})" in text
    assert defaults.resolution is None and "default: the arch's own, 224" in text
    assert defaults.learning_rate is None and "0.1 (sgd) or 0.016 (rmsprop)" in text
    for name in (*dataset_docs(), *remedy_docs()):  # the registries' names, with their docs
        assert f"{name} (" in text
