"""--holdout_fold=all: train the ten folds in turn (one fold per GPU where there are several),
then write the cross-validation summary under WS/results/<configuration>/."""
import copy
import logging
import os
import subprocess
import sys
import time

import torch

from pytorch.train import run_config, train
from utils import config
from utils.cv_summary import summarize_folds, write_summary
from utils.runs import STATISTICS_FILE, configuration_subdir, run_dirs, saved_iterations
from utils.statistics_files import load_statistics
from utils.utilities import UsageError

MAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def fold_command(argv, fold):
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
    return [sys.executable, MAIN_SCRIPT] + kept + [f"--holdout_fold={fold}"]


def train_folds_on_gpus(args, folds, gpus):
    """One fold per GPU at once, each in its own process; the next fold starts when a GPU frees."""
    waiting, running, failed = list(folds), {}, []
    while waiting or running:
        while waiting and len(running) < gpus:
            gpu = next(index for index in range(gpus) if index not in running.values())
            fold = waiting.pop(0)
            fold_args = copy.copy(args)
            fold_args.holdout_fold = fold
            if not continue_fold(fold_args):
                continue
            command = fold_command(args.argv, fold) + [
                f"--resume_iteration={fold_args.resume_iteration}"]
            environment = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu))
            process = subprocess.Popen(command, env=environment,
                                       stdout=subprocess.DEVNULL)  # each fold logs to its file
            running[process] = gpu
            logging.info("fold %d started on GPU %d", fold, gpu)
        finished = [process for process in running if process.poll() is not None]
        if running and not finished:
            time.sleep(1)  # whichever fold ends first frees its GPU for the next
        for process in finished:
            del running[process]
            if process.returncode:
                failed.append(process.args[-1])
    if failed:
        raise UsageError(f"folds failed: {', '.join(failed)}; see their logs under "
                         f"{args.workspace}/logs/main/")


def continue_fold(fold_args):
    """Where the same --holdout_fold=all command left this fold: False when it finished, else
    fold_args.resume_iteration is set to its last checkpoint (0 for a fold not started)."""
    dirs = run_dirs(fold_args.workspace, run_config(fold_args))
    statistics_path = os.path.join(dirs["statistics"], STATISTICS_FILE)
    if os.path.isfile(statistics_path) and "finished" in load_statistics(statistics_path):
        logging.info("fold %s finished before; skipped", fold_args.holdout_fold)
        return False
    saved = saved_iterations(dirs["checkpoints"])
    if saved:
        fold_args.resume_iteration = saved[-1]
        logging.info("fold %s continues from iteration %d", fold_args.holdout_fold, saved[-1])
    return True


def train_all_folds(args):
    # With a test fold, the other nine take turns validating; the test fold stays held out.
    folds = [fold for fold in range(1, config.FOLDS_NUM + 1) if fold != args.test_fold]
    gpus = torch.cuda.device_count() if args.cuda else 0
    if gpus > 1 and "WORLD_SIZE" not in os.environ:
        train_folds_on_gpus(args, folds, gpus)
    else:
        for fold in folds:
            fold_args = copy.copy(args)
            fold_args.holdout_fold = fold
            if continue_fold(fold_args):
                train(fold_args)

    run = run_config(args)
    paths = []
    for fold in folds:
        run.holdout_fold = fold
        paths.append(os.path.join(run_dirs(args.workspace, run)["statistics"], STATISTICS_FILE))
    configuration = configuration_subdir(run)
    out_dir = os.path.join(args.workspace, "results", configuration)
    for path in write_summary(summarize_folds(paths), out_dir, title=configuration):
        print(f"wrote {path}")
