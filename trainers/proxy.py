"""Short proxy training of one architecture: `train_and_evaluate(config) -> ProxyResult`.

One readable file, top to bottom: the optimizer; the explicit `TrainState` and the one train
step (`make_train_step`, shared with the latency probe in trainers/probes.py); the jitted epoch
(a `lax.scan` of that step over the epoch's batches, so Python runs once per epoch, not per
step) and evaluation; then the run, one small function per stage, ending in
`train_and_evaluate` with divergence and out-of-memory handling. The recipe follows the
official EfficientNet trainer (tensorflow/tpu `main.py`): RMSProp (decay 0.9, momentum 0.9,
eps 1e-3, TF-style accumulator starting at 1), lr 0.016 per 256 images with linear warmup and
x0.97 per 2.4 epochs, L2 1e-5 on everything but BatchNorm, label smoothing 0.1; SGD with
Nesterov momentum and cosine decay is the alternative. EMA is off by default: at decay 0.9999
it lags a few-epoch proxy entirely (huggingface/pytorch-image-models#188).

`ProxyConfig` and `ProxyResult` live in trainers/config.py (no JAX) and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import space
from space import UserError
from space.model import create_model, resolve_depthwise
from trainers import checkpoints, imbalance, pipeline, streaming
from trainers.checkpoints import Checkpointing
from trainers.config import ProxyConfig, ProxyResult
from trainers.data import Dataset, DatasetInfo, Split, describe_dataset, load_dataset
from trainers.metrics import classification_metrics

__all__ = ["EpochCallback", "ProxyConfig", "ProxyResult", "Stop", "TrainState",
           "TrainStep", "compute_dtype", "create_train_state", "describe_proxy_dataset",
           "input_pipeline", "load_proxy_dataset", "make_loss_fn", "make_optimizer",
           "make_train_step", "runtime_signature", "train_and_evaluate", "training_split"]


def load_proxy_dataset(config: ProxyConfig) -> Dataset:
    """The dataset a proxy config trains on (its source, split fraction and split seed)."""
    return load_dataset(config.dataset, data_dir=config.data_dir,
                        val_fraction=config.val_fraction, split_seed=config.split_seed,
                        image_size=config.image_size, input_pipeline=config.input_pipeline)


def describe_proxy_dataset(config: ProxyConfig) -> DatasetInfo:
    """What `load_proxy_dataset` would load, without its pixels (`describe_dataset`)."""
    return describe_dataset(config.dataset, data_dir=config.data_dir,
                            val_fraction=config.val_fraction, split_seed=config.split_seed,
                            image_size=config.image_size)


class Stop(Exception):
    """Raised by an epoch callback to end a run early (the result keeps what was measured)."""


EpochCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------- optimizer


def _decay_mask(params: nnx.State) -> Any:
    """True for weights that get L2: everything but BatchNorm scale and bias."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(str(getattr(k, "key", "")).endswith("_bn") for k in path),
        params)


def make_optimizer(config: ProxyConfig, params: nnx.State, *, steps_per_epoch: int,
                   total_steps: int, batch: int) -> optax.GradientTransformation:
    """The config's optimizer and schedule, with L2 on every weight but BatchNorm's.

    Args:
        config: the run (optimizer, learning_rate, warmup_epochs, weight_decay).
        params: the parameters (only their tree structure and names are read).
        steps_per_epoch: updates per epoch (the warm-up and RMSProp decay are in epochs).
        total_steps: updates of the whole run (the cosine decay's length).
        batch: the global batch (scales the default learning rate, per 256 images).
    """
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


# ----------------------------------------------------------------------------- state and step


