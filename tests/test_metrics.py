"""utils/metrics.py against scikit-learn on small fixed arrays."""
import csv
import math

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, classification_report, average_precision_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from utils.config import MULTI_LABEL, SINGLE_LABEL
from utils.metrics import (compute_metrics, multi_label_metrics, single_label_metrics,
                           write_confusion_matrix)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 4 classes; class 3 is never predicted (and has one true sample), class 2 is predicted wrongly once.
SINGLE_PROBABILITIES = np.array([
    [0.7, 0.1, 0.1, 0.1],
    [0.2, 0.6, 0.1, 0.1],
    [0.1, 0.2, 0.6, 0.1],
    [0.5, 0.3, 0.1, 0.1],
    [0.1, 0.1, 0.5, 0.3],
    [0.1, 0.7, 0.1, 0.1],
    [0.3, 0.3, 0.35, 0.05],
])
SINGLE_TRUE = np.array([0, 1, 2, 1, 3, 1, 0])
SINGLE_PREDICTED = SINGLE_PROBABILITIES.argmax(axis=1)

MULTI_PROBABILITIES = np.array([
    [0.9, 0.2, 0.6, 0.1],
    [0.4, 0.8, 0.3, 0.2],
    [0.6, 0.7, 0.2, 0.3],
    [0.1, 0.3, 0.9, 0.4],
    [0.8, 0.1, 0.4, 0.1],
])
# class 3 has no positive anywhere; class 2 has one positive.
MULTI_TARGETS = np.array([
    [1, 0, 1, 0],
    [0, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
    [1, 0, 0, 0],
])


def test_single_label_metrics_match_sklearn_with_absent_predicted_class():
    one_hot = np.eye(4)[SINGLE_TRUE]
    metrics = single_label_metrics(SINGLE_PROBABILITIES, one_hot, labels=["a", "b", "c", "d"])
    assert 3 not in SINGLE_PREDICTED  # the case under test

    assert metrics["accuracy"] == pytest.approx(accuracy_score(SINGLE_TRUE, SINGLE_PREDICTED))
    precision, recall, f1, _ = precision_recall_fscore_support(
        SINGLE_TRUE, SINGLE_PREDICTED, labels=range(4), average=None, zero_division=0)
    np.testing.assert_allclose(metrics["per_class_precision"], precision)
    np.testing.assert_allclose(metrics["per_class_recall"], recall)
    np.testing.assert_allclose(metrics["per_class_f1"], f1)
    assert metrics["per_class_precision"][3] == 0 and metrics["per_class_f1"][3] == 0
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(SINGLE_TRUE, SINGLE_PREDICTED, labels=range(4), average="macro", zero_division=0))
    np.testing.assert_array_equal(
        metrics["confusion_matrix"], confusion_matrix(SINGLE_TRUE, SINGLE_PREDICTED, labels=range(4)))


