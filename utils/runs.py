"""Where a run's files live, and the run.json that says what the run is.

A run writes WS/{statistics,checkpoints,logs}/main/<run_subdir>/, where run_subdir keeps the
original recipe's scheme
    holdout_fold=F/MODEL/pretrain=P/loss_type=L/augmentation=A/batch_size=B/freeze_base=Z
(plus a last part run_name=NAME with --run_name). The folder is computed from the RunConfig,
never parsed back: statistics/.../run.json holds the config, and everything downstream (plots,
CV summary, evaluation) reads that.
"""
import fcntl
import json
import logging
import os

from utils.config import RunConfig
from utils.utilities import (UsageError, check_free_space, check_writable_folder,
                             remove_stale_temporaries, write_json)

RUN_FILE = "run.json"
STATISTICS_FILE = "statistics.pickle"
KINDS = ("statistics", "checkpoints", "logs")
# The fields that tell configurations apart in plots, summaries and --filter (as strings).
DESCRIBED_FIELDS = ("model_type", "pretrain", "loss_type", "augmentation", "batch_size",
                    "freeze_base", "learning_rate", "precision", "spec_augment", "split", "seed",
                    "run_name", "linear_probe")


def default_features_path(workspace, mini_data=False):
    name = "minidata_waveform.h5" if mini_data else "waveform.h5"
    return os.path.join(workspace, "features", name)


def configuration_subdir(config):
    """The run's folder without its holdout_fold part: one per configuration of folds."""
    parts = [config.model_type, f"pretrain={config.pretrained}", f"loss_type={config.loss_type}",
             f"augmentation={config.augmentation}", f"batch_size={config.batch_size}",
             f"freeze_base={config.freeze_base}"]
    if config.linear_probe:  # only then: the original path scheme stays for fine-tuning
        parts.append("linear_probe=True")
    if config.run_name:
        parts.append(f"run_name={config.run_name}")
    return os.path.join(*parts)


def run_subdir(config):
    return os.path.join(f"holdout_fold={config.holdout_fold}", configuration_subdir(config))


def run_dirs(workspace, config):
    """{'statistics', 'checkpoints', 'logs'}: the run's folders under workspace/{kind}/main/."""
    return {kind: os.path.join(workspace, kind, "main", run_subdir(config)) for kind in KINDS}


BEST_CHECKPOINT = "best.pth"  # --keep_best's, for model selection (never resumed from)


def checkpoint_path(checkpoints_dir, iteration):
    return os.path.join(checkpoints_dir, f"{iteration}_iterations.pth")


def write_run_file(config, statistics_dir):
    write_json(config.to_dict(), os.path.join(statistics_dir, RUN_FILE))


def read_run_file(statistics_dir):
    """The RunConfig stored beside a statistics pickle, or None for runs written before run.json."""
    path = os.path.join(statistics_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return RunConfig.from_dict(json.load(f), path)
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"{path}: not a readable run file ({error})") from None


def describe(config, holdout_fold=True):
    """A run as {field: string}: what plots label and --filter matches."""
    values = dict(config.to_dict(), pretrain=config.pretrained)
    described = {"holdout_fold": str(config.holdout_fold)} if holdout_fold else {}
    described.update({key: str(values[key]) for key in DESCRIBED_FIELDS
                      if key in values and (key != "run_name" or values[key])})
    return described


def find_runs(workspace):
    """[(RunConfig or None, statistics path)] for every statistics pickle under WS/statistics.

    A pickle without run.json beside it (an older run) comes with None; callers describe it by
    the 'meta' its pickle holds.
    """
    root = os.path.join(workspace, "statistics")
    if not os.path.isdir(root):
        return []
    runs = []
    for folder, _, names in os.walk(root):
        if STATISTICS_FILE in names:
            try:
                config = read_run_file(folder)
            except UsageError as error:  # one damaged file must not hide the others
                logging.warning("%s; skipped", error)
                continue
            runs.append((config, os.path.join(folder, STATISTICS_FILE)))
    if any(config is None for config, _ in runs):
        logging.info("some statistics under %s have no %s (written before it existed); they "
                     "are described by their own metadata", root, RUN_FILE)
    return runs


LOCK_FILE = ".lock"


def saved_iterations(checkpoints_dir):
    """The iterations of the N_iterations.pth checkpoints in a folder, sorted."""
    if not os.path.isdir(checkpoints_dir):
        return []
    found = []
    for name in os.listdir(checkpoints_dir):
        stem, separator, rest = name.partition("_iterations.pth")
        if separator and not rest and stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def format_changes(changes):
    """{field: (old, new)} as '--field old -> new, ...' for one-line refusals."""
    return ", ".join(
        "the packed data (its clip names, folds or targets: repacked?)" if name == "data_digest"
        else f"--{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())


class RunFolder:
    """A run's folders, claimed for one training process.

    claim() takes an exclusive lock (a second process training the same run is refused at once),
    refuses a folder that holds a run of other settings, and checks that every output folder is
    writable and has room for a checkpoint before any training happens.
    """

    def __init__(self, workspace, config):
        self.dirs = run_dirs(workspace, config)
        self.config = config
        self.removed_temporaries = []
        self._lock = None

    def claim(self, resume_iteration, checkpoint_bytes, checkpoints=1):
        for kind, folder in self.dirs.items():
            check_writable_folder(folder, f"the run's {kind} folder")
        self._take_lock()
        self.removed_temporaries = remove_stale_temporaries(self.dirs.values())
        stored = read_run_file(self.dirs["statistics"])
        saved = saved_iterations(self.dirs["checkpoints"])
        if stored is not None:
            fixed = stored.differences(self.config, resumable=False)
            if fixed:
                raise UsageError(
                    f"{self.dirs['statistics']} holds a run with other settings "
                    f"({format_changes(fixed)}); add --run_name=NAME to start a separate run "
                    "beside it")
        if stored is not None and stored.lr_schedule != "constant" \
                and stored.decay_end != self.config.decay_end:
            raise UsageError(
                f"{self.dirs['statistics']}: this run's {stored.lr_schedule} decay ends at "
                f"iteration {stored.decay_end}, fixed when it started; --stop_iteration="
                f"{self.config.stop_iteration} --decay_iterations="
                f"{self.config.decay_iterations} would move it and change the rate of every "
                "iteration already trained; keep both, or add --run_name=NAME for a new run")
        if resume_iteration == 0 and saved:
            raise UsageError(
                f"{self.dirs['checkpoints']} already holds this run's checkpoints (up to "
                f"iteration {saved[-1]}); continue it with --resume_iteration={saved[-1]}, or "
                "add --run_name=NAME to start a new run beside it")
        if stored is not None and resume_iteration > 0:
            applied = stored.differences(self.config, resumable=True)
            if applied:
                logging.info("resuming with changed settings: %s", format_changes(applied))
        what = ("a checkpoint" if checkpoints == 1 else f"the {checkpoints} checkpoints this run "
                "writes (fewer: raise --save_every)")
        check_free_space(self.dirs["checkpoints"], checkpoints * checkpoint_bytes, what)
        return self.dirs

    def _take_lock(self):
        path = os.path.join(self.dirs["checkpoints"], LOCK_FILE)
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(f"another process is training this run now (it holds {path}); "
                             "wait for it, or add --run_name=NAME for a separate run") from None
        self._lock = handle  # held until this process exits

    def release(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None
