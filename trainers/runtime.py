"""Process-level JAX setup shared by every entry point: the compilation cache and the backend.

`configure()` turns on JAX's persistent compilation cache (whole executables, keyed by the HLO,
the platform and XLA_FLAGS) under `$EFFSEARCH_CACHE_DIR` or ~/.cache/effsearch, bounded to
`$EFFSEARCH_CACHE_MAX_BYTES` (8 GB) with least-recently-used eviction. Every trial is a new
network, so it hits promotions, retries, seeds and reruns, not new candidates. On GPUs JAX
itself also keeps XLA's per-fusion autotuning results (conv algorithm choices, which do repeat
across networks) inside that directory.

`check_backend()` refuses to train on the CPU when the host has a GPU or TPU: JAX falls back to
the CPU with one warning when its accelerator support is missing or fails to start, and a
"GPU search" would then train on the CPU for hours. `backend_info()` says what JAX runs on.
`accelerator_present()`, `physical_gpu_count()` and `tpu_device_count()` look at device files
and nvidia-smi only, without starting a JAX backend (which would take GPU memory).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from space import UserError

DEV = Path("/dev")
# `--allow-cpu` reaches `--workers` processes through the environment.
ALLOW_CPU_ENV = "EFFSEARCH_ALLOW_CPU"
CACHE_MAX_BYTES_ENV = "EFFSEARCH_CACHE_MAX_BYTES"
# GPU executables are MBs each; the cache shares its disk with the journal.
DEFAULT_CACHE_MAX_BYTES = 8 * 1024**3
# Environment variables that TPU VMs and GKE TPU pods set.
_TPU_ENV = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID", "TPU_WORKER_HOSTNAMES")
_EXTRA = {"gpu": "cuda", "tpu": "tpu"}
_VERSIONED = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu", "flax",
              "optax", "optuna")

_configured: Path | None = None


def cache_dir() -> Path:
    """The cache root: `$EFFSEARCH_CACHE_DIR`, else ~/.cache/effsearch."""
    return Path(os.environ.get("EFFSEARCH_CACHE_DIR", Path.home() / ".cache" / "effsearch"))


def cache_max_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The cache's size bound: `$EFFSEARCH_CACHE_MAX_BYTES` (-1: unbounded), else 8 GB.

    Raises:
        UserError: when the variable is not an integer.
    """
    value = (os.environ if environ is None else environ).get(CACHE_MAX_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{CACHE_MAX_BYTES_ENV}={value!r} is not a byte count") from None


def configure(directory: str | Path | None = None) -> Path:
    """Turns on the bounded persistent compilation cache; call before the first computation.

    It is idempotent: later calls return the first call's directory.

    Args:
        directory: the cache root (default `cache_dir()`); executables go to `<root>/xla`.
    """
    global _configured
    if _configured is not None:
        return _configured
    root = Path(directory) if directory else cache_dir()
    (root / "xla").mkdir(parents=True, exist_ok=True)
    max_bytes = cache_max_bytes()
    import jax

    # No XLA_FLAGS of our own: with the persistent cache on, JAX sets
    # xla_gpu_per_fusion_autotune_cache_dir=<cache dir>/xla_gpu_per_fusion_autotune_cache_dir in
    # every compile's debug options (jax/_src/compiler.py, get_compile_options, JAX 0.10.2,
    # under the default jax_persistent_cache_enable_xla_caches), overriding any flag; and
    # XLA_FLAGS are hashed into the cache key (jax/_src/cache_key.py, _hash_xla_flags), so a
    # flag holding an absolute path made a cache copied to another path never hit.
    jax.config.update("jax_compilation_cache_dir", str(root / "xla"))
    # Cache anything that took over half a second to compile (the default is 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    # A bound turns on LRU eviction and, with it, JAX's file lock around reads and writes, so
    # workers sharing the cache cannot tear an entry (jax/_src/lru_cache.py). JAX raises at
    # the first compile when a bound is set without the filelock package, so unbounded then.
    if max_bytes != -1 and importlib.util.find_spec("filelock") is not None:
        _backfill_access_times(root / "xla")
        jax.config.update("jax_compilation_cache_max_size", max_bytes)
    _configured = root
    return root


def _backfill_access_times(directory: Path) -> None:
    """Gives every cache entry written without eviction its access-time file.

    With a bound, JAX reads `<key>-atime` for every `<key>-cache` entry before each write and
    fails the write when one is missing (FileNotFoundError, as a warning: the new executable
    is then never cached). Entries of an unbounded cache (an older effsearch, or
    `EFFSEARCH_CACHE_MAX_BYTES=-1`) have none; their modification time stands in.
    """
    for entry in directory.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            with contextlib.suppress(OSError):  # evicted meanwhile by another worker
                atime.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))


def start(allow_cpu: bool = False) -> Path:
    """What every process that trains does first: `configure()`, then `check_backend()`.

    `allow_cpu` is also put in the environment, for the worker processes it may start.
    """
    if allow_cpu:
        os.environ[ALLOW_CPU_ENV] = "1"
    root = configure()
    check_backend(allow_cpu)
    return root


