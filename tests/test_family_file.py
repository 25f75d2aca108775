"""The family file (issue 25): coefficients with every member resolved, read back exactly."""

import json

import pytest
from toys import TINY_SE_ARCH

import space
from search.cli import main
from space.family_file import family_record, load_family, save_family

COEFFS = space.Coefficients(1.2, 1.1, 1.15, baseline=TINY_SE_ARCH, resolution_multiple=2,
                            channel_divisor=2)


def test_members_are_the_networks_scale_builds_spelled_out(tmp_path):
    record = family_record(COEFFS, [0, 1, 2.5])
    assert record["baseline"] == space.encode(space.decode(TINY_SE_ARCH))
    for member in record["members"]:
        spec = space.scale(None, COEFFS, member["phi"])
        assert member["arch"] == space.encode(spec)
        total = space.cost(spec)
        assert (member["macs"], member["params"]) == (total.macs, total.params)
        assert [s["repeats"] for s in member["stages"]] == [s.repeats for s in spec.stages]
        assert sum(s["repeats"] for s in member["stages"]) == spec.num_blocks
        # Each stage's input is the previous stage's output; SE widths follow the inputs.
        ins = [spec.stem_channels] + [s.out_channels for s in spec.stages[:-1]]
        assert [s["in_channels"] for s in member["stages"]] == ins
        for stage, block in zip(member["stages"], spec.stages, strict=True):
            assert stage["se_channels"] == [block.se_channels(stage["in_channels"]),
                                            block.se_channels(block.out_channels)]
    path = save_family(record, tmp_path / "family.json")
    coeffs, members = load_family(path)
    assert coeffs == COEFFS and members == record["members"]
    assert space.load_coefficients(path) == COEFFS  # a family file is a coefficients file


def test_a_member_this_effsearch_builds_otherwise_is_one_line(tmp_path):
    record = family_record(COEFFS, [1])
    record["members"][0]["arch"] = space.encode(space.scale(None, COEFFS, 2))
    path = save_family(record, tmp_path / "family.json")
    with pytest.raises(space.CoefficientsError, match=r"phi=1 records .* but this effsearch "
                                                      r"builds"):
        load_family(path)
    path.write_text(json.dumps({"format": "effsearch.family", "version": 9}))
    with pytest.raises(space.CoefficientsError, match="version 9"):
        load_family(path)


def test_scale_writes_the_family_file_and_reads_it_back(tmp_path, capsys):
    path = tmp_path / "f.json"
    assert main(["scale", "--baseline", TINY_SE_ARCH, "--coeffs", "1.2,1.1,1.15",
                 "--phi", "0-3", "--channel-divisor", "2", "--resolution-multiple", "2",
                 "--json", "--family-json", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    _, members = load_family(path)
    assert [m["arch"] for m in members] == [r["arch"] for r in printed["family"]]
    assert main(["scale", "--coeffs", str(path), "--phi", "0-3", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["arch"] for r in again["family"]] == [m["arch"] for m in members]
