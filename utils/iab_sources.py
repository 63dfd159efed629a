"""Where multi-label (IAB) training clips come from: AudioSet segment CSVs or a plain CSV.

Each reader turns its source into packing items [(audio_name, path, multi-hot target)] and a
SourceSummary that counts, and lists with their reason, the rows it left out (duplicate, missing
audio, no label), so the packer can log them and report them beside the HDF5.

AudioSet segment CSVs (balanced_train_segments.csv, eval_segments.csv, ...):

    # comment lines
    YTID, start_seconds, end_seconds, positive_labels
    -0RWZT-miFs, 420.000, 430.000, "/m/03v3yw,/m/0k4j"

Audio files are found with a filename pattern relative to the audio folder; its placeholders:
{ytid}, {start} / {end} (whole seconds, e.g. 30), {start_ms} / {end_ms} (milliseconds).
'Y{ytid}.wav' is the PANNs download naming; '{ytid}_{start}.wav' another common one.

Plain CSV: rows `file,labels`, labels separated by ';' (e.g. `dog.wav,Pets;Music`); a header
row (file,labels) and '#' comment lines are optional.
"""
import csv
import dataclasses
import os

import numpy as np

from utils.config import METADATA_DIR, REPO_DIR, read_label_list
from utils.iab_labels import (LABEL_SEPARATOR, LABEL_SET_SIZES, load_label_set, mapping_csv,
                              mids_to_target, read_label_set_csv, split_labels)
from utils.utilities import UsageError, open_text

DEFAULT_FILENAME_PATTERN = "Y{ytid}.wav"
PATTERN_FIELDS = ("ytid", "start", "start_ms", "end", "end_ms")
HEADER_FIRST_FIELDS = ("file", "filename", "path", "audio", "audio_name", "audio_path")
CUSTOM_LABEL_SET = "custom"


def label_set_name(labels):
    """'iab5' / 'iab20' when `labels` are a committed IAB set (same order), else 'custom'."""
    for size in LABEL_SET_SIZES:
        if list(labels) == load_label_set(size):
            return f"iab{size}"
    return CUSTOM_LABEL_SET


def display_path(path):
    """A path as recorded in HDF5 attributes: repository-relative for committed files."""
    path = os.path.abspath(path)
    if path.startswith(METADATA_DIR + os.sep):
        return os.path.relpath(path, REPO_DIR)
    return path


@dataclasses.dataclass
class SourceSummary:
    """What reading a source found; `excluded` lists (path, reason) for the packing report."""
    keep_unlabelled: bool = False
    rows_read: int = 0
    duplicates: int = 0
    missing_audio: int = 0
    unlabelled: int = 0
    first_missing: str = None  # an example for the error message when nothing is left
    excluded: list = dataclasses.field(default_factory=list)

    def admit(self, items, audio_name, path, target, where, no_label_reason):
        """Add one row to `items` unless its audio is missing or (by default) it has no label."""
        if not os.path.isfile(path):
            self.missing_audio += 1
            self.first_missing = self.first_missing or path
            self.excluded.append((path, f"missing audio ({where})"))
            return
        if not target.any():
            self.unlabelled += 1
            if not self.keep_unlabelled:
                self.excluded.append((path, f"{no_label_reason}; dropped ({where})"))
                return
        items.append((audio_name, path, target))

    def duplicate(self, path, reason):
        self.duplicates += 1
        self.excluded.append((path, reason))

    def describe(self):
        unlabelled = "kept with an all-zero target" if self.keep_unlabelled else "dropped"
        return (f"{self.rows_read} rows read, {self.duplicates} duplicates skipped, "
                f"{self.missing_audio} missing audio, "
                f"{self.unlabelled} with no label ({unlabelled})")


# ---------------------------------------------------------------- AudioSet segment CSVs


@dataclasses.dataclass(frozen=True)
class Segment:
    ytid: str
    start_seconds: float
    end_seconds: float
    mids: tuple
    where: str  # "file.csv line 7", for messages


