"""Streamed train batches (trainers/streaming.py, issue 24): the same batches and the same
training as the splits on the device, TFDS read lazily from array_record, and the device
budget that chooses between them."""

import dataclasses

import numpy as np
import pytest
from test_data import _prepare_array_record
from toys import TINY_ARCH

from space import UserError
from trainers import pipeline, streaming
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig, input_pipeline, train_and_evaluate

CONFIG = ProxyConfig(arch=TINY_ARCH, dataset="digits", resolution=8, epochs=1, batch_size=64,
                     fraction=0.5)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSEARCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    _prepare_array_record(root)
    return str(root)


def test_streamed_batches_are_the_in_memory_ones(digits):
    index = pipeline.epoch_indices(len(digits.train), 64, seed=3, epoch=1)
    streamed = list(streaming.host_batches(digits.train.images, digits.train.labels, index,
                                           threads=3))
    assert len(streamed) == len(index)
    for (images, labels), rows in zip(streamed, index, strict=True):
        assert np.array_equal(images, digits.train.images[rows])
        assert np.array_equal(labels, digits.train.labels[rows])


def test_a_streamed_epoch_trains_as_the_in_memory_one(digits):
    on_device = train_and_evaluate(dataclasses.replace(CONFIG, input_pipeline="device"),
                                   dataset=digits)
    streamed = train_and_evaluate(dataclasses.replace(CONFIG, input_pipeline="grain"),
                                  dataset=digits)
    assert (on_device.input_pipeline, streamed.input_pipeline) == ("device", "grain")
    assert streamed.steps == on_device.steps > 1
    # The same batches, step keys and step: the same training, to float rounding.
    assert streamed.curve[0]["train_loss"] == pytest.approx(on_device.curve[0]["train_loss"],
                                                            rel=1e-5)
    assert streamed.val_top1 == pytest.approx(on_device.val_top1, abs=1 / len(digits.val))


def test_tfds_streams_from_array_record_without_decoding_the_split(toy):
    eager = load_dataset("tfds:effsearch_toy", data_dir=toy, val_fraction=0.2)
    lazy = load_dataset("tfds:effsearch_toy", data_dir=toy, val_fraction=0.2,
                        input_pipeline="grain")
    assert isinstance(lazy.train.images, streaming.LazyImages)
    assert lazy.info == eager.info
    assert isinstance(lazy.train.subset(np.arange(3)).images, streaming.LazyImages)
    for part in ("train", "val", "test"):
        a, b = getattr(eager, part), getattr(lazy, part)
        assert np.array_equal(np.asarray(b.images), a.images)
        assert np.array_equal(a.labels, b.labels)
    config = ProxyConfig(arch=TINY_ARCH, dataset="tfds:effsearch_toy", data_dir=toy,
                         val_fraction=0.2, resolution=8, epochs=1, batch_size=8)
    from_files = train_and_evaluate(dataclasses.replace(config, input_pipeline="grain"),
                                    dataset=lazy)
    in_memory = train_and_evaluate(dataclasses.replace(config, input_pipeline="device"),
                                   dataset=eager)
    assert from_files.input_pipeline == "grain" and from_files.status == "ok"
    assert from_files.curve[0]["train_loss"] == pytest.approx(
        in_memory.curve[0]["train_loss"], rel=1e-5)


def test_the_device_budget_chooses_the_pipeline(digits, monkeypatch):
    info = digits.info
    per_image = int(np.prod(info.image_shape))
    monkeypatch.setattr(streaming, "device_budget", lambda: None)  # the CPU: no limit
    assert input_pipeline(CONFIG, info) == "device"
    assert input_pipeline(CONFIG, info, lazy=True) == "grain"
    # Room for validation and a test chunk, not for train too.
    monkeypatch.setattr(streaming, "device_budget", lambda: 2 * info.val * per_image + 1)
    assert input_pipeline(CONFIG, info) == "grain"
    with pytest.raises(UserError, match=r"do not fit the devices' budget.*stream them"):
        input_pipeline(dataclasses.replace(CONFIG, input_pipeline="device"), info)
    monkeypatch.setattr(streaming, "device_budget", lambda: per_image)
    with pytest.raises(UserError, match="validation split and a test chunk"):
        input_pipeline(CONFIG, info)


