"""The storage load benchmark (benchmarks/storage_load.py) as a fault test: workers killed
mid-trial on PostgreSQL and through the gRPC proxy (restarted once), and nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # worker processes and PostgreSQL: make test-slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["postgresql", "grpc"])
def test_killed_workers_lose_nothing_and_the_budget_is_met(postgres_url, kind):
    if kind == "grpc":
        pytest.importorskip("grpc", reason="the grpc extra is not installed")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "storage_load.py"),
                           "--storage", kind, "--workers", "4", "--trials", "40", "--kills",
                           "2", "--database", postgres_url, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["storage"] == kind and result["budget"] == 40
    assert result["counted"] == 40 and result["lost"] == 0 and result["trained_twice"] == 0
    # Every trial a kill cut short was retried (a kill between two trials cuts none).
    assert result["killed"] == 2 and result["retried"] >= result["killed_mid_trial"]
    assert result["proxy_restarts"] == (1 if kind == "grpc" else 0)
    # Measured (the database's connections; other tests share CI's database, so no bound
    # here: README "Storage for many workers" has the numbers on an otherwise idle server).
    assert result["peak_connections"] > 0
    assert result["worker_exit_codes"] == [0]
