"""The accelerator path, on a GPU or TPU only: `JAX_PLATFORMS= pytest -m gpu` on such a host
(tests/conftest.py pins the CPU otherwise, so these skip on the CPU and in CI)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from toys import TINY_ARCH

from trainers.proxy import ProxyConfig, train_and_evaluate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    jax.default_backend() == "cpu", reason="needs a GPU or TPU: JAX_PLATFORMS= pytest -m gpu")]
ROOT = Path(__file__).parent.parent


def test_the_backend_is_the_accelerator():
    from trainers import runtime

    runtime.check_backend(allow_cpu=False)
    assert runtime.backend_info()["backend"] in ("gpu", "tpu")


def test_a_proxy_trains_in_bfloat16_with_xla_depthwise_and_records_it():
    result = train_and_evaluate(ProxyConfig(arch=TINY_ARCH, dataset="digits", epochs=2,
                                            resolution=16))
    assert result.status == "ok" and np.isfinite(result.curve[-1]["train_loss"])
    assert (result.compute_dtype, result.depthwise) == ("bfloat16", "xla")
    assert result.peak_memory_bytes and result.peak_memory_bytes > 0


def test_out_of_memory_is_a_failed_result_with_one_line():
    code = ("from trainers.proxy import ProxyConfig, train_and_evaluate; "
            "r = train_and_evaluate(ProxyConfig(arch='efficientnet-b0', dataset='digits', "
            "resolution=224, batch_size=1024, epochs=1)); print(r.status, '|', r.reason)")
    env = os.environ | {"PYTHONPATH": str(ROOT), "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.002",
                        "XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    status, reason = done.stdout.strip().splitlines()[-1].split(" | ")
    assert status == "failed" and reason.startswith("out of memory: ") and "\n" not in reason
