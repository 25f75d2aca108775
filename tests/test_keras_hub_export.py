"""keras-hub reuse (issue 25): a spec built in keras-hub computes effsearch's network.

Every shared case (B0-B7 and 32 family members, tests/reuse_cases.py) is built in keras-hub:
its trainable parameters must be `space.cost`'s and it must read back as the same spec. With
effsearch's weights and BatchNorm statistics copied in, eval-mode logits must agree within
TOLERANCE (max |keras - effsearch| over max |effsearch|): B0 at 224 px and a member with odd
widths in the fast tier (3 min with the 40 builds, on the 2-core dev machine under load), B3
and phi 1 and 7 of each family at 64 px in the slow tier (~4 min there). A logit check costs up
to 50 s there, so all 40 (15 min; they pass) run only with EFFSEARCH_PARITY_ALL=1. The networks
are fully convolutional with a global pool: 64 px checks the same function as their own size.
"""

import json
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
pytest.importorskip("keras_hub", reason="keras-hub is not installed (the keras-hub extra)")

import jax
import keras
from reuse_cases import all_cases, images, max_relative_difference, reference_logits
from reuse_cases import trained_like_model as effsearch_model

import space
from space.keras_hub_export import (
    KerasHubExportError,
    from_keras_hub,
    keras_hub_builder_args,
    keras_hub_snippet,
    to_keras_hub,
)

CASES = dict(all_cases())
TOLERANCE = 1e-4  # max |difference| over max |logit|
FAST_LOGITS = {"efficientnet-b0": 224, "proxy-paper-phi1": 64}  # odd widths: 18, 26, 36
SLOW_LOGITS = ["efficientnet-b3", *(f"{family}-phi{phi}" for phi in (1, 7) for family in (
    "b0-paper", "b0-wide", "proxy-paper", "proxy-wide"))]
TINY = "stem8-mb_r2_k3_s1_e1_c8_se0.25-mb_r2_k5_s2_e3_c12_se0.25_noskip-head24-res32-cls5-in1"


@pytest.fixture(autouse=True)
def zero_keras_init(monkeypatch):
    """Skips Keras' random initial weights, which these tests overwrite or never read.

    Keras draws each one with a JAX program compiled per shape (threefry, ~1 s each on the
    2-core CPU): hundreds of shapes would be most of this file's time. Zeros cost nothing.
    """
    def zeros(self, shape, dtype=None, **kwargs):
        return np.zeros(shape, dtype or "float32")

    for cls in (keras.initializers.VarianceScaling, keras.initializers.Zeros,
                keras.initializers.Ones):
        monkeypatch.setattr(cls, "__call__", zeros)


def keras_logits(classifier, x):
    """Eval-mode logits, compiled once: 5x faster than Keras' eager op-by-op dispatch here."""
    variables = ([v.value for v in classifier.trainable_variables],
                 [v.value for v in classifier.non_trainable_variables])
    run = jax.jit(lambda t, n, x: classifier.stateless_call(t, n, x, training=False)[0])
    return run(*variables, x)


def check_logits(spec, size):
    model = effsearch_model(spec)
    x = images(2, size, spec.in_channels)
    want = reference_logits(model, x)
    diff = max_relative_difference(want, keras_logits(to_keras_hub(spec, model), x))
    assert diff <= TOLERANCE, f"logits differ by {diff:.2e} of their largest"


def test_builder_args_are_json_and_read_back_without_keras():
    for name, spec in CASES.items():
        args = json.loads(json.dumps(keras_hub_builder_args(spec)))
        assert from_keras_hub(args) == spec, name


@pytest.mark.parametrize("name", CASES)
def test_keras_hub_model_has_effsearch_params_and_reads_back(name):
    spec = CASES[name].replace(num_classes=10)
    classifier = to_keras_hub(spec)
    trainable = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    assert trainable == space.cost(spec).params
    assert from_keras_hub(classifier) == spec
    # A backbone alone carries no head settings: those take ArchSpec's defaults.
    defaults = {"resolution": 224, "num_classes": 1000, "dropout": 0.2}
    assert from_keras_hub(classifier.backbone) == spec.replace(**defaults)


@pytest.mark.parametrize("name", FAST_LOGITS)
def test_logits_match_effsearch(name):
    check_logits(CASES[name].replace(num_classes=10), FAST_LOGITS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n not in FAST_LOGITS]
                         if os.environ.get("EFFSEARCH_PARITY_ALL") else SLOW_LOGITS)
def test_logits_match_effsearch_in_each_family(name):
    check_logits(CASES[name].replace(num_classes=10), 64)