def read_segments_csv(path):
    """The segments of one AudioSet-style CSV; a malformed row is a UsageError naming its line."""
    if not os.path.isfile(path):
        raise UsageError(f"--segments_csv={path}: file not found")
    segments = []
    with open_text(path, "--segments_csv") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            row = next(csv.reader([line], skipinitialspace=True))
            if line_number == 1 and row and row[0].strip() == "YTID":
                continue  # the plain-header form (Google's original has '#' comment lines)
            where = f"{path} line {line_number}"
            if len(row) != 4:
                raise UsageError(f"{where}: expected 'YTID, start_seconds, end_seconds, "
                                 f"\"mid1,mid2,...\"', got {len(row)} fields")
            try:
                start, end = float(row[1]), float(row[2])
            except ValueError:
                raise UsageError(f"{where}: start/end seconds {row[1]!r}, {row[2]!r} are not "
                                 "numbers") from None
            mids = tuple(mid.strip() for mid in row[3].split(",") if mid.strip())
            segments.append(Segment(row[0].strip(), start, end, mids, where))
    return segments


def check_filename_pattern(pattern):
    """The pattern must name each clip by its YTID, in the file name itself (not a folder)."""
    try:
        pattern.format(**{field: 0 for field in PATTERN_FIELDS})
    except (KeyError, IndexError, ValueError) as error:
        raise UsageError(f"--filename_pattern={pattern}: bad placeholder ({error}); use "
                         + ", ".join("{%s}" % field for field in PATTERN_FIELDS)) from None
    if "{ytid}" not in os.path.basename(pattern):
        raise UsageError(f"--filename_pattern={pattern}: the file name must contain {{ytid}}, "
                         "e.g. Y{ytid}.wav or {ytid}_{start}.wav")
    return pattern


def segment_filename(pattern, segment):
    return pattern.format(ytid=segment.ytid,
                          start=int(segment.start_seconds), end=int(segment.end_seconds),
                          start_ms=int(round(segment.start_seconds * 1000)),
                          end_ms=int(round(segment.end_seconds * 1000)))


def audioset_items(segment_csvs, audio_dir, num_labels, mapping_path=None,
                   filename_pattern=DEFAULT_FILENAME_PATTERN, keep_unlabelled=False):
    """Items for every segment of the CSVs whose audio exists; targets through the IAB mapping.

    A YTID seen before (in any of the CSVs) is skipped: the first occurrence wins.
    """
    check_filename_pattern(filename_pattern)
    if not os.path.isdir(audio_dir):
        raise UsageError(f"--audio_dir={audio_dir}: folder not found")
    summary = SourceSummary(keep_unlabelled=keep_unlabelled)
    first_seen = {}
    items = []
    for csv_path in segment_csvs:
        for segment in read_segments_csv(csv_path):
            summary.rows_read += 1
            filename = segment_filename(filename_pattern, segment)
            path = os.path.join(audio_dir, filename)
            if segment.ytid in first_seen:
                summary.duplicate(path, f"duplicate YTID {segment.ytid} ({segment.where}); "
                                        f"kept the one of {first_seen[segment.ytid]}")
                continue
            first_seen[segment.ytid] = segment.where
            target = mids_to_target(segment.mids, num_labels, mapping_path)
            summary.admit(items, os.path.basename(filename), path, target, segment.where,
                          f"no IAB label: {','.join(segment.mids) or 'no mids'} map to none of "
                          f"the {num_labels} labels")
    return items, summary


def label_counts(segment_csvs, num_labels, mapping_path=None):
    """Labels only, no audio: per IAB label, the clips of the segment CSVs it reaches with every
    mid mapped (the union rule) and with the most specific mids only; and the unlabelled clips
    under each. Returns (union counts, specific counts, [unlabelled union, unlabelled specific])."""
    size = len(load_label_set(num_labels))
    union, specific, unlabelled, seen = np.zeros(size), np.zeros(size), [0, 0], set()
    for csv_path in segment_csvs:
        for segment in read_segments_csv(csv_path):
            if segment.ytid in seen:
                continue
            seen.add(segment.ytid)
            for counts, rule, index in ((union, False, 0), (specific, True, 1)):
                target = mids_to_target(segment.mids, num_labels, mapping_path, specific_only=rule)
                counts += target
                unlabelled[index] += not target.any()
    return union.astype(int), specific.astype(int), unlabelled


