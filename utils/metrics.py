"""Evaluation metrics for single-label (GTZAN genre) and multi-label (IAB content) classifiers.

All functions take model outputs as probabilities of shape (N, C) and return plain Python
floats/lists (plus a numpy confusion matrix) so the result can go straight into the
statistics pickle.

Conventions (chosen to agree with scikit-learn, which the tests compare against):
- zero_division=0: a class never predicted has precision 0; a class with no true and no
  predicted samples has F1 0.
- macro_f1 averages over every class, as sklearn's classification_report 'macro avg' (and
  f1_score(average='macro', zero_division=0)) does, so figures compare with the original IAB
  projects' (0.847): a class absent from both truth and predictions counts with F1 0.
  macro_f1_present averages over the classes this set can score, those with a true or a
  predicted example, for sets where a class is absent by construction (a fold without it).
- mAP averages average precision over the classes with at least one positive target only:
  AP is undefined without positives, so per_class_ap holds NaN for those classes, and mAP is
  NaN when no class has a positive.
"""
import csv
import io

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

from utils.config import MULTI_LABEL, SINGLE_LABEL
from utils.figures import save_figure
from utils.utilities import atomic_write_text

DEFAULT_THRESHOLD = 0.5
# Beyond this many classes the per-cell numbers would be unreadable; the colours still show.
MAX_ANNOTATED_CLASSES = 30


def _check_probabilities(probabilities):
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must have shape (N, C), got {probabilities.shape}")
    return probabilities


def class_indices(targets, classes_num):
    """Target class indices from (N,) indices or (N, C) one-hot (or soft) rows."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        if targets.shape[1] != classes_num:
            raise ValueError(f"targets have {targets.shape[1]} columns, probabilities {classes_num}")
        return np.argmax(targets, axis=1)
    if targets.ndim == 1:
        return targets.astype(np.int64)
    raise ValueError(f"targets must have shape (N,) or (N, C), got {targets.shape}")


def single_label_metrics(probabilities, targets, labels=None):
    """accuracy, macro_f1, per_class_precision/recall/f1 (lists) and confusion_matrix (C, C).

    The prediction is the arg-max class. confusion_matrix[i, j] counts clips of true class i
    predicted as class j, over all C classes even if some are absent from this set.
    """
    probabilities = _check_probabilities(probabilities)
    classes_num = probabilities.shape[1]
    if labels is not None and len(labels) != classes_num:
        raise ValueError(f"{len(labels)} labels for {classes_num} output classes")
    true = class_indices(targets, classes_num)
    if len(true) != len(probabilities):
        raise ValueError(f"{len(true)} targets for {len(probabilities)} predictions")
    predicted = np.argmax(probabilities, axis=1)
    all_classes = np.arange(classes_num)

    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, labels=all_classes, average=None, zero_division=0)
    matrix = np.zeros((classes_num, classes_num), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return {
        "accuracy": float(np.mean(true == predicted)) if len(true) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "macro_f1_present": macro_over_scored(f1, np.bincount(true, minlength=classes_num),
                                              np.bincount(predicted, minlength=classes_num)),
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
        "confusion_matrix": matrix,
    }


def macro_over_scored(per_class, true_counts, predicted_counts):
    """The mean over the classes this set can score: those with a true or a predicted example.
    A class absent from both (an empty class folder, a label no clip of this fold has) has no
    F1 to speak of; counting it as 0 would punish the model for the data."""
    scored = (np.asarray(true_counts) > 0) | (np.asarray(predicted_counts) > 0)
    return float(np.mean(np.asarray(per_class)[scored])) if scored.any() else float("nan")


def multi_label_metrics(probabilities, targets, threshold=DEFAULT_THRESHOLD):
    """mAP, per_class_ap, macro_f1, micro_f1, per_class_f1, accuracy (exact match), threshold.

    A label is predicted when its probability >= threshold (a scalar, or one value per class).
    Targets are multi-hot; values >= 0.5 count as positive so smoothed targets also work.
    """
    probabilities = _check_probabilities(probabilities)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != probabilities.shape:
        raise ValueError(f"targets shape {targets.shape} != probabilities shape {probabilities.shape}")
    threshold = np.asarray(threshold, dtype=np.float64)
    positive = targets >= 0.5
    predicted = probabilities >= threshold

    per_class_ap = [float(average_precision_score(positive[:, k], probabilities[:, k]))
                    if positive[:, k].any() else float("nan")
                    for k in range(probabilities.shape[1])]
    has_positives = ~np.isnan(per_class_ap)
    precision, recall, per_class_f1, support = precision_recall_fscore_support(
        positive, predicted, average=None, zero_division=0)
    return {
        "mAP": float(np.mean(np.asarray(per_class_ap)[has_positives])) if has_positives.any()
        else float("nan"),
        "per_class_ap": per_class_ap,
        "macro_f1": float(np.mean(per_class_f1)),
        "macro_f1_present": macro_over_scored(per_class_f1, positive.sum(axis=0),
                                              predicted.sum(axis=0)),
        "micro_f1": float(f1_score(positive, predicted, average="micro", zero_division=0)),
        "per_class_f1": per_class_f1.tolist(),
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "support": support.tolist(),
        "averages": report_averages(positive, predicted),
        "accuracy": float(np.mean(np.all(positive == predicted, axis=1))) if len(positive)
        else float("nan"),
        "threshold": threshold.tolist(),
    }


def report_averages(positive, predicted):
    """{micro, macro, weighted, samples: {precision, recall, f1}}: classification_report's
    average rows of multi-label predictions (zero_division=0)."""
    averages = {}
    for average in ("micro", "macro", "weighted", "samples"):
        if average == "samples" and not len(positive):
            continue
        precision, recall, f1, _ = precision_recall_fscore_support(
            positive, predicted, average=average, zero_division=0)
        averages[average] = {"precision": float(precision), "recall": float(recall),
                             "f1": float(f1)}
    return averages


def classification_report_text(metrics, labels):
    """The per-label precision / recall / F1 / support table and its average rows, as
    sklearn's classification_report prints it (multi-label metrics of multi_label_metrics)."""
    width = max(12, max(len(label) for label in labels) + 2)
    lines = [f"{'':{width}}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}"]
    for label, p, r, f, s in zip(labels, metrics["per_class_precision"],
                                 metrics["per_class_recall"], metrics["per_class_f1"],
                                 metrics["support"]):
        lines.append(f"{label:>{width}}{p:10.2f}{r:10.2f}{f:10.2f}{int(s):10d}")
    total = int(sum(metrics["support"]))
    for average, row in metrics["averages"].items():
        lines.append(f"{average + ' avg':>{width}}{row['precision']:10.2f}{row['recall']:10.2f}"
                     f"{row['f1']:10.2f}{total:10d}")
    return "\n".join(lines)


