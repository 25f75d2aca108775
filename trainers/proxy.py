"""Short proxy training of one architecture: `train_and_evaluate(config) -> ProxyResult`.

One readable file, top to bottom: config and result types, optimizer, the jitted epoch (a
`lax.scan` over the epoch's steps, so Python runs once per epoch, not per step), evaluation,
and the loop with divergence and out-of-memory handling. The recipe follows the official
EfficientNet trainer (tensorflow/tpu `main.py`): RMSProp (decay 0.9, momentum 0.9, eps 1e-3,
TF-style accumulator starting at 1), lr 0.016 per 256 images with linear warmup and x0.97 per
2.4 epochs, L2 1e-5 on everything but BatchNorm, label smoothing 0.1; SGD with Nesterov
momentum and cosine decay is the alternative. EMA is off by default: at decay 0.9999 it lags
a few-epoch proxy entirely (huggingface/pytorch-image-models#188).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import space
from space import UserError
from space.model import create_model
from trainers import imbalance, pipeline
from trainers.data import Dataset, load_dataset
from trainers.imbalance import REMEDIES
from trainers.metrics import classification_metrics

# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """Everything that defines one proxy run (serialised into every result)."""

    arch: str = "efficientnet-b0"  # a named model or an arch string
    width: float = 1.0  # extra multipliers on the arch (e.g. B0 at width 0.25)
    depth: float = 1.0
    resolution: int | None = None  # None: the arch's own
    dataset: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0  # fixes the validation split across a whole study
    fraction: float = 1.0  # share of the train split used (proxy budget)
    epochs: int = 5
    steps: int | None = None  # overrides epochs; rounded up to whole epochs
    batch_size: int = 128
    # SGD+cosine by measurement: on digits (5 epochs, 16 px) it reached 93.8% val top-1 where
    # the paper's RMSProp recipe (tuned for 350 epochs at batch 4096) reached 82%.
    optimizer: str = "sgd"  # or "rmsprop"
    learning_rate: float | None = None  # None: 0.016 (rmsprop) or 0.1 (sgd) per 256 images
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    weight_decay: float = 1e-5
    ema_decay: float | None = None
    # TF's 0.99 averages BN statistics over ~100 steps: a proxy of a few hundred steps would
    # evaluate with stale statistics, so proxies default to 0.9.
    bn_momentum: float = 0.9
    dtype: str = "auto"  # "auto": bfloat16 on accelerators, float32 on CPU
    depthwise: str = "auto"
    crop_padding: float = 0.125
    flip: bool = True
    seed: int = 0
    # Class imbalance (trainers/imbalance.py). The long-tailed train subset is drawn with
    # split_seed, so it is the same for every trial of a study.
    imbalance: float | None = None  # largest / smallest class size of the train split
    remedy: str = "none"  # see trainers.imbalance.REMEDIES
    cb_beta: float = 0.999  # class-balanced loss
    focal_gamma: float = 2.0  # focal loss
    logit_tau: float = 1.0  # logit adjustment

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.steps is None or self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 < self.fraction <= 1, "fraction must be in (0, 1]"),
            (self.optimizer in ("rmsprop", "sgd"), "optimizer must be 'rmsprop' or 'sgd'"),
            (self.dtype in ("auto", "float32", "bfloat16"),
             "dtype must be 'auto', 'float32' or 'bfloat16'"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay must be in (0, 1)"),
            (self.resolution is None or self.resolution >= 8, "resolution must be >= 8"),
            (self.width > 0 and self.depth > 0, "width and depth must be > 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.imbalance is None or self.imbalance >= 1, "imbalance must be >= 1"),
            (self.remedy in REMEDIES, f"remedy must be one of {', '.join(REMEDIES)}"),
            (0 < self.cb_beta < 1, "cb_beta must be in (0, 1)"),
            (self.focal_gamma >= 0 and self.logit_tau >= 0,
             "focal_gamma and logit_tau must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"{message} (proxy config)")

    def spec(self, num_classes: int, in_channels: int) -> space.ArchSpec:
        """The architecture trained, adapted to the dataset's classes and channels."""
        spec = space.resolve(self.arch)
        if self.width != 1 or self.depth != 1:
            spec = space.apply_multipliers(spec, depth=self.depth, width=self.width)
        return spec.replace(resolution=self.resolution or spec.resolution,
                            num_classes=num_classes, in_channels=in_channels)


