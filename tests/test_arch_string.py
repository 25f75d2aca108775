import pytest
from hypothesis import given, settings
from strategies import archs, blocks

from space import (
    EFFICIENTNET_B0,
    ArchStringError,
    BlockSpec,
    decode,
    decode_block,
    encode,
    get_model_spec,
    list_models,
)


@settings(max_examples=300)
@given(blocks())
def test_block_round_trip(block):
    text = encode(block)
    assert decode_block(text) == block
    assert encode(decode_block(text)) == text


@settings(max_examples=200)
@given(archs())
def test_arch_round_trip(spec):
    text = encode(spec)
    assert decode(text) == spec
    assert encode(decode(text)) == text


@pytest.mark.parametrize("name", list_models())
def test_named_models_round_trip(name):
    spec = get_model_spec(name)
    assert decode(encode(spec)) == spec


def test_b0_string_is_the_timm_like_grammar():
    text = encode(EFFICIENTNET_B0)
    assert text.split("-")[1:8] == [
        "mb_r1_k3_s1_e1_c16_se0.25", "mb_r2_k3_s2_e6_c24_se0.25", "mb_r2_k5_s2_e6_c40_se0.25",
        "mb_r3_k3_s2_e6_c80_se0.25", "mb_r3_k5_s1_e6_c112_se0.25", "mb_r4_k5_s2_e6_c192_se0.25",
        "mb_r1_k3_s1_e6_c320_se0.25"]
    assert text.startswith("stem32-") and "head1280-res224-cls1000" in text


def test_floats_defaults_and_official_forms():
    assert decode_block("mb_k3_s2_e2.5_c24_se0.125") == BlockSpec(
        kernel=3, stride=2, expansion=2.5, out_channels=24, se_ratio=0.125, repeats=1)
    assert decode_block("mb_r2_k5_s22_e6_c40_noskip").stride == 2  # official two-digit stride
    assert not decode_block("mb_r2_k5_s22_e6_c40_noskip").skip
    spec = decode("mb_r1_k3_s1_e1_c16")  # globals default to the ArchSpec defaults
    assert (spec.stem_channels, spec.head_channels, spec.resolution) == (32, 1280, 224)


@pytest.mark.parametrize(("text", "message"), [
    ("mb_r2_k3_x2_c8", "unknown token 'x2'"),
    ("ir_r2_k3_s2_c8", "unknown block type 'ir'"),
    ("mb_r2_k3_s2_e6", "missing 'c'"),
    ("mb_r2_k3x_s2_c8", "malformed value in token 'k3x'"),
    ("mb_r2_kfoo_s2_c8", "unknown token 'kfoo'"),
    ("mb_r2.5_k3_s2_c8", "token 'r2.5': 'r' takes an integer"),
    ("mb_r2_k3_s2_c8_i16", "input channels are implied"),
    ("mb_r2_k3_k5_s2_c8", "key 'k' given twice"),
    ("mb_r2_k4_s2_c8", "kernel must be an odd integer"),
    ("mb_r1_k3_s1_c8--head8", "empty item"),
    ("stem8-head8", "has no blocks"),
    ("mb_r1_k3_s1_c8-width3", "unknown item 'width3'"),
    ("mb_r1_k3_s1_c8-res0", r"resolution must be an integer in \[1, 8192\]"),
    ("mb_r100000000_k3_s1_c8", r"repeats must be an integer in \[1, 512\], got 100000000"),
    ("", "empty arch string"),
])
def test_malformed_strings_name_the_token(text, message):
    with pytest.raises(ArchStringError, match=message):
        decode(text)
