"""What defines a proxy run and what it measures: `ProxyConfig` and `ProxyResult`.

Imports neither JAX nor flax nor optax, so the CLI can show defaults and validate a config
(or a config file's `get_config()`) without starting JAX; `trainers.proxy` re-exports both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import space
from space import UserError
from trainers.imbalance import REMEDIES


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """Everything that defines one proxy run (serialised into every result).

    Checked at construction: a bad field raises `UserError` naming it. Remedy names come
    from the registry in trainers/imbalance.py.
    """

    arch: str = "efficientnet-b0"  # a named model or an arch string
    width: float = 1.0  # extra multipliers on the arch (e.g. B0 at width 0.25)
    depth: float = 1.0
    resolution: int | None = None  # None: the arch's own
    dataset: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.1
    # Decode every image to this square size (folders, archives, TFDS): needed where images
    # differ in size, and what keeps an ImageNet-sized set in host memory (e.g. the largest
    # resolution a search trains). None: the native size.
    image_size: int | None = None
    split_seed: int = 0  # fixes the validation split across a whole study
    fraction: float = 1.0  # share of the train split used (proxy budget)
    # "device": every split on every device (the fastest: batches are indices); "grain":
    # train batches streamed from the host (trainers/streaming.py), a TFDS dataset read from
    # its array_record files without decoding it whole; "auto": "device" when the splits fit
    # the devices' budget, else "grain" (and TFDS read lazily when it would not fit the host).
    input_pipeline: str = "auto"
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
    remedy: str = "none"  # see trainers.imbalance.remedy_docs()
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
            (self.image_size is None or self.image_size >= 8, "image_size must be >= 8"),
            (self.input_pipeline in ("auto", "device", "grain"),
             "input_pipeline must be 'auto', 'device' or 'grain'"),
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

    @classmethod
    def from_json(cls, record: dict[str, Any], where: str = "proxy") -> ProxyConfig:
        """The config `dataclasses.asdict` wrote; an unknown field is a `UserError` naming
        it (a record from a newer effsearch), a missing one takes its default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise UserError(f"{where}: unknown ProxyConfig field(s) {', '.join(unknown)}")
        try:
            return cls(**record)
        except TypeError as e:  # a field of the wrong type, e.g. "epochs": "4"
            raise UserError(f"{where}: {e}") from None

    def spec(self, num_classes: int, in_channels: int) -> space.ArchSpec:
        """The architecture trained, adapted to the dataset's classes and channels."""
        spec = space.resolve(self.arch)
        if self.width != 1 or self.depth != 1:
            spec = space.apply_multipliers(spec, depth=self.depth, width=self.width)
        return spec.replace(resolution=self.resolution or spec.resolution,
                            num_classes=num_classes, in_channels=in_channels)

    def for_spec(self, spec: space.ArchSpec | str, **changes: Any) -> ProxyConfig:
        """This recipe training exactly `spec` (a network or its arch string): its own
        resolution, no extra width or depth multiplier; `changes` replace other fields."""
        spec = space.decode(spec) if isinstance(spec, str) else spec
        return dataclasses.replace(self, arch=space.encode(spec), width=1.0, depth=1.0,
                                   resolution=spec.resolution, **changes)


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
    # What "auto" resolved to on this host (`trainers.proxy.runtime_signature`): a study must
    # not rank trainings of another dtype, depthwise kernel or batch against each other.
    # None in results recorded before they were kept.
    backend: str | None = None  # "cpu", "gpu", "tpu"
    device_kind: str | None = None
    device_count: int | None = None  # devices the batch was split over
    compute_dtype: str | None = None  # "float32" or "bfloat16"
    depthwise: str | None = None  # "xla" or "shift"
    input_pipeline: str | None = None  # "device" or "grain" (`trainers.proxy.input_pipeline`)
    # Drawing the train split and putting the splits on the devices (outside init_s and
    # compile_s); the statistics and the dataset's loading are a worker's, not a trial's.
    data_s: float | None = None
    # Continued from a checkpoint after this epoch (`trainers.checkpoints`), or None; why a
    # checkpoint asked for could not be read (the run then trained from the first epoch).
    resumed_at: int | None = None
    resume_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
