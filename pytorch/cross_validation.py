"""--holdout_fold=all: train the ten folds in turn (one fold per GPU where there are several),
then write the cross-validation summary under WS/results/<configuration>/."""
import dataclasses
import logging
import os
import subprocess
import sys
import time

import torch

from utils import config
from utils.cv_summary import summarize_folds, write_summary
from utils.runs import STATISTICS_FILE, configuration_subdir, run_dirs, saved_iterations
from utils.statistics_files import load_statistics
from utils.utilities import UsageError, create_logging

MAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def fold_command(argv, fold, resume_iteration):
    """The user's own command line with --holdout_fold set to one fold."""
    kept = []
    skip_next = False
    for argument in argv:
        if skip_next:
            skip_next = False
        elif argument in ("--holdout_fold", "--resume_iteration"):
            skip_next = True
        elif not argument.startswith(("--holdout_fold=", "--resume_iteration=")):
            kept.append(argument)
    return [sys.executable, MAIN_SCRIPT] + kept + [
        f"--holdout_fold={fold}", f"--resume_iteration={resume_iteration}"]


def train_folds_on_gpus(fold_runs, workspace, argv, gpus):
    """One fold per GPU at once, each in its own process; the next fold starts when a GPU frees."""
    waiting, running, failed = list(fold_runs), {}, []
    while waiting or running:
        while waiting and len(running) < gpus:
            gpu = next(index for index in range(gpus) if index not in running.values())
            fold, resume_iteration = waiting.pop(0)
            environment = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu))
            process = subprocess.Popen(fold_command(argv, fold.holdout_fold, resume_iteration),
                                       env=environment,
                                       stdout=subprocess.DEVNULL)  # each fold logs to its file
            running[process] = gpu
            logging.info("fold %d started on GPU %d", fold.holdout_fold, gpu)
        finished = [process for process in running if process.poll() is not None]
        if running and not finished:
            time.sleep(1)  # whichever fold ends first frees its GPU for the next
        for process in finished:
            del running[process]
            if process.returncode:
                failed.append(process.args[-2])
    if failed:
        raise UsageError(f"folds failed: {', '.join(failed)}; see their logs under "
                         f"{workspace}/logs/main/")


def resume_point(fold_run, workspace):
    """Where the same command left this run (a fold): None when it finished (at its
    --stop_iteration or by early stopping), else the iteration to resume from (its last
    checkpoint; 0 for a run not started)."""
    dirs = run_dirs(workspace, fold_run)
    statistics_path = os.path.join(dirs["statistics"], STATISTICS_FILE)
    finished = (load_statistics(statistics_path).get("finished")
                if os.path.isfile(statistics_path) else None)
    if finished and (finished.get("early_stop")
                     or finished.get("iteration", 0) >= fold_run.stop_iteration):
        logging.info("fold %s finished before; skipped", fold_run.holdout_fold)
        return None
    saved = saved_iterations(dirs["checkpoints"])
    if saved:
        logging.info("fold %s continues from iteration %d", fold_run.holdout_fold, saved[-1])
        return saved[-1]
    return 0


def train_all_folds(trainer, run, workspace, trust_checkpoint=False, argv=()):
    """`trainer` (train or train_probe) on every fold of `run` (a RunConfig whose holdout_fold
    is 'all') but its test fold, skipping finished folds and continuing an interrupted one;
    then the cross-validation summary."""
    # With a test fold, the other nine take turns validating; the test fold stays held out.
    folds = [dataclasses.replace(run, holdout_fold=fold)
             for fold in range(1, config.FOLDS_NUM + 1) if fold != run.test_fold]
    gpus = torch.cuda.device_count() if run.cuda else 0
    to_train = []
    for fold_run in folds:
        # Where each fold stands goes to the console and to WS/logs/main/cross_validation.log
        # (each fold's training then logs to its own train.log).
        create_logging(os.path.join(workspace, "logs", "main"), "cross_validation")
        resume_iteration = resume_point(fold_run, workspace)
        if resume_iteration is not None:
            to_train.append((fold_run, resume_iteration))
            if gpus <= 1 or "WORLD_SIZE" in os.environ:
                trainer(fold_run, workspace, resume_iteration, trust_checkpoint)
    if gpus > 1 and "WORLD_SIZE" not in os.environ:
        train_folds_on_gpus(to_train, workspace, argv, gpus)

    paths = [os.path.join(run_dirs(workspace, fold_run)["statistics"], STATISTICS_FILE)
             for fold_run in folds]
    configuration = configuration_subdir(run)
    out_dir = os.path.join(workspace, "results", configuration)
    for path in write_summary(summarize_folds(paths), out_dir, title=configuration):
        print(f"wrote {path}")
