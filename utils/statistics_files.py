"""Finding and reading the statistics pickles that training writes, with what each run is.

Training writes WS/statistics/main/<run>/statistics.pickle and run.json (its RunConfig) beside
it (utils.runs). A run is described from run.json, never from its folder names; a pickle
written before run.json existed is described by the 'meta' it holds, and its own folder is its
configuration. Runs that differ only in holdout_fold belong to the same configuration.
"""
import datetime
import logging
import math
import numbers
import os
import pickle

from utils.config import SINGLE_LABEL, primary_metric
from utils.runs import configuration_subdir, describe, find_runs, read_run_file
from utils.utilities import UsageError, atomic_pickle_dump, safe_pickle_load

FOLD_KEY = "holdout_fold"
MODEL_KEY = "model_type"


class Run:
    """One statistics file: where it is, what run wrote it (`config`, None for older files), and
    what it holds. `info` describes the run as {field: string}; `configuration` names its folds."""

    def __init__(self, path, config=None):
        self.path = path
        self.stats = load_statistics(path)
        self.config = config
        self.task = self.stats["meta"]["task"]
        if config is not None:
            self.info = describe(config)
            self.configuration = configuration_subdir(config)
        else:
            meta = self.stats["meta"]
            folder = os.path.dirname(os.path.abspath(path))
            self.info = {FOLD_KEY: str(meta.get(FOLD_KEY, "?")),
                         MODEL_KEY: str(meta.get(MODEL_KEY, "")), "run": folder}
            self.configuration = folder.strip(os.sep).replace(os.sep, "_")
        self.fold = self.info[FOLD_KEY]


def fold_sort_key(fold):
    """Numeric folds in numeric order, then named ones ('filtered') alphabetically."""
    return (0, int(fold), "") if str(fold).isdigit() else (1, 0, str(fold))


def parse_filters(filter_arguments):
    """['pretrain=True', 'loss_type=clip_nll'] -> {'pretrain': 'True', ...}; a bad item is a UsageError."""
    filters = {}
    for item in filter_arguments or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise UsageError(f"--filter {item}: expected key=value, e.g. --filter pretrain=True")
        filters[key] = value
    return filters


def runs_from_paths(paths):
    """Runs for statistics files given by path (run.json read from beside each, when there)."""
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"--statistics_paths {path}: file not found")
    return [Run(path, read_run_file(os.path.dirname(path))) for path in paths]


def describe_search(workspace, holdout_fold=None, model_type=None, filters=None):
    conditions = []
    if holdout_fold not in (None, "all"):
        conditions.append(f"{FOLD_KEY}={holdout_fold}")
    if model_type:
        conditions.append(f"{MODEL_KEY}={model_type}")
    conditions += [f"{key}={value}" for key, value in (filters or {}).items()]
    where = os.path.join(workspace, "statistics")
    return f"statistics.pickle under {where}" + (
        f" matching {', '.join(conditions)}" if conditions else "")


def find_statistics(workspace, holdout_fold=None, model_type=None, filters=None):
    """The Runs under WS/statistics that match, sorted by configuration, then fold.

    holdout_fold None or 'all' means every fold. filters maps a described field (pretrain,
    learning_rate, ...) to the wanted value, compared as strings ('True', '32'). A filter key
    that no run has is a UsageError (almost certainly a typo), not an empty result.
    """
    wanted = dict(filters or {})
    if holdout_fold not in (None, "all"):
        wanted[FOLD_KEY] = holdout_fold
    if model_type:
        wanted[MODEL_KEY] = model_type
    runs = []
    for config, path in find_runs(workspace):
        try:
            runs.append(Run(path, config))
        except UsageError as error:  # one damaged file must not hide the others
            logging.warning("%s; skipped", error)
    known_keys = set().union(*(run.info for run in runs))
    unknown = sorted(key for key in (filters or {}) if key not in known_keys)
    if runs and unknown:
        raise UsageError(f"--filter {', '.join(unknown)}: no run has such a key; "
                         f"known keys: {', '.join(sorted(known_keys))}")
    matching = [run for run in runs
                if all(run.info.get(key) == str(value) for key, value in wanted.items())]
    return sorted(matching, key=lambda run: (run.configuration, fold_sort_key(run.fold)))


