"""Evaluate a trained checkpoint on clips of a packed HDF5.

    python3 pytorch/main.py evaluate --checkpoint_path=WS/checkpoints/main/<run>/2000_iterations.pth \\
        [--features=H5] [--holdout_fold=F | --split=filtered --subset=test | --split=all] [--cuda]

Single-label: accuracy, macro F1, per-class precision/recall/F1 and the confusion matrix.
Multi-label: mAP, macro/micro F1 and per-class AP/precision/recall/F1 at --threshold.
Writes metrics.json, per_class.csv, predictions.csv and, single-label, confusion_matrix.{csv,png}
and confusion_matrix_normalized.{csv,png}, multi-label, per_label_confusion.csv into the output
folder, and prints a table.
"""
import logging
import math
import os

import numpy as np
from sklearn.metrics import multilabel_confusion_matrix

from pytorch.checkpoints import stored_thresholds
from pytorch.restore import load_trained_model
from pytorch.pytorch_utils import forward_loader, make_loader, resolve_precision, select_device
from utils.config import MULTI_LABEL, SINGLE_LABEL
from utils.data_generator import (EvaluateSampler, WaveformDataset, clips_digest, features_flag,
                                  read_hdf5_info,
                                  feature_files, features_value, split_indices)
from utils.arguments import add_flags
from utils.metrics import (classification_report_text, compute_metrics, tuned_scores,
                           write_confusion_matrix)
from utils.splits import FILTERED_SUBSETS, load_filtered_split, packed_subsets
from utils.utilities import (UsageError, check_writable_folder, progress,
                             remove_stale_temporaries, write_csv, write_json)

EVALUATION_SPLITS = ("folds", "filtered", "subsets", "all")
SUBSET_SPLITS = ("filtered", "subsets")


def resolve_selection(run, split=None, holdout_fold=None, subset=None):
    """Which clips to evaluate: (split, holdout_fold, subset); unset choices follow the checkpoint.

    --holdout_fold implies --split=folds and --subset a split with subsets (the checkpoint's, or
    filtered); otherwise the split the checkpoint was trained with (folds when it does not say)
    and its test set: the test fold, or the test subset, else the holdout fold.
    """
    if split is None:
        split = ("folds" if holdout_fold is not None
                 else (run.split if run.split in SUBSET_SPLITS else "filtered")
                 if subset is not None else run.split)
    if split not in EVALUATION_SPLITS:
        raise UsageError(f"--split={split}: choose one of {', '.join(EVALUATION_SPLITS)}")
    if holdout_fold is not None and split != "folds":
        raise UsageError(f"--holdout_fold={holdout_fold} applies to --split=folds, not --split={split}")
    if subset is not None and split not in SUBSET_SPLITS:
        raise UsageError(f"--subset={subset} applies to --split=filtered or subsets, not "
                         f"--split={split}")
    if split == "folds":
        if holdout_fold is None:
            holdout_fold = run.test_fold if run.test_fold is not None else run.holdout_fold
        if not str(holdout_fold).isdigit():  # None, or 'filtered' from a --split=filtered run
            raise UsageError("the checkpoint does not record a holdout fold; pass --holdout_fold")
        return split, int(holdout_fold), None
    if split in SUBSET_SPLITS:
        subset = subset or "test"
        if subset not in FILTERED_SUBSETS:
            raise UsageError(f"--subset={subset}: choose one of {', '.join(FILTERED_SUBSETS)}")
        return split, None, subset
    return split, None, None


def selection_name(split, holdout_fold, subset):
    return {"folds": f"holdout_fold={holdout_fold}", "filtered": f"filtered_{subset}",
            "subsets": f"subsets_{subset}", "all": "all"}[split]


def select_indices(info, split, holdout_fold, subset):
    if split == "folds":
        return split_indices(info["folds"], holdout_fold)[1]
    if split == "filtered":
        return load_filtered_split(info["audio_names"])[subset]
    if split == "subsets":
        return packed_subsets(info)[subset]
    return np.arange(len(info["audio_names"]))


def same_clips_reordered(run, info):
    """The training data, where it still is, holds the same clips in another order (packed as
    shards, say): nothing to warn about."""
    try:
        trained_on = read_hdf5_info(run.features)
    except UsageError:
        return False
    return trained_on["digest"] == run.data_digest and clips_digest(trained_on) == clips_digest(info)


