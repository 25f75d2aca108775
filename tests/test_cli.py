"""The `effsearch cost` and `scale` commands, through `main()` and the installed script."""

import importlib.metadata
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import space
from search.cli import main
from space import PAPER, cost, get_model_spec, save_coefficients


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_json_for_b0(capsys):
    code, out, _ = run(capsys, "cost", "efficientnet-b0", "--json")
    record = json.loads(out)
    assert code == 0
    assert record["params"] == 5_288_548
    assert round(record["macs"] / 1e9, 3) == 0.386
    assert set(record) >= {"macs", "params", "activations", "resolution"}


def test_cost_of_arch_string_with_overrides_and_per_block(capsys):
    arch = "stem16-mb_r2_k3_s2_e6_c24_se0.25-head64"
    code, out, _ = run(capsys, "cost", arch, "--resolution", "32", "--classes", "10", "--json",
                       "--per-block")
    record = json.loads(out)
    assert code == 0 and record["resolution"] == 32
    # The overrides reach the spec the command costs, and the record names that spec.
    spec = space.decode(arch).replace(resolution=32, num_classes=10)
    assert space.decode(record["arch"]) == spec
    assert (record["macs"], record["params"], record["activations"]) == tuple(space.cost(spec))
    parts = record["parts"]
    assert parts == [p._asdict() for p in space.cost_breakdown(spec)]
    # Sizes and channels as the arch string says: 3-channel input at 32 px, stem16 stride 2,
    # then r2_s2 (16 -> 24 channels, halving the map, then 24 -> 24), head to 10 classes.
    assert [(p["name"], p["in_size"], p["out_size"], p["in_channels"], p["out_channels"])
            for p in parts] == [("stem", 32, 16, 3, 16), ("block0", 16, 8, 16, 24),
                                ("block1", 8, 8, 24, 24), ("head", 8, 1, 24, 10)]
    # The table shows the same rows: size and channels as in->out, params with separators.
    code, out, _ = run(capsys, "cost", arch, "--resolution", "32", "--classes", "10",
                       "--per-block")
    assert code == 0
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.startswith("│") and line.split()[1] in {p["name"] for p in parts}}
    for p in parts:
        cells = [c for c in rows[p["name"]] if c != "│"]
        assert cells[1:3] == [f"{p['in_size']}->{p['out_size']}",
                              f"{p['in_channels']}->{p['out_channels']}"]
        assert cells[4] == f"{p['params']:,}"


def test_cost_table(capsys):
    code, out, _ = run(capsys, "cost", "b1", "--per-block")
    assert code == 0 and "block22" in out and "7,794,184" in out