def compute_dtype(name: str = "auto") -> Any:
    """The compute dtype: "auto" is bfloat16 on accelerators and float32 on CPU."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


class TrainState(NamedTuple):
    """Everything the train step carries from one update to the next (a pytree)."""

    params: nnx.State  # the nnx.Param variables: what the optimizer updates
    rest: nnx.State  # every other variable: BatchNorm statistics, RNG counts
    opt_state: optax.OptState
    ema: nnx.State | None  # exponential moving average of params; None when off
    step: jax.Array  # updates done, float32 (it enters the EMA warm-up as a float)

    @property
    def eval_params(self) -> nnx.State:
        """The weights to evaluate: the EMA if kept, else the live parameters."""
        return self.ema if self.ema is not None else self.params


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, *,
                       ema: bool = False) -> tuple[nnx.GraphDef, TrainState]:
    """Splits `model`, switched to train mode, into its graph and a fresh `TrainState`.

    Args:
        model: the network; it is left in train mode.
        tx: the optimizer, whose state is initialised from the parameters.
        ema: also keep an exponential moving average of the parameters (starting equal).
    """
    model.train()
    train_def, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
    average = jax.tree.map(jnp.copy, params) if ema else None
    return train_def, TrainState(params, rest, tx.init(params), average,
                                 jnp.zeros((), jnp.float32))


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


TrainStep = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]


def make_train_step(loss_fn: Callable[..., tuple[jax.Array, nnx.State]],
                    tx: optax.GradientTransformation, *,
                    ema_decay: float | None = None) -> TrainStep:
    """The one train step: step(state, x, y) -> (next state, loss) (pure; jit it or scan it).

    Forward, backward, optimizer update and, with `ema_decay`, the EMA update. The proxy
    scans it over an epoch and the latency probe times it alone, so both measure the same
    program.

    Args:
        loss_fn: from `make_loss_fn`.
        tx: the optimizer.
        ema_decay: the EMA's decay; the state must then carry `ema` (`create_train_state`).
    """

    def train_step(state: TrainState, x: jax.Array,
                   y: jax.Array) -> tuple[TrainState, jax.Array]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, rest), grads = grad_fn(state.params, state.rest, x, y)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if ema_decay is not None:
            # TF's num_updates warm-up: the effective decay grows from 0.1 towards ema_decay.
            decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
            ema = optax.incremental_update(params, ema, 1.0 - decay)
        return TrainState(params, rest, opt_state, ema, state.step + 1), loss

    return train_step


# ----------------------------------------------------------------------------- epoch and eval


class _Functions(NamedTuple):
    """The jitted epoch and evaluator of one run (compiled ahead of time by `_compile`)."""

    train_epoch: Callable[..., tuple[TrainState, jax.Array]]  # (state, images, labels, index, key)
    evaluate: Callable[..., tuple[jax.Array, jax.Array]]  # (params, rest, images, labels, ...)
    # Streamed batches: (state, images (steps x batch x H x W x C), labels, keys (steps,)).
    train_steps: Callable[..., tuple[TrainState, jax.Array]] | None = None


def _build_functions(model: nnx.Module, train_step: TrainStep, config: ProxyConfig, *,
                     resolution: int, mean: np.ndarray, std: np.ndarray, dtype: Any,
                     eval_offsets: np.ndarray | None,
                     image_shape: tuple[int, ...]) -> _Functions:
    """The epoch (the train step scanned over batches) and the evaluator, both jitted.

    `model` must be in eval mode: the evaluator rebuilds it from its graph.
    """
    eval_def = nnx.graphdef(model)
    augment = pipeline.Augment(config.crop_padding, config.flip)
    batch_fn = dict(resolution=resolution, mean=mean, std=std, dtype=dtype)
    flat = dict(batch_fn, image_shape=image_shape)  # the on-device splits are flat

    def train_epoch(state, images, labels, index, key):
        def step(state, inputs):
            idx, step_key = inputs
            x, y = pipeline.prepare_batch(images, labels, idx, step_key, augment=augment,
                                          **flat)
            return train_step(state, x, y)

        keys = jax.random.split(key, index.shape[0])
        return jax.lax.scan(step, state, (index, keys))

    def train_steps(state, images, labels, keys):
        # The same step on batches gathered on the host (trainers/streaming.py), with the
        # keys the in-memory epoch draws for those steps: the same augmentation.
        def step(state, inputs):
            batch, y, step_key = inputs
            x, y = pipeline.augment_batch(batch, y, step_key, augment=augment, **batch_fn)
            return train_step(state, x, y)

        return jax.lax.scan(step, state, (images, labels, keys))

    def evaluate(params, rest, images, labels, index, mask):
        model = nnx.merge(eval_def, params, rest)

        def batch(_, inputs):
            idx, valid = inputs
            x, y = pipeline.prepare_batch(images, labels, idx, None, augment=None, **flat)
            logits = model(x)
            if eval_offsets is not None:  # post-hoc logit adjustment
                logits = logits - eval_offsets
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return None, (jnp.argmax(logits, -1), jnp.where(valid, loss, 0.0))

        _, (pred, loss) = jax.lax.scan(batch, None, (index, mask))
        return pred.reshape(-1), loss.reshape(-1)

    return _Functions(jax.jit(train_epoch, donate_argnums=(0,)), jax.jit(evaluate),
                      jax.jit(train_steps, donate_argnums=(0,)))


# ----------------------------------------------------------------------------- the run, by stage


class _Plan(NamedTuple):
    """How the train split is cut into updates."""

    batch: int  # global batch: at most the split, a multiple of the devices
    steps_per_epoch: int
    epochs: int


@dataclasses.dataclass(frozen=True)
class _Feed:
    """The splits on the devices and the batches of indices that walk them."""

    train: tuple[jax.Array, jax.Array]  # images, labels
    val: tuple[jax.Array, jax.Array]
    val_index: jax.Array  # (batches, batch), padded
    val_mask: jax.Array  # False on the padding
    sharded: NamedSharding  # batches split over the "data" axis
    key: jax.Array
    examples: int  # size of the train split
    batch: int
    seed: int
    sampling: np.ndarray | None  # per-example draw probabilities (sampling remedies)
    host: tuple[Any, np.ndarray] | None = None  # streamed: the train images and labels

    def epoch(self, epoch: int) -> tuple[jax.Array, ...]:
        """The train epoch's arguments after the state: images, labels, index, key."""
        index = pipeline.epoch_indices(self.examples, self.batch, self.seed, epoch,
                                       weights=self.sampling)
        return (*self.train, jax.device_put(index, self.sharded),
                jax.random.fold_in(self.key, epoch))

    def run(self, functions: _Functions, state: TrainState,
            epoch: int) -> tuple[TrainState, jax.Array]:
        """One epoch: scanned over the splits on the devices, or step by step over batches
        streamed from the host (the same indices and step keys)."""
        if self.host is None:
            return functions.train_epoch(state, *self.epoch(epoch))
        assert functions.train_steps is not None
        index = pipeline.epoch_indices(self.examples, self.batch, self.seed, epoch,
                                       weights=self.sampling)
        keys = jax.random.split(jax.random.fold_in(self.key, epoch), len(index))
        losses = []
        batches = ((x[None], y[None]) for x, y in streaming.host_batches(*self.host, index))
        for step, (x, y) in enumerate(streaming.on_device(batches, self.sharded)):
            state, loss = functions.train_steps(state, x, y, keys[step:step + 1])
            losses.append(loss)
        return state, jnp.concatenate(losses)

    def step_shapes(self, images: Any) -> tuple[Any, ...]:
        """The streamed step's batch arguments, for compiling it ahead of time."""
        return (jax.ShapeDtypeStruct((1, self.batch, *images.shape[1:]), np.uint8,
                                     sharding=self.sharded),
                jax.ShapeDtypeStruct((1, self.batch), np.int32, sharding=self.sharded),
                jax.random.split(self.key, 1))


