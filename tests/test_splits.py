"""The artist-filtered GTZAN split and the fold split, as index arrays into a packed file."""
import os

import numpy as np
import pytest

from utils.config import GTZAN_LABELS
from utils.splits import (filtered_split_names, filtered_split_sizes, load_filtered_split,
                          split_train_eval_indices)
from utils.utilities import UsageError


def full_gtzan_names():
    """All 1000 GTZAN clip names in packing order (class folders, then file names)."""
    return [f"{label}.{clip:05d}.wav" for label in GTZAN_LABELS for clip in range(100)]


def test_published_split_sizes():
    assert filtered_split_sizes() == {"train": 443, "valid": 197, "test": 290}


def test_full_gtzan_gives_disjoint_subsets_of_the_listed_clips():
    names = full_gtzan_names()
    split = load_filtered_split(names)
    assert {subset: len(indices) for subset, indices in split.items()} == filtered_split_sizes()
    listed = filtered_split_names()
    for subset, indices in split.items():
        assert sorted(names[index] for index in indices) == sorted(listed[subset])
    all_indices = np.concatenate(list(split.values()))
    assert len(set(all_indices.tolist())) == 930  # disjoint; 70 clips are in no list


def test_names_match_by_basename_whatever_the_order():
    names = [f"genres/{name.split('.')[0]}/{name}" for name in full_gtzan_names()][::-1]
    split = load_filtered_split(names)
    for subset, listed in filtered_split_names().items():
        assert sorted(os.path.basename(names[index]) for index in split[subset]) == sorted(listed)


def test_missing_clips_are_a_usage_error_naming_list_and_clips():
    names = [name for name in full_gtzan_names() if name not in ("blues.00029.wav", "rock.00090.wav")]
    with pytest.raises(UsageError) as error:
        load_filtered_split(names)
    message = str(error.value)
    assert "metadata/gtzan_filtered_train.txt: 1 missing (e.g. blues.00029.wav)" in message
    assert "metadata/gtzan_filtered_test.txt: 1 missing (e.g. rock.00090.wav)" in message
    assert "valid" not in message and "full GTZAN" in message and "\n" not in message


def test_many_missing_clips_are_counted_and_the_first_few_named():
    names = [name for name in full_gtzan_names() if not name.startswith("pop")]
    with pytest.raises(UsageError) as error:
        load_filtered_split(names)
    listed = filtered_split_names()
    for subset in ("train", "valid", "test"):
        pop = [name for name in listed[subset] if name.startswith("pop")]
        assert (f"gtzan_filtered_{subset}.txt: {len(pop)} missing (e.g. "
                f"{', '.join(pop[:5])}, ...)") in str(error.value)


def test_the_known_corrupt_clip_may_be_missing():
    names = [name for name in full_gtzan_names() if name != "jazz.00054.wav"]
    split = load_filtered_split(names)
    assert len(split["train"]) == 442 and len(split["valid"]) == 197 and len(split["test"]) == 290


def test_split_train_eval_indices_for_folds_and_filtered():
    names = full_gtzan_names()
    folds = np.arange(len(names)) % 10 + 1
    info = {"audio_names": names, "folds": folds}
    train, holdout, test = split_train_eval_indices(info, 3, "folds")
    assert test is None and (folds[holdout] == 3).all() and (folds[train] != 3).all()
    assert len(train) + len(holdout) == 1000
    train, valid, test = split_train_eval_indices(info, None, "filtered")
    assert (len(train), len(valid), len(test)) == (443, 197, 290)
    with pytest.raises(UsageError, match="--split=random"):
        split_train_eval_indices(info, 1, "random")


def test_a_test_fold_neither_trains_nor_validates():
    folds = np.arange(100) % 10 + 1
    train, valid, test = split_train_eval_indices({"folds": folds}, 3, "folds", test_fold=7)
    assert (folds[valid] == 3).all() and (folds[test] == 7).all()
    assert not set(folds[train]) & {3, 7} and len(train) + len(valid) + len(test) == 100
    with pytest.raises(UsageError, match="--test_fold=3: the same fold as --holdout_fold"):
        split_train_eval_indices({"folds": folds}, 3, "folds", test_fold=3)


def test_packed_subsets_split():
    info = {"subsets": ["train", "valid", "test", "train", "valid"]}
    train, valid, test = split_train_eval_indices(info, "subsets", "subsets")
    assert (train.tolist(), valid.tolist(), test.tolist()) == ([0, 3], [1, 4], [2])
    with pytest.raises(UsageError, match="packed without subsets"):
        split_train_eval_indices({"subsets": None}, "subsets", "subsets")
