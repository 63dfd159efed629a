"""Where multi-label (IAB) training clips come from: AudioSet segment CSVs or a plain CSV.

Each reader turns its source into packing items [(audio_name, path, multi-hot target)] and a
SourceSummary that counts, and lists with their reason, the rows it left out (duplicate, missing
audio, no label), so the packer can log them and report them beside the HDF5.

AudioSet segment CSVs (balanced_train_segments.csv, eval_segments.csv, ...):

    # comment lines
    YTID, start_seconds, end_seconds, positive_labels
    -0RWZT-miFs, 420.000, 430.000, "/m/03v3yw,/m/0k4j"

Audio files are found with a filename pattern relative to the audio folder; its placeholders:
{ytid}, {start} / {end} (whole seconds, e.g. 30, or with a format: {start:.3f} gives 239.800),
{start_ms} / {end_ms} (milliseconds). Without a pattern, each clip is looked for under the two
namings in use (KNOWN_PATTERNS): 'Y{ytid}.wav', the PANNs download naming, and
'{ytid}_{start:.3f}.wav', the audioset-processing tool's (-X1fH-ZM9TB_120.000.wav), which the
original IAB projects used.

Plain CSV: rows `file,labels`, labels separated by ';' (e.g. `dog.wav,Pets;Music`); a header
row (file,labels) and '#' comment lines are optional.

The original IAB projects' CSVs (train / validate / test): columns `ID` (a wav file name in one
folder) and `IAB Vector` (e.g. "[1, 0, 0, 1, 0]", in the order of metadata/iab_labels_5.csv or
iab_labels_20.csv); packed with their subsets, for --split=subsets.
"""
import csv
import dataclasses
import logging
import os

import numpy as np

from utils.config import METADATA_DIR, REPO_DIR, read_label_list
from utils.iab_labels import (LABEL_SEPARATOR, LABEL_SET_SIZES, load_label_set, mapping_csv,
                              mids_to_target, read_csv_rows, read_label_set_csv, split_labels)
from utils.utilities import UsageError, open_text

KNOWN_PATTERNS = ("Y{ytid}.wav", "{ytid}_{start:.3f}.wav")
DEFAULT_FILENAME_PATTERN = None  # the first of KNOWN_PATTERNS that names an existing file
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


class Seconds(float):
    """A segment time: '{start}' gives whole seconds (30), '{start:.3f}' the exact value."""

    def __format__(self, spec):
        return format(float(self), spec) if spec else str(int(self))


def segment_filename(pattern, segment):
    return pattern.format(ytid=segment.ytid,
                          start=Seconds(segment.start_seconds), end=Seconds(segment.end_seconds),
                          start_ms=int(round(segment.start_seconds * 1000)),
                          end_ms=int(round(segment.end_seconds * 1000)))


def segment_path(audio_dir, pattern, segment, found_by):
    """The clip's file: by `pattern`, or (None) by the first known naming whose file exists;
    `found_by` counts the namings used."""
    for candidate in ([pattern] if pattern else KNOWN_PATTERNS):
        path = os.path.join(audio_dir, segment_filename(candidate, segment))
        if os.path.isfile(path):
            found_by[candidate] = found_by.get(candidate, 0) + 1
            return path
    return os.path.join(audio_dir, segment_filename(pattern or KNOWN_PATTERNS[0], segment))


def audioset_items(segment_csvs, audio_dir, num_labels, mapping_path=None,
                   filename_pattern=DEFAULT_FILENAME_PATTERN, keep_unlabelled=False):
    """Items for every segment of the CSVs whose audio exists; targets through the IAB mapping.

    A YTID seen before (in any of the CSVs) is skipped: the first occurrence wins.
    """
    if filename_pattern:
        check_filename_pattern(filename_pattern)
    if not os.path.isdir(audio_dir):
        raise UsageError(f"--audio_dir={audio_dir}: folder not found")
    summary = SourceSummary(keep_unlabelled=keep_unlabelled)
    first_seen, found_by = {}, {}
    items = []
    for csv_path in segment_csvs:
        for segment in read_segments_csv(csv_path):
            summary.rows_read += 1
            path = segment_path(audio_dir, filename_pattern, segment, found_by)
            filename = os.path.basename(path)
            if segment.ytid in first_seen:
                summary.duplicate(path, f"duplicate YTID {segment.ytid} ({segment.where}); "
                                        f"kept the one of {first_seen[segment.ytid]}")
                continue
            first_seen[segment.ytid] = segment.where
            target = mids_to_target(segment.mids, num_labels, mapping_path)
            summary.admit(items, os.path.basename(filename), path, target, segment.where,
                          f"no IAB label: {','.join(segment.mids) or 'no mids'} map to none of "
                          f"the {num_labels} labels")
    if found_by:
        logging.info("clip files found by naming: %s", ", ".join(
            f"{pattern} {count}" for pattern, count in found_by.items()))
    return items, summary