def test_budget_is_a_share_of_the_smallest_device(monkeypatch):
    class Device:
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return None if self.limit is None else {"bytes_limit": self.limit}

    monkeypatch.setattr(streaming.jax, "local_devices", lambda: [Device(8e9), Device(4e9)])
    assert streaming.device_budget() == int(streaming.DEVICE_SHARE * 4e9)
    monkeypatch.setattr(streaming.jax, "local_devices", lambda: [Device(None)])
    assert streaming.device_budget() is None


def test_a_bad_input_pipeline_is_refused():
    with pytest.raises(UserError, match="input_pipeline must be"):
        ProxyConfig(input_pipeline="disk")


def test_a_lazy_split_measures_its_statistics_on_a_sample(toy, monkeypatch):
    from trainers import data

    monkeypatch.setenv("EFFSEARCH_CACHE_DIR", str(toy) + "-cache")
    monkeypatch.setattr(data, "STATS_SAMPLE", 5)
    lazy = load_dataset("tfds:effsearch_toy", data_dir=toy, val_fraction=0.2,
                        input_pipeline="grain")
    measured = []
    real = data.channel_stats
    monkeypatch.setattr(data, "channel_stats", lambda x: measured.append(len(x)) or real(x))
    mean, std = lazy.stats()
    assert measured == [5] and mean.shape == std.shape == (3,)


def test_splits_that_cannot_go_as_asked_stop_a_worker_before_its_first_trial(digits,
                                                                               monkeypatch):
    import optuna

    from search import controller
    from search.config import CoefficientSearch, SearchConfig

    config = SearchConfig(name="s", search=CoefficientSearch(baseline=TINY_ARCH, phi=1.0,
                                                             tolerance=0.5),
                          proxy=dataclasses.replace(CONFIG, input_pipeline="device"),
                          sampler="random", trials=1, halving=None)
    study = optuna.create_study()
    monkeypatch.setattr(streaming, "device_budget", lambda: 1_000)  # a 1 kB device
    with pytest.raises(UserError, match="do not fit the devices' budget"):
        controller.run_worker(config, study, trials=1, dataset=digits)
    assert not study.trials


def test_tfds_images_of_several_sizes_stream_at_the_size_asked(tmp_path):
    from test_data import _mixed_builder

    _mixed_builder()(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    lazy = load_dataset("tfds:effsearch_mixed", data_dir=str(tmp_path), image_size=8,
                        val_fraction=0.2, input_pipeline="grain")
    assert isinstance(lazy.train.images, streaming.LazyImages)
    index = pipeline.epoch_indices(len(lazy.train), 4, seed=0, epoch=0)
    for images, _ in streaming.host_batches(lazy.train.images, lazy.train.labels, index):
        assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8


def test_a_workers_trials_share_the_device_copies_of_their_splits(digits, monkeypatch):
    """Review row 12: one copy of the splits per worker while they stay the same."""
    from trainers.proxy import training_split

    puts = []
    real = pipeline.put_split
    monkeypatch.setattr(pipeline, "put_split", lambda split, mesh: puts.append(split)
                        or real(split, mesh))
    config = dataclasses.replace(CONFIG, input_pipeline="device", seed=11)
    n_train = len(training_split(config, digits))

    def counts():
        return (sum(len(p) == n_train for p in puts), sum(p is digits.val for p in puts))

    first = train_and_evaluate(config, dataset=digits)
    train_and_evaluate(dataclasses.replace(config, arch=TINY_ARCH.replace("c16", "c12")),
                       dataset=digits)
    assert counts() == (1, 1)
    train_and_evaluate(dataclasses.replace(config, seed=12), dataset=digits)  # another draw
    assert counts() == (2, 1)
    assert first.data_s is not None and first.data_s >= 0
