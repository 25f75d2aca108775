"""Class imbalance: reproducible long-tailed subsets and the known remedies, as loss terms.

Long tail (CIFAR-LT, Cui et al. 2019): class i of K keeps n_max * ratio^(-i / (K - 1))
training images (floored), so class 0 is the largest and class K-1 is `ratio` times smaller.
Only the train split is subsampled; validation and test stay balanced so that their metrics
mean something.

Remedies (`ProxyConfig.remedy`):
- "class-balanced": loss weights 1 / effective number of samples, (1 - beta) / (1 - beta^n_c),
  normalised to mean 1 over classes (Cui et al., "Class-Balanced Loss Based on Effective
  Number of Samples", CVPR 2019).
- "logit-adjust": train on logits + tau * log(prior), predict with plain logits (Menon et al.,
  "Long-tail learning via logit adjustment", ICLR 2021, the logit-adjusted loss).
- "logit-adjust-posthoc": train plainly, predict with logits - tau * log(prior) (same paper,
  post-hoc correction).
- "focal": -(1 - p_t)^gamma log p_t (Lin et al., "Focal Loss for Dense Object Detection",
  ICCV 2017). optax only has the sigmoid (binary) focal loss, so the softmax form is here.
- "sqrt-sampling", "inverse-sampling": draw training examples with class probability
  proportional to sqrt(n_c) or uniform over classes (class-balanced sampling, e.g. Kang et al.,
  "Decoupling Representation and Classifier", ICLR 2020), through the data pipeline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from space import UserError

REMEDIES = ("none", "class-balanced", "logit-adjust", "logit-adjust-posthoc", "focal",
            "sqrt-sampling", "inverse-sampling")


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
