"""Deterministic cross-validation folds (numbered 1..folds_num), stratified per class."""
import csv
import os
from collections import Counter

import numpy as np

from utils.utilities import UsageError, open_text


def stratified_folds(class_indices, folds_num=10, seed=1234):
    """Single-label folds: each class is shuffled and dealt round-robin over the folds.

    Every class is spread as evenly as possible; the start fold rotates from class to class so
    that fold sizes stay balanced overall too.
    """
    class_indices = np.asarray(class_indices)
    folds = np.zeros(len(class_indices), dtype=np.int32)
    random_state = np.random.RandomState(seed)
    start = 0
    for class_index in np.unique(class_indices):
        members = np.flatnonzero(class_indices == class_index)
        random_state.shuffle(members)
        folds[members] = (start + np.arange(len(members))) % folds_num + 1
        start = (start + len(members)) % folds_num
    return folds


def multilabel_stratified_folds(targets, folds_num=10, seed=1234):
    """Multi-label folds by iterative stratification (Sechidis et al. 2011)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    targets = np.asarray(targets)
    folds = np.zeros(len(targets), dtype=np.int32)
    if len(targets) < folds_num:  # too few clips to stratify: deal them out in order
        return (np.arange(len(targets)) % folds_num + 1).astype(np.int32)
    if targets.shape[1] == 1:  # one label: positives and negatives, each dealt evenly
        return stratified_folds((targets[:, 0] >= 0.5).astype(int), folds_num, seed)
    splitter = MultilabelStratifiedKFold(n_splits=folds_num, shuffle=True, random_state=seed)
    for fold, (_, holdout) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
        folds[holdout] = fold + 1
    return folds


def read_folds_file(path):
    """Read a user's `name,fold` CSV (header optional) into {audio_name: fold}."""
    if not os.path.isfile(path):
        raise UsageError(f"--folds_from={path}: file not found")
    mapping, lines = {}, {}
    with open_text(path, "--folds_from") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            try:
                name, fold = row[0].strip(), int(row[1])
            except (IndexError, ValueError):
                if line_number == 1:
                    continue  # a header row
                raise UsageError(f"--folds_from={path}: line {line_number} is not 'name,fold'")
            if mapping.get(name, fold) != fold:
                raise UsageError(f"--folds_from={path}: line {line_number} puts {name} in fold "
                                 f"{fold}, line {lines[name]} in fold {mapping[name]}; keep one")
            mapping[name], lines[name] = fold, line_number
    return mapping


def folds_from_mapping(audio_names, mapping, path, folds_num=10):
    """Look every clip up in a user's fold mapping by its name as packed (its path under the
    dataset folder, e.g. `blues/blues.00000.wav`), or else by its file name alone when that is
    unique on both sides (lists of bare names, e.g. `blues.00000.wav`). A file name shared by
    clips of different folders (`blues/0.wav`, `disco/0.wav`) must be listed with its folder."""
    clips_per_file_name = Counter(os.path.basename(name) for name in audio_names)
    folds_per_file_name = {}
    for name, fold in mapping.items():
        folds_per_file_name.setdefault(os.path.basename(name), set()).add(fold)
    folds = []
    for name in audio_names:
        if name in mapping:
            folds.append(mapping[name])
            continue
        file_name = os.path.basename(name)
        listed = folds_per_file_name.get(file_name, set())
        if listed and (clips_per_file_name[file_name] > 1 or len(listed) > 1):
            raise UsageError(f"--folds_from={path}: {file_name} is ambiguous (several clips or "
                             f"rows share that file name); list {name} with its folder")
        folds.append(next(iter(listed)) if listed else None)
    missing = [name for name, fold in zip(audio_names, folds) if fold is None]
    if missing:
        raise UsageError(f"--folds_from={path}: {len(missing)} clips have no fold, "
                         f"e.g. {missing[0]}; add them to the file")
    folds = np.array(folds, dtype=np.int32)
    if folds.min() < 1 or folds.max() > folds_num:
        raise UsageError(f"--folds_from={path}: folds must be 1..{folds_num}")
    return folds
