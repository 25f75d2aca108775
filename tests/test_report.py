"""experiments/report.py on a baseline study: the section a BASELINE search gets."""

import optuna
import pytest
from test_comparison import load_report_script
from toys import TINY_ARCH

import space
from search import controller, records, storage
from search.config import BaselineSearch, SearchConfig
from space.baseline_space import StageChoices
from trainers.config import ProxyConfig
from trainers.data import load_dataset


@pytest.mark.slow
def test_report_of_a_baseline_study(tmp_path):
    # The seed as the proxy builds it: 8 px (the arch's res8), 10 digits, 1 channel.
    seed = space.decode(TINY_ARCH).replace(num_classes=10, in_channels=1)
    target = 1.2 * space.cost(seed).macs
    config = SearchConfig(
        name="base", search=BaselineSearch(seed=TINY_ARCH, macs_target=target, max_over=0.0,
                                           choices=StageChoices(widths=(1.0, 2.0))),
        proxy=ProxyConfig(dataset="digits", epochs=1, batch_size=128, resolution=8),
        sampler="random", trials=3, startup_trials=4)
    journal = tmp_path / storage.JOURNAL_NAME  # where the report looks: RESULTS_DIR/...
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, created = controller.open_study(config, storage.open_storage(str(journal)), "base")
    assert created
    controller.enqueue_design(study, config)
    controller.run_worker(config, study, trials=3, dataset=load_dataset("digits"))
    rows = records.trial_rows(study)
    rejected = [t for t in study.get_trials() if "rejected" in t.user_attrs]
    assert len(rows) == 3 and all(r.macs <= target for r in rows)
    assert rows[0].reference == "seed" and rows[0].arch == space.encode(seed)

    load_report_script().main(tmp_path)
    text = (tmp_path / "report.md").read_text()
    lines = text.splitlines()
    assert "### Study `base`" in lines
    summary = next(line for line in lines if line.startswith("Baseline search."))
    assert "pareto of `val_top1` vs `macs`" in summary and "on digits" in summary
    assert (f"3 trained trials (3 to the full budget at once, 0 more by promotion), "
            f"{len(rejected)} rejected before training") in summary
    header = next(line for line in lines if line.startswith("| trial |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    assert names[:3] == ["trial", "arch", "reference"]  # the kind's identifying column
    table = [line for line in lines if line.startswith("| ") and line != header]
    ranked = {r.trial: r.rank for r in records.front(rows)}
    assert len(table) == 3 and len(ranked) == 3  # all trained for the full (1-epoch) budget
    for line, row in zip(table, rows, strict=True):  # one line per trial, in trial order
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=True))
        assert cells["trial"] == str(row.trial) and cells["arch"] == f"`{row.arch}`"
        assert cells["reference"] == (row.reference or "")
        assert cells["score"] == f"{row.score:.3f}" and cells["MACs"] == f"{row.macs:,}"
        assert cells["budget"] == "1/1" and cells["rank"] == str(ranked[row.trial])
    for how in ("best", "knee"):  # a pick names the trial and its arch, not coefficients
        pick = records.pick(rows, how)
        assert (f"- **{how}**: trial {pick.trial}, {pick.arch}, val_top1={pick.score:.3f}, "
                f"{pick.macs:,} MACs") in lines
    assert "![front](base.front.png)" in lines
    png = (tmp_path / "base.front.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_ladder_section_says_how_far_the_exported_direction_is_from_the_references():
    from test_ladder import fake_row

    rows = [fake_row(8.0, "trial 3", "candidate", 3, 0.90), fake_row(8.0, "paper", "reference",
                                                                      None, 0.85)]
    rows[1] |= {"reference": "paper"}
    for r in rows:
        r |= {"resolution": 16}
    record = {"factors": [8.0], "seeds": [0, 1], "epochs": 2, "metric": "val_top1",
              "cost": "macs", "tolerance": 0.05, "rows": rows}
    lines = load_report_script().ladder_section(record)
    (line,) = [x for x in lines if x.startswith("| 8x | paper (paper) |")]
    assert "+0.0500 +- 0.0100 | +5.0 |" in line  # (0.90 - 0.85) / sqrt(2 x 0.01^2 / 2)
    assert line.endswith(" | 0.038 |")  # Welch's t 5.0 with 2 degrees of freedom
