"""Class imbalance: reproducible long-tailed subsets and the known remedies, as one registry.

Long tail (CIFAR-LT, Cui et al. 2019): class i of K keeps n_max * ratio^(-i / (K - 1))
training images (floored), so class 0 is the largest and class K-1 is `ratio` times smaller.
Only the train split is subsampled; validation and test stay balanced so that their metrics
mean something.

Remedies (`ProxyConfig.remedy`) are registered below, one `@_register` function each: the name,
a one-line doc, and what the remedy contributes to a run (`Remedy`: terms of `softmax_loss`,
offsets subtracted from the logits before predicting, per-example sampling weights). The
trainer applies whatever a remedy returns, so adding one is one entry here. `remedy_docs()`
lists them for help texts.

This module imports JAX only inside `softmax_loss`, so `trainers.config` can validate remedy
names without loading JAX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from space import UserError

if TYPE_CHECKING:
    import jax


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> np.ndarray:
    """Per-class image counts of the exponential profile: n_max * ratio^(-i / (K - 1))."""
    if ratio < 1:
        raise UserError(f"imbalance ratio must be >= 1 (largest / smallest class), got {ratio}")
    i = np.arange(num_classes)
    return np.floor(n_max * ratio ** (-i / max(num_classes - 1, 1)) + 1e-9).astype(int)


def long_tail_indices(labels: np.ndarray, num_classes: int, ratio: float,
                      seed: int) -> np.ndarray:
    """Sorted indices of a seeded long-tailed subset of `labels`.

    n_max is the smallest class's size, so every class can supply its quota exactly.

    Raises:
        UserError: a class would keep no image (ratio too large for the data).
    """
    sizes = np.bincount(labels, minlength=num_classes)
    counts = long_tail_counts(int(sizes.min()), num_classes, ratio)
    if counts.min() < 1:
        raise UserError(f"imbalance ratio {ratio:g} leaves class {int(counts.argmin())} with no "
                        f"training image (the smallest class has {sizes.min()}); use a "
                        f"ratio <= {sizes.min():g}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al.'s weights (1 - beta) / (1 - beta^n_c), normalised to mean 1 over classes."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return (weights * len(counts) / weights.sum()).astype(np.float32)


def log_prior(counts: np.ndarray) -> np.ndarray:
    """log of the training class frequencies (every class counted at least once)."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    return np.log(counts / counts.sum()).astype(np.float32)


