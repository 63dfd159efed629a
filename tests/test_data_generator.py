"""The HDF5 dataset and the samplers: holdout never trained on, every clip once per pass."""
import pickle

import numpy as np
import pytest
import torch

from helpers import make_class_folders
from utils.data_generator import (EvaluateSampler, TrainSampler, WaveformDataset, collate_fn,
                                  split_indices)
from utils.features import one_hot, pack_to_hdf5, scan_class_folders
from utils.utilities import UsageError


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_class_folders(root, classes=("a", "b", "c"), clips_per_class=10, seconds=0.25)
    labels, found = scan_class_folders(str(root))
    items = [(name, path, one_hot(index, len(labels))) for name, path, index in found]
    path = str(root / "waveform.h5")
    pack_to_hdf5(items, labels, "single_label", path, clip_duration=0.25)
    return path


def test_dataset_reads_float32_in_memory_and_lazily(packed):
    lazy = WaveformDataset(packed, in_memory=False)
    eager = WaveformDataset(packed, in_memory=True)
    assert len(lazy) == 30 and lazy.labels == ["a", "b", "c"] and lazy.task == "single_label"
    for index in (0, 17, 29):
        item = lazy[index]
        assert item["waveform"].dtype == np.float32 and item["waveform"].shape == (8000,)
        assert np.array_equal(item["waveform"], eager[index]["waveform"])
        assert np.abs(item["waveform"]).max() <= 1.0
    assert WaveformDataset(packed, in_memory=False, as_int16=True)[3]["waveform"].dtype == np.int16
    clone = pickle.loads(pickle.dumps(lazy))  # an open handle must not travel to a worker
    assert np.array_equal(clone[5]["waveform"], lazy[5]["waveform"])


def test_loader_with_workers_matches_direct_reads(packed):
    dataset = WaveformDataset(packed, in_memory=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=EvaluateSampler(range(30), 8),
                                         num_workers=2, collate_fn=collate_fn)
    batches = list(loader)
    assert [len(batch["audio_name"]) for batch in batches] == [8, 8, 8, 6]
    waveforms = np.concatenate([batch["waveform"] for batch in batches])
    assert np.array_equal(waveforms[11], dataset[11]["waveform"])


@pytest.mark.parametrize("mixup", [False, True])
def test_train_sampler_never_yields_holdout_and_covers_each_pass(mixup):
    folds = np.tile(np.arange(1, 11), 7)  # 70 clips, 7 per fold
    train_indices, holdout_indices = split_indices(folds, 3)
    sampler = TrainSampler(train_indices, batch_size=5, mixup=mixup, seed=0)
    drawn = [index for _, batch in zip(range(63), sampler) for index in batch]
    batch_size = 10 if mixup else 5
    assert len(drawn) == 63 * batch_size
    assert not set(drawn) & set(holdout_indices.tolist())
    passes = np.array(drawn).reshape(-1, len(train_indices))  # 63 train clips per pass
    for one_pass in passes:
        assert sorted(one_pass.tolist()) == sorted(train_indices.tolist())


def test_train_sampler_resumes_at_the_same_place():
    sampler = TrainSampler(np.arange(23), batch_size=4, seed=7)
    for _ in range(9):
        sampler.next_batch()
    state = pickle.loads(pickle.dumps(sampler.state_dict()))
    expected = [sampler.next_batch() for _ in range(12)]
    resumed = TrainSampler(np.arange(23), batch_size=4, seed=999)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(12)] == expected


def test_evaluate_sampler_yields_holdout_once_in_order():
    folds = np.repeat(np.arange(1, 11), 3)
    _, holdout = split_indices(folds, 10)
    batches = list(EvaluateSampler(holdout, batch_size=2))
    assert [i for batch in batches for i in batch] == [27, 28, 29]


def test_missing_holdout_fold_is_a_usage_error():
    with pytest.raises(UsageError, match="holdout_fold=4"):
        split_indices(np.array([1, 2, 3]), 4)


@pytest.mark.parametrize("damage, message", [
    (lambda hf: hf.attrs.__setitem__("task", "regression"), "task 'regression' is neither"),
    (lambda hf: hf.__delitem__("target"), "not a packed waveform file"),
    (lambda hf: (hf.__delitem__("target"), hf.create_dataset("target", data=np.zeros((30, 2)))),
     r"targets of shape \(30, 2\) do not fit its 3 labels"),
    (lambda hf: (hf.__delitem__("waveform"), hf.create_dataset("waveform", data=np.zeros((29, 8), np.int16))),
     "30 clip names but 29 waveforms"),
    (lambda hf: hf["fold"].__setitem__(0, 99), r"folds outside 1..10"),
    (lambda hf: hf["audio_name"].__setitem__(1, hf["audio_name"][0]), "clip names repeat"),
])
def test_a_damaged_hdf5_is_one_line(tmp_path, features, damage, message):
    import shutil
    import h5py
    path = str(tmp_path / "damaged.h5")
    shutil.copy(features, path)
    with h5py.File(path, "a") as hf:
        damage(hf)
    with pytest.raises(UsageError, match=f"--features={path}: .*{message}"):
        WaveformDataset(path)
