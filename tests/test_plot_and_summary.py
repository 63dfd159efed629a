"""Statistics discovery, plotting and cross-validation summaries on hand-built statistics pickles."""
import csv
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from utils.cv_summary import summarize_folds, write_summary
from utils.plot_statistics import mean_curve, plot_statistics, smoothed
from utils.config import AudioConfig, RunConfig
from utils.runs import run_dirs, write_run_file
from utils.statistics_files import find_statistics, load_statistics
from utils.utilities import UsageError, atomic_pickle_dump

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ITERATIONS = [100, 200, 300]
# Validation accuracy per fold at ITERATIONS; fold 2 reaches its best twice (first one counts).
FOLD_ACCURACIES = {1: [0.5, 0.7, 0.6], 2: [0.4, 0.8, 0.8], 3: [0.6, 0.65, 0.9]}
CONFIG = dict(model_type="Transfer_Cnn14", pretrain=True, loss_type="clip_nll",
              augmentation="mixup", batch_size=32, freeze_base=False)
CONFIG_SUBPATH = os.path.join("Transfer_Cnn14", "pretrain=True", "loss_type=clip_nll",
                              "augmentation=mixup", "batch_size=32", "freeze_base=False")


def write_run(workspace, fold, accuracies, task="single_label", **config_changes):
    """A statistics pickle and run.json where training would put them; macro-F1 is accuracy - 0.1."""
    config = {**CONFIG, **config_changes}
    pretrain = config.pop("pretrain")
    run = RunConfig(**config, task=task, labels=["a", "b"], audio=AudioConfig(),
                    features="waveform.h5", holdout_fold=fold,
                    pretrained_checkpoint_path="Cnn14.pth" if pretrain else None)
    validate = []
    for iteration, accuracy in zip(ITERATIONS, accuracies):
        entry = {"iteration": iteration, "loss": 1 - accuracy, "accuracy": accuracy,
                 "macro_f1": accuracy - 0.1}
        if task == "multi_label":
            entry.update(mAP=accuracy + 0.05, micro_f1=accuracy)
        validate.append(entry)
    stats = {
        "validate": validate,
        "train": [{"iteration": i, "loss": 2.0 / (1 + i / 100)} for i in range(0, 301, 50)],
        "meta": {"task": task, "labels": ["a", "b"], "holdout_fold": fold,
                 "model_type": config["model_type"],
                 "primary_metric": "mAP" if task == "multi_label" else "accuracy"},
    }
    folder = run_dirs(str(workspace), run)["statistics"]
    path = os.path.join(folder, "statistics.pickle")
    atomic_pickle_dump(stats, path)
    write_run_file(run, folder)
    return path


def write_folds(workspace, **config_changes):
    return [write_run(workspace, fold, accuracies, **config_changes)
            for fold, accuracies in FOLD_ACCURACIES.items()]


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO_DIR, "utils", script), *args],
                          capture_output=True, text=True, cwd=REPO_DIR, timeout=120)