def device_ids(value: str) -> tuple[str, ...]:
    """The entries of a device list such as `CUDA_VISIBLE_DEVICES`, up to the first invalid one.

    CUDA itself stops at the first invalid (negative) index: "-1" or "" hides every GPU.
    """
    ids: list[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        ids.append(entry)
    return tuple(ids)


def physical_gpu_count() -> int:
    """Physical GPUs as `nvidia-smi -L` lists them (0 without it); MIG slices are not counted."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0  # a hung or broken driver: report no GPU rather than block the caller
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines())


def _numbered(dev: Path, prefix: str) -> list[Path]:
    return [p for p in dev.glob(f"{prefix}*") if p.name[len(prefix):].isdigit()]


def tpu_device_count(dev: Path | None = None) -> int:
    """Local TPU chips from their device files: /dev/accelN (v2-v4), else /dev/vfio/N (v5e+).

    /dev/vfio/vfio is VFIO's control node, not a chip, so only numbered groups count.

    Args:
        dev: the device-file root (default /dev).
    """
    dev = DEV if dev is None else dev
    accel = _numbered(dev, "accel")
    if accel:
        return len(accel)
    vfio = dev / "vfio"
    return sum(p.name.isdigit() for p in vfio.iterdir()) if vfio.is_dir() else 0


def _detect(environ: Mapping[str, str], dev: Path,
            gpus: int | None) -> tuple[str, str] | None:
    """(kind, what showed it) for the host's accelerator, or None."""
    chips = tpu_device_count(dev)
    if chips:
        return "tpu", f"{chips} TPU chip device file{'s' if chips != 1 else ''} in {dev}"
    tpu_env = [name for name in _TPU_ENV if environ.get(name)]
    if tpu_env:
        return "tpu", f"{tpu_env[0]}={environ[tpu_env[0]]}"
    preset = environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None and not device_ids(preset):
        return None  # the user hid every GPU: the CPU is their choice
    nvidia = _numbered(dev, "nvidia")
    if nvidia:
        return "gpu", f"{len(nvidia)} GPU device file{'s' if len(nvidia) != 1 else ''} in {dev}"
    count = physical_gpu_count() if gpus is None else gpus
    if count:
        return "gpu", f"nvidia-smi lists {count} GPU{'s' if count != 1 else ''}"
    return None


def accelerator_present(environ: Mapping[str, str] | None = None, dev: Path | None = None,
                        gpus: int | None = None) -> str | None:
    """"gpu" or "tpu" when the host has one, whatever JAX can use; None on a CPU-only host.

    Args:
        environ: the environment to read (default `os.environ`): TPU VM variables, and a
            `CUDA_VISIBLE_DEVICES` that hides every GPU.
        dev: the device-file root (default /dev): /dev/nvidiaN, /dev/accelN, /dev/vfio/N.
        gpus: nvidia-smi's GPU count when known (default: ask it if no device file shows one).
    """
    found = _detect(os.environ if environ is None else environ, DEV if dev is None else dev,
                    gpus)
    return found[0] if found else None


def backend_problem(backend: str, devices: str, found: tuple[str, str] | None,
                    environ: Mapping[str, str], allow_cpu: bool) -> str | None:
    """Why training on `backend` here is refused (one line), or None when it is fine.

    Args:
        backend: `jax.default_backend()`.
        devices: how JAX lists its devices, for the message.
        found: `(kind, evidence)` of the host's accelerator, or None.
        environ: the environment: an explicit `JAX_PLATFORMS=cpu` is the user's choice.
        allow_cpu: `--allow-cpu`.
    """
    chose_cpu = environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu"
    allowed = allow_cpu or environ.get(ALLOW_CPU_ENV, "") not in ("", "0")
    if backend != "cpu" or found is None or chose_cpu or allowed:
        return None
    kind, evidence = found
    return (f"JAX runs on the CPU ({devices}) but this host has a {kind.upper()} ({evidence}): "
            f"install JAX's {kind.upper()} support with pip install 'effsearch[{_EXTRA[kind]}]', "
            f"or pass --allow-cpu, or set JAX_PLATFORMS=cpu to train on the CPU")


def check_backend(allow_cpu: bool) -> None:
    """Refuses to train when JAX fell back to the CPU on a host with a GPU or TPU.

    Call it in the process that trains, after `configure()`: it starts JAX's backend. A parent
    that only spawns workers should not call it (the backend would take GPU memory).

    Args:
        allow_cpu: `--allow-cpu` (also read from `$EFFSEARCH_ALLOW_CPU`, for workers).

    Raises:
        UserError: with one line saying how JAX sees the devices, what the host has and the fix.
    """
    import jax

    try:
        backend = jax.default_backend()
    except Exception as e:
        # JAX_PLATFORMS names a backend that is not installed or failed to start (JAX 0.10
        # raises a bare AssertionError for a missing plugin: any exception means this).
        found = _detect(os.environ, DEV, None)
        kind = found[0] if found else "gpu"
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise UserError(f"JAX could not start its {os.environ.get('JAX_PLATFORMS')} backend "
                        f"({why}): install JAX's {kind.upper()} "
                        f"support with pip install 'effsearch[{_EXTRA[kind]}]', or set "
                        f"JAX_PLATFORMS=cpu (--allow-cpu, for --workers) to train on the CPU"
                        ) from None
    if backend != "cpu":
        return  # skip the device-file and nvidia-smi look-up on the common path
    devices = jax.devices()
    listed = f"{len(devices)} CPU device{'s' if len(devices) != 1 else ''}"
    problem = backend_problem(backend, listed, _detect(os.environ, DEV, None), os.environ,
                              allow_cpu)
    if problem:
        raise UserError(problem)


def _versions() -> dict[str, str]:
    # Package metadata, not imports: cheap, and it names jaxlib plugins that aren't loaded.
    found = {}
    for name in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def backend_info() -> dict[str, Any]:
    """What JAX runs on, for `effsearch env` and trial records (starts JAX's backend).

    Returns:
        backend, device_kind, local_devices, devices (global), processes, process_index and
        versions (package name to version, for the JAX, Flax, Optax and Optuna installed).
    """
    import jax

    local = jax.local_devices()
    return {"backend": jax.default_backend(),
            "device_kind": local[0].device_kind if local else None,
            "local_devices": len(local),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "process_index": jax.process_index(),
            "versions": _versions()}
