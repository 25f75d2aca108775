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


def test_members_carry_each_librarys_builder_arguments():
    """timm's and keras-hub's arguments for each member, or the one line saying why not
    (keras-hub has no exact block for a float expansion)."""
    from space.keras_hub_export import keras_hub_builder_args
    from space.timm_export import from_timm, timm_builder_args

    coeffs = space.Coefficients(1.2, 1.1, 1.15, baseline=TINY_SE_ARCH.replace("e2", "e2.5"))
    for member in family_record(coeffs, [0, 1])["members"]:
        spec = space.decode(member["arch"])
        timm = member["builders"]["timm"]
        assert timm == json.loads(json.dumps(timm_builder_args(spec)))
        assert from_timm(timm["arch_def"], timm["stem_size"], timm["num_features"],
                         spec.resolution, timm["num_classes"], dropout=timm["drop_rate"],
                         drop_path_rate=timm["drop_path_rate"]) == spec
        assert "expansion 2.5" in member["builders"]["keras_hub"]["refused"]
    plain = family_record(COEFFS, [1])["members"][0]
    assert plain["builders"]["keras_hub"] == json.loads(json.dumps(
        keras_hub_builder_args(space.decode(plain["arch"]))))