def assert_png_and_pdf(prefix):
    with open(f"{prefix}.png", "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert os.path.getsize(f"{prefix}.png") > 1000
    with open(f"{prefix}.pdf", "rb") as f:
        assert f.read(5) == b"%PDF-"


# ---- statistics_files -------------------------------------------------------------------------

def test_find_statistics_parses_paths_and_filters(tmp_path):
    write_folds(tmp_path)
    write_run(tmp_path, 1, [0.3, 0.4, 0.5], pretrain=False)

    everything = find_statistics(str(tmp_path))
    assert len(everything) == 4
    run = everything[0]
    assert {key: run.info[key] for key in ("holdout_fold", "model_type", "pretrain", "loss_type",
                                            "augmentation", "batch_size", "freeze_base")} == {
        "holdout_fold": "1", "model_type": "Transfer_Cnn14", "pretrain": "False",
        "loss_type": "clip_nll", "augmentation": "mixup", "batch_size": "32",
        "freeze_base": "False"}
    assert run.info["learning_rate"] == "0.0001"  # every described run.json field can filter
    assert run.path.endswith("statistics.pickle") and os.path.isfile(run.path)

    pretrained = find_statistics(str(tmp_path), filters={"pretrain": "True"})
    assert [run.fold for run in pretrained] == ["1", "2", "3"]
    assert {run.configuration for run in pretrained} == {CONFIG_SUBPATH}
    assert len(find_statistics(str(tmp_path), holdout_fold=1, model_type="Transfer_Cnn14")) == 2
    assert find_statistics(str(tmp_path), model_type="Cnn6") == []
    with pytest.raises(UsageError, match="pretrian"):
        find_statistics(str(tmp_path), filters={"pretrian": "True"})


def test_one_damaged_run_does_not_hide_the_others(tmp_path, caplog):
    paths = write_folds(tmp_path)
    with open(paths[1], "wb") as f:
        f.write(b"\x80\x04trunc")  # a statistics pickle cut short
    with open(os.path.join(os.path.dirname(paths[2]), "run.json"), "w") as f:
        f.write("{not json")
    runs = find_statistics(str(tmp_path))
    assert [run.fold for run in runs] == ["1"]
    warned = [record.getMessage() for record in caplog.records]
    assert any(paths[1] in message and "skipped" in message for message in warned)
    assert any("run.json" in message and "skipped" in message for message in warned)


def test_load_statistics_tolerates_old_pickles_and_names_bad_files(tmp_path):
    old = tmp_path / "old.pickle"
    old.write_bytes(pickle.dumps({"validate": [{"iteration": 0, "accuracy": 0.1}]}))
    stats = load_statistics(str(old))
    assert stats["meta"]["task"] == "single_label" and stats["train"] == []
    assert stats["meta"]["primary_metric"] == "accuracy"

    broken = tmp_path / "broken.pickle"
    broken.write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="broken.pickle"):
        load_statistics(str(broken))
    with pytest.raises(UsageError, match="missing.pickle"):
        load_statistics(str(tmp_path / "missing.pickle"))


# ---- cv_summary -------------------------------------------------------------------------------

def test_summary_numbers_for_three_folds(tmp_path):
    write_folds(tmp_path)
    rows = summarize_folds(str(tmp_path))
    folds, mean_row, std_row = rows[:3], rows[3], rows[4]

    assert [row["fold"] for row in rows] == ["1", "2", "3", "mean", "std"]
    assert [row["best_accuracy"] for row in folds] == [0.7, 0.8, 0.9]
    assert [row["best_accuracy_iteration"] for row in folds] == [200, 200, 300]
    assert [row["final_accuracy"] for row in folds] == [0.6, 0.8, 0.9]
    assert [row["final_iteration"] for row in folds] == [300, 300, 300]
    assert [row["best_macro_f1"] for row in folds] == pytest.approx([0.6, 0.7, 0.8])

    assert mean_row["best_accuracy"] == pytest.approx(0.8)
    assert std_row["best_accuracy"] == pytest.approx(0.1)  # sample std of 0.7, 0.8, 0.9
    assert mean_row["final_accuracy"] == pytest.approx(np.mean([0.6, 0.8, 0.9]))
    assert std_row["final_accuracy"] == pytest.approx(np.std([0.6, 0.8, 0.9], ddof=1))


def test_summary_of_multi_label_folds_uses_map_and_macro_f1(tmp_path):
    paths = write_folds(tmp_path, task="multi_label")
    rows = summarize_folds(paths)  # a list of paths works as well as a workspace
    assert [row["best_mAP"] for row in rows[:3]] == pytest.approx([0.75, 0.85, 0.95])
    assert rows[3]["best_mAP"] == pytest.approx(0.85)
    assert rows[3]["final_macro_f1"] == pytest.approx(np.mean([0.5, 0.7, 0.8]))


