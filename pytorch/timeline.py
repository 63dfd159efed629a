"""Label timelines: what a model says window by window over long recordings.

    python3 pytorch/main.py inference --timeline --checkpoint_path=CKPT(.pth|.onnx) \\
        --audio_path=FILE_OR_DIR --output=timeline.csv [--window=S] [--hop=S]

timeline.csv holds one row per window: file, start_s, end_s, every label's probability and the
predicted labels (the tuned per-label thresholds where the checkpoint has them, else its
threshold; the top label for single-label models). Rows are written as they are computed, so
memory does not grow with the recording; the CSV appears under its name when every file is
done. Each file also gets a label-by-time picture, timeline_pictures/<file>.png (white marks:
the predicted labels), from at most
MAX_COLUMNS columns (beyond that, neighbouring windows are merged by their maximum, so a
3-hour recording costs what a short one does). Windows are cut as pytorch/windows.py says: an
official tagger's default window is the AudioSet clip (10 s), a fine-tuned model's its
training clip.
"""
import csv
import os
import sys

import numpy as np
from tqdm import tqdm

from pytorch.windows import predicted_labels, predicted_mask, window_outputs
from utils.audio import AudioReadError, stream_audio
from utils.figures import save_figure
from utils.utilities import atomic_path, progress

MAX_COLUMNS = 2048     # of a picture: more windows are merged in pairs
PICTURE_LABELS = 20    # a picture shows every label up to this many, else the top ones by peak


def timeline_dir(output):
    """Where the pictures of `output` (X.csv) go: X_pictures/."""
    return os.path.splitext(output)[0] + "_pictures"


class TimelineImage:
    """A file's window probabilities for its picture, at most MAX_COLUMNS columns: when more
    come, neighbouring columns are merged in pairs (their maximum) and each later column takes
    twice as many windows."""

    def __init__(self, max_columns=MAX_COLUMNS):
        self.max_columns, self.columns, self.span = max_columns, [], 1
        self.pending, self.pending_count = None, 0

    def add(self, probabilities):
        self.pending = (probabilities if self.pending is None
                        else np.maximum(self.pending, probabilities))
        self.pending_count += 1
        if self.pending_count == self.span:
            self.columns.append(self.pending)
            self.pending, self.pending_count = None, 0
        if len(self.columns) > self.max_columns:
            pairs = zip(self.columns[0::2], self.columns[1::2])
            merged = [np.maximum(first, second) for first, second in pairs]
            if len(self.columns) % 2:
                merged.append(self.columns[-1])
            self.columns, self.span = merged, self.span * 2

    def array(self):
        """(columns, classes), the last partial column included."""
        columns = self.columns + ([self.pending] if self.pending is not None else [])
        return np.stack(columns)


def set_time_axis(axes, first_s, last_s):
    """About a tick per tenth of the recording at round steps; minutes:seconds past 2 minutes."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=[1, 1.5, 2, 3, 5, 6, 10]))
    if last_s - first_s > 120:
        axes.xaxis.set_major_formatter(FuncFormatter(
            lambda seconds, _: f"{int(seconds // 60)}:{int(seconds % 60):02d}"))
        axes.set_xlabel("minutes:seconds (window centres)")
    else:
        axes.set_xlabel("seconds (window centres)")


def save_timeline_picture(image, labels, centres_s, title, path, predicted):
    """Columns drawn at the window centres: from the first to the last of `centres_s`; a white
    mark on each label `predicted(columns)` gives (booleans, as the CSV's predicted column)."""
    from matplotlib.figure import Figure

    values = image.array()
    step = (centres_s[1] - centres_s[0]) / max(len(values) - 1, 1) or 1.0  # one window: 1 s
    shown = np.arange(len(labels))
    if len(labels) > PICTURE_LABELS:
        shown = np.sort(np.argsort(-values.max(axis=0), kind="stable")[:PICTURE_LABELS // 2])
    figure = Figure(figsize=(10, 1.5 + 0.25 * len(shown)))
    axes = figure.subplots()
    picture = axes.imshow(values[:, shown].T, aspect="auto", origin="upper", vmin=0, vmax=1,
                          interpolation="nearest", cmap="magma",
                          extent=(centres_s[0] - step / 2, centres_s[1] + step / 2,
                                  len(shown) - 0.5, -0.5))
    axes.set_yticks(range(len(shown)), [labels[index] for index in shown])
    columns, rows = np.nonzero(predicted(values)[:, shown])
    axes.scatter(centres_s[0] + columns * step, rows, marker="|", color="white", s=30,
                 linewidths=1, label="predicted")
    axes.legend(loc="upper right", fontsize="small", facecolor="grey", framealpha=0.6)
    set_time_axis(axes, *centres_s)
    axes.set_title(title)
    figure.colorbar(picture, ax=axes, label="probability")
    figure.tight_layout()
    save_figure(figure, path)


def picture_path(folder, audio_path, taken):
    """<folder>/<file stem>.png, numbered when two files share a stem."""
    stem = os.path.splitext(os.path.basename(audio_path))[0]
    name, number = stem, 1
    while name in taken:
        number += 1
        name = f"{stem}_{number}"
    taken.add(name)
    return os.path.join(folder, name + ".png")


def file_timeline(predictor, path, writer, window_samples, hop_samples, batch_size):
    """Write one file's rows; returns (its TimelineImage, (first, last) window centre in
    seconds, rows)."""
    run = predictor.run
    sample_rate = run.audio.sample_rate
    image, centres, rows = TimelineImage(), [], 0
    for start, end, outputs in window_outputs(predictor, stream_audio(path, sample_rate),
                                              window_samples, hop_samples, batch_size):
        probabilities = outputs["probabilities"]
        writer.writerow([path, f"{start / sample_rate:.3f}", f"{end / sample_rate:.3f}"]
                        + [f"{value:.6f}" for value in probabilities]
                        + [";".join(predicted_labels(probabilities, run, predictor.thresholds))])
        image.add(probabilities)
        centre = (start + end) / 2 / sample_rate
        centres, rows = [centres[0] if centres else centre, centre], rows + 1
    return image, centres, rows


def write_timelines(predictor, paths, output, window_samples, hop_samples, batch_size=8,
                    none_read=None):
    """The timeline CSV of every file, and a picture each; returns (rows, files that failed).
    When no file can be read, `none_read` (a UsageError) is raised and `output` is left as it
    was: a failed command replaces nothing."""
    run = predictor.run
    folder, taken, rows, failed = timeline_dir(output), set(), 0, 0
    os.makedirs(folder, exist_ok=True)
    with atomic_path(output) as temp_path, open(temp_path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "start_s", "end_s"] + list(run.labels) + ["predicted"])
        for path in progress(paths, desc="timeline", unit="file", disable=len(paths) < 2):
            try:
                image, centres, file_rows = file_timeline(predictor, path, writer, window_samples,
                                                hop_samples, batch_size)
            except AudioReadError as error:  # rows written before a decode error stay
                tqdm.write(f"skipped {path}: {error}", file=sys.stderr)
                failed += 1
                continue
            rows += file_rows
            save_timeline_picture(image, run.labels, centres,
                                  f"{os.path.basename(path)}: {run.model_type}",
                                  picture_path(folder, path, taken),
                                  lambda values: predicted_mask(values, run, predictor.thresholds))
        if paths and failed == len(paths) and none_read is not None:
            raise none_read  # inside the atomic write: the temporary file is dropped
    return rows, failed