@dataclasses.dataclass
class ProxyResult:
    """What one proxy run measured; `dataclasses.asdict` gives plain JSON."""

    status: str  # "ok" or "failed"
    reason: str | None
    val_top1: float
    val_loss: float
    val_balanced_accuracy: float  # mean per-class recall
    val_macro_f1: float
    val_worst_class_recall: float
    val_per_class_recall: list[float | None]
    test_top1: float | None
    test_balanced_accuracy: float | None
    train_class_counts: list[int]  # after long-tail subsampling and `fraction`
    curve: list[dict[str, float]]  # one entry per epoch
    epochs_completed: int
    steps: int
    batch_size: int
    step_time_s: float
    images_per_s: float
    compile_s: float
    init_s: float
    wall_s: float
    macs: int
    params: int
    activations: int
    arch: str
    resolution: int
    peak_memory_bytes: int | None
    device: str
    seed: int
    dataset: dict[str, Any]
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_proxy_dataset(config: ProxyConfig) -> Dataset:
    """The dataset a proxy config trains on (its source, split fraction and split seed)."""
    return load_dataset(config.dataset, data_dir=config.data_dir,
                        val_fraction=config.val_fraction, split_seed=config.split_seed)


class Stop(Exception):
    """Raised by an epoch callback to end a run early (the result keeps what was measured)."""


EpochCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------- optimizer


def _decay_mask(params: nnx.State) -> Any:
    """True for weights that get L2: everything but BatchNorm scale and bias."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(str(getattr(k, "key", "")).endswith("_bn") for k in path),
        params)


def make_optimizer(config: ProxyConfig, params: nnx.State, steps_per_epoch: int,
                   total_steps: int, batch: int) -> optax.GradientTransformation:
    base = config.learning_rate or (0.016 if config.optimizer == "rmsprop" else 0.1)
    peak = base * batch / 256 if config.learning_rate is None else base
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    if config.optimizer == "rmsprop":
        every = max(1, round(2.4 * steps_per_epoch))  # x0.97 every 2.4 epochs
        decay = optax.exponential_decay(peak, every, decay_rate=0.97, staircase=True)
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, peak, max(warmup, 1)), decay], [max(warmup, 1)])
        # TF RMSProp: eps inside the sqrt and the accumulator initialised to 1.
        opt = optax.rmsprop(schedule, decay=0.9, eps=1e-3, initial_scale=1.0,
                            eps_in_sqrt=True, momentum=0.9)
    else:
        schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, 1))
        opt = optax.sgd(schedule, momentum=0.9, nesterov=True)
    # Coupled L2 (the official 1e-5 * sum(v^2)/2 in the loss) = decayed weights before scaling.
    return optax.chain(optax.add_decayed_weights(config.weight_decay, _decay_mask(params)), opt)


# ----------------------------------------------------------------------------- steps


def compute_dtype(name: str = "auto") -> Any:
    """The compute dtype: "auto" is bfloat16 on accelerators and float32 on CPU."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def make_loss_fn(train_def: nnx.GraphDef, num_classes: int, label_smoothing: float,
                 **remedies: Any) -> Callable[..., tuple[jax.Array, nnx.State]]:
    """loss(params, rest, x, y) -> (mean smoothed cross-entropy, updated non-param state).

    `remedies` are the imbalance terms of `trainers.imbalance.softmax_loss` (class_weights,
    logit_offsets, focal_gamma).
    """

    def loss_fn(params, rest, x, y):
        # Rebuild the non-differentiated Variables at this trace level so BatchNorm may update
        # them (NNX refuses writes to Variables created at an outer trace).
        rest = jax.tree.map(lambda a: a, rest)
        model = nnx.merge(train_def, params, rest)
        labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
        loss = imbalance.softmax_loss(model(x), labels, y, **remedies).mean()
        return loss, nnx.split(model, nnx.Param, ...)[2]  # updated BN statistics and RNG

    return loss_fn