def training_split(config: ProxyConfig, dataset: Dataset) -> Split:
    """The train split actually trained on: long-tailed if asked, then cut to `fraction`."""
    split = dataset.train
    if config.imbalance:
        split = split.subset(imbalance.long_tail_indices(
            split.labels, dataset.num_classes, config.imbalance, config.split_seed))
    if config.fraction < 1:
        keep = np.random.default_rng(config.seed).permutation(len(split))
        split = split.subset(np.sort(keep[: max(1, round(config.fraction * len(split)))]))
    return split


def _plan(config: ProxyConfig, examples: int, *, mesh: Mesh) -> _Plan:
    """The global batch and the number of epochs; `steps` is rounded up to whole epochs."""
    batch = pipeline.global_batch(config.batch_size, examples, mesh)
    steps_per_epoch = examples // batch
    epochs = (config.epochs if config.steps is None
              else max(1, math.ceil(config.steps / steps_per_epoch)))
    return _Plan(batch, steps_per_epoch, epochs)


def runtime_signature(config: ProxyConfig, dataset: Dataset) -> dict[str, Any]:
    """What this host makes of the config's "auto" choices: backend, device kind and count,
    compute dtype, depthwise kernel and the global batch (a multiple of the device count).

    Trials of one study must agree on all but the device kind: halving and the front rank
    them against each other, and a bfloat16 XLA-depthwise training on 8 GPUs is another
    recipe than a float32 one on the CPU.
    """
    mesh = pipeline.data_mesh()
    device = jax.local_devices()[0]
    return {"backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": mesh.size,
            "compute_dtype": np.dtype(compute_dtype(config.dtype)).name,
            "depthwise": resolve_depthwise(config.depthwise),
            "batch_size": pipeline.global_batch(config.batch_size,
                                                len(training_split(config, dataset)), mesh)}


