"""The paper-comparison pipeline: equal-MACs matching and a toy end-to-end table."""

import json

import pytest
from toys import TINY_ARCH

import space
from search.cli import main
from search.comparison import Method, match_cost, single_dimension_methods

ARCH = TINY_ARCH


@pytest.mark.parametrize("factor", [4, 8])
def test_every_method_reaches_the_same_realized_macs(factor):
    b0 = space.EFFICIENTNET_B0
    base = space.cost(b0).macs
    for method in [Method("paper", "compound", space.PAPER), *single_dimension_methods()]:
        spec, t = match_cost(b0, method, factor, resolution_multiple=8)
        assert space.cost(spec).macs / base == pytest.approx(factor, rel=0.03)
        # Only the method's own dimension moved.
        if method.kind == "depth":
            assert spec.resolution == 224 and spec.stem_channels == 32
        if method.kind == "width":
            assert spec.resolution == 224 and spec.num_blocks == 16
        if method.kind == "resolution":
            assert spec.stages == b0.stages and spec.resolution > 224
        assert t > (0 if method.kind == "compound" else 1)


def test_method_mistakes_are_user_errors():
    with pytest.raises(space.UserError):
        Method("x", "compound")
    with pytest.raises(space.UserError):
        Method("x", "height")
    with pytest.raises(space.UserError, match="factor must be >= 1"):
        match_cost(space.EFFICIENTNET_B0, Method("d", "depth"), 0.5)


@pytest.mark.slow
def test_toy_comparison_produces_a_well_formed_table(tmp_path, capsys):
    out, png = tmp_path / "rows.json", tmp_path / "fig.png"
    assert main(["compare", ARCH, "--resolution", "8", "--epochs", "1", "--batch", "128",
                 "--factors", "2", "--seeds", "2", "--coeffs", "paper=1.2,1.1,1.15",
                 "-o", str(out), "--plot", str(png), "--latency"]) == 0
    assert "scaling methods at equal realized MACs" in capsys.readouterr()[0]
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [r["method"] for r in rows] == ["paper", "depth only", "width only",
                                           "resolution only"]
    for r in rows:  # shape only: no accuracy claims at toy size
        assert len(r["val_top1"]) == 2 and r["seeds"] == [0, 1] and r["failed"] == 0
        assert 0 <= r["test_top1_mean"] <= 1 and r["test_top1_std"] >= 0
        assert r["latency_ms"] > 0 and r["macs_ratio"] > 1
    assert png.stat().st_size > 10_000
    # The notebook's tables and figures are regenerated from the recorded file.
    out.rename(tmp_path / "comparison.json")
    report = load_report_script()
    report.main(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| 2x | paper |" in text and (tmp_path / "comparison.png").exists()


def load_report_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "experiments" / "report.py"
    spec = importlib.util.spec_from_file_location("experiments_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_compare_on_a_search_config_scales_its_baseline_with_its_rounding(tmp_path):
    config = tmp_path / "study.py"
    config.write_text(f'''
from pathlib import Path
from search.config import CoefficientSearch, SearchConfig
from trainers.proxy import ProxyConfig

with open(Path(__file__).with_suffix(".runs"), "a") as f:
    f.write("x")


def get_config():
    return SearchConfig(name="toy", search=CoefficientSearch(
        baseline="{ARCH}", resolution_multiple=4, channel_divisor=2),
        proxy=ProxyConfig(arch="efficientnet-b0", resolution=8, epochs=1, batch_size=128))
''')
    out = tmp_path / "rows.json"
    assert main(["compare", str(config), "--factors", "2", "--seeds", "1",
                 "--coeffs", "paper=1.2,1.1,1.15", "-o", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["baseline"].startswith("stem8-")  # the search's baseline, not the proxy's
    assert (record["resolution_multiple"], record["channel_divisor"]) == (4, 2)
    assert all(r["resolution"] % 4 == 0 for r in record["rows"])
    assert (tmp_path / "study.runs").read_text() == "x"  # the config file ran once
