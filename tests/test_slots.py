"""Worker slots and the sampler seeds derived from them: unique among live workers, held
until the worker exits, reproducible launch to launch."""

import os
import subprocess
import sys
import time

import pytest

from search import controller, slots

CLAIM = ("import sys, time; from search import slots; "
         "print(slots.claim(sys.argv[1], sys.argv[2]), flush=True); "
         "time.sleep(float(sys.argv[3]))")


def hold(url: str, study: str, seconds: float = 30) -> tuple[subprocess.Popen, int]:
    """A process that claims a slot and holds it for `seconds`; and its slot."""
    env = os.environ | {"PYTHONPATH": os.getcwd()}
    env.pop(slots.SLOT_ENV, None)
    proc = subprocess.Popen([sys.executable, "-c", CLAIM, url, study, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    return proc, int(proc.stdout.readline())


def test_live_workers_hold_distinct_slots_and_a_dead_ones_is_free_again(tmp_path):
    journal = str(tmp_path / "effsearch.journal")
    first, a = hold(journal, "s")
    second, b = hold(journal, "s")
    _, other = hold(journal, "another study", seconds=0)
    assert (a, b, other) == (0, 1, 0)  # per study, lowest free first
    first.kill()
    first.wait()
    third, c = hold(journal, "s")
    assert c == 0  # the operating system released the killed worker's lock
    for p in (second, third):
        p.kill()
        p.wait()


def test_a_worker_asks_for_its_launchers_slot_first(tmp_path, monkeypatch):
    journal = str(tmp_path / "effsearch.journal")
    assert slots.claim(journal, "s", preferred=3) == 3
    assert slots.claim(journal, "s", preferred=3) == 0  # held by this very process already
    monkeypatch.setenv(slots.SLOT_ENV, "5")
    assert slots.claim(journal, "s") == 5
    assert slots.claim("redis://localhost/0", "s") == 5  # no lock there: the launcher's word


def test_sampler_seeds_differ_by_slot_and_slot_0_keeps_the_studys():
    seeds = [controller.worker_seed(7, slot) for slot in range(64)]
    assert seeds[0] == 7
    assert len(set(seeds)) == 64
    assert seeds == [controller.worker_seed(7, slot) for slot in range(64)]
    assert controller.worker_seed(8, 1) != controller.worker_seed(7, 1)


@pytest.mark.slow
def test_slots_on_postgresql_are_unique_across_processes(postgres_url):
    study = f"slots-{os.getpid()}-{time.time_ns()}"
    first, a = hold(postgres_url, study)
    second, b = hold(postgres_url, study)
    assert {a, b} == {0, 1}
    first.kill()
    first.wait()
    time.sleep(1)  # the server ends the dead session's locks when it sees the socket close
    third, c = hold(postgres_url, study)
    assert c == a
    for p in (second, third):
        p.kill()
        p.wait()