def label_counts(segment_csvs, num_labels, mapping_path=None):
    """Labels only, no audio: per IAB label, the clips of the segment CSVs it reaches with every
    mid mapped (the union rule) and with the most specific mids only; and the unlabelled clips
    under each. Returns (union counts, specific counts, [unlabelled union, unlabelled specific],
    the clips' targets under the most-specific rule, as packing makes them)."""
    size = len(load_label_set(num_labels))
    union, specific, unlabelled, seen = np.zeros(size), np.zeros(size), [0, 0], set()
    targets = []
    for csv_path in segment_csvs:
        for segment in read_segments_csv(csv_path):
            if segment.ytid in seen:
                continue
            seen.add(segment.ytid)
            for counts, rule, index in ((union, False, 0), (specific, True, 1)):
                target = mids_to_target(segment.mids, num_labels, mapping_path, specific_only=rule)
                counts += target
                unlabelled[index] += not target.any()
            targets.append(target)  # the last one: the most-specific rule
    return (union.astype(int), specific.astype(int), unlabelled,
            np.asarray(targets, dtype=np.float32).reshape(-1, size) >= 0.5)


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
        labels = read_label_set_csv(value, "--labels") if first_line.split(",")[0] == "label" \
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


def cap_per_label(targets, max_clips, seed=1234):
    """Indices (sorted) of the clips kept so that no label has more than `max_clips` clips,
    where that can be done; deterministic for a seed.

    Labels are filled rarest first. A clip counts toward every label it carries, so a clip
    kept for one label also counts toward the others: a label is filled only up to the cap
    with what it already has, and can end above it through clips that labels filled after it
    needed (the caller reports the counts). Within a label, clips carrying fewer labels come first
    (they push no other label over), in a seeded random order. Clips with no label form one
    more group, capped the same way.
    """
    targets = np.asarray(targets) >= 0.5
    random_order = np.random.RandomState(seed).permutation(len(targets))
    groups = [np.flatnonzero(targets[:, label]) for label in range(targets.shape[1])]
    groups.append(np.flatnonzero(~targets.any(axis=1)))
    counts = np.zeros(len(groups), dtype=np.int64)
    rank = np.empty(len(targets), dtype=np.int64)
    rank[random_order] = np.arange(len(targets))
    kept = np.zeros(len(targets), dtype=bool)
    for group in sorted(range(len(groups)), key=lambda g: (len(groups[g]), g)):
        members = groups[group]
        members = members[np.lexsort((rank[members], targets[members].sum(axis=1)))]
        for clip in members:
            if counts[group] >= max_clips:
                break
            if kept[clip]:
                continue
            kept[clip] = True
            labels = np.flatnonzero(targets[clip])
            counts[labels if len(labels) else [len(groups) - 1]] += 1
    return np.flatnonzero(kept)


# ---------------------------------------------------------------- the original IAB projects' CSVs

SEED_COLUMNS = ("ID", "IAB Vector")