def sampling_weights(labels: np.ndarray, counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-example draw probabilities: class mass ~ sqrt(n_c) ("sqrt") or uniform ("inverse")."""
    power = {"sqrt": 0.5, "inverse": 0.0}[mode]
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    class_mass = counts**power
    per_example = (class_mass / counts)[labels]
    return per_example / per_example.sum()


def softmax_loss(logits: jax.Array, targets: jax.Array, labels: jax.Array, *,
                 class_weights: jax.Array | None = None, logit_offsets: jax.Array | None = None,
                 focal_gamma: float | None = None) -> jax.Array:
    """Per-example loss: cross-entropy against (smoothed) `targets`, with the remedies.

    Args:
        logits: (B, K).
        targets: (B, K) target distribution (one-hot, possibly label-smoothed).
        labels: (B,) integer labels (to look up class weights).
        class_weights: (K,) multiplies each example's loss by its class's weight.
        logit_offsets: (K,) added to the logits first (logit-adjusted loss).
        focal_gamma: focal modulation (1 - p_k)^gamma on every target class k.
    """
    # Imported here, not at the top, so that config validation never loads JAX.
    import jax
    import jax.numpy as jnp
    import optax

    if logit_offsets is not None:
        logits = logits + logit_offsets
    if focal_gamma is None:
        loss = optax.softmax_cross_entropy(logits, targets)
    else:
        log_p = jax.nn.log_softmax(logits)
        loss = -jnp.sum(targets * (1.0 - jnp.exp(log_p)) ** focal_gamma * log_p, axis=-1)
    if class_weights is not None:
        loss = loss * class_weights[labels]
    return loss


# ----------------------------------------------------------------------------- remedies


class RemedyOptions(Protocol):
    """The remedy hyperparameters a run carries (`ProxyConfig` has them)."""

    @property
    def cb_beta(self) -> float: ...
    @property
    def focal_gamma(self) -> float: ...
    @property
    def logit_tau(self) -> float: ...


@dataclasses.dataclass(frozen=True)
class Remedy:
    """What a remedy contributes to a run; the empty default is plain training."""

    # Keyword arguments of `softmax_loss` (class_weights, logit_offsets, focal_gamma).
    loss_terms: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_offsets: np.ndarray | None = None  # (K,) subtracted from logits before argmax
    sampling: np.ndarray | None = None  # (N,) per-example draw probabilities


RemedyFactory = Callable[[np.ndarray, np.ndarray, RemedyOptions], Remedy]


@dataclasses.dataclass(frozen=True)
class _Entry:
    doc: str
    factory: RemedyFactory


_REMEDIES: dict[str, _Entry] = {}


def _register(name: str, doc: str) -> Callable[[RemedyFactory], RemedyFactory]:
    """Registers `factory(labels, counts, options) -> Remedy` under `name`, with its doc."""

    def add(factory: RemedyFactory) -> RemedyFactory:
        assert name not in _REMEDIES, f"remedy {name!r} is registered twice"
        _REMEDIES[name] = _Entry(doc, factory)
        return factory

    return add


@_register("none", "no remedy: plain (label-smoothed) cross-entropy")
def _none(labels: np.ndarray, counts: np.ndarray, options: RemedyOptions) -> Remedy:
    return Remedy()


@_register("class-balanced", "loss weights 1 / effective number of samples (cb_beta)")
def _class_balanced(labels: np.ndarray, counts: np.ndarray, options: RemedyOptions) -> Remedy:
    """Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019."""
    return Remedy(loss_terms={"class_weights": class_balanced_weights(counts,
                                                                      options.cb_beta)})


@_register("logit-adjust", "train on logits + tau * log(prior), predict with plain logits")
def _logit_adjust(labels: np.ndarray, counts: np.ndarray, options: RemedyOptions) -> Remedy:
    """Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (the loss)."""
    return Remedy(loss_terms={"logit_offsets": options.logit_tau * log_prior(counts)})


@_register("logit-adjust-posthoc", "train plainly, predict with logits - tau * log(prior)")
def _logit_adjust_posthoc(labels: np.ndarray, counts: np.ndarray,
                          options: RemedyOptions) -> Remedy:
    """Menon et al., ICLR 2021, the post-hoc correction: training is untouched."""
    return Remedy(eval_offsets=options.logit_tau * log_prior(counts))


@_register("focal", "focal loss -(1 - p_t)^gamma log p_t (focal_gamma)")
def _focal(labels: np.ndarray, counts: np.ndarray, options: RemedyOptions) -> Remedy:
    """Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    optax only has the sigmoid (binary) focal loss, so the softmax form is `softmax_loss`'s.
    """
    return Remedy(loss_terms={"focal_gamma": options.focal_gamma})


@_register("sqrt-sampling", "draw examples with class probability ~ sqrt(class size)")
def _sqrt_sampling(labels: np.ndarray, counts: np.ndarray, options: RemedyOptions) -> Remedy:
    """Square-root sampling (Kang et al., "Decoupling Representation and Classifier")."""
    return Remedy(sampling=sampling_weights(labels, counts, "sqrt"))


@_register("inverse-sampling", "draw examples with every class equally likely")
def _inverse_sampling(labels: np.ndarray, counts: np.ndarray,
                      options: RemedyOptions) -> Remedy:
    """Class-balanced sampling (Kang et al., ICLR 2020), through the data pipeline."""
    return Remedy(sampling=sampling_weights(labels, counts, "inverse"))


REMEDIES: tuple[str, ...] = tuple(_REMEDIES)  # the names, in registration order


def remedy_docs() -> dict[str, str]:
    """Each remedy's name and one-line doc, in registration order (for help texts)."""
    return {name: entry.doc for name, entry in _REMEDIES.items()}


def build_remedy(name: str, labels: np.ndarray, num_classes: int,
                 options: RemedyOptions) -> Remedy:
    """What remedy `name` contributes to training on `labels` (the train split's).

    Raises:
        UserError: an unknown remedy name.
    """
    if name not in _REMEDIES:
        raise UserError(f"unknown remedy {name!r}; known: {', '.join(REMEDIES)}")
    counts = np.bincount(labels, minlength=num_classes)
    return _REMEDIES[name].factory(labels, counts, options)