def compute_metrics(task, probabilities, targets, threshold=DEFAULT_THRESHOLD, labels=None):
    """The metrics dict of `task` (utils.config.SINGLE_LABEL or MULTI_LABEL)."""
    if task == SINGLE_LABEL:
        return single_label_metrics(probabilities, targets, labels)
    if task == MULTI_LABEL:
        return multi_label_metrics(probabilities, targets, threshold)
    raise ValueError(f"unknown task {task!r}; expected {SINGLE_LABEL!r} or {MULTI_LABEL!r}")


def normalize_rows(matrix):
    """Each true-class row divided by its total (per-class recall on the diagonal); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_matrix_csv(matrix, labels, normalize=False):
    """CSV text: header row of predicted labels, then one row per true label."""
    values = normalize_rows(matrix) if normalize else np.asarray(matrix)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted"] + list(labels))
    for label, row in zip(labels, values):
        writer.writerow([label] + [f"{value:.4f}" if normalize else int(value) for value in row])
    return buffer.getvalue()


def confusion_matrix_figure(matrix, labels, normalize=False, title="Confusion matrix"):
    """A matplotlib Figure: rows true, columns predicted, each cell annotated."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    counts = np.asarray(matrix)
    values = normalize_rows(counts) if normalize else counts
    classes_num = len(labels)
    side = max(4.0, 0.55 * classes_num + 2.5)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, values.max()))
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(classes_num), labels, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(classes_num), labels)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title(title + (" (row-normalized)" if normalize else ""))
    if classes_num <= MAX_ANNOTATED_CLASSES:
        bright = values.max() / 2 if values.max() > 0 else 1
        for i in range(classes_num):
            for j in range(classes_num):
                text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
                axes.text(j, i, text, ha="center", va="center", fontsize=8,
                          color="white" if values[i, j] > bright else "black")
    return figure


def write_confusion_matrix(matrix, labels, csv_path, png_path=None, normalize=False,
                           title="Confusion matrix"):
    """Write the matrix as CSV and (if png_path) as a PNG figure, both atomically."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not match {len(labels)} labels")
    atomic_write_text(confusion_matrix_csv(matrix, labels, normalize), csv_path)
    if png_path:
        save_figure(confusion_matrix_figure(matrix, labels, normalize, title), png_path)


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def tune_thresholds(probabilities, targets, default=DEFAULT_THRESHOLD, grid=THRESHOLD_GRID):
    """Per-label decision thresholds that maximise each label's F1 on these clips (meant for
    the validation set; score the test set with them, never tune on it).

    Each label takes the grid value (0.05..0.95 by 0.01) with the highest F1; among equal F1s
    the one nearest `default`. A label with no positive clip keeps `default`: nothing to tune on.
    """
    probabilities = _check_probabilities(probabilities)
    positive = np.asarray(targets, dtype=np.float64) >= 0.5
    thresholds = np.full(probabilities.shape[1], float(default))
    for label in range(probabilities.shape[1]):
        if not positive[:, label].any():
            continue
        predicted = probabilities[:, label][None, :] >= grid[:, None]  # (grid, clips)
        true_positive = (predicted & positive[:, label]).sum(axis=1)
        f1 = 2 * true_positive / (predicted.sum(axis=1) + positive[:, label].sum())
        best = np.flatnonzero(f1 == f1.max())
        thresholds[label] = float(grid[best[np.argmin(np.abs(grid[best] - default))]])
    return thresholds


def tuned_scores(probabilities, targets, thresholds):
    """Macro/micro-F1 and per-label F1 of multi-label outputs at per-label thresholds."""
    metrics = multi_label_metrics(probabilities, targets, thresholds)
    return {key: metrics[key] for key in ("macro_f1", "micro_f1", "per_class_f1", "threshold")}