def parse_iab_vector(field, where):
    """An IAB Vector cell -> float32 multi-hot. Every spelling the original projects' reader
    took (it dropped brackets, commas and spaces and read each remaining character) is read:
    "[1, 0, 0, 1, 0]" (Python/pandas), "[1 0 0 1 0]" (NumPy, possibly wrapped over lines),
    "1,0,0,1,0", "10010". Anything else (other numbers, another length) is a UsageError naming
    the row."""
    text = (field or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    tokens = text.replace(",", " ").split()
    digits = tokens if len(tokens) > 1 else list(tokens[0]) if tokens else []
    if not (len(digits) in LABEL_SET_SIZES and all(digit in ("0", "1") for digit in digits)):
        sizes = " or ".join(map(str, LABEL_SET_SIZES))
        raise UsageError(f"{where}: IAB Vector {field!r} is not {sizes} zeros and ones, e.g. "
                         "\"[1, 0, 0, 1, 0]\"; fix the row")
    return np.asarray([int(digit) for digit in digits], dtype=np.float32)


def video_id(clip_id):
    """The YouTube video of an ID named as the audioset-processing tool names clips
    ({ytid}_{start:.3f}, e.g. -X1fH-ZM9TB_120.000.wav), or None for other names."""
    stem = os.path.splitext(os.path.basename(clip_id))[0]
    video, separator, start = stem.rpartition("_")
    try:
        float(start)
    except ValueError:
        return None
    return video if separator and video else None


def read_seed_csv(path, flag):
    """[(where, ID, vector)] of one of the original IAB projects' CSVs (columns ID, IAB Vector)."""
    rows = []
    for line_number, row in enumerate(read_csv_rows(path, SEED_COLUMNS, flag), start=2):
        where = f"{path} line {line_number}"
        rows.append((where, (row["ID"] or "").strip(), parse_iab_vector(row["IAB Vector"], where)))
    return rows


def confined_path(audio_dir, name, where, clip_id):
    """The real path of file `name` of --audio_dir; an ID that leads outside it (../, an
    absolute path, a link out) is refused."""
    folder = os.path.realpath(audio_dir)
    real = os.path.realpath(os.path.join(folder, name))
    if os.path.commonpath([folder, real]) != folder:
        raise UsageError(f"{where}: ID {clip_id!r} leads outside --audio_dir={audio_dir}; IDs "
                         "name files in that folder")
    return real


def check_videos_in_one_subset(rows):
    """Clips of one YouTube video in two subsets (X_30.000.wav in train, X_60.000.wav in test)
    leak the video into the score: refused, naming both rows. `rows`: (subset, where, ID)."""
    first = {}
    for subset, where, clip_id in rows:
        video = video_id(clip_id)
        if video is None:
            continue
        earlier = first.setdefault(video, (subset, where, clip_id))
        if earlier[0] != subset:
            raise UsageError(f"{where}: {clip_id} and {earlier[2]} ({earlier[1]}) are clips of "
                             f"one YouTube video ({video}) in the {subset} and {earlier[0]} sets; "
                             "the model would be scored on a video it trained on. Move them to "
                             "one set, or pass --allow_same_video")


def seed_items(subset_csvs, audio_dir, keep_unlabelled=True, allow_same_video=False):
    """(labels, items, {path: subset}, summary) of the seed CSVs, `subset_csvs` being
    [(subset, flag, path)]. The label set is the committed IAB set of the vectors' length
    (the original projects' lists, same names and order). An ID is a file name in
    `audio_dir` (.wav added when it has no extension); an ID in two subsets is an error."""
    if not os.path.isdir(audio_dir):
        raise UsageError(f"--audio_dir={audio_dir}: folder not found")
    summary = SourceSummary(keep_unlabelled=keep_unlabelled)
    items, subset_of, first_seen, size, rows = [], {}, {}, None, []
    for subset, flag, csv_path in subset_csvs:
        for where, clip_id, target in read_seed_csv(csv_path, flag):
            summary.rows_read += 1
            rows.append((subset, where, clip_id))
            if size is None:
                size = len(target)
            elif len(target) != size:
                raise UsageError(f"{where}: a {len(target)}-label IAB Vector, but earlier rows "
                                 f"have {size} labels; one file set uses one label set")
            name = clip_id if os.path.splitext(clip_id)[1] else f"{clip_id}.wav"
            path = os.path.join(audio_dir, name)
            real = confined_path(audio_dir, name, where, clip_id)
            if real in first_seen:  # the same file, however its ID spells it
                earlier_subset, earlier_where, earlier_target = first_seen[real]
                if earlier_subset != subset:
                    raise UsageError(f"{where}: {clip_id} is also in the {earlier_subset} set "
                                     f"({earlier_where}); a clip in two sets leaks into the score")
                if not np.array_equal(earlier_target, target):
                    raise UsageError(f"{where}: {clip_id} is listed again with another IAB "
                                     f"Vector than at {earlier_where}; keep one row")
                summary.duplicate(path, f"listed twice ({where}); kept {earlier_where}")
                continue
            first_seen[real] = (subset, where, target)
            subset_of[path] = subset
            summary.admit(items, name, path, target, where, "no label (all-zero IAB Vector)")
    if size is None:
        raise UsageError("the seed CSVs have no rows")
    if not allow_same_video:
        check_videos_in_one_subset(rows)
    return load_label_set(size), items, subset_of, summary
