"""Class imbalance: metrics against scikit-learn, the long-tail profile, and each remedy."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from toys import TINY_ARCH

from search.cli import main
from space import UserError
from trainers import imbalance, pipeline
from trainers.data import load_dataset
from trainers.metrics import classification_metrics
from trainers.proxy import ProxyConfig, train_and_evaluate

ARCH = TINY_ARCH


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn on degenerate label sets
@settings(max_examples=100, deadline=None)
@given(k=st.integers(2, 8), n=st.integers(1, 60), seed=st.integers(0, 10_000))
def test_metrics_match_scikit_learn(k, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.5, labels, rng.integers(0, k, n))
    m = classification_metrics(pred, labels, k)
    present = np.unique(labels)
    assert m["top1"] == pytest.approx(skm.accuracy_score(labels, pred))
    with np.errstate(all="ignore"):
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro",
                                                       labels=np.arange(k), zero_division=0))
    recall = skm.recall_score(labels, pred, average=None, labels=present, zero_division=0)
    assert m["worst_class_recall"] == pytest.approx(recall.min())
    assert [m["per_class_recall"][c] for c in present] == pytest.approx(list(recall))
    assert all(m["per_class_recall"][c] is None for c in set(range(k)) - set(present))


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_long_tail_counts_follow_the_exponential_profile_exactly(ratio):
    data = load_dataset("digits")
    labels = data.train.labels
    index = imbalance.long_tail_indices(labels, 10, ratio, seed=0)
    counts = np.bincount(labels[index], minlength=10)
    n_max = np.bincount(labels).min()
    assert counts.tolist() == [math.floor(n_max * ratio ** (-i / 9) + 1e-9) for i in range(10)]
    assert counts[0] / counts[-1] == pytest.approx(ratio, rel=0.5 if ratio == 100 else 0.05)
    assert np.array_equal(index, imbalance.long_tail_indices(labels, 10, ratio, seed=0))
    assert len(np.unique(index)) == len(index)  # a subset: no example twice
    # Validation is untouched, so it stays balanced.
    assert np.ptp(np.bincount(data.val.labels)) <= 1


def test_too_large_a_ratio_is_a_user_error():
    with pytest.raises(UserError, match="leaves class 4 with no training image"):
        imbalance.long_tail_indices(np.repeat(np.arange(10), 5), 10, 100, seed=0)
    with pytest.raises(UserError, match="imbalance must be >= 1"):
        ProxyConfig(imbalance=0.5)
    with pytest.raises(UserError, match="remedy must be one of"):
        ProxyConfig(remedy="smote")


def test_class_balanced_weights_by_hand():
    # beta = 0.9: effective numbers (1 - 0.9^n) / 0.1 = 9.99973 (n = 100), 6.51322 (n = 10);
    # 1 / E = 0.100003 and 0.153533 (sum 0.253536); normalised to mean 1: 2 * 0.100003 /
    # 0.253536 = 0.78886 and 1.21114.
    w = imbalance.class_balanced_weights(np.array([100, 10]), beta=0.9)
    assert w == pytest.approx([0.78886, 1.21114], abs=2e-5)


def test_logit_adjusted_loss_by_hand():
    logits = jnp.zeros((1, 2))
    target = jnp.array([[0.0, 1.0]])
    prior = np.log(np.array([0.9, 0.1], np.float32))
    plain = imbalance.softmax_loss(logits, target, jnp.array([1]))
    adjusted = imbalance.softmax_loss(logits, target, jnp.array([1]),
                                      logit_offsets=jnp.asarray(prior))
    assert float(plain[0]) == pytest.approx(math.log(2), abs=1e-6)
    # Logits [log .9, log .1]: p(class 1) = 0.1, so the rare class's loss grows to -log 0.1.
    assert float(adjusted[0]) == pytest.approx(-math.log(0.1), abs=1e-5)
    assert imbalance.log_prior(np.array([90, 10])) == pytest.approx(prior)


def test_focal_and_weighted_losses_by_hand():
    logits, target, y = jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]), jnp.array([0])
    focal = imbalance.softmax_loss(logits, target, y, focal_gamma=2.0)
    assert float(focal[0]) == pytest.approx(0.25 * math.log(2), abs=1e-6)  # (1 - 0.5)^2 log 2
    assert float(imbalance.softmax_loss(logits, target, y, focal_gamma=0.0)[0]) == \
        pytest.approx(math.log(2), abs=1e-6)  # gamma 0 is cross-entropy
    weighted = imbalance.softmax_loss(logits, target, y, class_weights=jnp.array([3.0, 1.0]))
    assert float(weighted[0]) == pytest.approx(3 * math.log(2), abs=1e-6)


@pytest.mark.parametrize(("remedy", "rare_share"), [
    ("none", 0.1), ("sqrt-sampling", 0.25), ("inverse-sampling", 0.5)])
def test_sampling_remedies_draw_classes_in_the_expected_shares(remedy, rare_share):
    # 900 common and 100 rare examples. By hand: no remedy draws each example once per epoch
    # (rare share 100 / 1000); sqrt gives class masses sqrt(900) = 30 and sqrt(100) = 10, so
    # 10 / 40 = 0.25; inverse gives both classes the same mass, 0.5.
    labels = np.repeat([0, 1], [900, 100])
    sampling = imbalance.build_remedy(remedy, labels, 2, ProxyConfig()).sampling
    draws = np.concatenate([pipeline.epoch_indices(1000, 100, seed=0, epoch=e, weights=sampling)
                            for e in range(40)]).ravel()
    assert len(draws) == 40_000
    assert np.mean(labels[draws] == 1) == pytest.approx(rare_share, abs=0.01)  # 4 sigma
    # Within a class every example is as likely as another: all 100 rare ones are drawn.
    assert len(np.unique(draws[labels[draws] == 1])) == 100


def test_remedy_registry_lists_every_remedy_with_a_one_line_doc():
    docs = imbalance.remedy_docs()
    assert tuple(docs) == imbalance.REMEDIES and imbalance.REMEDIES[0] == "none"
    assert all(doc and "\n" not in doc for doc in docs.values())
    with pytest.raises(UserError, match="unknown remedy 'smote'"):
        imbalance.build_remedy("smote", np.zeros(4, int), 2, ProxyConfig())


@pytest.mark.slow
def test_remedies_train_end_to_end_and_each_changes_the_run():
    data = load_dataset("digits")
    base = ProxyConfig(arch=ARCH, epochs=1, batch_size=64, imbalance=10, flip=False)
    results = {remedy: train_and_evaluate(dataclasses.replace(base, remedy=remedy),
                                          dataset=data)
               for remedy in imbalance.REMEDIES}
    counts = results["none"].train_class_counts
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.1)
    assert counts == sorted(counts, reverse=True) and counts[-2] > counts[-1]
    none = results["none"]
    for remedy, r in results.items():
        assert r.status == "ok", remedy
        assert len(r.val_per_class_recall) == 10 and r.curve[0]["val_macro_f1"] == r.val_macro_f1
    # Every remedy that acts on training (loss terms or sampling) changes the loss it reports.
    for remedy in set(imbalance.REMEDIES) - {"none", "logit-adjust-posthoc"}:
        assert results[remedy].curve[0]["train_loss"] != none.curve[0]["train_loss"], remedy
    # Post-hoc adjustment trains exactly as "none" (same seed, same loss) and only moves
    # predictions toward rarer classes: the rarest class can only gain recall, the most
    # frequent can only lose it, and here the predictions do change.
    posthoc = results["logit-adjust-posthoc"]
    assert posthoc.curve[0]["train_loss"] == none.curve[0]["train_loss"]
    assert posthoc.val_per_class_recall != none.val_per_class_recall
    assert posthoc.val_per_class_recall[9] >= none.val_per_class_recall[9]
    assert posthoc.val_per_class_recall[0] <= none.val_per_class_recall[0]


def test_train_cli_reports_every_metric(capsys):
    assert main(["train", ARCH, "--epochs", "1", "--batch", "64", "--imbalance", "100",
                 "--remedy", "logit-adjust", "--json"]) == 0
    record = json.loads(capsys.readouterr()[0])
    for key in ("val_top1", "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
                "val_per_class_recall", "test_balanced_accuracy", "train_class_counts"):
        assert key in record
    assert record["config"]["remedy"] == "logit-adjust" and record["config"]["imbalance"] == 100
    with pytest.raises(SystemExit) as e:  # a usage error: the registry gives the choices
        main(["train", ARCH, "--remedy", "smote"])
    assert e.value.code == 2
    assert "invalid choice: 'smote' (choose from 'none', 'class-balanced'" in (
        capsys.readouterr()[1])


@pytest.mark.parametrize("source", ["tfds", "npz"])
def test_long_tail_works_for_other_sources(source, tmp_path):
    if source == "tfds":
        from test_data import _prepare_array_record

        _prepare_array_record(tmp_path)
        data = load_dataset("tfds:effsearch_toy", data_dir=str(tmp_path), val_fraction=0.2)
    else:
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "toy.npz", x_train=rng.integers(0, 255, (30, 8, 8, 3), np.uint8),
                 y_train=np.arange(30) % 3)
        data = load_dataset(str(tmp_path / "toy.npz"), val_fraction=0.2)
    r = train_and_evaluate(ProxyConfig(arch=ARCH, epochs=1, batch_size=4, imbalance=4),
                           dataset=data)
    n_max = np.bincount(data.train.labels).min()
    assert r.train_class_counts == [n_max, n_max // 2, n_max // 4]  # n_max * 4^(-i/2)
    assert np.ptp(np.bincount(data.val.labels)) <= 1