@dataclasses.dataclass(frozen=True)
class _Remedy:
    """The imbalance remedy as arrays: loss terms, prediction offsets, sampling weights."""

    loss_terms: dict[str, Any]
    eval_offsets: np.ndarray | None
    sampling: np.ndarray | None


def _remedy(config: ProxyConfig, labels: np.ndarray, num_classes: int) -> _Remedy:
    counts = np.bincount(labels, minlength=num_classes)
    terms: dict[str, Any] = {}
    offsets = sampling = None
    if config.remedy == "class-balanced":
        terms["class_weights"] = jnp.asarray(imbalance.class_balanced_weights(counts,
                                                                              config.cb_beta))
    elif config.remedy == "logit-adjust":
        terms["logit_offsets"] = jnp.asarray(config.logit_tau * imbalance.log_prior(counts))
    elif config.remedy == "logit-adjust-posthoc":
        offsets = config.logit_tau * imbalance.log_prior(counts)
    elif config.remedy == "focal":
        terms["focal_gamma"] = config.focal_gamma
    elif config.remedy.endswith("-sampling"):
        sampling = imbalance.sampling_weights(labels, counts, config.remedy.split("-")[0])
    return _Remedy(terms, offsets, sampling)


def _build_steps(model: nnx.Module, tx: optax.GradientTransformation, config: ProxyConfig,
                 resolution: int, mean: np.ndarray, std: np.ndarray, dtype: Any,
                 remedy: _Remedy) -> tuple:
    model.train()
    train_def, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_def = nnx.graphdef(model)
    augment = pipeline.Augment(config.crop_padding, config.flip)
    batch_fn = dict(resolution=resolution, mean=mean, std=std, dtype=dtype)
    loss_fn = make_loss_fn(train_def, model.spec.num_classes, config.label_smoothing,
                           **remedy.loss_terms)

    def train_epoch(carry, images, labels, index, key):
        def step(carry, inputs):
            params, rest, opt_state, ema, count = carry
            idx, step_key = inputs
            x, y = pipeline.prepare_batch(images, labels, idx, step_key, augment=augment,
                                          **batch_fn)
            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if ema is not None:
                # TF's num_updates warm-up: the effective decay grows from 0.1 towards ema_decay.
                decay = jnp.minimum(config.ema_decay, (1.0 + count) / (10.0 + count))
                ema = optax.incremental_update(params, ema, 1.0 - decay)
            return (params, rest, opt_state, ema, count + 1), loss

        keys = jax.random.split(key, index.shape[0])
        return jax.lax.scan(step, carry, (index, keys))

    def evaluate(params, rest, images, labels, index, mask):
        model = nnx.merge(eval_def, params, rest)

        def batch(_, inputs):
            idx, valid = inputs
            x, y = pipeline.prepare_batch(images, labels, idx, None, augment=None, **batch_fn)
            logits = model(x)
            if remedy.eval_offsets is not None:  # post-hoc logit adjustment
                logits = logits - remedy.eval_offsets
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return None, (jnp.argmax(logits, -1), jnp.where(valid, loss, 0.0))

        _, (pred, loss) = jax.lax.scan(batch, None, (index, mask))
        return pred.reshape(-1), loss.reshape(-1)

    return (params, rest), jax.jit(train_epoch, donate_argnums=(0,)), jax.jit(evaluate)


