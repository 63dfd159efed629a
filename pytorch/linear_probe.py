"""Linear probe: a linear head fitted on the frozen backbone's embeddings (HEAR-style linear
evaluation), the field's quick baseline, with the outputs of full fine-tuning.

    python3 pytorch/main.py train --linear_probe --pretrained_checkpoint_path=X.pth \\
        --workspace=WS --holdout_fold=all

- Every clip's embedding (the backbone's `embedding` output in eval mode: no dropout, no
  SpecAugment, no mixup) is computed once and cached beside the HDF5, in
  FEATURES_DIR/embeddings/<features>.<key>.h5. The key hashes the checkpoint's bytes, the
  architecture and the front-end settings, so another checkpoint or other settings get their own
  cache; a cache whose HDF5 has changed since (size, modification time, clip count) is
  recomputed. The ten folds of --holdout_fold=all share one cache.
- The head is fitted on embeddings standardised with the training clips' mean and deviation,
  by the training loop's optimizer code (pytorch/optimization.py): --optimizer and
  --weight_decay, --lr_schedule with --warmup_iterations and --decay_iterations, and
  --grad_clip_norm apply to the head as they would to a whole model; --layer_decay is refused
  (one layer has none below it). --learning_rate (default 1e-3 here), --batch_size clips per
  step, --stop_iteration steps, evaluated every --eval_every; --keep_best and
  --early_stop_patience work as in training, and checkpoints are saved by the loop's
  Checkpointer (a failed save is retried, the final one must succeed). The standardisation is then folded into the head's weights, so every
  checkpoint is an ordinary Transfer_<model> (the pretrained base plus fc_transfer): evaluate,
  inference, the statistics, plots and the CV summary treat it like any fine-tuned run.
- A probe is refitted, never resumed: the same seed and cache give the same head in seconds.
"""
import hashlib
import json
import logging
import os
import time

import h5py
import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from pytorch.checkpoints import Checkpointer, read_pretrained
from pytorch.losses import LOSSES
from pytorch.embeddings import loader_embeddings
from pytorch.metrics_stream import open_metrics_stream
from pytorch.pytorch_utils import (autocast, check_precision, probabilities_from_output,
                                   select_device, set_seed, waveform_to_tensor)
from pytorch.run_setup import batch_source, build_model, load_dataset, make_sampler, open_run
from pytorch.optimization import clip_gradients, make_optimizer, set_learning_rates
from pytorch.selection import Selection, chosen_checkpoint, finish_selection, score
from utils.data_generator import EvaluateSampler, feature_files
from utils.runs import BEST_CHECKPOINT, STATISTICS_FILE
from utils.statistics_files import StatisticsContainer, statistics_meta
from utils.utilities import UsageError, atomic_path, progress, remove_stale_temporaries

EMBEDDINGS_DIR = "embeddings"


def features_stamp(features, clips):
    """What tells whether the HDF5 file(s) changed since a cache was written."""
    stats = [os.stat(path) for path in feature_files(features)]
    return {"features_bytes": sum(stat.st_size for stat in stats),
            "features_mtime_ns": max(stat.st_mtime_ns for stat in stats), "clips": clips}


def cache_path(run, trusted=False):
    """The embedding cache of `run`'s HDF5, backbone checkpoint and front end."""
    sha256 = read_pretrained(run.pretrained_checkpoint_path, trusted).sha256  # read once a run
    key = json.dumps({"checkpoint_sha256": sha256,
                      "model_type": run.model_type, "audio": run.audio.front_end()},
                     sort_keys=True)
    files = feature_files(run.features)
    folder = os.path.dirname(files[0])
    # One file: its name; several shards: their folder's.
    name = os.path.splitext(os.path.basename(files[0]))[0] if len(files) == 1 else \
        os.path.basename(folder)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(folder, EMBEDDINGS_DIR, f"{name}.{digest}.h5"), key


