import pytest

from space import ArchSpec, BlockSpec, SpecError, UserError

GOOD = dict(kernel=3, stride=1, expansion=6, out_channels=16, se_ratio=0.25, repeats=2)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("expansion", 0, "expansion must be in [1, 64], got 0"),
    ("expansion", 0.5, "expansion must be in [1, 64], got 0.5"),
    ("expansion", 100, "expansion must be in [1, 64], got 100"),
    ("kernel", 4, "kernel must be an odd integer in [1, 63], got 4"),
    ("kernel", 65, "kernel must be an odd integer in [1, 63], got 65"),
    ("stride", 3, "stride must be 1 or 2, got 3"),
    ("out_channels", 0, "out_channels must be an integer in [1, 65536], got 0"),
    ("out_channels", 10**6, "out_channels must be an integer in [1, 65536], got 1000000"),
    ("se_ratio", 1.5, "se_ratio must be in [0, 1], got 1.5"),
    ("repeats", 0, "repeats must be an integer in [1, 512], got 0"),
    ("repeats", 1.5, "repeats must be an integer in [1, 512], got 1.5"),
    ("repeats", 100_000_000, "repeats must be an integer in [1, 512], got 100000000"),
    ("skip", "yes", "skip must be a bool, got 'yes'"),
    ("block_type", "fused", "block_type must be one of ('mb',), got 'fused'"),
])
def test_block_validation_names_the_field(field, value, message):
    with pytest.raises(SpecError) as e:
        BlockSpec(**{**GOOD, field: value})
    assert str(e.value) == message
    assert isinstance(e.value, UserError)


@pytest.mark.parametrize(("field", "value"), [
    ("resolution", 0), ("num_classes", 0), ("stem_channels", -1), ("dropout", 1.0),
    ("drop_connect_rate", -0.1), ("in_channels", 0), ("resolution", 10**5),
    ("head_channels", 10**6), ("num_classes", 10**7), ("in_channels", 2048)])
def test_arch_validation_names_the_field(field, value):
    with pytest.raises(SpecError, match=f"^{field} must be"):
        ArchSpec(stages=(BlockSpec(**GOOD),), **{field: value})


def test_arch_needs_stages():
    with pytest.raises(SpecError, match="stages must be non-empty"):
        ArchSpec(stages=())


def test_specs_are_frozen_hashable_and_normalized():
    a = BlockSpec(**GOOD)
    assert a == BlockSpec(**{**GOOD, "expansion": 6.0})
    assert hash(a) == hash(BlockSpec(**{**GOOD, "expansion": 6.0}))
    with pytest.raises(AttributeError):
        a.kernel = 5  # type: ignore[misc]


def test_blocks_expand_stages_official_semantics():
    spec = ArchSpec(stages=(BlockSpec(**GOOD), BlockSpec(3, 2, 6, 24, 0.25, 3)),
                    stem_channels=32)
    blocks = spec.blocks()
    assert [(i, c_in, s) for i, c_in, s, _ in blocks] == [
        (0, 32, 1), (1, 16, 1), (2, 16, 2), (3, 24, 1), (4, 24, 1)]
    assert spec.num_blocks == 5


def test_se_width_is_relative_to_block_input():
    block = BlockSpec(**GOOD)
    assert block.se_channels(32) == 8  # B0's first block: 32 * 0.25, not 192 * 0.25
    assert BlockSpec(**{**GOOD, "se_ratio": 0.01}).se_channels(16) == 1  # max(1, ...)
    assert BlockSpec(**{**GOOD, "se_ratio": 0}).se_channels(16) == 0
    assert BlockSpec(**{**GOOD, "expansion": 2.5}).expanded(10) == 25