# ----------------------------------------------------------------------------- loop


def _is_oom(error: Exception) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def _peak_memory() -> int | None:
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # backends without memory stats raise different errors
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def train_and_evaluate(config: ProxyConfig, *, dataset: Dataset | None = None,
                       callback: EpochCallback | None = None,
                       progress: Callable[[int, int], None] | None = None) -> ProxyResult:
    """Trains `config.arch` for a short budget and evaluates it on the validation split.

    Args:
        config: the run.
        dataset: an already loaded dataset (else `load_dataset` with the config's options).
        callback: called after every epoch with (epoch, {"val_top1", "val_loss",
            "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
            "train_loss"}); it may raise `Stop` (or e.g. `optuna.TrialPruned`, which
            propagates) to end the run.
        progress: called with (epochs done, epochs total), for progress bars.

    Returns:
        The result; a diverging (NaN/inf) or out-of-memory run is returned with
        status "failed" and the reason, not raised.
    """
    start = time.perf_counter()
    dataset = dataset or load_proxy_dataset(config)
    spec = config.spec(dataset.num_classes, dataset.channels)
    train_split = dataset.train
    if config.imbalance:
        train_split = train_split.subset(imbalance.long_tail_indices(
            train_split.labels, dataset.num_classes, config.imbalance, config.split_seed))
    if config.fraction < 1:
        keep = np.random.default_rng(config.seed).permutation(len(train_split))
        train_split = train_split.subset(np.sort(keep[: max(1, round(config.fraction *
                                                                      len(train_split)))]))
    mesh = pipeline.data_mesh()
    batch = pipeline.global_batch(config.batch_size, len(train_split), mesh)
    steps_per_epoch = len(train_split) // batch
    epochs = (config.epochs if config.steps is None
              else max(1, math.ceil(config.steps / steps_per_epoch)))
    dtype = compute_dtype(config.dtype)
    total = space.cost(spec)
    result = ProxyResult(
        status="ok", reason=None, val_top1=float("nan"), val_loss=float("nan"),
        val_balanced_accuracy=float("nan"), val_macro_f1=float("nan"),
        val_worst_class_recall=float("nan"), val_per_class_recall=[], test_top1=None,
        test_balanced_accuracy=None,
        train_class_counts=np.bincount(train_split.labels,
                                       minlength=dataset.num_classes).tolist(),
        curve=[], epochs_completed=0, steps=0, batch_size=batch,
        step_time_s=float("nan"), images_per_s=float("nan"), compile_s=0.0, init_s=0.0,
        wall_s=0.0, macs=total.macs, params=total.params, activations=total.activations,
        arch=space.encode(spec), resolution=spec.resolution, peak_memory_bytes=None,
        device=f"{jax.devices()[0].device_kind} x{mesh.size}", seed=config.seed,
        dataset=dataset.summary(), config=dataclasses.asdict(config))

    try:
        t = time.perf_counter()
        model = create_model(spec, seed=config.seed, dtype=dtype, depthwise=config.depthwise,
                             bn_momentum=config.bn_momentum)
        result.init_s = time.perf_counter() - t
        tx = make_optimizer(config, nnx.state(model, nnx.Param), steps_per_epoch,
                            epochs * steps_per_epoch, batch)
        mean, std = pipeline.normalisation(dataset)
        remedy = _remedy(config, train_split.labels, dataset.num_classes)
        (params, rest), train_epoch, evaluate = _build_steps(
            model, tx, config, spec.resolution, mean, std, dtype, remedy)
        ema = jax.tree.map(jnp.copy, params) if config.ema_decay else None
        carry = (params, rest, tx.init(params), ema, jnp.zeros((), jnp.float32))
        train_data = pipeline.put_split(train_split, mesh)
        val_data = pipeline.put_split(dataset.val, mesh)
        sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
        val_index, val_mask = (jax.device_put(a, sharded)
                               for a in pipeline.eval_indices(len(dataset.val), batch))
        key = jax.random.key(config.seed)

        def epoch_args(epoch: int) -> tuple:
            index = pipeline.epoch_indices(len(train_split), batch, config.seed, epoch,
                                           weights=remedy.sampling)
            return (*train_data, jax.device_put(index, sharded), jax.random.fold_in(key, epoch))

        t = time.perf_counter()
        train_epoch = train_epoch.lower(carry, *epoch_args(0)).compile()
        evaluate = evaluate.lower(eval_params(carry), rest, *val_data, val_index,
                                  val_mask).compile()
        result.compile_s = time.perf_counter() - t

        train_time = 0.0
        for epoch in range(epochs):
            t = time.perf_counter()
            carry, losses = train_epoch(carry, *epoch_args(epoch))
            train_loss = float(jnp.mean(losses))  # also waits for the epoch to finish
            train_time += time.perf_counter() - t
            result.steps += steps_per_epoch
            if not math.isfinite(train_loss):
                result.status = "failed"
                result.reason = f"training diverged: loss is {train_loss} in epoch {epoch + 1}"
                break
            pred, loss = evaluate(eval_params(carry), carry[1], *val_data, val_index, val_mask)
            n = len(dataset.val)
            scores = classification_metrics(np.asarray(pred)[:n], dataset.val.labels,
                                            dataset.num_classes)
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_top1": scores["top1"],
                       "val_loss": float(np.sum(np.asarray(loss)) / n),
                       "val_balanced_accuracy": scores["balanced_accuracy"],
                       "val_macro_f1": scores["macro_f1"],
                       "val_worst_class_recall": scores["worst_class_recall"]}
            result.curve.append(metrics)
            for name in ("val_top1", "val_loss", "val_balanced_accuracy", "val_macro_f1",
                         "val_worst_class_recall"):
                setattr(result, name, metrics[name])
            result.val_per_class_recall = scores["per_class_recall"]
            result.epochs_completed = epoch + 1
            if progress:
                progress(epoch + 1, epochs)
            if callback:
                try:
                    callback(epoch + 1, metrics)
                except Stop:
                    break
        if result.steps:
            result.step_time_s = train_time / result.steps
            result.images_per_s = result.steps * batch / train_time
        if result.status == "ok" and dataset.test is not None:
            test = _test_metrics(evaluate, eval_params(carry), carry[1], dataset, mesh,
                                 val_index, val_mask)
            result.test_top1, result.test_balanced_accuracy = (test["top1"],
                                                               test["balanced_accuracy"])
    except Exception as e:
        if not _is_oom(e):
            raise
        result.status, result.reason = "failed", f"out of memory: {str(e).splitlines()[0]}"
    result.peak_memory_bytes = _peak_memory()
    result.wall_s = time.perf_counter() - start
    return result


def eval_params(carry: tuple) -> Any:
    """The weights to evaluate: the EMA if kept, else the live parameters."""
    return carry[3] if carry[3] is not None else carry[0]


def _test_metrics(evaluate, params, rest, dataset: Dataset, mesh, val_index: jax.Array,
                  val_mask: jax.Array) -> dict[str, Any]:
    """Test metrics for reports, through the compiled val evaluator (no new compile).

    The evaluator is specialised to the validation split's shape, so the test split goes
    through it in val-sized chunks, the last one padded.
    """
    test, n_val = dataset.test, len(dataset.val)
    preds = []
    for start in range(0, len(test), n_val):
        part = test.subset(np.arange(start, min(start + n_val, len(test))))
        pad = np.minimum(np.arange(n_val), len(part) - 1)
        pred, _ = evaluate(params, rest, *pipeline.put_split(part.subset(pad), mesh),
                           val_index, val_mask)
        preds.append(np.asarray(pred)[: len(part)])
    return classification_metrics(np.concatenate(preds), test.labels, dataset.num_classes)