def test_saved_model_loads_in_keras_hub_with_its_head_and_skips(tmp_path):
    # keras-hub 0.32 drops num_features (24 here) and stackwise_nores_option from configs.
    spec = space.decode(TINY)
    classifier = to_keras_hub(spec, effsearch_model(spec))
    classifier.save(tmp_path / "tiny.keras")
    loaded = keras.saving.load_model(tmp_path / "tiny.keras")
    x = images(2, 32, 1)
    np.testing.assert_array_equal(keras_logits(loaded, x), keras_logits(classifier, x))
    assert from_keras_hub(loaded) == spec


def test_keras_hub_channel_rounding_is_resolved_as_keras_hub_builds_it():
    import keras_hub

    args = keras_hub_builder_args(space.decode(TINY))["backbone"]
    args.update(width_coefficient=1.3, depth_coefficient=1.6, depth_divisor=4, min_depth=4,
                stackwise_width_coefficients=None, stackwise_depth_coefficients=None)
    backbone = keras_hub.models.EfficientNetBackbone(**args)
    spec = from_keras_hub(backbone)
    assert spec.stem_channels == 12 and spec.stages[1].repeats == 4  # 8 * 1.3 -> 12, 2 * 1.6
    assert spec.head_channels == 32  # 24 * 1.3, read from the built head conv
    # The config alone, with what keras-hub 0.32's get_config() drops: num_features resolved.
    dropped = {"num_features": 24, "stackwise_nores_option": [False, True]}
    assert from_keras_hub({**backbone.get_config(), **dropped}) == spec
    # Everything but the classifier, which a backbone does not have.
    head = spec.head_channels * spec.num_classes + spec.num_classes
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert trainable == space.cost(spec).params - head


def test_snippet_builds_the_network_in_keras_hub_alone(capsys):
    spec = space.decode(TINY)
    exec(keras_hub_snippet(spec, "tiny"), {})
    assert capsys.readouterr().out == f"{space.cost(spec).params:,} params at 32 px\n"


def _edited(arch, **changes):
    args = keras_hub_builder_args(space.decode(arch))
    args["backbone"].update(changes)
    return args


B0 = space.encode(space.EFFICIENTNET_B0)
REFUSED = {
    "stride-2 block without expansion":
        lambda: keras_hub_builder_args(space.decode("stem16-mb_r1_k3_s2_e1_c24-head32")),
    "expansion 2.5":
        lambda: keras_hub_builder_args(space.decode("stem16-mb_r1_k3_s1_e2.5_c24-head32")),
    "skip=False without expansion":
        lambda: keras_hub_builder_args(space.decode("stem16-mb_r2_k3_s1_e1_c24_noskip-head32")),
    "block types": lambda: from_keras_hub(_edited(B0, stackwise_block_types=["fused"] * 7)),
    "stackwise_block_types=['unfused'": lambda: from_keras_hub(
        _edited(B0, stackwise_block_types=["unfused"] * 7)),  # kxk projection at expansion 1
    "stackwise_block_types=['v1', 'v1'": lambda: from_keras_hub(
        _edited(B0, stackwise_block_types=["v1"] * 7)),  # symmetric padding at stride 2
    "include_stem_padding=True": lambda: from_keras_hub(_edited(B0, include_stem_padding=True)),
    "batch_norm_epsilon=1e-05": lambda: from_keras_hub(_edited(B0, batch_norm_epsilon=1e-5)),
    "stackwise_input_filters": lambda: from_keras_hub(
        _edited(B0, stackwise_input_filters=[32, 16, 24, 40, 80, 112, 200])),
    "classifier pooling='max'": lambda: from_keras_hub(
        {**keras_hub_builder_args(space.EFFICIENTNET_B0), "classifier": {"pooling": "max"}}),
    "not an EfficientNetBackbone config: no activation": lambda: from_keras_hub(
        {k: v for k, v in keras_hub_builder_args(space.EFFICIENTNET_B0)["backbone"].items()
         if k != "activation"}),
    "square inputs": lambda: from_keras_hub(
        {**keras_hub_builder_args(space.EFFICIENTNET_B0), "image_size": [224, 256]}),
}


@pytest.mark.parametrize("words", REFUSED)
def test_what_keras_hub_or_effsearch_cannot_build_is_refused_in_one_line(words):
    with pytest.raises(KerasHubExportError) as error:
        REFUSED[words]()
    assert isinstance(error.value, space.UserError)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_another_keras_backend_or_no_keras_hub_is_one_line(monkeypatch):
    spec = space.decode(TINY)
    with monkeypatch.context() as patch:
        patch.setattr(keras.backend, "backend", lambda: "torch")
        with pytest.raises(KerasHubExportError, match="'torch' backend") as error:
            to_keras_hub(spec)
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # what a missing package does
    with pytest.raises(KerasHubExportError, match="pip install --no-deps 'keras-hub") as error2:
        to_keras_hub(spec)
    assert "\n" not in str(error.value) + str(error2.value)
