"""The scale ladder: top directions and references retrained at larger matched costs, with
seeds; `export` defaults to the ladder's best search direction."""

import json
import math
import os
import shutil

import pytest
from test_search_e2e import coef_study, digits  # noqa: F401 (shared module fixtures)
from toys import TINY_ARCH

import space
from search import ladder, records, storage
from search.cli import main
from search.kinds import CoefficientSearch


def copy_of(coef_study, tmp_path):  # noqa: F811
    """The shared toy study in a journal of its own, to write a ladder into."""
    _, _, path = coef_study
    journal = tmp_path / "s.journal"
    shutil.copy(path / "s.journal", journal)
    study = storage.load_study(storage.open_storage(str(journal)), "coef", str(journal))
    return study, ["--storage", str(journal)]


def fake_row(factor, method, role, trial, mean, std=0.01):
    """A ladder row as `compare` writes it, with chosen scores (selection logic only)."""
    return {"factor": factor, "method": method, "role": role, "trial": trial, "kind": "compound",
            "reference": None, "parameter": 2.0, "macs_ratio": factor, "alpha": 1.2,
            "beta": 1.1, "gamma": 1.15, "val_top1_mean": mean, "val_top1_std": std,
            "test_top1_mean": mean, "test_top1_std": std}


def test_directions_are_the_top_distinct_trials_then_the_missing_references(coef_study):  # noqa: F811
    study, _, _ = coef_study
    rows = records.trial_rows(study)
    top = ladder.top_directions(rows, 2)
    full = sorted((r for r in rows if r.state == "complete" and r.full_budget),
                  key=lambda r: -r.score)
    distinct = [r for i, r in enumerate(full) if r.arch not in {f.arch for f in full[:i]}]
    assert [r.trial for r in top] == [r.trial for r in distinct][:2]  # twins skipped
    assert len({r.arch for r in top}) == len(top)
    search = CoefficientSearch(baseline=TINY_ARCH)
    chosen = ladder.methods(search, top)
    names = [m.name for m, _ in chosen]
    assert names[: len(top)] == [f"trial {r.trial}" + (f" [{r.reference}]" if r.reference
                                                        else "") for r in top]
    # Each reference once: the paper and the three controls, unless a candidate is one.
    taken = {r.reference for r in top}
    references = [info["reference"] for _, info in chosen if info["role"] == "reference"]
    assert sorted(references) == sorted({"paper", "depth-only", "width-only",
                                         "resolution-only"} - taken)
    assert ladder.methods(search, top, references=False) == chosen[: len(top)]
    for method, info in chosen:
        if info["role"] == "candidate":
            row = next(r for r in top if r.trial == info["trial"])
            assert method.coeffs.as_tuple() == (row.alpha, row.beta, row.gamma)


