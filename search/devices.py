"""One worker per chip: which GPU or TPU chip each `--workers` process gets.

`effsearch search --workers N` starts N processes on one host. Each must see only its own
device, or every process opens (and preallocates) every device:

- GPUs: worker i gets one entry of the visible GPU list in `CUDA_VISIBLE_DEVICES`. A list the
  scheduler already set (Slurm's `--gres` sets "0,1,2,3" or "4,5", sometimes GPU UUIDs or MIG
  ids) is split, never replaced; without one the list is the physical GPUs nvidia-smi counts.
  Workers sharing a GPU split 90% of its memory (JAX preallocates 75% per process).
- TPU VMs: worker i gets chip i through libtpu's topology variables, with its own mesh
  controller port, the usual recipe for one process per chip. More workers than chips cannot
  work (libtpu refuses a second process on a chip), so `check_workers` refuses them.

`JAX_PLATFORMS` is pinned to the detected accelerator so that a worker whose backend fails to
start errors out instead of training on the CPU (JAX registers the TPU backend
`fail_quietly=True`, so an unusable TPU otherwise falls back with one warning). The user's own
settings win everywhere: this module only adds variables that are not set.

Detection is pure given `environ` and a `/dev` root, so it is tested without a device.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from space import UserError
from trainers.runtime import DEV, device_ids, physical_gpu_count, tpu_device_count

__all__ = ["DEV", "Host", "assignment", "check_workers", "describe", "detect_host", "gpu_count",
           "max_workers", "physical_gpu_count", "tpu_chips", "tpu_device_count", "visible_gpus",
           "worker_changes", "worker_env"]

# libtpu's default mesh controller port; worker i takes the next ones so none collide.
TPU_BASE_PORT = 8476
# Share of a GPU's memory split between the workers on it (leaves room for the CUDA context).
GPU_MEMORY_SHARE = 0.9
# The variables that decide a worker's device: those this module sets, and PREALLOCATE, which
# the user may set instead of a fraction. `assignment` reports exactly these.
SHOWN = ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_MEM_FRACTION",
         "XLA_PYTHON_CLIENT_PREALLOCATE", "TPU_VISIBLE_CHIPS", "TPU_CHIPS_PER_PROCESS_BOUNDS",
         "TPU_PROCESS_BOUNDS", "TPU_MESH_CONTROLLER_ADDRESS", "TPU_MESH_CONTROLLER_PORT")


@dataclasses.dataclass(frozen=True)
class Host:
    """The devices one host hands out to workers.

    Attributes:
        gpus: GPU ids to put in `CUDA_VISIBLE_DEVICES`, one per GPU (indices, UUIDs or MIG ids).
        tpu_chips: TPU chip ids to put in `TPU_VISIBLE_CHIPS`, one per local chip.
        gpus_preset: whether `gpus` came from the user's own `CUDA_VISIBLE_DEVICES`.
    """

    gpus: tuple[str, ...] = ()
    tpu_chips: tuple[str, ...] = ()
    gpus_preset: bool = False

    @property
    def platform(self) -> str | None:
        """The `JAX_PLATFORMS` value of the detected accelerator, or None on a CPU-only host."""
        if self.tpu_chips:
            return "tpu"
        return "cuda" if self.gpus else None


def visible_gpus(environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The GPU ids in a preset `CUDA_VISIBLE_DEVICES`, or None when it is not set."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    return None if value is None else device_ids(value)


def gpu_count(environ: Mapping[str, str] | None = None) -> int:
    """GPUs this process may use: the preset `CUDA_VISIBLE_DEVICES` list, else nvidia-smi's count.

    Args:
        environ: the environment to read (default `os.environ`).
    """
    preset = visible_gpus(os.environ if environ is None else environ)
    return len(preset) if preset is not None else physical_gpu_count()


def tpu_chips(environ: Mapping[str, str], dev: Path = DEV) -> tuple[str, ...]:
    """TPU chip ids to hand out: a preset `TPU_VISIBLE_CHIPS` list, else every local chip."""
    count = tpu_device_count(dev)
    if not count:
        return ()
    preset = environ.get("TPU_VISIBLE_CHIPS")
    return device_ids(preset) if preset is not None else tuple(str(i) for i in range(count))


def detect_host(environ: Mapping[str, str] | None = None, dev: Path | None = None,
                gpus: int | None = None) -> Host:
    """The GPUs and TPU chips of this host.

    Args:
        environ: the environment to read (default `os.environ`).
        dev: the device-file root (default `DEV`, /dev; a fake one in tests).
        gpus: the physical GPU count, when already known (default: ask nvidia-smi). Ignored when
            `CUDA_VISIBLE_DEVICES` is set: its list is what this process can see.
    """
    environ = os.environ if environ is None else environ
    preset = visible_gpus(environ)
    if preset is not None:
        gpu_ids, gpus_preset = preset, True
    else:
        count = physical_gpu_count() if gpus is None else gpus
        gpu_ids, gpus_preset = tuple(str(i) for i in range(count)), False
    chips = tpu_chips(environ, DEV if dev is None else dev)
    return Host(gpus=gpu_ids, tpu_chips=chips, gpus_preset=gpus_preset)


def max_workers(host: Host) -> int | None:
    """The most `--workers` this host can run, or None when there is no limit.

    A TPU chip serves one process, so a TPU host caps workers at its chips; GPUs are shared by
    splitting their memory, and the CPU is shared by the OS.
    """
    return len(host.tpu_chips) if host.tpu_chips else None


def check_workers(workers: int, host: Host | None = None) -> None:
    """Refuses more workers than the host has TPU chips (a second process on a chip fails).

    Args:
        workers: the requested `--workers`.
        host: the host (default: `detect_host()`).

    Raises:
        UserError: with one line naming the chip count.
    """
    limit = max_workers(detect_host() if host is None else host)
    if workers > 1 and limit is not None and workers > limit:
        raise UserError(f"--workers {workers}: this TPU host has {limit} chip"
                        f"{'s' if limit != 1 else ''} and each worker needs its own; "
                        f"use --workers {limit} or fewer")


def _gpu_changes(index: int, workers: int, host: Host,
                 environ: Mapping[str, str]) -> dict[str, str]:
    # One worker keeps every visible GPU (its mesh spans them), and a lone unlisted GPU needs no
    # pin; a preset list is always narrowed, or every worker would open all of it.
    pin = workers > 1 and (host.gpus_preset or len(host.gpus) > 1)
    mine = host.gpus[index % len(host.gpus)]
    changes = {"CUDA_VISIBLE_DEVICES": mine} if pin else {}
    sharing = Counter(host.gpus[i % len(host.gpus)] for i in range(workers))[mine]
    user_sized = ("XLA_PYTHON_CLIENT_MEM_FRACTION" in environ
                  or "XLA_PYTHON_CLIENT_PREALLOCATE" in environ)
    if sharing > 1 and not user_sized:
        changes["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{GPU_MEMORY_SHARE / sharing:.2f}"
    return changes


def _tpu_changes(index: int, host: Host) -> dict[str, str]:
    # These must differ per worker, so they are set even over a user's global value.
    port = TPU_BASE_PORT + index
    return {"TPU_VISIBLE_CHIPS": host.tpu_chips[index % len(host.tpu_chips)],
            "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1",
            "TPU_PROCESS_BOUNDS": "1,1,1",
            "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
            "TPU_MESH_CONTROLLER_PORT": str(port)}


def worker_changes(index: int, workers: int, host: Host,
                   environ: Mapping[str, str]) -> dict[str, str]:
    """The variables effsearch sets for worker `index` of `workers` (only those it changes).

    Args:
        index: the worker, 0-based.
        workers: how many workers the host runs.
        host: the host's devices.
        environ: the parent's environment; variables the user set there win.
    """
    changes: dict[str, str] = {}
    if host.platform and "JAX_PLATFORMS" not in environ:
        changes["JAX_PLATFORMS"] = host.platform
    if host.tpu_chips:
        # One worker keeps every local chip: the data-parallel mesh spans them.
        if workers > 1:
            changes |= _tpu_changes(index, host)
    elif host.gpus:
        changes |= _gpu_changes(index, workers, host, environ)
    return changes


def worker_env(index: int, workers: int, gpus: int) -> dict[str, str]:
    """The full environment of worker `index`: a copy of `os.environ` with its device.

    Args:
        index: the worker, 0-based.
        workers: how many workers this host starts.
        gpus: the physical GPU count (`physical_gpu_count()`), used when
            `CUDA_VISIBLE_DEVICES` is not set.
    """
    env = dict(os.environ)
    return env | worker_changes(index, workers, detect_host(env, gpus=gpus), env)


def assignment(workers: int, host: Host | None = None,
               environ: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Per worker, the device variables it will run with, for printing once at start.

    A variable the user set themselves is shown with their value, so the list is what each
    worker sees, not only what effsearch changed.

    Args:
        workers: how many workers this host starts.
        host: the host (default: `detect_host(environ)`).
        environ: the parent's environment (default `os.environ`).
    """
    environ = os.environ if environ is None else environ
    host = detect_host(environ) if host is None else host
    rows = []
    for index in range(workers):
        env = dict(environ) | worker_changes(index, workers, host, environ)
        rows.append({name: env[name] for name in SHOWN if name in env})
    return rows


def describe(rows: list[dict[str, str]]) -> list[str]:
    """One line per worker, `worker i: NAME=value ...`, or one line when nothing is set."""
    if not any(rows):
        return ["workers: no accelerator detected, every worker uses the CPU"]
    return [f"worker {i}: " + " ".join(f"{k}={v}" for k, v in row.items())
            for i, row in enumerate(rows)]
