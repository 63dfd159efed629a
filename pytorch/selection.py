"""Scoring and model selection, shared by the training loop and the linear probe: the score of
a validation, the step that follows each one (record, best checkpoint, early stop), and, after
training, the chosen checkpoint's tuned thresholds and its one test score."""
import logging
import os
import time

import numpy as np
import torch

from pytorch.checkpoints import load_checkpoint_file, save_checkpoint_file
from pytorch.pytorch_utils import forward_loader
from utils import config
from utils.metrics import (classification_report_text, compute_metrics, tune_thresholds,
                           tuned_scores)
from utils.runs import BEST_CHECKPOINT


def score(probabilities, targets, task, loss_func, threshold):
    """Loss and metrics of predicted probabilities (numpy) against targets."""
    output = torch.from_numpy(probabilities)
    if task == config.SINGLE_LABEL:
        output = output.clamp_min(1e-12).log()
    loss = loss_func({"clipwise_output": output}, torch.from_numpy(targets)).item()
    metrics = compute_metrics(task, probabilities, targets, threshold)
    metrics = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
               for key, value in metrics.items()}
    return dict(metrics, loss=loss)


def validate(model, loader, device, run, loss_func):
    """Loss and metrics of a model on a loader's clips (metrics as plain Python values)."""
    _, probabilities, targets = forward_loader(model, loader, device, run.task, run.precision)
    return score(probabilities, targets, run.task, loss_func, run.threshold)


class BestTracker:
    """Best validation score so far, and how many evaluations have passed without improving."""

    def __init__(self, metric):
        self.metric = metric
        self.best = -float("inf")
        self.best_iteration = None
        self.evaluations_without_improvement = 0

    def update(self, result, iteration):
        """Returns True when `result` is a new best."""
        score_value = result[self.metric]
        if score_value > self.best:
            self.best, self.best_iteration = score_value, iteration
            self.evaluations_without_improvement = 0
            return True
        self.evaluations_without_improvement += 1
        return False

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        self.__dict__.update(state)


class Selection:
    """The step after each validation, the same for the loop and the probe: the result goes into
    the statistics (dumped), the best is tracked and, with --keep_best, `save_best(iteration)`
    keeps it; the log line is written; early stopping is decided."""

    def __init__(self, run, statistics, save_best):
        self.run, self.statistics, self.save_best = run, statistics, save_best
        self.best = BestTracker(run.selection_metric)
        self.started = time.time()

    def after_validation(self, result, iteration):
        """Record one validation; returns True when early stopping is due. The untrained model
        (iteration 0) is recorded for the curves but is never a candidate for the best."""
        previous = self.statistics.statistics["validate"]
        since = previous[-1]["iteration"] if previous else 0
        self.statistics.append("validate", dict(result, iteration=iteration))
        self.statistics.dump()
        improved = iteration > 0 and self.best.update(result, iteration)
        if "averages" in result:  # multi-label: the full report, as the IAB projects printed it
            logging.info("validation at iteration %d, threshold %g:\n%s", iteration,
                         self.run.threshold, classification_report_text(result, self.run.labels))
        train_loss = self.statistics.recent_train_loss(since)
        metric = self.best.metric
        logging.info("iteration %d: validation %s %.4f, loss %.4f; train loss %s (%.1f s)",
                     iteration, metric, result[metric], result["loss"], "-" if train_loss is None
                     else f"{train_loss:.4f} (mean of iterations {since + 1}-{iteration})",
                     time.time() - self.started)
        if improved and self.run.keep_best:  # after the line that says why
            self.save_best(iteration)
        patience = self.run.early_stop_patience
        if iteration > 0 and patience > 0 and self.best.evaluations_without_improvement >= patience:
            logging.info("early stop: no better %s in %d evaluations (best %.4f at iteration %d)",
                         metric, patience, self.best.best, self.best.best_iteration)
            return True
        return False


def chosen_checkpoint(model, checkpoints_dir, run, best, final_path):
    """The checkpoint model selection picked, loaded into `model`: best.pth with --keep_best,
    else the final one. Returns (path, description)."""
    best_path = os.path.join(checkpoints_dir, BEST_CHECKPOINT)
    if run.keep_best and os.path.isfile(best_path):
        model.load_state_dict(load_checkpoint_file(best_path, BEST_CHECKPOINT)["model"])
        return best_path, f"best.pth (iteration {best.best_iteration}, best {best.metric})"
    return final_path, "the final model"


def store_thresholds(path, thresholds):
    """Add the tuned thresholds to a checkpoint file (rewritten atomically)."""
    checkpoint = load_checkpoint_file(path, "the chosen checkpoint")
    checkpoint["thresholds"] = [float(value) for value in thresholds]
    save_checkpoint_file(checkpoint, path)


def tune_and_store_thresholds(predict, chosen_path, chosen, holdout_indices, run, statistics):
    """Multi-label decision thresholds tuned per label on the validation clips with the chosen
    checkpoint, stored in it (evaluate and inference use them); returns them."""
    probabilities, targets = predict(holdout_indices)
    thresholds = tune_thresholds(probabilities, targets, run.threshold)
    fixed = compute_metrics(run.task, probabilities, targets, run.threshold)["macro_f1"]
    tuned = tuned_scores(probabilities, targets, thresholds)
    statistics.record("thresholds", {
        "labels": run.labels, "values": thresholds.tolist(), "chosen": chosen,
        "validation_macro_f1_fixed": fixed, "validation_macro_f1_tuned": tuned["macro_f1"]})
    store_thresholds(chosen_path, thresholds)
    logging.info("thresholds tuned per label on the validation clips (%s): macro-F1 %.4f at "
                 "%g, %.4f tuned (%s); stored in %s", chosen, fixed, run.threshold,
                 tuned["macro_f1"], ", ".join(f"{label} {value:.2f}" for label, value
                                              in zip(run.labels, thresholds)), chosen_path)
    return thresholds


def finish_selection(predict, chosen_path, chosen, holdout_indices, test_indices, run,
                     loss_func, statistics):
    """After training, with the chosen checkpoint (`predict(indices)` gives its probabilities
    and the targets): multi-label thresholds tuned on validation; then the test set, if any,
    scored once, at the fixed threshold and at the tuned ones."""
    thresholds = None
    if run.task == config.MULTI_LABEL and chosen_path:
        thresholds = tune_and_store_thresholds(predict, chosen_path, chosen, holdout_indices,
                                               run, statistics)
    if test_indices is not None:
        probabilities, targets = predict(test_indices)
        result = score(probabilities, targets, run.task, loss_func, run.threshold)
        if thresholds is not None:
            result["tuned"] = tuned_scores(probabilities, targets, thresholds)
        statistics.record("test", dict(result, chosen=chosen))
        metric = run.primary_metric
        logging.info("test set (%d clips), scored once with %s: %s %.4f%s", len(test_indices),
                     chosen, metric, result[metric],
                     f", macro-F1 {result['macro_f1']:.4f} at {run.threshold:g}, "
                     f"{result['tuned']['macro_f1']:.4f} at the tuned thresholds"
                     if thresholds is not None else "")
    statistics.dump()