def test_summary_with_one_fold_has_nan_std(tmp_path):
    write_run(tmp_path, 1, FOLD_ACCURACIES[1])
    write_run(tmp_path, "filtered", [0.1, 0.2, 0.3])  # not a cross-validation fold
    rows = summarize_folds(str(tmp_path))
    assert [row["fold"] for row in rows] == ["1", "mean", "std"]
    assert rows[1]["best_accuracy"] == pytest.approx(0.7)
    assert math.isnan(rows[2]["best_accuracy"])


def test_summary_refuses_to_mix_configurations(tmp_path):
    write_folds(tmp_path)
    write_folds(tmp_path, loss_type="clip_bce")
    with pytest.raises(UsageError, match="2 configurations"):
        summarize_folds(str(tmp_path))
    assert len(summarize_folds(str(tmp_path), filters={"loss_type": "clip_bce"})) == 5


def test_write_summary_files(tmp_path):
    write_folds(tmp_path)
    paths = write_summary(summarize_folds(str(tmp_path)), str(tmp_path / "out"), title="test")
    assert [os.path.basename(p) for p in paths] == ["cv_summary.csv", "cv_summary.md", "cv_summary.png"]
    markdown = open(paths[1]).read()
    assert "| mean ± std | 0.8000 ± 0.1000 |" in markdown
    with open(paths[2], "rb") as f:
        assert f.read(8) == PNG_MAGIC


