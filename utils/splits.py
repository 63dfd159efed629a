"""Which clips of a packed HDF5 train, select the checkpoint, and test.

Three ways to split:
- 'folds': the HDF5's stratified folds; one holdout fold validates, the others train; with a
  test fold (--test_fold=K) that fold is the test set, scored once at the end, and trains not.
- 'subsets': the train / valid / test sets the HDF5 was packed with (the original IAB
  projects' three CSVs: utils/features.py pack_iab_seed_to_hdf5).
- 'filtered': the artist-filtered GTZAN split of Kereliuk, Sturm & Larsen (2015),
  metadata/gtzan_filtered_{train,valid,test}.txt (443/197/290 clips): no artist appears in two
  subsets, and the 70 repeated or distorted clips are left out, so accuracy is not inflated by
  the same artist (or the same recording) on both sides of the split.
"""
import logging
import os

import numpy as np

from utils.config import METADATA_DIR, REPO_DIR, read_label_list
from utils.data_generator import split_indices
from utils.utilities import UsageError

SPLITS = ("folds", "filtered", "subsets")
FILTERED_SUBSETS = ("train", "valid", "test")
# The GTZAN copy most people download has this clip corrupt: packing skips it, so its absence
# from the HDF5 is expected rather than a sign of an incomplete file.
KNOWN_UNREADABLE_GTZAN = frozenset({"jazz.00054.wav"})
MISSING_SHOWN = 5


def filtered_split_path(subset):
    return os.path.join(METADATA_DIR, f"gtzan_filtered_{subset}.txt")


def filtered_split_names():
    """{subset: [basename, ...]} from the metadata lists (lines like blues/blues.00029.wav)."""
    return {subset: [os.path.basename(line) for line in read_label_list(filtered_split_path(subset))]
            for subset in FILTERED_SUBSETS}


def filtered_split_sizes():
    """{subset: number of clips listed}: 443 / 197 / 290 for the published split."""
    return {subset: len(names) for subset, names in filtered_split_names().items()}


def load_filtered_split(audio_names):
    """{subset: sorted index array into audio_names} for the artist-filtered GTZAN split.

    audio_names are the HDF5's audio_name entries; they are matched by basename, so both
    'blues.00029.wav' and 'blues/blues.00029.wav' work. Listed clips absent from the HDF5 are a
    UsageError (except the known-corrupt jazz.00054.wav), because a silently smaller test set
    would not be comparable with published results.
    """
    index_of = {}
    for index, name in enumerate(audio_names):
        index_of.setdefault(os.path.basename(str(name)), index)
    split, missing_by_list, tolerated = {}, {}, []
    for subset, names in filtered_split_names().items():
        missing = [name for name in names if name not in index_of]
        tolerated += [name for name in missing if name in KNOWN_UNREADABLE_GTZAN]
        missing = [name for name in missing if name not in KNOWN_UNREADABLE_GTZAN]
        if missing:
            missing_by_list[filtered_split_path(subset)] = missing
        split[subset] = np.array(sorted(index_of[name] for name in names if name in index_of),
                                 dtype=np.int64)
    if missing_by_list:
        details = "; ".join(
            f"{os.path.relpath(path, REPO_DIR)}: {len(names)} missing (e.g. "
            f"{', '.join(names[:MISSING_SHOWN])}{', ...' if len(names) > MISSING_SHOWN else ''})"
            for path, names in missing_by_list.items())
        raise UsageError(f"--split=filtered: the HDF5 lacks clips of the artist-filtered GTZAN "
                         f"split ({details}); the HDF5 must be packed from the full GTZAN "
                         "(all 1000 clips, without --mini_data)")
    for name in tolerated:
        logging.warning("--split=filtered: %s is not in the HDF5 (a known-corrupt GTZAN clip); "
                        "it is left out", name)
    return split


def packed_subsets(info, features_path="the HDF5"):
    """{subset: index array} of an HDF5 packed with its own train / valid / test sets."""
    if info.get("subsets") is None:
        raise UsageError(f"--split=subsets: {features_path} was packed without subsets; pack the "
                         "seed CSVs with utils/features.py pack_iab_seed_to_hdf5, or use "
                         "--split=folds (with --test_fold for a test set)")
    subsets = np.asarray(info["subsets"])
    return {subset: np.flatnonzero(subsets == subset) for subset in FILTERED_SUBSETS}


def split_train_eval_indices(info, holdout_fold, split, test_fold=None):
    """(train_indices, eval_indices, test_indices or None) of a packed HDF5 (its `info`).

    'folds': every fold but holdout_fold (and test_fold) trains, holdout_fold evaluates,
    test_fold (if any) is the test set. 'filtered' and 'subsets': train, valid (choose the
    checkpoint) and test.
    """
    if split == "folds":
        folds = np.asarray(info["folds"])
        if test_fold is None:
            train_indices, eval_indices = split_indices(folds, holdout_fold)
            return train_indices, eval_indices, None
        if test_fold == holdout_fold:
            raise UsageError(f"--test_fold={test_fold}: the same fold as --holdout_fold; the test "
                             "set must not choose the checkpoint")
        test_indices = np.flatnonzero(folds == test_fold)
        if len(test_indices) == 0:
            raise UsageError(f"--test_fold={test_fold}: no clip of the HDF5 is in that fold")
        train_indices, eval_indices = split_indices(folds, holdout_fold)
        return np.setdiff1d(train_indices, test_indices), eval_indices, test_indices
    if split == "filtered":
        subsets = load_filtered_split(info["audio_names"])
    elif split == "subsets":
        subsets = packed_subsets(info)
    else:
        raise UsageError(f"--split={split}: choose one of {', '.join(SPLITS)}")
    if len(subsets["train"]) == 0 or len(subsets["valid"]) == 0:
        raise UsageError(f"--split={split}: the HDF5 has {len(subsets['train'])} training and "
                         f"{len(subsets['valid'])} validation clips; both are needed")
    return subsets["train"], subsets["valid"], subsets["test"] if len(subsets["test"]) else None