def mapping_used(num_labels, mapping_path=None):
    return display_path(mapping_path or mapping_csv(num_labels))


# ---------------------------------------------------------------- plain `file,labels` CSV


def resolve_label_names(value):
    """--labels: 5 or 20 (an IAB set), a label file, or comma-separated names; None: not given.

    A label file is a label-set CSV with a `label` column, or one label per line.
    """
    if value is None:
        return None
    if value.strip() in [str(size) for size in LABEL_SET_SIZES]:
        return load_label_set(int(value))
    if os.path.isfile(value):
        with open_text(value, "--labels") as f:
            first_line = f.readline().strip()
        labels = read_label_set_csv(value) if first_line.split(",")[0] == "label" \
            else read_label_list(value)
    else:
        labels = [name.strip() for name in value.split(",") if name.strip()]
    if not labels:
        raise UsageError(f"--labels={value}: no label names")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise UsageError(f"--labels={value}: {', '.join(map(repr, duplicated))} listed twice")
    return labels


def read_labelled_csv(csv_path):
    """[(where, file field, [label names])] of a `file,labels` CSV, header and comments skipped."""
    if not os.path.isfile(csv_path):
        raise UsageError(f"--csv={csv_path}: file not found")
    rows = []
    with open_text(csv_path, "--csv") as f:
        for line_number, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if not rows and (row[0].strip().lower() in HEADER_FIRST_FIELDS
                             or (len(row) > 1 and row[1].strip().lower() in ("label", "labels"))):
                continue  # the optional header
            where = f"{csv_path} line {line_number}"
            if len(row) > 2:
                raise UsageError(f"{where}: expected 'file,labels' with the labels separated by "
                                 f"'{LABEL_SEPARATOR}', got {len(row)} fields")
            rows.append((where, row[0].strip(), split_labels(row[1] if len(row) > 1 else "")))
    return rows


def csv_items(csv_path, audio_dir=None, labels=None, keep_unlabelled=False):
    """(labels, items, summary) of a `file,labels` CSV.

    labels: the label names in output order; None takes every label the CSV uses, sorted.
    Relative file paths resolve against audio_dir (default: the CSV's folder). A file listed
    twice keeps its first row.
    """
    audio_dir = audio_dir or os.path.dirname(os.path.abspath(csv_path))
    if not os.path.isdir(audio_dir):
        raise UsageError(f"--audio_dir={audio_dir}: folder not found")
    rows = read_labelled_csv(csv_path)
    if labels is None:
        labels = sorted({label for _, _, names in rows for label in names})
        if not labels:
            raise UsageError(f"--csv={csv_path}: no row has a label; give --labels or "
                             "label the rows (file,label1;label2)")
    label_index = {label: index for index, label in enumerate(labels)}
    summary = SourceSummary(keep_unlabelled=keep_unlabelled)
    first_seen = {}
    items = []
    for where, file_field, names in rows:
        summary.rows_read += 1
        unknown = [name for name in names if name not in label_index]
        if unknown:
            raise UsageError(f"{where}: unknown label {unknown[0]!r}; the labels are "
                             f"{'; '.join(labels)} (see --labels)")
        path = os.path.normpath(os.path.join(audio_dir, file_field))
        if path in first_seen:
            summary.duplicate(path, f"listed twice ({where}); kept the row of {first_seen[path]}")
            continue
        first_seen[path] = where
        target = np.zeros(len(labels), dtype=np.float32)
        target[[label_index[name] for name in names]] = 1.0
        # Names as written keep clips in different subfolders apart.
        audio_name = os.path.basename(file_field) if os.path.isabs(file_field) \
            else os.path.normpath(file_field).replace(os.sep, "/")
        summary.admit(items, audio_name, path, target, where, "no label")
    return labels, items, summary


# ---------------------------------------------------------------- both


def mini_data_subset(items, clips_per_label):
    """The first clips, in order, until each label (and 'no label') has clips_per_label of them."""
    counts = {}
    subset = []
    for item in items:
        keys = np.flatnonzero(item[2]).tolist() or ["none"]
        if any(counts.get(key, 0) < clips_per_label for key in keys):
            subset.append(item)
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
    return subset