def _new_result(config: ProxyConfig, dataset: Dataset, *, spec: space.ArchSpec, split: Split,
                plan: _Plan, mesh: Mesh) -> ProxyResult:
    """The result before training: what the run is; metrics NaN until an epoch ends."""
    total = space.cost(spec)
    nan = float("nan")
    device = jax.local_devices()[0]
    return ProxyResult(
        status="ok", reason=None, val_top1=nan, val_loss=nan, val_balanced_accuracy=nan,
        val_macro_f1=nan, val_worst_class_recall=nan, val_per_class_recall=[],
        test_top1=None, test_balanced_accuracy=None,
        train_class_counts=np.bincount(split.labels, minlength=dataset.num_classes).tolist(),
        curve=[], epochs_completed=0, steps=0, batch_size=plan.batch, step_time_s=nan,
        images_per_s=nan, compile_s=0.0, init_s=0.0, wall_s=0.0, macs=total.macs,
        params=total.params, activations=total.activations, arch=space.encode(spec),
        resolution=spec.resolution, peak_memory_bytes=None,
        device=f"{device.device_kind} x{mesh.size}", seed=config.seed,
        dataset=dataset.summary(), config=dataclasses.asdict(config),
        backend=jax.default_backend(), device_kind=device.device_kind, device_count=mesh.size,
        compute_dtype=np.dtype(compute_dtype(config.dtype)).name,
        depthwise=resolve_depthwise(config.depthwise))


_RESIDENT: dict[tuple, tuple[Dataset, tuple[jax.Array, jax.Array]]] = {}


