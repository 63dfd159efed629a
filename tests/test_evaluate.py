"""Evaluating a checkpoint: the chosen clips, metrics equal to scikit-learn's, the report files."""
import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from pytorch.evaluate import default_output_dir, evaluate_checkpoint, resolve_selection
from helpers import hdf5_waveforms, make_class_folders, run_script, save_checkpoint
from pytorch.main import main
from utils.config import AudioConfig, RunConfig
from utils.features import one_hot, pack_to_hdf5, scan_class_folders
from utils.utilities import UsageError


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_single_label_metrics_match_scikit_learn_on_the_same_predictions(single_label, tmp_path):
    result = evaluate_checkpoint(single_label["checkpoint"], split="all", output_dir=str(tmp_path))
    labels, dataset = single_label["labels"], single_label["dataset"]

    # The predictions are the model's own softmax probabilities, clip by clip.
    assert result["audio_names"] == dataset.audio_names
    with torch.no_grad():
        direct = single_label["model"](torch.from_numpy(single_label["waveforms"]))
    np.testing.assert_allclose(result["probabilities"], direct["clipwise_output"].exp().numpy(),
                               rtol=1e-5, atol=1e-6)

    true = np.argmax(result["targets"], axis=1)
    predicted = np.argmax(result["probabilities"], axis=1)
    assert len(set(predicted)) >= 2 and 0 < accuracy_score(true, predicted) < 1  # not degenerate
    expected_matrix = confusion_matrix(true, predicted, labels=range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=range(len(labels)), zero_division=0)
    np.testing.assert_array_equal(result["confusion_matrix"], expected_matrix)
    assert result["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert result["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    np.testing.assert_allclose(result["per_class_precision"], precision)
    np.testing.assert_allclose(result["per_class_recall"], recall)
    np.testing.assert_allclose(result["per_class_f1"], f1)

    # The files say the same.
    matrix_rows = read_csv(tmp_path / "confusion_matrix.csv")
    assert matrix_rows[0][1:] == labels and [row[0] for row in matrix_rows[1:]] == labels
    np.testing.assert_array_equal(np.array([row[1:] for row in matrix_rows[1:]], dtype=int),
                                  expected_matrix)
    per_class = read_csv(tmp_path / "per_class.csv")
    assert per_class[0] == ["label", "precision", "recall", "f1", "support"]
    for row, p, r, f, s, label in zip(per_class[1:], precision, recall, f1, support, labels):
        assert row[0] == label and int(row[4]) == s
        np.testing.assert_allclose([float(value) for value in row[1:4]], [p, r, f])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(result["accuracy"])
    assert metrics["confusion_matrix"] == expected_matrix.tolist() and metrics["clips_num"] == 30
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = read_csv(tmp_path / "predictions.csv")
    assert predictions[0] == ["audio_name", "true", "predicted"] + labels
    assert [row[2] for row in predictions[1:]] == [labels[index] for index in predicted]


def test_default_selection_is_the_checkpoints_holdout_fold_and_output_beside_results(single_label):
    result = evaluate_checkpoint(single_label["checkpoint"])
    folds = single_label["dataset"].info["folds"]
    expected = [name for name, fold in zip(single_label["dataset"].audio_names, folds) if fold == 1]
    assert result["selection"] == "holdout_fold=1" and result["audio_names"] == expected
    expected_dir = single_label["root"] / "ws" / "results" / "main" / "run" / "evaluation_7_holdout_fold=1"
    assert result["output_dir"] == str(expected_dir)
    assert (expected_dir / "metrics.json").is_file()


def test_selection_rules():
    def run(**fields):
        return RunConfig(model_type="Transfer_Cnn6", task="single_label", labels=["a"],
                         audio=AudioConfig(), features="", loss_type="clip_nll",
                         **{"holdout_fold": None, **fields})

    assert resolve_selection(run(holdout_fold=3)) == ("folds", 3, None)
    assert resolve_selection(run(holdout_fold=3), holdout_fold=5) == ("folds", 5, None)
    assert resolve_selection(run(split="filtered")) == ("filtered", None, "test")
    assert resolve_selection(run(), subset="valid") == ("filtered", None, "valid")
    for trained in (run(), run(split="filtered", holdout_fold="filtered")):
        with pytest.raises(UsageError, match="pass --holdout_fold"):
            resolve_selection(trained, split="folds")
    with pytest.raises(UsageError, match="--subset=valid applies to --split=filtered"):
        resolve_selection(run(), split="all", subset="valid")
    assert default_output_dir("/x/ws/checkpoints/main/run/9_iterations.pth", 9, "all") == \
        "/x/ws/results/main/run/evaluation_9_all"
    assert default_output_dir("/x/model.pth", 9, "all") == "/x/evaluation_9_all"


def test_labels_differing_from_the_checkpoint_are_a_usage_error(single_label, tmp_path):
    checkpoint = str(tmp_path / "other.pth")
    save_checkpoint(checkpoint, ["high", "mid", "low"], "single_label",
                    single_label["waveforms"][:4])
    with pytest.raises(UsageError, match="labels .*differ from the checkpoint's"):
        evaluate_checkpoint(checkpoint, single_label["features"], split="all", write=False)


def test_multi_label_reports_map_and_f1_like_scikit_learn(tmp_path):
    labels, found = scan_class_folders(
        make_class_folders(str(tmp_path / "audio"), classes=("a", "b", "c"), clips_per_class=6))
    # Every clip has its folder's label; every third clip also the next class.
    items = [(name, path, one_hot(index, 3) + (one_hot((index + 1) % 3, 3) if clip % 3 == 0 else 0))
             for clip, (name, path, index) in enumerate(found)]
    features = str(tmp_path / "multi.h5")
    pack_to_hdf5(items, labels, "multi_label", features, clip_duration=1.0)
    checkpoint = str(tmp_path / "multi.pth")
    save_checkpoint(checkpoint, labels, "multi_label", hdf5_waveforms(features)[0],
                    args={"features": features, "threshold": 0.4})

    result = evaluate_checkpoint(checkpoint, split="all", output_dir=str(tmp_path / "out"))
    targets, probabilities = result["targets"], result["probabilities"]
    assert result["threshold"] == 0.4 and result["clips_num"] == 18
    ap = [average_precision_score(targets[:, k], probabilities[:, k]) for k in range(3)]
    assert result["mAP"] == pytest.approx(np.mean(ap))
    np.testing.assert_allclose(result["per_class_ap"], ap)
    predicted = probabilities >= 0.4
    assert result["micro_f1"] == pytest.approx(f1_score(targets, predicted, average="micro"))
    assert result["macro_f1"] == pytest.approx(
        f1_score(targets, predicted, average="macro", zero_division=0))
    per_class = read_csv(tmp_path / "out" / "per_class.csv")
    assert per_class[0] == ["label", "ap", "precision", "recall", "f1", "support"]
    assert [int(row[5]) for row in per_class[1:]] == targets.sum(axis=0).astype(int).tolist()
    from sklearn.metrics import precision_score, recall_score
    np.testing.assert_allclose([float(row[2]) for row in per_class[1:]],
                               precision_score(targets, predicted, average=None, zero_division=0))
    np.testing.assert_allclose([float(row[3]) for row in per_class[1:]],
                               recall_score(targets, predicted, average=None, zero_division=0))
    assert not (tmp_path / "out" / "confusion_matrix.csv").exists()
    confusion = read_csv(tmp_path / "out" / "per_label_confusion.csv")
    assert confusion[0] == ["label", "true_negative", "false_positive", "false_negative",
                            "true_positive"]
    positives = targets >= 0.5
    assert [int(row[4]) for row in confusion[1:]] == (positives & predicted).sum(axis=0).tolist()
    assert [int(row[2]) for row in confusion[1:]] == (~positives & predicted).sum(axis=0).tolist()


@pytest.mark.slow
def test_cli_missing_checkpoint_exits_2_with_one_line(tmp_path):
    missing = run_script("pytorch/main.py", "evaluate", f"--checkpoint_path={tmp_path / 'no.pth'}")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: --checkpoint_path={tmp_path / 'no.pth'}: file not found; check the path"]


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_the_reports(single_label, tmp_path, capsys):
    main(["evaluate", f"--checkpoint_path={single_label['checkpoint']}", "--split=all",
          f"--output_dir={tmp_path}"])
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "macro F1" in printed
    for label in single_label["labels"]:
        assert any(line.startswith(label) for line in printed.splitlines())
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "confusion_matrix.png").is_file()
    with pytest.raises(UsageError, match="--holdout_fold=2 applies to --split=folds"):
        main(["evaluate", f"--checkpoint_path={single_label['checkpoint']}", "--split=all",
              "--holdout_fold=2"])