def check_compatible(run, info, features_path, split):
    """The HDF5 must hold the classes, task and sample rate the model was trained on; held-out
    clips of a repacked training file may be clips the model trained on."""
    if run.data_digest and info["digest"] != run.data_digest and split != "all" \
            and not same_clips_reordered(run, info):
        try:
            same_path = feature_files(features_path) == feature_files(run.features)
        except UsageError:  # the training data is no longer where it was
            same_path = False
        message = (f"{features_flag(features_path)}: its clips, folds or targets differ from the data "
                   f"the checkpoint was trained on, so its {split} held-out clips may be clips "
                   "the model trained on")
        if same_path:
            raise UsageError(f"{message} (the file was repacked); evaluate on the file it was "
                             "trained on, or pass --split=all to score every clip knowingly")
        logging.warning("%s", message)
    if list(run.labels) != list(info["labels"]):
        raise UsageError(
            f"{features_flag(features_path)}: its labels ({', '.join(info['labels'])}) differ from "
            f"the checkpoint's ({', '.join(run.labels)}); evaluate on an HDF5 packed "
            "with the same classes in the same order")
    if run.task != info["task"]:
        raise UsageError(f"{features_flag(features_path)}: a {info['task']} file, but the checkpoint "
                         f"is a {run.task} model")
    model_rate = run.audio.sample_rate
    if model_rate != info["sample_rate"]:
        raise UsageError(f"{features_flag(features_path)}: packed at {info['sample_rate']} Hz, but the "
                         f"model was trained at {model_rate} Hz; repack with --sample_rate={model_rate}")
    if run.audio.clip_samples != info["clip_samples"]:
        logging.warning("the HDF5's clips are %d samples, the model was trained on %d; "
                        "the CNN pools over time, so this works, but results may differ",
                        info["clip_samples"], run.audio.clip_samples)


def default_output_dir(checkpoint_path, iteration, selection):
    """WS/results/main/<run>/evaluation_<iteration>_<selection> for a training checkpoint
    (WS/checkpoints/main/<run>/...); otherwise a folder beside the checkpoint."""
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    parts = folder.split(os.sep)
    if "checkpoints" in parts:
        last = len(parts) - 1 - parts[::-1].index("checkpoints")
        parts[last] = "results"
        folder = os.sep.join(parts)
    return os.path.join(folder, f"evaluation_{iteration}_{selection}")


