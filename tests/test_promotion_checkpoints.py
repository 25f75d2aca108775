"""Halving's promotions continue from the checkpoint their stopped original left (issue 27)."""

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from toys import toy_search_config

import space
from search import storage
from search.cli import main
from trainers.config import ProxyConfig
from trainers.data import load_dataset
from trainers.proxy import train_and_evaluate

CONFIG = toy_search_config("ckpt", phi=2.0, epochs=3, trials="1", startup_trials="1",
                           halving="Halving(min_epochs=1, eta=2)")


def search(tmp_path, *extra):
    config = tmp_path / "ckpt.py"
    config.write_text(CONFIG)
    work = str(tmp_path / "w")
    assert main(["search", str(config), "--workdir", work, "--allow-cpu", *extra]) == 0
    store = storage.open_storage(storage.storage_url(work, None), create=False)
    return optuna.load_study(study_name="ckpt", storage=store).get_trials(), tmp_path / "w"


@pytest.mark.slow
def test_promotions_continue_from_their_rung_as_one_training_and_leave_nothing(
        tmp_path, capsys):
    """One trial, alone at each rung (fewer than eta results: it stops there), promoted by
    the final decisions twice: 1 epoch, then from that checkpoint to 2, then to 3. The chain
    ends where one uninterrupted training of the network ends, to 1e-6."""
    trials, work = search(tmp_path)
    chain = [t for t in trials if t.state != TrialState.FAIL]
    assert [t.user_attrs.get("promoted_from") for t in chain] == [None, 0, 1]
    for t in chain[1:]:
        a = t.user_attrs
        assert a["resumed_at"] == a["promoted_rung"] and a["resume_error"] is None
        rung = a["promoted_rung"]  # the epochs up to the rung are the original's
        assert a["curve"][:rung] == trials[a["promoted_from"]].user_attrs["curve"][:rung]
    last = chain[-1].user_attrs
    assert last["budget"] == 3 and chain[-1].state == TrialState.COMPLETE
    config = ProxyConfig(dataset="digits", epochs=3, resolution=8, batch_size=128)
    whole = train_and_evaluate(config.for_spec(space.decode(last["arch"])),
                               dataset=load_dataset("digits"))
    np.testing.assert_allclose([c["val_top1"] for c in last["curve"]],
                               [c["val_top1"] for c in whole.curve], atol=1e-6)
    assert last["test_top1"] == pytest.approx(whole.test_top1, abs=1e-6)
    assert "removed the study's halving checkpoints" in capsys.readouterr().err
    assert not (work / "checkpoints" / "ckpt").exists()


@pytest.mark.slow
def test_checkpoints_kept_on_request_or_off(tmp_path, capsys):
    trials, work = search(tmp_path, "--keep-checkpoints")
    kept = sorted(str(p.relative_to(work / "checkpoints" / "ckpt"))
                  for p in (work / "checkpoints" / "ckpt").glob("*/epoch_*"))
    assert kept == ["trial_0/epoch_1", "trial_1/epoch_2"]  # where each stopped
    (tmp_path / "off").mkdir()
    trials, work = search(tmp_path / "off", "--checkpoints", "none")
    promoted = [t for t in trials if "promoted_from" in t.user_attrs]
    assert promoted and all(t.user_attrs["resumed_at"] is None for t in promoted)
    assert all(len(t.user_attrs["curve"]) == t.user_attrs["budget"] for t in promoted)
    assert not (work / "checkpoints").exists()