def test_scale_family_json(capsys):
    code, out, _ = run(capsys, "scale", "--baseline", "efficientnet-b0", "--coeffs",
                       "1.2,1.1,1.15", "--phi", "0-3", "--json")
    record = json.loads(out)
    rows = record["family"]
    assert code == 0 and [r["phi"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["macs_ratio"] == 1.0 and rows[0]["resolution"] == 224
    assert rows[1]["macs"] == cost(get_model_spec("b2").replace(resolution=256)).macs
    assert all(r["ideal_ratio"] == 2.0 ** r["phi"] for r in rows)
    assert rows[3]["nominal_ratio"] == pytest.approx(PAPER.product ** 3)
    assert all(a["macs"] < b["macs"] for a, b in itertools.pairwise(rows))


def test_scale_reads_a_coefficients_file(capsys, tmp_path):
    path = save_coefficients(PAPER, tmp_path / "c.json", provenance={"study": "x"})
    code, out, _ = run(capsys, "scale", "--coeffs", str(path), "--phi", "1", "--json")
    assert code == 0 and json.loads(out)["family"][0]["resolution"] == 256


def test_scale_table_and_phi_lists(capsys):
    code, out, _ = run(capsys, "scale", "--phi", "0,0.5,1")
    assert code == 0 and "0.5" in out and "2^phi" in out
    # The family stays under 1 GMACs (B0 at phi 1: 0.86): millions.
    assert "MACs (M)" in out and f"{cost(get_model_spec('b0')).macs / 1e6:.3f}" in out
    code, out, _ = run(capsys, "scale", "--phi", "0-2")
    assert "MACs (G)" in out and f"{cost(get_model_spec('b0')).macs / 1e9:.3f}" in out


def test_scale_table_units_fit_a_proxy_family(capsys):
    code, out, _ = run(capsys, "scale", "--baseline", space.PROXY_BASELINE, "--phi", "0,1",
                       "--fit", "macs=1e9")
    macs = cost(space.resolve(space.PROXY_BASELINE)).macs
    assert code == 0 and "MACs (M)" in out and "params (K)" in out
    assert f"{macs / 1e6:.3f}" in out and " MMACs, " in out


@pytest.mark.parametrize("fit", ["macs=1e9", "params=2e7", "resolution=300"])
def test_scale_fit_picks_the_largest_member_within_budget(capsys, fit):
    code, out, _ = run(capsys, "scale", "--phi", "0-7", "--fit", fit, "--json")
    record = json.loads(out)
    key, budget = fit.split("=")
    family, chosen = record["family"], record["chosen"]
    assert code == 0 and chosen[key] <= float(budget)
    larger = [row for row in family if row["phi"] > chosen["phi"]]
    assert larger and all(row[key] > float(budget) for row in larger)


def test_fit_by_latency_measures_in_order_and_stops_over_budget():
    from space.family import family_rows, fit_member

    rows = family_rows(get_model_spec("b0"), PAPER, [0, 1, 2, 3, 4], 8)
    measured = []

    def measure(row):  # a stand-in device: latency proportional to MACs
        measured.append(row["phi"])
        return row["macs"] / 1e8

    chosen = fit_member(rows, "latency", 9.0, measure)
    assert chosen["phi"] == 1 and chosen["latency_ms"] == pytest.approx(8.6, abs=0.05)
    assert measured == [0, 1, 2]  # phi 3 and 4 were never measured


@pytest.mark.parametrize(("argv", "message"), [
    (["scale", "--fit", "flops=1"], "--fit must be one of macs=N"),
    (["scale", "--fit", "macs=1e3"], "no family member fits macs <= 1000"),
    (["cost", "efficientnet-b9"], "unknown model 'efficientnet-b9' (known: efficientnet-b0"),
    (["cost", "mb_r1_k3_s1_c8_zz1"], "unknown token 'zz1'"),
    (["scale", "--coeffs", "0.9,1.2,1.1"], "alpha must be >= 1, got 0.9"),
    (["scale", "--coeffs", "missing.json"], "coefficients file not found"),
    (["scale", "--phi", "a-b"], "--phi must look like"),
    (["cost", "b0", "--resolution", "0"], "resolution must be an integer in [1, 8192]"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_are_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["cost"])
    _, err = capsys.readouterr()
    assert e.value.code == 2 and err.count("\n") == 1


# The script installed beside this interpreter (make test runs .venv/bin/python, PATH aside).
SCRIPT = shutil.which("effsearch", path=str(Path(sys.executable).parent)) or shutil.which(
    "effsearch")


@pytest.mark.skipif(SCRIPT is None, reason="console script not installed")
def test_console_script():
    done = subprocess.run([SCRIPT, "cost", "efficientnet-b0", "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["params"] == 5_288_548
    bad = subprocess.run([SCRIPT, "scale", "--coeffs", "0.5,1,1"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    version = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split() == ["effsearch", importlib.metadata.version("effsearch")]


def test_env_says_what_jax_runs_on_and_what_each_worker_would_get(capsys, monkeypatch):
    code, out, _ = run(capsys, "env", "--json")
    record = json.loads(out)
    assert code == 0
    assert record["backend"] == "cpu" and record["local_devices"] >= 1
    assert {"jax", "jaxlib", "flax", "optax", "optuna"} <= set(record["versions"])
    assert record["accelerator"] is None and record["cpu_fallback"] is None
    # Slurm's --gres=gpu:2 presets the list: three workers share it, two on the first GPU.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    for name in ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE",
                 "JAX_PLATFORMS"):
        monkeypatch.delenv(name, raising=False)
    code, out, _ = run(capsys, "env", "--workers", "3")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("--workers 3: ")]
    assert [line.split("CUDA_VISIBLE_DEVICES=")[1].split()[0] for line in lines] == \
        ["4", "5", "4"]
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION=0.45" in lines[0]
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in lines[1]
