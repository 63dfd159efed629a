"""Finding and reading the statistics pickles that training writes.

Training writes WS/statistics/main/<run_subdir>/statistics.pickle, where run_subdir is
utils.utilities.run_subdir(...) =
'holdout_fold=F/MODEL/pretrain=P/loss_type=L/augmentation=A/batch_size=B/freeze_base=Z'.
A run is described by a "run_info" dict parsed from that path: every key=value part, plus
'model_type' (the one part without '='). All values are strings, exactly as in the path.
Runs that differ only in holdout_fold belong to the same "configuration".
"""
import math
import numbers
import os
import pickle

from utils.config import MULTI_LABEL, SINGLE_LABEL
from utils.utilities import UsageError

STATISTICS_FILENAME = "statistics.pickle"
FOLD_KEY = "holdout_fold"
MODEL_KEY = "model_type"


def parse_run_info(statistics_path):
    """run_info from a path following the run_subdir scheme, or None when the path does not."""
    parts = os.path.normpath(os.path.dirname(os.path.abspath(statistics_path))).split(os.sep)
    fold_positions = [i for i, part in enumerate(parts) if part.startswith(FOLD_KEY + "=")]
    if not fold_positions:
        return None
    run_info = {}
    for part in parts[fold_positions[-1]:]:
        key, separator, value = part.partition("=")
        if separator:
            run_info[key] = value
        else:
            run_info.setdefault(MODEL_KEY, part)
    return run_info


def run_info_for(statistics_path, stats=None):
    """run_info from the path; for a file outside the scheme, from its 'meta' and its folder."""
    run_info = parse_run_info(statistics_path)
    if run_info is not None:
        return run_info
    meta = (stats or {}).get("meta", {})
    return {FOLD_KEY: str(meta.get(FOLD_KEY, "?")), MODEL_KEY: str(meta.get(MODEL_KEY, "")),
            "run": os.path.dirname(os.path.abspath(statistics_path))}


def config_subpath(run_info):
    """The run's folder without the holdout_fold part: names its configuration."""
    parts = []
    for key, value in run_info.items():
        if key == FOLD_KEY:
            continue
        if key == MODEL_KEY:
            parts.append(value)
        elif key == "run":  # a file outside the scheme: its own folder is its identity
            parts.append(value.strip(os.sep).replace(os.sep, "_"))
        else:
            parts.append(f"{key}={value}")
    return os.path.join(*[part for part in parts if part]) if any(parts) else "run"


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


def describe_search(workspace, holdout_fold=None, model_type=None, filters=None):
    conditions = []
    if holdout_fold not in (None, "all"):
        conditions.append(f"{FOLD_KEY}={holdout_fold}")
    if model_type:
        conditions.append(f"{MODEL_KEY}={model_type}")
    conditions += [f"{key}={value}" for key, value in (filters or {}).items()]
    where = os.path.join(workspace, "statistics")
    return f"{STATISTICS_FILENAME} under {where}" + (
        f" matching {', '.join(conditions)}" if conditions else "")


def find_statistics(workspace, holdout_fold=None, model_type=None, filters=None):
    """All statistics pickles under WS/statistics that match; [(run_info, path)] sorted by config, fold.

    holdout_fold None or 'all' means every fold. filters maps a path key (pretrain, loss_type, ...)
    to the wanted value, compared as strings ('True', '32'). A filter key that no run has is a
    UsageError (it is almost certainly a typo), not an empty result.
    """
    wanted = dict(filters or {})
    if holdout_fold not in (None, "all"):
        wanted[FOLD_KEY] = holdout_fold
    if model_type:
        wanted[MODEL_KEY] = model_type

    runs = []
    known_keys = set()
    for folder, _, filenames in os.walk(os.path.join(workspace, "statistics")):
        if STATISTICS_FILENAME not in filenames:
            continue
        path = os.path.join(folder, STATISTICS_FILENAME)
        run_info = parse_run_info(path)
        if run_info is None:
            continue
        known_keys.update(run_info)
        if all(run_info.get(key) == str(value) for key, value in wanted.items()):
            runs.append((run_info, path))

    unknown = sorted(key for key in (filters or {}) if key not in known_keys)
    if known_keys and unknown:
        raise UsageError(f"--filter {', '.join(unknown)}: no run has such a key; "
                         f"known keys: {', '.join(sorted(known_keys))}")
    runs.sort(key=lambda run: (config_subpath(run[0]), fold_sort_key(run[0][FOLD_KEY])))
    return runs


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
            stats = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError,
            ValueError, TypeError) as error:
        raise UsageError(f"{path}: cannot read statistics pickle ({error})") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("validate"), list):
        raise UsageError(f"{path}: not a statistics pickle (no 'validate' list)")
    stats = dict(stats)
    stats.setdefault("train", [])
    meta = dict(stats.get("meta") or {})
    meta.setdefault("task", SINGLE_LABEL)
    meta.setdefault("primary_metric", "mAP" if meta["task"] == MULTI_LABEL else "accuracy")
    stats["meta"] = meta
    return stats


def primary_metric(stats):
    """'accuracy' for single-label runs (and old pickles), 'mAP' for multi-label ones."""
    meta = stats.get("meta") or {}
    if meta.get("primary_metric"):
        return meta["primary_metric"]
    return "mAP" if meta.get("task") == MULTI_LABEL else "accuracy"


def task_of(stats):
    return (stats.get("meta") or {}).get("task", SINGLE_LABEL)


def metric_curve(stats, key, section="validate"):
    """(iterations, values) of one metric, in iteration order.

    Entries without the metric, or with a NaN/inf value (e.g. mAP of a set without positives),
    are skipped so that best values and means stay meaningful.
    """
    points = sorted((entry["iteration"], float(entry[key])) for entry in stats.get(section, [])
                    if "iteration" in entry and isinstance(entry.get(key), numbers.Real)
                    and math.isfinite(entry[key]))
    return [iteration for iteration, _ in points], [value for _, value in points]
