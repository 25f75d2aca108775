"""`effsearch train` and `effsearch bench` end to end on tiny models."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from toys import TINY_SE_ARCH

from search.cli import main

ARCH = TINY_SE_ARCH


def test_train_json_reports_the_contract_fields(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSEARCH_CACHE_DIR", str(tmp_path))
    code = main(["train", ARCH, "--dataset", "digits", "--epochs", "1", "--resolution", "8",
                 "--batch", "128", "--seed", "1", "--json"])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert code == 0 and record["status"] == "ok"
    assert {"val_top1", "compile_s", "images_per_s", "macs", "params"} <= set(record)
    assert record["seed"] == 1 and record["config"]["epochs"] == 1


def test_train_from_a_config_file(capsys, tmp_path):
    config = tmp_path / "proxy.py"
    config.write_text(
        "from trainers.proxy import ProxyConfig\n\n"
        f"def get_config():\n    return ProxyConfig(arch='{ARCH}', resolution=8, epochs=1,"
        " batch_size=128)\n")
    code = main(["train", str(config), "--json"])
    assert code == 0 and json.loads(capsys.readouterr()[0])["resolution"] == 8


def test_train_user_errors(capsys, tmp_path):
    assert main(["train", "mb_r1_k3_q1", "--epochs", "1"]) == 2
    assert "unknown token 'q1'" in capsys.readouterr()[1]
    assert main(["train", ARCH, "--dataset", "nope_not_a_dataset"]) == 2
    assert "unknown dataset" in capsys.readouterr()[1]
    assert main(["train", str(tmp_path / "missing.py")]) == 2
    assert "config file not found" in capsys.readouterr()[1]


def test_bench_json(capsys):
    code = main(["bench", "--model", ARCH, "--resolution", "16", "--batch", "4", "--steps",
                 "2", "--compare-torch", "--json"])
    record = json.loads(capsys.readouterr()[0])
    assert code == 0 and record["images_per_s"] > 0 and record["compile_s"] > 0
    assert record["device"] and record["resolution"] == 16
    # Without torch or timm the comparison says which is missing instead of failing; timm
    # has no model for an arch string, which it says too.
    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        assert record["torch"] == f"skipped: {' and '.join(missing)} not installed"
    else:
        assert record["torch"].startswith("skipped: timm has only the named EfficientNets")


def test_torchvision_stand_in_lets_timm_import_and_refuses_use():
    """In a fresh interpreter: with torchvision hidden, timm's imports resolve to inert names
    that raise ImportError when used (CPU machines only get CUDA torchvision builds)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["torchvision"] = None  # as if missing: importing it raises ImportError
        from space.torchvision_stand_in import use_torchvision_stand_in_if_broken
        assert use_torchvision_stand_in_if_broken()
        from torchvision.ops.misc import FrozenBatchNorm2d
        import torchvision.transforms.functional as F
        assert F.InterpolationMode.BILINEAR is not None
        try:
            FrozenBatchNorm2d(8)
        except ImportError as e:
            print("refused:", e)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "refused: torchvision is not importable here" in done.stdout


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "timm")),
                    reason="needs torch and timm (CI installs both, CPU builds)")
def test_timm_baseline_runs_on_a_cpu_only_machine():
    done = subprocess.run([sys.executable, "-m", "trainers.torch_bench", "efficientnet-b0",
                           "16", "2", "2", "float32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["images_per_s"] > 0 and record["dtype"] == "float32"


def test_bench_compare_torch_leaves_the_gpu_to_timm(monkeypatch, capsys):
    # JAX preallocates 75% of a GPU when its backend starts; timm then runs in what is left.
    import trainers.probes

    # Set, then removed: the undo then removes what the command sets, too.
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "unset")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE")
    seen = {}

    def latency(spec, **kwargs):
        seen["preallocate"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
        raise SystemExit(0)  # stop before any compile: only the order is tested

    monkeypatch.setattr(trainers.probes, "measure_latency", latency)
    with pytest.raises(SystemExit):
        main(["bench", "--model", "efficientnet-b0", "--compare-torch", "--json"])
    assert seen["preallocate"] == "false"