def require_statistics(workspace, holdout_fold=None, model_type=None, filters=None):
    """find_statistics, but finding nothing is a UsageError that says what was searched."""
    runs = find_statistics(workspace, holdout_fold, model_type, filters)
    if not runs:
        raise UsageError(f"no {describe_search(workspace, holdout_fold, model_type, filters)}")
    return runs


def load_statistics(path):
    """Read one statistics pickle; 'meta' is filled in for old files that lack it.

    Old pickles from the original recipe hold only 'validate' (and maybe 'train'): they are
    single-label runs whose primary metric is accuracy.
    """
    try:
        with open(path, "rb") as f:
            stats = safe_pickle_load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError,
            ValueError, TypeError) as error:
        raise UsageError(f"{path}: cannot read statistics pickle ({error})") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("validate"), list):
        raise UsageError(f"{path}: not a statistics pickle (no 'validate' list)")
    stats = dict(stats)
    stats.setdefault("train", [])
    meta = dict(stats.get("meta") or {})
    meta.setdefault("task", SINGLE_LABEL)
    meta.setdefault("primary_metric", primary_metric(meta["task"]))
    stats["meta"] = meta
    return stats


def metric_curve(stats, key, section="validate"):
    """(iterations, values) of one metric, in iteration order.

    Entries without the metric, or with a NaN/inf value (e.g. mAP of a set without positives),
    are skipped so that best values and means stay meaningful.
    """
    points = sorted((entry["iteration"], float(entry[key])) for entry in stats.get(section, [])
                    if "iteration" in entry and isinstance(entry.get(key), numbers.Real)
                    and math.isfinite(entry[key]))
    return [iteration for iteration, _ in points], [value for _, value in points]


def statistics_meta(run, world_size=1):
    """What a statistics pickle says about the run that wrote it."""
    return {"task": run.task, "labels": run.labels, "holdout_fold": run.holdout_fold,
            "split": run.split, "model_type": run.model_type, "loss_type": run.loss_type,
            "primary_metric": run.primary_metric, "world_size": world_size}


class StatisticsContainer:
    """The writer of the original's statistics pickle, {'validate': [...], 'train': [...]}, plus
    'meta' and, at the end of a run, 'thresholds', 'test' and 'finished'. Every change goes
    through its methods; dump() writes the pickle and a timestamped backup, atomically."""

    def __init__(self, path, meta, stream=None):
        self.path = path
        self.backup_path = "{}_{}.pickle".format(
            os.path.splitext(path)[0], datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
        self.statistics = {"validate": [], "train": [], "meta": meta}
        self.stream = stream  # pytorch.metrics_stream.MetricsStream: every record, as it comes
        self.last_iteration = 0

    def append(self, kind, entry):
        self.statistics[kind].append(entry)
        self.last_iteration = max(self.last_iteration, entry["iteration"])
        if self.stream is not None:
            self.stream.write(kind, entry, entry["iteration"])

    def record(self, key, value):
        """A whole-run entry: 'thresholds', 'test' or 'finished'."""
        self.statistics[key] = value
        if key == "test" and self.stream is not None:
            self.stream.write(key, value, self.last_iteration)

    def close(self):
        if self.stream is not None:
            self.stream.close()

    def update_meta(self, **values):
        self.statistics["meta"].update(values)

    def recent_train_loss(self, since_iteration):
        """The mean training loss of the iterations after `since_iteration` (one batch's loss
        is noise: 3.0 beside a validation accuracy of 0.85), or None when none was recorded."""
        losses = [entry["loss"] for entry in self.statistics["train"]
                  if entry["iteration"] > since_iteration]
        return sum(losses) / len(losses) if losses else None

    def dump(self):
        atomic_pickle_dump(self.statistics, self.path)
        atomic_pickle_dump(self.statistics, self.backup_path)

    def load_until(self, iteration):
        """On resume: keep what was recorded up to the checkpoint's iteration."""
        if not os.path.isfile(self.path):
            return
        old = load_statistics(self.path)
        for kind in ("validate", "train"):
            self.statistics[kind] = [e for e in old[kind] if e["iteration"] <= iteration]
        self.last_iteration = iteration