def per_class_rows(task, labels, metrics, targets):
    """One dict per class; support counts the clips (single-label) or positives (multi-label)."""
    support = (np.bincount(np.argmax(targets, axis=1), minlength=len(labels))
               if task == SINGLE_LABEL else (targets >= 0.5).sum(axis=0))
    if task == SINGLE_LABEL:
        return [{"label": label, "precision": p, "recall": r, "f1": f, "support": int(s)}
                for label, p, r, f, s in zip(labels, metrics["per_class_precision"],
                                             metrics["per_class_recall"],
                                             metrics["per_class_f1"], support)]
    return [{"label": label, "ap": ap, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for label, ap, p, r, f, s in zip(labels, metrics["per_class_ap"],
                                             metrics["per_class_precision"],
                                             metrics["per_class_recall"], metrics["per_class_f1"],
                                             support)]


def prediction_rows(task, labels, audio_names, probabilities, targets, threshold):
    """predictions.csv: clip, true label(s), predicted label(s), then every class probability."""
    def names(mask):
        return ";".join(label for label, on in zip(labels, mask) if on)

    rows = [["audio_name", "true", "predicted"] + list(labels)]
    for name, clip_probabilities, target in zip(audio_names, probabilities, targets):
        if task == SINGLE_LABEL:
            true = labels[int(np.argmax(target))]
            predicted = labels[int(np.argmax(clip_probabilities))]
        else:
            true = names(target >= 0.5)
            predicted = names(clip_probabilities >= np.asarray(threshold))
        rows.append([name, true, predicted] + [f"{p:.6f}" for p in clip_probabilities])
    return rows


def write_reports(result, output_dir):
    """All report files of one evaluation; returns {kind: path}."""
    labels, task = result["labels"], result["task"]
    files = {"metrics": os.path.join(output_dir, "metrics.json"),
             "per_class": os.path.join(output_dir, "per_class.csv"),
             "predictions": os.path.join(output_dir, "predictions.csv")}
    columns = list(result["per_class"][0])
    write_csv([columns] + [[row[column] for column in columns] for row in result["per_class"]],
              files["per_class"])
    # 'predicted' as inference predicts: at the per-label thresholds tuned on validation when
    # the checkpoint has them, else at --threshold.
    thresholds = result["tuned"]["threshold"] if "tuned" in result else result.get("threshold")
    write_csv(prediction_rows(task, labels, result["audio_names"], result["probabilities"],
                              result["targets"], thresholds), files["predictions"])
    if task == SINGLE_LABEL:
        title = f"{result['model_type']}, {result['selection']} ({result['clips_num']} clips)"
        for normalize, stem in ((False, "confusion_matrix"), (True, "confusion_matrix_normalized")):
            files[stem] = os.path.join(output_dir, f"{stem}.csv")
            files[f"{stem}_png"] = os.path.join(output_dir, f"{stem}.png")
            write_confusion_matrix(result["confusion_matrix"], labels, files[stem],
                                   files[f"{stem}_png"], normalize=normalize, title=title)
    else:  # one 2 x 2 matrix per label at --threshold, as the original IAB projects saved them
        files["per_label_confusion"] = os.path.join(output_dir, "per_label_confusion.csv")
        matrices = multilabel_confusion_matrix(result["targets"] >= 0.5,
                                               result["probabilities"] >= result["threshold"])
        write_csv([["label", "true_negative", "false_positive", "false_negative",
                    "true_positive"]] + [[label] + matrix.ravel().tolist()
                                         for label, matrix in zip(labels, matrices)],
                  files["per_label_confusion"])
    summary = {key: value for key, value in result.items()
               if key not in ("audio_names", "probabilities", "targets", "files")}
    write_json(dict(summary, files=files), files["metrics"])
    return files


def evaluate_checkpoint(checkpoint_path, features_path=None, split=None, holdout_fold=None,
                        subset=None, batch_size=32, cuda=False, output_dir=None, threshold=None,
                        num_workers=0, write=True, trust_checkpoint=False, precision=None):
    """Evaluate a training checkpoint; returns the metrics plus the per-clip predictions.

    The result holds the compute_metrics entries, 'per_class' rows, 'audio_names',
    'probabilities' and 'targets' (numpy) and, when `write`, the report 'files'.
    """
    device = select_device(cuda)
    precision = resolve_precision(precision, device)
    model, checkpoint, run = load_trained_model(checkpoint_path, device, trusted=trust_checkpoint)
    thresholds = stored_thresholds(checkpoint, run, checkpoint_path)
    features_path = features_path or run.features
    if not features_path:
        raise UsageError("the checkpoint does not record the HDF5 it was trained on; pass --features")
    split, holdout_fold, subset = resolve_selection(run, split, holdout_fold, subset)
    task = run.task
    if threshold is None:
        threshold = run.threshold

    dataset = WaveformDataset(features_path, in_memory=False)
    check_compatible(run, dataset.info, features_path, split)
    indices = select_indices(dataset.info, split, holdout_fold, subset)
    selection = selection_name(split, holdout_fold, subset)
    if len(indices) == 0:
        raise UsageError(f"{features_flag(features_path)}: no clips in {selection}")
    iteration = checkpoint.get("iteration", os.path.splitext(os.path.basename(checkpoint_path))[0])
    if write:  # before the work: the reports' folder must take files
        output_dir = output_dir or default_output_dir(checkpoint_path, iteration, selection)
        check_writable_folder(output_dir, "--output_dir")
        remove_stale_temporaries([output_dir])  # of an evaluation killed while writing

    loader = make_loader(dataset, EvaluateSampler(indices, batch_size), num_workers, seed=0,
                         device=device)
    audio_names, probabilities, targets = forward_loader(
        model, progress(loader, desc=f"evaluating {selection}", unit="batch"), device, task,
        precision)

    metrics = compute_metrics(task, probabilities, targets, threshold, labels=run.labels)
    tuned = None
    if task == MULTI_LABEL and thresholds is not None:
        # Per-label thresholds tuned on the validation clips at the end of training.
        tuned = tuned_scores(probabilities, targets, thresholds)
    result = dict(
        metrics, checkpoint_path=os.path.abspath(checkpoint_path), iteration=iteration,
        model_type=run.model_type, features=features_value(dataset.info["files"]),
        split=split, holdout_fold=holdout_fold, subset=subset, selection=selection,
        clips_num=len(audio_names), task=task, labels=list(run.labels),
        per_class=per_class_rows(task, run.labels, metrics, targets),
        audio_names=audio_names, probabilities=probabilities, targets=targets)
    if task == MULTI_LABEL:
        result["threshold"] = float(threshold)
        if tuned is not None:
            result["tuned"] = tuned
            for row, f1, value in zip(result["per_class"], tuned["per_class_f1"],
                                      tuned["threshold"]):
                row.update(f1_tuned=f1, threshold_tuned=value)
    if write:
        result["output_dir"] = os.path.abspath(output_dir)
        result["files"] = write_reports(result, output_dir)
    return result


def format_number(value):
    return "   n/a" if value is None or math.isnan(value) else f"{value:6.3f}"


def format_report(result):
    """The per-class table and the summary line, as printed."""
    rows = result["per_class"]
    columns = [column for column in rows[0] if column not in ("label", "support")]
    widths = [max(11, len(column) + 2) for column in columns]  # names never run together
    width = max(12, max(len(row["label"]) for row in rows) + 2)
    lines = [f"{result['model_type']} at iteration {result['iteration']}: "
             f"{result['clips_num']} clips ({result['selection']}) of {result['features']}",
             "class".ljust(width) + "".join(f"{column:>{w}}" for column, w in zip(columns, widths))
             + f"{'support':>9}"]
    for row in rows:
        lines.append(row["label"].ljust(width)
                     + "".join(f"{format_number(row[column]):>{w}}"
                               for column, w in zip(columns, widths))
                     + f"{row['support']:>9}")
    absent = [row["label"] for row in rows if row["support"] == 0]
    if absent:
        lines.append(f"no clip of this set has {', '.join(absent)}: counted with F1 0 in macro "
                     f"F1 as sklearn does ({result['macro_f1_present']:.4f} without such labels)")
    if result["task"] == SINGLE_LABEL:
        lines.append(f"accuracy {result['accuracy']:.4f}   macro F1 {result['macro_f1']:.4f}")
    else:
        lines.append(f"mAP {result['mAP']:.4f}   macro F1 {result['macro_f1']:.4f}"
                     f"   micro F1 {result['micro_f1']:.4f}   (threshold {result['threshold']:g})")
        lines.append(classification_report_text(result, result["labels"]))
        if "tuned" in result:
            lines.append(f"at the per-label thresholds tuned on validation: macro F1 "
                         f"{result['tuned']['macro_f1']:.4f}   micro F1 "
                         f"{result['tuned']['micro_f1']:.4f}")
    return "\n".join(lines)


def run_evaluate(args):
    split, holdout_fold = args.split, args.holdout_fold
    if holdout_fold == "all":
        raise UsageError("--holdout_fold=all: evaluation scores one set; --split=all scores "
                         "every clip")
    if holdout_fold in SUBSET_SPLITS:  # --holdout_fold=filtered: that split's sets
        split, holdout_fold = split or holdout_fold, None
    result = evaluate_checkpoint(
        args.checkpoint_path, args.features, split, holdout_fold, args.subset,
        args.batch_size, args.cuda, args.output_dir, args.threshold, args.num_workers,
        trust_checkpoint=args.trust_checkpoint, precision=args.precision)
    print(format_report(result))
    print(f"Wrote {len(result['files'])} files to {result['output_dir']}")


def add_evaluate_parser(subparsers):
    parser = subparsers.add_parser("evaluate", help="metrics of a trained checkpoint on a packed HDF5")
    add_flags(parser, "checkpoint_path", "features", "split", "holdout_fold", "threshold",
              "batch_size", "num_workers", "cuda", "precision", "trust_checkpoint",
              required=("checkpoint_path",))
    parser.add_argument("--subset", default=None, choices=FILTERED_SUBSETS,
                        help="subset to evaluate with --split=filtered or subsets (default: test)")
    parser.add_argument("--output_dir", default=None,
                        help="default: WS/results/main/<run>/evaluation_<iteration>_<clips>/")
    parser.set_defaults(handler=run_evaluate)
    return parser