def test_single_label_accepts_indices_and_keeps_all_classes_in_the_matrix():
    # Only classes 0 and 1 occur; the matrix must still be 3 x 3.
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1]])
    metrics = single_label_metrics(probabilities, np.array([0, 1, 1]))
    np.testing.assert_array_equal(metrics["confusion_matrix"], [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert len(metrics["per_class_f1"]) == 3


def test_multi_label_metrics_match_sklearn():
    metrics = multi_label_metrics(MULTI_PROBABILITIES, MULTI_TARGETS, threshold=0.5)
    predicted = MULTI_PROBABILITIES >= 0.5

    expected_ap = [average_precision_score(MULTI_TARGETS[:, k], MULTI_PROBABILITIES[:, k])
                   for k in range(3)]
    np.testing.assert_allclose(metrics["per_class_ap"][:3], expected_ap)
    assert math.isnan(metrics["per_class_ap"][3])  # no positives: AP undefined
    assert metrics["mAP"] == pytest.approx(np.mean(expected_ap))
    # Class 3 has no positive and no prediction: macro_f1 counts it with F1 0, as sklearn's
    # classification_report (the original IAB projects' figure) does; macro_f1_present leaves it out.
    report = classification_report(MULTI_TARGETS, predicted, output_dict=True, zero_division=0)
    assert metrics["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert metrics["macro_f1_present"] == pytest.approx(
        f1_score(MULTI_TARGETS, predicted, labels=[0, 1, 2], average="macro", zero_division=0))
    assert metrics["macro_f1_present"] > metrics["macro_f1"]
    for average in ("micro", "macro", "weighted", "samples"):
        assert metrics["averages"][average]["precision"] == pytest.approx(
            report[f"{average} avg"]["precision"])
        assert metrics["averages"][average]["recall"] == pytest.approx(
            report[f"{average} avg"]["recall"])
    np.testing.assert_allclose(metrics["per_class_precision"],
                               [report[str(k)]["precision"] for k in range(4)])
    assert metrics["support"] == [report[str(k)]["support"] for k in range(4)]
    assert metrics["micro_f1"] == pytest.approx(
        f1_score(MULTI_TARGETS, predicted, average="micro", zero_division=0))
    np.testing.assert_allclose(
        metrics["per_class_f1"], f1_score(MULTI_TARGETS, predicted, average=None, zero_division=0))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(MULTI_TARGETS, predicted))
    assert metrics["threshold"] == 0.5


def test_multi_label_threshold_changes_predictions():
    strict = multi_label_metrics(MULTI_PROBABILITIES, MULTI_TARGETS, threshold=0.85)
    predicted = MULTI_PROBABILITIES >= 0.85
    assert strict["micro_f1"] == pytest.approx(f1_score(MULTI_TARGETS, predicted, average="micro"))
    assert strict["mAP"] == multi_label_metrics(MULTI_PROBABILITIES, MULTI_TARGETS)["mAP"]


def test_compute_metrics_dispatches_by_task():
    assert "confusion_matrix" in compute_metrics(SINGLE_LABEL, SINGLE_PROBABILITIES, SINGLE_TRUE)
    assert "mAP" in compute_metrics(MULTI_LABEL, MULTI_PROBABILITIES, MULTI_TARGETS, 0.5)
    with pytest.raises(ValueError):
        compute_metrics("regression", SINGLE_PROBABILITIES, SINGLE_TRUE)


@pytest.mark.parametrize("normalize", [False, True])
def test_write_confusion_matrix_csv_and_png(tmp_path, normalize):
    labels = ["blues", "classical", "country", "disco"]
    matrix = single_label_metrics(SINGLE_PROBABILITIES, SINGLE_TRUE)["confusion_matrix"]
    csv_path, png_path = tmp_path / "out" / "cm.csv", tmp_path / "out" / "cm.png"
    write_confusion_matrix(matrix, labels, str(csv_path), str(png_path), normalize=normalize)

    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == labels
    assert [row[0] for row in rows[1:]] == labels
    values = np.array([[float(cell) for cell in row[1:]] for row in rows[1:]])
    if normalize:
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-3)  # every true class occurs
    else:
        np.testing.assert_array_equal(values, matrix)
    assert png_path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cm.csv", "cm.png"]  # no temp files


def test_macro_f1_present_leaves_out_only_classes_absent_from_truth_and_predictions():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    # Class 2 never occurs and is never predicted: macro_f1 counts it as 0 (sklearn), the
    # present variant averages over classes 0 and 1.
    both = single_label_metrics(probabilities, np.array([0, 1, 1]))
    assert both["macro_f1_present"] == pytest.approx(np.mean(both["per_class_f1"][:2]))
    assert both["macro_f1"] == pytest.approx(np.mean(both["per_class_f1"]))
    # Predicted but never true, class 0 in a fold of class-1 clips still counts (F1 0).
    wrong = single_label_metrics(probabilities, np.array([1, 1, 1]))
    assert wrong["macro_f1_present"] == pytest.approx(np.mean(wrong["per_class_f1"][:2]))
    assert wrong["per_class_f1"][0] == 0


def test_the_seeds_constructed_case_gives_the_seeds_figure():
    """Two labels never true and never predicted, three predicted perfectly: the seeds'
    classification_report macro average is 0.600 (the earlier definition gave 1.000)."""
    targets = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=float)
    probabilities = np.where(targets > 0, 0.9, 0.1)
    metrics = multi_label_metrics(probabilities, targets)
    assert metrics["macro_f1"] == pytest.approx(0.6)
    assert metrics["macro_f1_present"] == pytest.approx(1.0)
