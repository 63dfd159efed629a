"""IAB content label sets and the AudioSet-class -> IAB-label mapping used as training targets.

The committed files live in metadata/: iab_labels_{5,20}.csv (the label set, in output order) and
audioset_to_iab_{5,20}.csv (built by scripts/build_iab_mapping.py; see docs/iab_mapping.md).
A user may pass their own mapping CSV (same columns) instead of the committed one.
"""
import csv
import functools
import json
import os

import numpy as np

from utils.config import AUDIOSET_LABELS_CSV, AUDIOSET_ONTOLOGY_JSON, METADATA_DIR
from utils.utilities import UsageError, named, open_text

LABEL_SET_SIZES = (5, 20)
LABEL_SEPARATOR = ";"
MAPPING_COLUMNS = ("index", "mid", "display_name", "iab_labels", "reason")
REQUIRED_MAPPING_COLUMNS = ("mid", "iab_labels")


def label_set_csv(num_labels):
    return os.path.join(METADATA_DIR, f"iab_labels_{_check_size(num_labels)}.csv")


def mapping_csv(num_labels):
    return os.path.join(METADATA_DIR, f"audioset_to_iab_{_check_size(num_labels)}.csv")


def rules_csv(num_labels):
    return os.path.join(METADATA_DIR, f"iab_mapping_rules_{_check_size(num_labels)}.csv")


def _check_size(num_labels):
    if num_labels not in LABEL_SET_SIZES:
        raise UsageError(f"num_labels={num_labels!r}: the IAB label set must be one of "
                         f"{', '.join(map(str, LABEL_SET_SIZES))}")
    return num_labels


def read_csv_rows(path, required_columns, flag=None):
    """Rows of a CSV as dicts; a missing file, a file not in UTF-8 or a missing column is a
    UsageError naming the file, and the flag that gave it (none for committed files)."""
    with open_text(path, flag) as f:
        reader = csv.DictReader(f)
        missing = [c for c in required_columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{named(path, flag)}: missing column(s) {', '.join(missing)}; "
                             f"expected at least {', '.join(required_columns)}")
        return list(reader)


def split_labels(field):
    """'A;B' -> ['A', 'B']; an empty field means no label."""
    return [label.strip() for label in (field or "").split(LABEL_SEPARATOR) if label.strip()]


def read_label_set_csv(path, flag=None):
    """Label names of a label-set CSV, in column order of the model output."""
    labels = [row["label"].strip() for row in read_csv_rows(path, ("label",), flag)]
    if not labels or len(set(labels)) != len(labels):
        raise UsageError(f"{path}: the label column must list each label once")
    return labels


def read_audioset_classes(path=AUDIOSET_LABELS_CSV):
    """[(mid, display_name), ...] in the order of PANNs' 527-way output."""
    rows = read_csv_rows(path, ("index", "mid", "display_name"))
    return [(row["mid"], row["display_name"]) for row in rows]


@functools.lru_cache(maxsize=None)
def _label_set(num_labels):
    return tuple(read_label_set_csv(label_set_csv(num_labels)))


def load_label_set(num_labels):
    """The label names of the 5- or 20-label IAB set, in model-output order."""
    return list(_label_set(num_labels))


@functools.lru_cache(maxsize=None)
def _read_mapping(num_labels, custom_mapping_path):
    labels = _label_set(num_labels)
    path = custom_mapping_path or mapping_csv(num_labels)
    label_index = {label: i for i, label in enumerate(labels)}
    known_mids = {mid for mid, _ in read_audioset_classes()}
    mapping = {}
    flag = "--mapping" if custom_mapping_path else None  # the committed mapping came from no flag
    for line, row in enumerate(read_csv_rows(path, REQUIRED_MAPPING_COLUMNS, flag), start=2):
        mid = row["mid"].strip()
        if mid not in known_mids:
            raise UsageError(f"{path}, line {line}: mid {mid!r} is not an AudioSet class "
                             f"in {AUDIOSET_LABELS_CSV}")
        if mid in mapping:
            raise UsageError(f"{path}, line {line}: mid {mid} is listed twice")
        row_labels = split_labels(row["iab_labels"])
        unknown = [label for label in row_labels if label not in label_index]
        if unknown:
            raise UsageError(f"{path}, line {line}: label(s) {', '.join(map(repr, unknown))} "
                             f"are not in the {num_labels}-label set ({'; '.join(labels)})")
        mapping[mid] = tuple(sorted({label_index[label] for label in row_labels}))
    return mapping