def _resident(key: tuple, dataset: Dataset,
              put: Callable[[], tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
    """The device copy `put()` makes, kept under `key` until another dataset or draw of the
    split replaces it (one dataset's train and validation splits at a time)."""
    entry = _RESIDENT.get(key)
    if entry is None:
        for other in [k for k in _RESIDENT if k[1] == key[1] or k[0] != key[0]]:
            del _RESIDENT[other]  # free the old copy before making the new one
        entry = _RESIDENT[key] = (dataset, put())
    return entry[1]


def input_pipeline(config: ProxyConfig, info: DatasetInfo, *, lazy: bool = False) -> str:
    """"device" or "grain": what `config.input_pipeline` means for this dataset on these
    devices (`streaming.device_budget`); `lazy`: the train split is read from its files.

    Raises:
        UserError: one line, where the splits cannot go as asked: "device" and they do not
            fit, or the validation split alone does not (it stays on the devices).
    """
    budget = streaming.device_budget()
    per_image = math.prod(info.image_shape)
    # The validation split, and the test split in chunks of its size (`_test_metrics`).
    train, val = info.train * per_image, 2 * info.val * per_image
    if not (config.input_pipeline == "grain" or lazy or not streaming.fits(train + val, budget)):
        return "device"
    if budget is not None and not streaming.fits(val, budget):
        raise UserError(f"the validation split and a test chunk ({val / 2**30:.2f} GiB) do "
                        f"not fit the devices' budget for data ({budget / 2**30:.2f} GiB "
                        f"each): decode smaller (image_size) or hold out less (val_fraction)")
    if config.input_pipeline == "device":  # asked for, and the splits do not fit
        raise UserError(f"the splits ({(train + val) / 2**30:.2f} GiB) do not fit the devices' "
                        f"budget for data ({(budget or 0) / 2**30:.2f} GiB each): stream them "
                        f"(input_pipeline='grain' or 'auto') or decode smaller (image_size)")
    return "grain"


def _feed(config: ProxyConfig, dataset: Dataset, *, split: Split, plan: _Plan, mesh: Mesh,
          sampling: np.ndarray | None, pipeline_name: str = "device") -> _Feed:
    """Puts the validation split, and the train split unless it is streamed, on the devices,
    with the val batches."""
    sharded = NamedSharding(mesh, PartitionSpec(None, "data"))
    val_index, val_mask = (jax.device_put(a, sharded)
                           for a in pipeline.eval_indices(len(dataset.val), plan.batch))
    streamed = pipeline_name == "grain"
    empty = Split(np.zeros((0, *split.images.shape[1:]), np.uint8), np.zeros(0, np.int32))
    # The splits stay on the devices from one trial to the next while they are the same
    # (a study's trials share the dataset, seed and fraction): no copy per trial (review
    # row 12). Keyed by the dataset object, which the entry holds, so its id is not reused.
    drawn = (config.seed, config.fraction, config.imbalance, config.split_seed)
    devices = tuple(d.id for d in mesh.devices.flat)
    train = (pipeline.put_split(empty, mesh) if streamed else
             _resident((id(dataset), "train", drawn, devices), dataset,
                       lambda: pipeline.put_split(split, mesh)))
    val = _resident((id(dataset), "val", devices), dataset,
                    lambda: pipeline.put_split(dataset.val, mesh))
    return _Feed(train=train, val=val, val_index=val_index, val_mask=val_mask,
                 sharded=sharded, key=jax.random.key(config.seed), examples=len(split),
                 batch=plan.batch, seed=config.seed, sampling=sampling,
                 host=(split.images, split.labels.astype(np.int32)) if streamed else None)


def _setup(config: ProxyConfig, dataset: Dataset, *, spec: space.ArchSpec, split: Split,
           plan: _Plan,
           result: ProxyResult) -> tuple[TrainState, _Functions, np.ndarray | None]:
    """Builds the model, optimizer, remedy, first state and the (not yet compiled) functions.

    Returns the state, the functions and the remedy's sampling weights; records `init_s`.
    """
    dtype = compute_dtype(config.dtype)
    t = time.perf_counter()
    model = create_model(spec, seed=config.seed, dtype=dtype, depthwise=config.depthwise,
                         bn_momentum=config.bn_momentum)
    result.init_s = time.perf_counter() - t
    tx = make_optimizer(config, nnx.state(model, nnx.Param),
                        steps_per_epoch=plan.steps_per_epoch,
                        total_steps=plan.epochs * plan.steps_per_epoch, batch=plan.batch)
    remedy = imbalance.build_remedy(config.remedy, split.labels, dataset.num_classes, config)
    # softmax_loss indexes class weights with traced labels, which a numpy array refuses.
    loss_terms = {name: jnp.asarray(v) if isinstance(v, np.ndarray) else v
                  for name, v in remedy.loss_terms.items()}
    train_def, state = create_train_state(model, tx, ema=config.ema_decay is not None)
    model.eval()
    loss_fn = make_loss_fn(train_def, spec.num_classes, config.label_smoothing, **loss_terms)
    train_step = make_train_step(loss_fn, tx, ema_decay=config.ema_decay)
    mean, std = pipeline.normalisation(dataset)
    functions = _build_functions(model, train_step, config, resolution=spec.resolution,
                                 mean=mean, std=std, dtype=dtype,
                                 eval_offsets=remedy.eval_offsets,
                                 image_shape=dataset.image_shape)
    return state, functions, remedy.sampling


def _compile(functions: _Functions, state: TrainState, *, feed: _Feed,
             result: ProxyResult) -> _Functions:
    """Compiles the epoch and the evaluator ahead of time; records `compile_s`."""
    t = time.perf_counter()
    # `functions` holds the jitted (not yet compiled) functions here.
    train_epoch: Callable[..., Any]
    train_steps: Callable[..., Any] | None = None
    if feed.host is None:
        train_epoch = cast(jax.stages.Wrapped, functions.train_epoch).lower(
            state, *feed.epoch(0)).compile()
    else:
        train_epoch = functions.train_epoch
        train_steps = cast(jax.stages.Wrapped, functions.train_steps).lower(
            state, *feed.step_shapes(feed.host[0])).compile()
    evaluate = cast(jax.stages.Wrapped, functions.evaluate).lower(
        state.eval_params, state.rest, *feed.val, feed.val_index, feed.val_mask).compile()
    result.compile_s = time.perf_counter() - t
    return _Functions(train_epoch, evaluate, train_steps)


def _val_metrics(functions: _Functions, state: TrainState, *, feed: _Feed,
                 dataset: Dataset) -> tuple[dict[str, float], list[float | None]]:
    """The validation metrics of `state` (the curve's keys) and its per-class recall."""
    pred, loss = functions.evaluate(state.eval_params, state.rest, *feed.val, feed.val_index,
                                    feed.val_mask)
    n = len(dataset.val)
    scores = classification_metrics(np.asarray(pred)[:n], dataset.val.labels,
                                    dataset.num_classes)
    metrics = {"val_top1": scores["top1"], "val_loss": float(np.sum(np.asarray(loss)) / n),
               "val_balanced_accuracy": scores["balanced_accuracy"],
               "val_macro_f1": scores["macro_f1"],
               "val_worst_class_recall": scores["worst_class_recall"]}
    return metrics, scores["per_class_recall"]


def _identity(result: ProxyResult) -> dict[str, Any]:
    """What a checkpoint must match to continue a training: the network (its arch string
    holds the resolution) and the seed."""
    return {"arch": result.arch, "seed": result.seed}


def _resume(state: TrainState, checkpointing: Checkpointing | None, result: ProxyResult,
            mesh: Mesh) -> TrainState:
    """The state to start from: the checkpoint's, with its curve in `result`, or `state`
    (recording why, when a checkpoint was asked for and could not be read)."""
    if checkpointing is None or checkpointing.resume_from is None:
        return state
    try:
        # Replicated on the data mesh, as every trained epoch leaves the state.
        state, curve = checkpoints.load(checkpointing.resume_from, state,
                                        NamedSharding(mesh, PartitionSpec()),
                                        identity=_identity(result))
    except checkpoints.CheckpointError as e:
        result.resume_error = str(e)
        return state
    result.curve = curve
    result.resumed_at = result.epochs_completed = len(curve)
    for name, value in curve[-1].items():
        if name.startswith("val_"):
            setattr(result, name, value)
    return state


def _run_epochs(functions: _Functions, state: TrainState, *, feed: _Feed, dataset: Dataset,
                plan: _Plan, result: ProxyResult, callback: EpochCallback | None,
                progress: Callable[[int, int], None] | None,
                checkpointing: Checkpointing | None = None) -> TrainState:
    """Trains epoch by epoch, evaluating after each; fills the curve and the timings.

    A non-finite train loss marks the result failed and stops; `Stop` from the callback
    stops and keeps the result, and saves a checkpoint if the epoch is one of
    `checkpointing.save_at`. A run resumed from a checkpoint starts after its epoch.
    """
    train_time = 0.0
    for epoch in range(result.epochs_completed, plan.epochs):
        t = time.perf_counter()
        state, losses = feed.run(functions, state, epoch)
        train_loss = float(jnp.mean(losses))  # also waits for the epoch to finish
        train_time += time.perf_counter() - t
        result.steps += plan.steps_per_epoch
        if not math.isfinite(train_loss):
            result.status = "failed"
            result.reason = f"training diverged: loss is {train_loss} in epoch {epoch + 1}"
            break
        scores, result.val_per_class_recall = _val_metrics(functions, state, feed=feed,
                                                           dataset=dataset)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, **scores}
        result.curve.append(metrics)
        for name, value in scores.items():
            setattr(result, name, value)
        result.epochs_completed = epoch + 1
        if progress:
            progress(epoch + 1, plan.epochs)
        if callback:
            try:
                callback(epoch + 1, metrics)
            except Stop:
                # Stopped where a checkpoint is wanted (halving's rung): a promotion may
                # continue from here.
                if checkpointing and checkpointing.save_to and \
                        epoch + 1 in checkpointing.save_at:
                    checkpoints.save_or_warn(
                        checkpoints.path_of(checkpointing.save_to, epoch + 1), state,
                        result.curve, _identity(result))
                break
    if result.steps:
        result.step_time_s = train_time / result.steps
        result.images_per_s = result.steps * plan.batch / train_time
    return state


def _test_metrics(evaluate: Callable[..., tuple[jax.Array, jax.Array]], state: TrainState, *,
                  test: Split, dataset: Dataset, mesh: Mesh, feed: _Feed) -> dict[str, Any]:
    """Test metrics for reports, through the compiled val evaluator (no new compile).

    The evaluator is specialised to the validation split's shape, so the test split goes
    through it in val-sized chunks, the last one padded.
    """
    n_val = len(dataset.val)
    preds = []
    for start in range(0, len(test), n_val):
        part = test.subset(np.arange(start, min(start + n_val, len(test))))
        pad = np.minimum(np.arange(n_val), len(part) - 1)
        pred, _ = evaluate(state.eval_params, state.rest,
                           *pipeline.put_split(part.subset(pad), mesh), feed.val_index,
                           feed.val_mask)
        preds.append(np.asarray(pred)[: len(part)])
    return classification_metrics(np.concatenate(preds), test.labels, dataset.num_classes)


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
                       progress: Callable[[int, int], None] | None = None,
                       checkpointing: Checkpointing | None = None) -> ProxyResult:
    """Trains `config.arch` for a short budget and evaluates it on the validation split.

    Args:
        config: the run.
        dataset: an already loaded dataset (else `load_dataset` with the config's options).
        callback: called after every epoch with (epoch, {"val_top1", "val_loss",
            "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
            "train_loss"}); it may raise `Stop` (or e.g. `optuna.TrialPruned`, which
            propagates) to end the run.
        progress: called with (epochs done, epochs total), for progress bars.
        checkpointing: epochs to save a checkpoint after, and one to continue from
            (`trainers.checkpoints`); a checkpoint that cannot be read is recorded in
            `resume_error` and the run starts from the first epoch.

    Returns:
        The result; a diverging (NaN/inf) or out-of-memory run is returned with
        status "failed" and the reason, not raised.
    """
    start = time.perf_counter()
    dataset = dataset or load_proxy_dataset(config)
    spec = config.spec(dataset.num_classes, dataset.channels)
    t = time.perf_counter()
    split = training_split(config, dataset)
    split_s = time.perf_counter() - t
    mesh = pipeline.data_mesh()
    plan = _plan(config, len(split), mesh=mesh)
    result = _new_result(config, dataset, spec=spec, split=split, plan=plan, mesh=mesh)
    try:
        state, functions, sampling = _setup(config, dataset, spec=spec, split=split, plan=plan,
                                            result=result)
        result.input_pipeline = input_pipeline(
            config, dataset.info, lazy=isinstance(split.images, streaming.LazyImages))
        t = time.perf_counter()
        feed = _feed(config, dataset, split=split, plan=plan, mesh=mesh, sampling=sampling,
                     pipeline_name=result.input_pipeline)
        result.data_s = split_s + time.perf_counter() - t
        functions = _compile(functions, state, feed=feed, result=result)
        state = _resume(state, checkpointing, result, mesh)
        state = _run_epochs(functions, state, feed=feed, dataset=dataset, plan=plan,
                            result=result, callback=callback, progress=progress,
                            checkpointing=checkpointing)
        if result.status == "ok" and dataset.test is not None:
            test = _test_metrics(functions.evaluate, state, test=dataset.test, dataset=dataset,
                                 mesh=mesh, feed=feed)
            result.test_top1 = test["top1"]
            result.test_balanced_accuracy = test["balanced_accuracy"]
    except Exception as e:
        if not _is_oom(e):
            raise
        result.status, result.reason = "failed", f"out of memory: {str(e).splitlines()[0]}"
    result.peak_memory_bytes = _peak_memory()
    result.wall_s = time.perf_counter() - start
    return result