def array_digest(array):
    """The SHA-256 of an array's values: a cache whose rows were edited or reordered differs."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def read_cache(path, key, stamp, width):
    """The cached embeddings, or None when there is no valid cache: another HDF5 or backbone,
    another shape, edited values, or non-finite ones are all recomputed."""
    if not os.path.isfile(path):
        return None
    try:
        with h5py.File(path, "r") as hf:
            attrs = dict(hf.attrs)
            if attrs.get("key") != key or any(attrs.get(name) != value
                                              for name, value in stamp.items()):
                logging.info("%s was computed for another HDF5 or backbone; recomputing", path)
                return None
            embeddings = hf["embedding"][:]
    except (OSError, KeyError):
        logging.warning("%s is unreadable; recomputing it", path)
        return None
    if (embeddings.shape != (stamp["clips"], width) or attrs.get("sha256") != array_digest(embeddings)
            or not np.isfinite(embeddings).all()):
        logging.warning("%s holds other values than were computed (shape %s, expected %s); "
                        "recomputing it", path, embeddings.shape, (stamp["clips"], width))
        return None
    return embeddings


def clip_embeddings(run, dataset, model, batches, device, trusted=False):
    """(clips, embedding_size) float32: from the cache, or computed with `model`'s base and
    cached (written atomically)."""
    path, key = cache_path(run, trusted)
    stamp = features_stamp(run.features, len(dataset))
    width = model.fc_transfer.in_features
    embeddings = read_cache(path, key, stamp, width)
    if embeddings is not None:
        logging.info("embeddings of %d clips read from %s", len(embeddings), path)
        return embeddings, path
    started = time.time()
    loader = batches(EvaluateSampler(np.arange(len(dataset)), run.batch_size))
    base = model.base.eval()

    @torch.no_grad()
    def embed_batch(waveform):
        with autocast(device, run.precision):
            return base(waveform_to_tensor(waveform, device))["embedding"].float().cpu().numpy()

    with logging_redirect_tqdm():
        embeddings = np.concatenate([batch for _, batch in loader_embeddings(
            embed_batch, loader,
            f"--pretrained_checkpoint_path={run.pretrained_checkpoint_path}")])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale_temporaries([os.path.dirname(path)], prefix=f".{os.path.basename(path)}.")
    with atomic_path(path) as temp_path:
        with h5py.File(temp_path, "w") as hf:
            hf.create_dataset("embedding", data=embeddings.astype(np.float32))
            hf.attrs.update(dict(stamp, key=key, sha256=array_digest(embeddings),
                                 model_type=run.model_type,
                                 pretrained_checkpoint_path=run.pretrained_checkpoint_path))
    logging.info("embeddings of %d clips computed in %.1f s, cached in %s", len(embeddings),
                 time.time() - started, path)
    return embeddings, path


def folded_state_dict(model, mean, std):
    """The model's state dict with the input standardisation folded into fc_transfer:
    W (x - mean) / std + b = (W / std) x + (b - (W / std) mean)."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    weight = state["fc_transfer.weight"] / std
    state["fc_transfer.weight"] = weight
    state["fc_transfer.bias"] = state["fc_transfer.bias"] - weight @ mean
    return state


# The initial head of --head_init=probe: an L2-regularised linear fit (as scikit-learn's
# LogisticRegression with C about 1), solved by L-BFGS to convergence: convex, so the result
# depends on the embeddings alone, not on a seed or a learning rate.
INITIAL_HEAD_L2 = 1e-3
INITIAL_HEAD_STEPS = 200


def fit_initial_head(run, model, dataset, train_indices, batches, device, trusted=False):
    """LP-FT (Kumar et al. 2022): set `model`'s head to a linear fit on the frozen backbone's
    embeddings of the training clips, so that fine-tuning starts from a head that already
    reads the backbone instead of a random one that distorts it; returns the fit's accuracy
    (or mAP) on the training clips."""
    embeddings, _ = clip_embeddings(run, dataset, model, batches, device, trusted)
    features = torch.from_numpy(embeddings[train_indices]).to(device)
    mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(1e-6)
    inputs = (features - mean) / std
    targets = torch.from_numpy(np.asarray(dataset.targets, dtype=np.float32)[train_indices])
    targets = targets.to(device)
    head, loss_func = model.fc_transfer, LOSSES[run.loss_type]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    solver = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=INITIAL_HEAD_STEPS,
                               tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def objective():
        solver.zero_grad()
        loss = loss_func({"clipwise_output": model.head(inputs)}, targets) + \
            INITIAL_HEAD_L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    solver.step(objective)
    model.load_state_dict(folded_state_dict(model, mean, std))
    result = score(head_probabilities(model, features, run.task), targets.cpu().numpy(),
                   run.task, loss_func, run.threshold)
    logging.info("--head_init=probe: head fitted on the embeddings of %d training clips "
                 "(training loss %.3f)", len(train_indices), result["loss"])
    return result


def head_probabilities(model, inputs, task):
    with torch.no_grad():
        return probabilities_from_output(model.head(inputs).float(), task).cpu().numpy()


