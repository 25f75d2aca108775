"""One worker per chip (search/devices.py): detection from a fake /dev and environment."""

from pathlib import Path

import pytest

from search import devices
from search.devices import Host, assignment, check_workers, detect_host, worker_changes
from space import UserError


def fake_dev(tmp_path: Path, *names: str) -> Path:
    """A /dev root holding empty files at `names` (e.g. "accel0", "vfio/3")."""
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    return tmp_path


def changes(workers: int, host: Host, environ: dict[str, str] | None = None) -> list[dict]:
    return [worker_changes(i, workers, host, environ or {}) for i in range(workers)]


def test_preset_cuda_visible_devices_is_split_and_counted(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,5"}
    host = detect_host(env, dev=tmp_path, gpus=8)  # nvidia-smi's 8 physical GPUs don't count
    assert host.gpus == ("4", "5") and host.gpus_preset
    assert devices.gpu_count(env) == 2
    got = changes(4, host, env)
    assert [c["CUDA_VISIBLE_DEVICES"] for c in got] == ["4", "5", "4", "5"]
    assert {c["XLA_PYTHON_CLIENT_MEM_FRACTION"] for c in got} == {"0.45"}
    assert {c["JAX_PLATFORMS"] for c in got} == {"cuda"}


def test_preset_uuids_and_mig_ids_are_entries(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "GPU-aa11, MIG-bb22 ,MIG-cc33"}
    host = detect_host(env, dev=tmp_path)
    assert host.gpus == ("GPU-aa11", "MIG-bb22", "MIG-cc33")
    got = changes(3, host, env)
    assert [c["CUDA_VISIBLE_DEVICES"] for c in got] == list(host.gpus)
    assert not any("XLA_PYTHON_CLIENT_MEM_FRACTION" in c for c in got)  # one GPU each


@pytest.mark.parametrize(("value", "ids"), [("", ()), ("-1", ()), ("0,-1,2", ("0",))])
def test_hidden_gpus_stop_the_list_like_cuda(tmp_path, value, ids):
    host = detect_host({"CUDA_VISIBLE_DEVICES": value}, dev=tmp_path, gpus=4)
    assert host.gpus == ids
    if not ids:
        assert host.platform is None and changes(2, host) == [{}, {}]


def test_unset_list_pins_worker_i_to_gpu_i_mod_n(tmp_path):
    host = detect_host({}, dev=tmp_path, gpus=2)
    assert not host.gpus_preset
    assert [c["CUDA_VISIBLE_DEVICES"] for c in changes(4, host)] == ["0", "1", "0", "1"]
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in changes(2, host)[1]


def test_memory_share_is_per_gpu(tmp_path):
    got = changes(3, detect_host({}, dev=tmp_path, gpus=2))
    assert [c["CUDA_VISIBLE_DEVICES"] for c in got] == ["0", "1", "0"]
    assert got[0]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == got[2]["XLA_PYTHON_CLIENT_MEM_FRACTION"]
    assert got[0]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in got[1]  # alone on GPU 1: JAX's default


def test_single_gpu_is_shared_without_a_pin(tmp_path):
    got = changes(3, detect_host({}, dev=tmp_path, gpus=1))
    assert all("CUDA_VISIBLE_DEVICES" not in c for c in got)
    assert {c["XLA_PYTHON_CLIENT_MEM_FRACTION"] for c in got} == {"0.30"}


def test_one_worker_keeps_every_gpu(tmp_path):
    assert changes(1, detect_host({}, dev=tmp_path, gpus=8)) == [{"JAX_PLATFORMS": "cuda"}]


@pytest.mark.parametrize("name", ["XLA_PYTHON_CLIENT_MEM_FRACTION",
                                  "XLA_PYTHON_CLIENT_PREALLOCATE"])
def test_users_memory_settings_win(tmp_path, name):
    env = {name: "0.2" if name.endswith("FRACTION") else "false", "JAX_PLATFORMS": "cuda,cpu"}
    got = changes(4, detect_host(env, dev=tmp_path, gpus=1), env)
    assert got == [{}] * 4  # neither a fraction nor JAX_PLATFORMS over the user's


def test_cpu_host_changes_nothing(tmp_path):
    host = detect_host({}, dev=tmp_path, gpus=0)
    assert host == Host() and host.platform is None
    assert changes(3, host) == [{}, {}, {}]
    assert devices.max_workers(host) is None
    check_workers(64, host)


@pytest.mark.parametrize("names", [("accel0", "accel1", "accel2", "accel3"),
                                   ("vfio/vfio", "vfio/0", "vfio/1", "vfio/2", "vfio/3")])
def test_tpu_chips_from_device_files(tmp_path, names):
    host = detect_host({}, dev=fake_dev(tmp_path, *names), gpus=0)
    assert host.tpu_chips == ("0", "1", "2", "3") and host.platform == "tpu"


def test_tpu_worker_gets_its_own_chip_and_port(tmp_path):
    host = detect_host({}, dev=fake_dev(tmp_path, *(f"vfio/{i}" for i in range(8))), gpus=0)
    got = changes(2, host)
    assert got[1] == {"JAX_PLATFORMS": "tpu", "TPU_VISIBLE_CHIPS": "1",
                      "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1",
                      "TPU_MESH_CONTROLLER_ADDRESS": "localhost:8477",
                      "TPU_MESH_CONTROLLER_PORT": "8477"}
    assert got[0]["TPU_MESH_CONTROLLER_PORT"] == "8476"


def test_one_tpu_worker_uses_every_chip(tmp_path):
    host = detect_host({}, dev=fake_dev(tmp_path, "accel0", "accel1"), gpus=0)
    assert changes(1, host) == [{"JAX_PLATFORMS": "tpu"}]


def test_preset_tpu_visible_chips_is_split(tmp_path):
    env = {"TPU_VISIBLE_CHIPS": "2,3"}
    host = detect_host(env, dev=fake_dev(tmp_path, *(f"accel{i}" for i in range(4))), gpus=0)
    assert host.tpu_chips == ("2", "3")
    assert [c["TPU_VISIBLE_CHIPS"] for c in changes(2, host, env)] == ["2", "3"]


def test_workers_are_capped_at_the_chip_count(tmp_path):
    host = detect_host({}, dev=fake_dev(tmp_path, *(f"accel{i}" for i in range(4))), gpus=0)
    assert devices.max_workers(host) == 4
    check_workers(4, host)
    with pytest.raises(UserError, match=r"--workers 5: this TPU host has 4 chips.*--workers 4"):
        check_workers(5, host)


def test_accel_without_a_number_is_not_a_chip(tmp_path):
    assert devices.tpu_device_count(fake_dev(tmp_path, "accel_ctl", "vfio/vfio")) == 0


def test_worker_env_keeps_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("EFFSEARCH_MARK", "kept")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setattr(devices, "DEV", Path("/nonexistent"))
    env = devices.worker_env(3, 8, gpus=0)
    assert env["EFFSEARCH_MARK"] == "kept" and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"
    assert env["JAX_PLATFORMS"] == "cpu"  # tests/conftest.py's choice is the user's


def test_assignment_lists_each_workers_device_variables(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,5", "HOME": "/root"}
    rows = assignment(2, detect_host(env, dev=tmp_path), env)
    assert rows == [{"JAX_PLATFORMS": "cuda", "CUDA_VISIBLE_DEVICES": "4"},
                    {"JAX_PLATFORMS": "cuda", "CUDA_VISIBLE_DEVICES": "5"}]
    assert devices.describe(rows)[1] == "worker 1: JAX_PLATFORMS=cuda CUDA_VISIBLE_DEVICES=5"
    assert len(devices.describe([{}, {}])) == 1


MESH = """
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from trainers.pipeline import data_mesh
mesh = data_mesh()
x = jax.device_put(np.arange(8.0), NamedSharding(mesh, P("data")))
total = jax.jit(lambda v: (v * 2).sum())(x)
print(json.dumps({"size": mesh.size, "names": list(mesh.axis_names),
                  "processes": sorted({d.process_index for d in mesh.devices.flat}),
                  "local": sorted(d.id for d in mesh.devices.flat)
                  == sorted(d.id for d in jax.local_devices()),
                  "shards": len(x.addressable_shards), "total": float(total)}))
"""


def test_data_mesh_spans_the_local_devices():
    """The device count must be set before JAX starts, hence a fresh interpreter."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    env = os.environ | {"PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu",
                        "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run([sys.executable, "-c", MESH], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "size": 4, "names": ["data"], "processes": [0], "local": True, "shards": 4,
        "total": 56.0}
