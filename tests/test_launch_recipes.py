"""The launch recipes of experiments/launch/ stay runnable: the Slurm array script and the
Kubernetes manifest run effsearch commands that parse, with the storage, slot and GPU each
worker should get."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from search.cli import build_parser
from search.devices import assignment, detect_host

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "experiments" / "launch"
URL = "postgresql://effsearch:pw-Secret@db:5432/effsearch"


def test_the_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(LAUNCH / "slurm_array.sh")], check=True)


def _run_slurm_task(tmp_path: Path, task: int, gpu: str) -> tuple[list[str], dict[str, str]]:
    """The script as Slurm runs array task `task` on a node whose GPU `gpu` it was given,
    with a stand-in `effsearch` that records its arguments and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "effsearch"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$RECORD.argv"\n'
                    'env > "$RECORD.env"\n')
    fake.chmod(0o755)
    record = tmp_path / f"task{task}"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record),
           "EFFSEARCH_STORAGE_URL": URL, "SLURM_ARRAY_TASK_ID": str(task),
           "SLURM_SUBMIT_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": gpu}
    subprocess.run(["bash", str(LAUNCH / "slurm_array.sh"), "experiments/quickstart.py"],
                   env=env, cwd=ROOT, check=True)
    argv = Path(f"{record}.argv").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in Path(f"{record}.env").read_text().splitlines()
                if "=" in line)
    return argv, seen


def test_each_slurm_task_is_one_worker_on_its_gpu_with_its_own_slot(tmp_path):
    for task, gpu in ((0, "2"), (5, "7")):
        argv, env = _run_slurm_task(tmp_path, task, gpu)
        args = build_parser().parse_args(argv)
        assert args.command == "search" and args.workers == 1
        assert args.config == "experiments/quickstart.py" and args.storage is None
        assert all("pw-Secret" not in a for a in argv)  # the URL is not in argv
        assert env["EFFSEARCH_STORAGE_URL"] == URL and env["EFFSEARCH_WORKER_SLOT"] == str(task)
        # The one worker keeps the GPU Slurm gave the task, on JAX's CUDA backend.
        (row,) = assignment(1, detect_host(env, gpus=8), env)
        assert row["CUDA_VISIBLE_DEVICES"] == gpu and row["JAX_PLATFORMS"] == "cuda"


def test_the_slurm_script_refuses_to_start_without_a_storage_url(tmp_path):
    done = subprocess.run(["bash", str(LAUNCH / "slurm_array.sh"), "c.py"], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert done.returncode != 0 and "export EFFSEARCH_STORAGE_URL" in done.stderr


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((LAUNCH / "kubernetes.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def _container(resource: dict) -> dict:
    (container,) = resource["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_the_kubernetes_workers_are_an_indexed_job_of_one_gpu_worker_per_pod(manifest):
    job = manifest["Job"]
    assert job["spec"]["completionMode"] == "Indexed"
    worker = _container(job)
    args = build_parser().parse_args(worker["command"][1:])
    assert worker["command"][0] == "effsearch" and args.command == "search"
    assert args.workers == 1 and args.storage is None
    assert (ROOT / args.config).is_file()
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = _env(worker)
    assert env["EFFSEARCH_STORAGE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "worker-url"
    index = env["EFFSEARCH_WORKER_SLOT"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "job-completion-index" in index
    # The device plugin shows the pod one GPU and sets no CUDA_VISIBLE_DEVICES: the worker
    # uses it without a pin.
    (row,) = assignment(1, detect_host({}, gpus=1), {})
    assert row == {"JAX_PLATFORMS": "cuda"}


def test_the_kubernetes_proxy_serves_the_database_inside_the_cluster(manifest):
    proxy = _container(manifest["Deployment"])
    args = build_parser().parse_args(proxy["command"][1:])
    assert args.command == "storage-proxy" and args.storage is None
    env = _env(proxy)
    assert env["EFFSEARCH_STORAGE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    service = manifest["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == args.port
    assert manifest["Deployment"]["spec"]["replicas"] == 1


def test_the_readme_names_the_recipes():
    text = (ROOT / "README.md").read_text()
    for name in ("experiments/launch/slurm_array.sh", "experiments/launch/kubernetes.yaml"):
        assert name in text
