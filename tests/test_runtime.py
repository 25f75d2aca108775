"""Process-level JAX setup (trainers/runtime.py): accelerator detection, CPU fallback, cache."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from space import UserError
from trainers import runtime
from trainers.runtime import accelerator_present, backend_problem

ROOT = Path(__file__).parent.parent


def fake_dev(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    return tmp_path


@pytest.mark.parametrize(("names", "environ", "kind"), [
    ((), {}, None),
    (("nvidia0", "nvidiactl", "nvidia-uvm"), {}, "gpu"),
    (("nvidiactl",), {}, None),  # the driver's control node alone is no GPU
    (("nvidia0",), {"CUDA_VISIBLE_DEVICES": ""}, None),  # the user hid every GPU
    (("accel0", "accel1"), {}, "tpu"),
    (("vfio/vfio", "vfio/0"), {}, "tpu"),
    (("vfio/vfio",), {}, None),
    ((), {"TPU_ACCELERATOR_TYPE": "v5litepod-8"}, "tpu"),
])
def test_accelerator_present_from_device_files_and_env(tmp_path, names, environ, kind):
    assert accelerator_present(environ, fake_dev(tmp_path, *names), gpus=0) == kind


def test_nvidia_smi_count_is_a_gpu(tmp_path):
    assert accelerator_present({}, tmp_path, gpus=2) == "gpu"


GPU = ("gpu", "nvidia-smi lists 8 GPUs")


def test_cpu_fallback_on_a_gpu_host_is_refused_with_the_fix():
    problem = backend_problem("cpu", "1 CPU device", GPU, {}, allow_cpu=False)
    assert problem is not None and "\n" not in problem
    assert "JAX runs on the CPU (1 CPU device)" in problem
    assert "nvidia-smi lists 8 GPUs" in problem
    assert "pip install 'effsearch[cuda]'" in problem and "--allow-cpu" in problem
    tpu = backend_problem("cpu", "1 CPU device", ("tpu", "x"), {}, allow_cpu=False)
    assert tpu is not None and "'effsearch[tpu]'" in tpu


@pytest.mark.parametrize(("backend", "found", "environ", "allow_cpu"), [
    ("gpu", GPU, {}, False),  # JAX uses the GPU
    ("cpu", None, {}, False),  # a CPU-only host
    ("cpu", GPU, {}, True),  # --allow-cpu
    ("cpu", GPU, {runtime.ALLOW_CPU_ENV: "1"}, False),  # --allow-cpu, passed to a worker
    ("cpu", GPU, {"JAX_PLATFORMS": "cpu"}, False),  # the user chose the CPU
])
def test_cpu_is_fine_when_chosen_or_alone(backend, found, environ, allow_cpu):
    assert backend_problem(backend, "d", found, environ, allow_cpu) is None


def test_check_backend_raises_when_jax_fell_back(monkeypatch, tmp_path):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(runtime, "DEV", fake_dev(tmp_path, "nvidia0"))
    monkeypatch.delenv(runtime.ALLOW_CPU_ENV, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # tests/conftest.py's: the user's choice
    runtime.check_backend(allow_cpu=False)
    monkeypatch.setenv("JAX_PLATFORMS", "")
    with pytest.raises(UserError, match=r"CPU device.*has a GPU \(1 GPU device file in"):
        runtime.check_backend(allow_cpu=False)
    runtime.check_backend(allow_cpu=True)


def test_cache_max_bytes_env():
    assert runtime.cache_max_bytes({}) == 8 * 1024**3
    assert runtime.cache_max_bytes({runtime.CACHE_MAX_BYTES_ENV: "1000"}) == 1000
    with pytest.raises(UserError, match="is not a byte count"):
        runtime.cache_max_bytes({runtime.CACHE_MAX_BYTES_ENV: "8G"})


def test_backend_info_is_cheap_and_json():
    info = runtime.backend_info()
    json.dumps(info)
    assert info["backend"] == "cpu" and info["local_devices"] == info["devices"] >= 1
    assert info["processes"] == 1 and {"jax", "jaxlib", "flax"} <= set(info["versions"])


CONFIGURE = """
import json, os, sys
from trainers import runtime
root = runtime.configure(sys.argv[1])
assert runtime.configure() == root  # idempotent
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""),
                  "max": jax.config.jax_compilation_cache_max_size,
                  "dirs": sorted(p.name for p in root.iterdir())}))
"""


def test_configure_sets_no_xla_flags_and_bounds_the_cache(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "XLA_FLAGS": "",
                        runtime.CACHE_MAX_BYTES_ENV: "123456789"}
    done = subprocess.run([sys.executable, "-c", CONFIGURE, str(tmp_path / "cache")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["flags"] == "" and out["dirs"] == ["xla"]  # no autotune/ of our own
    # JAX needs filelock for a bound; without it the cache stays unbounded rather than crash.
    has_filelock = importlib.util.find_spec("filelock") is not None
    assert out["max"] == (123456789 if has_filelock else -1)


STALE_CACHE = """
import sys, warnings
from trainers import runtime
root = runtime.configure(sys.argv[1])
import jax, jax.numpy as jnp
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even a toy
with warnings.catch_warnings():
    warnings.simplefilter("error")  # JAX warns when it cannot write an entry
    jax.jit(lambda x: jnp.cos(x) @ x.T)(jnp.ones((32, 32))).block_until_ready()
print(sorted(p.name.rsplit("-", 1)[1] for p in (root / "xla").iterdir() if "-" in p.name))
"""


@pytest.mark.skipif(importlib.util.find_spec("filelock") is None,
                    reason="without filelock the cache is unbounded (nothing to backfill)")
def test_a_cache_written_unbounded_still_takes_new_entries_once_bounded(tmp_path):
    # An entry of an unbounded cache has no access-time file; a bounded JAX then failed every
    # write (FileNotFoundError on the missing -atime, as a warning).
    xla = tmp_path / "cache" / "xla"
    xla.mkdir(parents=True)
    (xla / "jit_old-0123-cache").write_bytes(b"an executable")
    env = os.environ | {"PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
    done = subprocess.run([sys.executable, "-c", STALE_CACHE, str(tmp_path / "cache")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    suffixes = eval(done.stdout.splitlines()[-1])  # a printed list of str
    # The old entry and the new ones, each with its access time.
    assert suffixes.count("cache") >= 2 and suffixes.count("atime") == suffixes.count("cache")


def test_a_backend_that_cannot_start_is_one_line(monkeypatch):
    import jax

    def broken():  # what JAX 0.10 raises for JAX_PLATFORMS=cuda without the CUDA plugin
        raise AssertionError

    monkeypatch.setattr(jax, "default_backend", broken)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    with pytest.raises(UserError, match=r"JAX could not start its cuda backend "
                                        r"\(AssertionError\): install .*effsearch\[cuda\]"):
        runtime.check_backend(allow_cpu=False)