def load_mapping(num_labels, mapping_path=None):
    """{AudioSet mid: [label indices]} for the 5- or 20-label set.

    mapping_path: a user's own mapping CSV (columns mid, iab_labels; labels must belong to the
    num_labels set) instead of metadata/audioset_to_iab_<num_labels>.csv. AudioSet classes it
    leaves out map to no label.
    """
    custom = os.path.abspath(mapping_path) if mapping_path else None
    return {mid: list(indices) for mid, indices in _read_mapping(num_labels, custom).items()}


@functools.lru_cache(maxsize=None)
def _mapping_matrix(num_labels, custom_mapping_path):
    mapping = _read_mapping(num_labels, custom_mapping_path)
    classes = read_audioset_classes()
    matrix = np.zeros((len(classes), len(_label_set(num_labels))), dtype=np.float32)
    for row, (mid, _) in enumerate(classes):
        matrix[row, list(mapping.get(mid, ()))] = 1.0
    matrix.setflags(write=False)  # cached and shared between callers
    return matrix


def mapping_matrix(num_labels, mapping_path=None):
    """float32 (527, C): 1 where AudioSet class i (class-list order) maps to IAB label c."""
    custom = os.path.abspath(mapping_path) if mapping_path else None
    return _mapping_matrix(num_labels, custom).copy()


@functools.lru_cache(maxsize=None)
def ontology_ancestors():
    """{mid: frozenset of its ancestors' mids} from metadata/audioset_ontology.json."""
    with open_text(AUDIOSET_ONTOLOGY_JSON, "ontology") as f:
        nodes = json.load(f)
    parents = {}
    for node in nodes:
        for child in node.get("child_ids", []):
            parents.setdefault(child, set()).add(node["id"])
    ancestors = {}

    def collect(mid, seen=()):
        if mid not in ancestors:
            found = set()
            for parent in parents.get(mid, ()):
                if parent not in seen:  # the ontology is a DAG; guard against a cycle anyway
                    found |= {parent} | collect(parent, seen + (mid,))
            ancestors[mid] = frozenset(found)
        return ancestors[mid]

    for node in nodes:
        collect(node["id"])
    return ancestors


def most_specific(mids):
    """The clip's mids without those that are ontology ancestors of another of its mids.

    AudioSet raters tag the generic parent too (Aircraft clips usually carry Vehicle): mapped
    as they are, the parent's label would leak onto the child's clips (Aircraft -> Automotive
    via Vehicle). The most specific labels decide."""
    ancestors = ontology_ancestors()
    covered = set().union(*(ancestors.get(mid, frozenset()) for mid in mids)) if mids else set()
    return [mid for mid in mids if mid not in covered]


@functools.lru_cache(maxsize=None)
def class_ancestor_matrix():
    """(527, 527) bool: [i, j] when AudioSet class j is an ontology ancestor of class i."""
    classes = [mid for mid, _ in read_audioset_classes()]
    index = {mid: position for position, mid in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=bool)
    for position, mid in enumerate(classes):
        for ancestor in ontology_ancestors().get(mid, ()):
            if ancestor in index:
                matrix[position, index[ancestor]] = True
    return matrix


def drop_present_ancestors(probabilities, threshold=0.5):
    """The tagger's (N, 527) outputs with the ancestor rule applied as packing applies it to
    labels: a class that is an ontology ancestor of another class present in the same clip
    (probability >= threshold) is set to 0, so the most specific classes decide (a tagger that
    hears Aircraft also outputs a high Vehicle, which would otherwise reach Automotive)."""
    probabilities = np.array(probabilities, dtype=np.float64, copy=True)
    present = probabilities >= threshold
    covered = (present.astype(np.int64) @ class_ancestor_matrix()) > 0  # ancestors of present
    probabilities[covered & present] = 0.0
    return probabilities


def mids_to_target(mids, num_labels, mapping_path=None, specific_only=True):
    """Multi-hot float32 (C,) of the IAB labels reached by a clip's AudioSet mids, after
    most_specific() (specific_only=False: every mid, the union rule, for comparison).

    mids: an iterable of mids or one comma-separated string (AudioSet segment-CSV style).
    Mids that are not AudioSet classes are ignored.
    """
    if isinstance(mids, str):
        mids = mids.split(",")
    mids = [mid.strip() for mid in mids if mid.strip()]
    if specific_only:
        mids = most_specific(mids)
    custom = os.path.abspath(mapping_path) if mapping_path else None
    mapping = _read_mapping(num_labels, custom)
    target = np.zeros(len(_label_set(num_labels)), dtype=np.float32)
    for mid in mids:
        target[list(mapping.get(mid, ()))] = 1.0
    return target