class ProbeHead:
    """The head being fitted on standardised embeddings, and its checkpoints: each one is the
    head with the standardisation folded in, an ordinary Transfer_<model> checkpoint."""

    def __init__(self, run, model, embeddings, train_indices, checkpoints_dir, device):
        self.run, self.model = run, model
        self.checkpointer = Checkpointer(checkpoints_dir, run, resume_iteration=0)
        self.features = torch.from_numpy(embeddings).to(device)
        self.mean = self.features[train_indices].mean(dim=0)
        # a constant dimension stays put
        self.std = self.features[train_indices].std(dim=0).clamp_min(1e-6)
        self.standardised = (self.features - self.mean) / self.std
        self.optimizer = make_optimizer(model, run, device)  # the base is frozen: the head's
        self.best = None  # the Selection's BestTracker, saved with each checkpoint

    def probabilities(self, indices, standardised=True):
        inputs = (self.standardised if standardised else self.features)[indices]
        return head_probabilities(self.model, inputs, self.run.task)

    def step(self, iteration, batch, targets, loss_func):
        set_learning_rates(self.optimizer, self.run, iteration)
        loss = loss_func({"clipwise_output": self.model.head(self.standardised[batch])},
                         targets[batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.model, self.optimizer, None, self.run.grad_clip_norm)
        self.optimizer.step()
        value = loss.item()
        if not np.isfinite(value):
            raise UsageError(f"the probe's training loss became {value}; stopped without saving "
                             "it: lower --learning_rate")
        return value

    def save(self, iteration, best=False):
        self.checkpointer.save({"iteration": iteration,
                                "model": folded_state_dict(self.model, self.mean, self.std),
                                "best": self.best.state_dict(), "config": self.run.to_dict()},
                               best)

    def fold_into_model(self):
        self.model.load_state_dict(folded_state_dict(self.model, self.mean, self.std))


def fit_head(head, run, selection, split, targets, loss_func):
    """The probe's loop: Adam steps on the head, validated as training validates; returns
    (last iteration, stopped early)."""
    train_indices, holdout_indices, _ = split
    sampler = make_sampler(run, train_indices, targets)
    train_targets = torch.from_numpy(targets).to(head.features.device)
    stop_early = False
    with logging_redirect_tqdm():
        for iteration in progress(range(run.stop_iteration + 1), desc="linear probe", unit="it"):
            if iteration % run.eval_every == 0 or iteration == run.stop_iteration:
                result = score(head.probabilities(holdout_indices), targets[holdout_indices],
                               run.task, loss_func, run.threshold)
                stop_early = selection.after_validation(result, iteration)
            if iteration == run.stop_iteration or stop_early:
                return iteration, stop_early
            loss = head.step(iteration, sampler.next_batch(), train_targets, loss_func)
            selection.statistics.append("train", {
                "iteration": iteration + 1, "loss": loss,
                "learning_rate": head.optimizer.param_groups[0]["lr"]})


def train_probe(run, workspace, resume_iteration=0, trust_checkpoint=False):
    """The linear probe of one holdout fold (or split), written like a training run of
    pytorch/train.py; returns (statistics dict, run dirs)."""
    set_seed(run.seed)
    device = select_device(run.cuda)
    dataset, split = load_dataset(run)
    check_precision(run.precision, device)
    loss_func = LOSSES[run.loss_type]
    model = build_model(run, device, trust_checkpoint)
    run_folder, log_path = open_run(run, workspace, resume_iteration, model)
    if resume_iteration:
        logging.warning("--resume_iteration=%d: a linear probe is never resumed; it is refitted "
                        "from its cached embeddings (seconds), with the same seed", resume_iteration)
    dirs = run_folder.dirs
    statistics = StatisticsContainer(os.path.join(dirs["statistics"], STATISTICS_FILE),
                                     meta=statistics_meta(run),
                                     stream=open_metrics_stream(run, dirs["statistics"]))
    embeddings, cache = clip_embeddings(run, dataset, model, batch_source(
        dataset, device, run.num_workers, run.seed), device, trust_checkpoint)
    statistics.update_meta(linear_probe=True, embedding_cache=cache)
    targets = np.asarray(dataset.targets, dtype=np.float32)
    head = ProbeHead(run, model, embeddings, split[0], dirs["checkpoints"], device)
    selection = Selection(run, statistics, lambda iteration: head.save(iteration, best=True))
    head.best = selection.best
    started = time.time()
    iteration, stop_early = fit_head(head, run, selection, split, targets, loss_func)
    head.save(iteration)
    head.checkpointer.check_final()
    final_path = head.checkpointer.last
    logging.info("linear probe fitted in %.1f s", time.time() - started)

    # The chosen head (best.pth with --keep_best, else the final one) on the raw embeddings.
    chosen_path, chosen = chosen_checkpoint(model, dirs["checkpoints"], run, selection.best,
                                            final_path)
    if os.path.basename(chosen_path) != BEST_CHECKPOINT:  # best.pth came folded
        head.fold_into_model()
    finish_selection(lambda indices: (head.probabilities(indices, standardised=False),
                                      targets[indices]),
                     chosen_path, chosen, split[1], split[2], run, loss_func, statistics)
    statistics.record("finished", {"iteration": iteration, "early_stop": stop_early})
    statistics.dump()
    statistics.close()
    logging.info("finished; log %s", log_path)
    run_folder.release()
    return statistics.statistics, dirs