@pytest.mark.slow
def test_cv_summary_cli_rebuilds_summary_per_configuration(tmp_path):
    write_folds(tmp_path)
    write_folds(tmp_path, batch_size=16)
    result = run_script("cv_summary.py", f"--workspace={tmp_path}")
    assert result.returncode == 0, result.stderr

    out_dir = tmp_path / "results" / CONFIG_SUBPATH
    with open(out_dir / "cv_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["fold"] for row in rows] == ["1", "2", "3", "mean", "std"]
    assert float(rows[3]["best_accuracy"]) == pytest.approx(0.8)
    assert float(rows[4]["best_accuracy"]) == pytest.approx(0.1)
    assert rows[0]["statistics_path"].endswith("statistics.pickle")
    assert "mean ± std" in (out_dir / "cv_summary.md").read_text()
    assert (out_dir / "cv_summary.png").read_bytes()[:8] == PNG_MAGIC
    other = tmp_path / "results" / CONFIG_SUBPATH.replace("batch_size=32", "batch_size=16")
    assert (other / "cv_summary.csv").is_file()

    # An explicit --out_dir must name one configuration.
    result = run_script("cv_summary.py", f"--workspace={tmp_path}", f"--out_dir={tmp_path}/x")
    assert result.returncode == 2 and "--out_dir" in result.stderr
    result = run_script("cv_summary.py", f"--workspace={tmp_path}", f"--out_dir={tmp_path}/x",
                        "--filter", "batch_size=16")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x" / "cv_summary.md").is_file()


# ---- plot_statistics --------------------------------------------------------------------------

def test_mean_curve_uses_iterations_all_curves_share():
    iterations, mean, low, high = mean_curve([([0, 1, 2], [1.0, 2.0, 3.0]), ([0, 1], [3.0, 4.0])])
    assert iterations == [0, 1]
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(low, [1.0, 2.0])
    np.testing.assert_allclose(high, [3.0, 4.0])


def test_plot_one_run(tmp_path):
    write_folds(tmp_path)
    result = run_script("plot_statistics.py", f"--workspace={tmp_path}", "--holdout_fold=2")
    assert result.returncode == 0, result.stderr
    assert_png_and_pdf(tmp_path / "figures" / "statistics")


def test_plot_several_folds_and_multi_label(tmp_path):
    write_folds(tmp_path, task="multi_label")
    prefix = tmp_path / "plots" / "folds"
    result = run_script("plot_statistics.py", f"--workspace={tmp_path}", f"--output={prefix}")
    assert result.returncode == 0, result.stderr
    assert_png_and_pdf(prefix)


def test_plot_two_configurations(tmp_path):
    write_folds(tmp_path)
    write_folds(tmp_path, pretrain=False)
    prefix = tmp_path / "compare"
    result = run_script("plot_statistics.py", f"--workspace={tmp_path}", f"--output={prefix}",
                        "--compare", "--filter", "loss_type=clip_nll")
    assert result.returncode == 0, result.stderr
    assert_png_and_pdf(prefix)


def test_plot_statistics_from_python_with_old_pickle(tmp_path):
    old = tmp_path / "old" / "statistics.pickle"
    old.parent.mkdir()
    old.write_bytes(pickle.dumps({"validate": [{"iteration": i, "accuracy": i / 1000}
                                               for i in range(0, 500, 100)]}))
    written = plot_statistics([str(old)], str(tmp_path / "old_plot"))
    assert written == [str(tmp_path / "old_plot.png"), str(tmp_path / "old_plot.pdf")]
    assert_png_and_pdf(tmp_path / "old_plot")


@pytest.mark.parametrize("script", ["plot_statistics.py", "cv_summary.py"])
def test_nothing_found_is_one_line_exit_2(tmp_path, script):
    write_folds(tmp_path)
    result = run_script(script, f"--workspace={tmp_path}", "--model_type=Cnn6")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model_type=Cnn6" in lines[0] and "statistics" in lines[0]
    assert "Traceback" not in result.stderr


def test_metric_curve_skips_missing_and_nan_values():
    from utils.statistics_files import metric_curve
    stats = {"validate": [{"iteration": 200, "mAP": 0.5}, {"iteration": 100, "mAP": float("nan")},
                          {"iteration": 300}, {"iteration": 0, "mAP": 0.1}]}
    assert metric_curve(stats, "mAP") == ([0, 200], [0.1, 0.5])


def test_plot_missing_statistics_path_is_usage_error(tmp_path):
    result = run_script("plot_statistics.py", "--statistics_paths", str(tmp_path / "nope.pickle"),
                        f"--output={tmp_path / 'x'}")
    assert result.returncode == 2 and "nope.pickle" in result.stderr
    assert "Traceback" not in result.stderr


def test_plots_and_summaries_remove_the_temporaries_of_killed_writers(tmp_path):
    paths = write_folds(tmp_path)
    stale = [tmp_path / "figures" / ".statistics.png.x1y2.tmp", tmp_path / "summary" / ".cv_summary.csv.a.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a figure")
    plot_statistics(find_statistics(str(tmp_path)), str(tmp_path / "figures" / "statistics"))
    write_summary(summarize_folds(paths), str(tmp_path / "summary"))
    assert not any(path.exists() for path in stale)
    assert (tmp_path / "figures" / "statistics.png").exists()


def test_the_untrained_model_is_never_the_best_of_a_fold(tmp_path):
    path = write_run(tmp_path, 1, [0.4, 0.3, 0.35])
    stats = load_statistics(path)
    stats["validate"].insert(0, {"iteration": 0, "loss": 1.0, "accuracy": 0.9, "macro_f1": 0.8})
    atomic_pickle_dump(stats, path)
    [row] = [row for row in summarize_folds([path]) if row["fold"] == "1"]
    assert (row["best_accuracy"], row["best_accuracy_iteration"]) == (0.4, 100)


def test_the_loss_curve_is_a_trailing_mean_that_keeps_the_trend():
    iterations = list(range(1, 101))
    trend = np.linspace(2.0, 0.5, 100)
    noisy = trend + np.where(np.arange(100) % 2, 0.8, -0.8)  # batch-to-batch noise
    _, mean = smoothed((iterations, list(noisy)), points=4)
    assert mean[0] == noisy[0] and mean[5] == pytest.approx(np.mean(noisy[2:6]))
    assert np.abs(np.array(mean[3:]) - trend[3:]).max() < 0.05  # the noise averages out
    assert len(smoothed((iterations, list(noisy)))[1]) == 100