def test_export_defaults_to_the_best_search_direction_at_the_largest_factor(
        coef_study, tmp_path, capsys):  # noqa: F811
    study, where = copy_of(coef_study, tmp_path)
    trained = [r.trial for r in ladder.top_directions(records.trial_rows(study), 2)]
    a, b = trained[0], trained[1]
    # Trial a leads at 4x, trial b at 8x; the paper (a reference) beats both at 8x.
    record = {"factors": [4.0, 8.0], "seeds": [0, 1, 2], "epochs": 2, "metric": "val_top1",
              "cost": "macs", "top": 2, "rows": [
                  fake_row(4.0, f"trial {a}", "candidate", a, 0.90),
                  fake_row(4.0, f"trial {b}", "candidate", b, 0.80),
                  fake_row(8.0, f"trial {a}", "candidate", a, 0.85),
                  fake_row(8.0, f"trial {b}", "candidate", b, 0.88),
                  fake_row(8.0, "paper", "reference", None, 0.95)]}
    # A direction whose member lands 20% over the factor would win by spending more: it is
    # passed over while another is within the tolerance.
    over = json.loads(json.dumps(record)) | {"tolerance": 0.05}
    over["rows"][3]["macs_ratio"] = 9.6
    assert ladder.best_candidate(over)["trial"] == a
    over["tolerance"] = math.inf  # no tolerance: by mean alone
    assert ladder.best_candidate(over)["trial"] == b
    study.set_user_attr(ladder.LADDER_ATTR, json.dumps(record))
    out = tmp_path / "c.json"
    assert main(["export", "coef", *where, "-o", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert (f"trial {b} (best mean val_top1 at 8x on the ladder: 0.8800 +- 0.0100, 3 seeds)"
            in stdout)
    assert "the reference 'paper' beats every searched direction" in stderr
    prov = space.load_coefficients(out).provenance
    assert prov["trial"] == b and prov["picked_by"].startswith("best mean val_top1 at 8x")
    assert [r["method"] for r in prov["ladder"]["rows"]] == [r["method"] for r in record["rows"]]
    assert prov["ladder"]["seeds"] == [0, 1, 2]
    assert prov["ladder"]["tolerance"] == 0.15  # the study's, for a ladder recorded without
    # `front` shows the ladder with its spread.
    assert main(["front", "coef", *where]) == 0
    assert "scale ladder" in capsys.readouterr()[0]


def test_contrasts_put_the_exported_direction_against_the_paper_and_the_best_single_one():
    def reference(factor, name, mean, std):
        return fake_row(factor, name, "reference", None, mean, std) | {"reference": name}

    record = {"factors": [4.0, 8.0], "seeds": [0, 1, 2], "metric": "val_top1", "cost": "macs",
              "tolerance": 0.05, "rows": [
                  fake_row(4.0, "trial 3", "candidate", 3, 0.80, 0.0),
                  reference(4.0, "paper", 0.78, 0.0), reference(4.0, "width-only", 0.81, 0.0),
                  fake_row(8.0, "trial 3", "candidate", 3, 0.90, 0.01),
                  reference(8.0, "paper", 0.85, 0.02), reference(8.0, "width-only", 0.87, 0.01),
                  reference(8.0, "depth-only", 0.80, 0.03)]}
    found = {(c["factor"], c["against"]): c for c in ladder.contrasts(record)}
    assert set(found) == {(f, a) for f in (4.0, 8.0) for a in ("paper", "best single dimension")}
    single = found[8.0, "best single dimension"]
    assert single["method"] == "width-only" and single["direction"] == "trial 3"
    assert 0.01 < single["p"] < 0.05  # 3.7 SE, about 4 degrees of freedom
    assert single["difference"] == pytest.approx(0.90 - 0.87)
    assert single["se"] == pytest.approx(math.sqrt((0.01**2 + 0.01**2) / 3))
    assert single["z"] == pytest.approx(single["difference"] / single["se"])
    assert found[4.0, "best single dimension"]["difference"] < 0  # width alone wins at 4x
    assert found[4.0, "paper"]["z"] is None  # no spread over the seeds: no standard error
    assert ladder.contrasts(record | {"rows": record["rows"][:3]}) == []  # none at 8x
    # The single dimension is the one the validation scores choose, not the test scores.
    test_pick = [dict(r) for r in record["rows"]]
    test_pick[6] |= {"test_top1_mean": 0.95}  # depth alone: worst on validation, best on test
    assert {c["method"] for c in ladder.contrasts(record | {"rows": test_pick})
            if c["factor"] == 8.0 and c["against"] != "paper"} == {"width-only"}


def test_knee_is_refused_on_a_study_scored_on_the_metric_alone(coef_study, tmp_path, capsys):  # noqa: F811
    study, where = copy_of(coef_study, tmp_path)
    assert main(["export", "coef", *where, "--pick", "knee", "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr()[1]
    assert "--pick knee needs a Pareto study; 'coef' is scored on val_top1 alone" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c.json").exists()
    # Without a ladder, a single-objective study exports its best trial.
    assert main(["export", "coef", *where, "-o", str(tmp_path / "c.json")]) == 0
    best = max((r for r in records.trial_rows(study) if r.full_budget and r.state == "complete"),
               key=lambda r: (r.score, -r.macs))
    assert f"trial {best.trial} (best)" in capsys.readouterr()[0]


@pytest.mark.slow
def test_ladder_trains_matched_members_with_seeds_and_resumes(coef_study, tmp_path, capsys):  # noqa: F811
    study, where = copy_of(coef_study, tmp_path)
    assert main(["validate", "coef", *where, "--factors", "2", "--top", "1", "--seeds", "2",
                 "--epochs", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    contrasts = record.pop("contrasts")  # printed with the record, not stored in the study
    assert {c["against"] for c in contrasts} == {"paper", "best single dimension"}
    assert record["seeds"] == [0, 1] and record["epochs"] == 1 and record["cost"] == "macs"
    assert record["tolerance"] == 0.15
    roles = [r["role"] for r in record["rows"]]
    assert roles[0] == "candidate" and roles.count("candidate") == 1
    base = space.cost(space.decode(records.trial_rows(study)[0].baseline_arch)).macs
    for r in record["rows"]:
        assert r["factor"] == 2.0 and len(r["val_top1"]) == 2 and r["failed"] == 0
        assert r["macs"] == space.cost(space.decode(r["arch"])).macs
        assert r["macs_ratio"] == pytest.approx(r["macs"] / base) == r["match_ratio"]
        assert r["val_top1_mean"] == pytest.approx(sum(r["val_top1"]) / 2)
    assert err.count("ladder training") == 2 * len(record["rows"])
    assert json.loads(study.user_attrs[ladder.LADDER_ATTR]) == record  # stored in the study
    # Again: every row is recorded, nothing is retrained; a new factor adds its rows only.
    assert main(["validate", "coef", *where, "--factors", "2", "--top", "1", "--seeds", "2",
                 "--epochs", "1", "--json"]) == 0
    assert "ladder training" not in capsys.readouterr()[1]
    # Other seeds would not compare with the recorded rows: refused, in one line.
    assert main(["validate", "coef", *where, "--factors", "2", "--seeds", "3",
                 "--epochs", "1"]) == 2
    assert "has a ladder with seeds [0, 1]" in capsys.readouterr()[1]


def test_export_family_writes_the_members_of_the_exported_direction(
        coef_study, tmp_path):  # noqa: F811
    from space.family_file import load_family

    _, where = copy_of(coef_study, tmp_path)
    out = tmp_path / "family.json"
    assert main(["export", "coef", *where, "--family", "0-3", "-o", str(out)]) == 0
    coeffs, members = load_family(out)
    assert [m["phi"] for m in members] == [0, 1, 2, 3]
    assert coeffs.provenance["trial"] == space.load_coefficients(out).provenance["trial"]
    assert members[0]["arch"] == coeffs.baseline  # phi 0: the searched baseline


@pytest.mark.parametrize("library", ["timm", "keras-hub"])
def test_export_format_prints_a_snippet_that_builds_the_member(
        coef_study, tmp_path, capsys, library):  # noqa: F811
    """`export --format timm|keras-hub [--phi P]`: Python on stdout (nothing else there) that
    builds the picked network, or a member of its family, in that library alone; run here."""
    import subprocess
    import sys

    from space.torchvision_stand_in import use_torchvision_stand_in_if_broken

    use_torchvision_stand_in_if_broken()  # timm imports torchvision, which cannot load here
    os.environ.setdefault("KERAS_BACKEND", "jax")  # keras-hub's models on effsearch's JAX
    pytest.importorskip({"timm": "timm", "keras-hub": "keras_hub"}[library],
                        reason=f"{library} is not installed (the {library} extra)")
    _, where = copy_of(coef_study, tmp_path)
    out = tmp_path / "coeffs.json"
    assert main(["export", "coef", *where, "--format", library, "--phi", "2",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith(f"wrote {out}")  # stdout holds only the snippet
    spec = space.scale(None, space.load_coefficients(out), 2)
    assert "phi=2 of trial" in printed.out.splitlines()[0]
    snippet = tmp_path / "member.py"
    snippet.write_text(printed.out)
    # The torchvision stand-in: on this CPU machine timm cannot import torchvision.
    code = ("import os; os.environ.setdefault('KERAS_BACKEND', 'jax'); "
            "from space.torchvision_stand_in import use_torchvision_stand_in_if_broken; "
            f"use_torchvision_stand_in_if_broken(); exec(open({str(snippet)!r}).read())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        f"{space.cost(spec).params:,} params at {spec.resolution} px")
    # Without --phi: the network the picked trial trained; without -o: no file.
    assert main(["export", "coef", *where, "--format", library]) == 0
    printed = capsys.readouterr()
    assert "'s network:" in printed.out.splitlines()[0] and printed.err == ""


@pytest.mark.parametrize(("argv", "match"), [
    (["--format", "torchvision"], "pads symmetrically"),
    (["--format", "keras"], "under 32 px"),
    (["--format", "json"], "needs -o"),
    (["--phi", "2", "-o", "x.json"], "--phi picks the member"),
    (["--format", "timm", "--family", "0-2"], "give it -o"),
])
def test_export_refusals_are_one_line(coef_study, tmp_path, capsys, argv, match):  # noqa: F811
    _, where = copy_of(coef_study, tmp_path)
    assert main(["export", "coef", *where, *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
