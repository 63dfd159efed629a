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
- The head is fitted on embeddings standardised with the training clips' mean and deviation:
  Adam (AMSGrad), --learning_rate (default 1e-3 here), --batch_size clips per step,
  --stop_iteration steps, evaluated every --eval_every; --keep_best and --early_stop_patience
  work as in training. The standardisation is then folded into the head's weights, so every
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
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pytorch.checkpoints import save_checkpoint_file
from pytorch.losses import LOSSES
from pytorch.pytorch_utils import (check_precision, forward_loader, probabilities_from_output,
                                   select_device, set_seed)
from pytorch.train import (BestTracker, StatisticsContainer, batch_source, build_model,
                           check_training_classes, checkpoint_bytes, chosen_checkpoint,
                           finish_selection, make_sampler, run_config, score, statistics_meta)
from utils.data_generator import EvaluateSampler, WaveformDataset
from utils.runs import STATISTICS_FILE, RunFolder, checkpoint_path, write_run_file
from utils.splits import split_train_eval_indices
from utils.utilities import atomic_path, create_logging

EMBEDDINGS_DIR = "embeddings"


def file_digest(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def features_stamp(features_path, clips):
    """What tells whether the HDF5 changed since a cache was written."""
    stat = os.stat(features_path)
    return {"features_bytes": stat.st_size, "features_mtime_ns": stat.st_mtime_ns, "clips": clips}


def cache_path(run):
    """The embedding cache of `run`'s HDF5, backbone checkpoint and front end."""
    key = json.dumps({"checkpoint_sha256": file_digest(run.pretrained_checkpoint_path),
                      "model_type": run.model_type, "audio": run.audio.front_end()},
                     sort_keys=True)
    name = os.path.splitext(os.path.basename(run.features))[0]
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(run.features), EMBEDDINGS_DIR, f"{name}.{digest}.h5"), key


def read_cache(path, key, stamp):
    """The cached embeddings, or None when there is no valid cache."""
    if not os.path.isfile(path):
        return None
    try:
        with h5py.File(path, "r") as hf:
            attrs = dict(hf.attrs)
            if attrs.get("key") != key or any(attrs.get(name) != value
                                              for name, value in stamp.items()):
                logging.info("%s was computed for another HDF5 or backbone; recomputing", path)
                return None
            return hf["embedding"][:]
    except (OSError, KeyError):
        logging.warning("%s is unreadable; recomputing it", path)
        return None


def clip_embeddings(run, dataset, model, batches, device):
    """(clips, embedding_size) float32: from the cache, or computed with `model`'s base and
    cached (written atomically)."""
    path, key = cache_path(run)
    stamp = features_stamp(run.features, len(dataset))
    embeddings = read_cache(path, key, stamp)
    if embeddings is not None:
        logging.info("embeddings of %d clips read from %s", len(embeddings), path)
        return embeddings, path
    started = time.time()
    loader = batches(EvaluateSampler(np.arange(len(dataset)), run.batch_size))
    with logging_redirect_tqdm():
        _, embeddings, _ = forward_loader(
            model.base, tqdm(loader, desc="embeddings", unit="batch"), device, run.task,
            run.precision, key="embedding")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temp_path:
        with h5py.File(temp_path, "w") as hf:
            hf.create_dataset("embedding", data=embeddings.astype(np.float32))
            hf.attrs.update(dict(stamp, key=key, model_type=run.model_type,
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


def head_probabilities(model, inputs, task):
    with torch.no_grad():
        return probabilities_from_output(model.head(inputs).float(), task).cpu().numpy()


def train_probe(args):
    """The linear probe of one holdout fold (or the filtered split), written like a training
    run of pytorch/train.py; returns (statistics dict, run dirs)."""
    set_seed(args.seed)
    device = select_device(args.cuda)
    dataset = WaveformDataset(args.features, in_memory=args.in_memory, as_int16=True)
    run = run_config(args, dataset.info)
    check_precision(run.precision, device)
    loss_func = LOSSES[run.loss_type]
    model = build_model(run, device, args.trust_checkpoint)
    run_folder = RunFolder(args.workspace, run)
    dirs = run_folder.dirs
    run_folder.claim(args.resume_iteration, checkpoint_bytes(model))
    log_path = create_logging(dirs["logs"], "train")
    write_run_file(run, dirs["statistics"])
    logging.info("run configuration: %s", run)

    train_indices, holdout_indices, test_indices = split_train_eval_indices(
        dataset.info, run.holdout_fold, run.split, run.test_fold)
    check_training_classes(dataset.targets[train_indices], run.labels, run.task)
    statistics = StatisticsContainer(os.path.join(dirs["statistics"], STATISTICS_FILE),
                                     meta=statistics_meta(run, world_size=1))
    embeddings, cache = clip_embeddings(run, dataset, model, batch_source(
        dataset, device, run.num_workers, run.seed), device)
    statistics.statistics["meta"].update(linear_probe=True, embedding_cache=cache)

    features = torch.from_numpy(embeddings).to(device)
    targets = np.asarray(dataset.targets, dtype=np.float32)
    train_targets = torch.from_numpy(targets).to(device)
    mean = features[train_indices].mean(dim=0)
    std = features[train_indices].std(dim=0).clamp_min(1e-6)  # a constant dimension stays put
    standardised = (features - mean) / std
    optimizer = torch.optim.Adam(model.fc_transfer.parameters(), lr=run.learning_rate,
                                 amsgrad=True)
    sampler = make_sampler(run, train_indices, dataset.targets)
    best = BestTracker(run.selection_metric)

    def save(name, iteration):
        path = (os.path.join(dirs["checkpoints"], name) if name
                else checkpoint_path(dirs["checkpoints"], iteration))
        save_checkpoint_file({"iteration": iteration, "model": folded_state_dict(model, mean, std),
                              "best": best.state_dict(), "config": run.to_dict()}, path)
        logging.info("saved %s", path)

    started, stop_early = time.time(), False
    with logging_redirect_tqdm():
        for iteration in tqdm(range(run.stop_iteration + 1), desc="linear probe", unit="it"):
            if iteration % run.eval_every == 0 or iteration == run.stop_iteration:
                result = score(head_probabilities(model, standardised[holdout_indices], run.task),
                               targets[holdout_indices], run.task, loss_func, run.threshold)
                statistics.append("validate", dict(result, iteration=iteration))
                if best.update(result, iteration) and run.keep_best:
                    save("best.pth", iteration)
                logging.info("iteration %d: validation %s %.4f, loss %.4f (%.1f s)", iteration,
                             best.metric, result[best.metric], result["loss"],
                             time.time() - started)
                stop_early = (run.early_stop_patience > 0 and
                              best.evaluations_without_improvement >= run.early_stop_patience)
            if iteration == run.stop_iteration or stop_early:
                break
            batch = sampler.next_batch()
            loss = loss_func({"clipwise_output": model.head(standardised[batch])},
                             train_targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            statistics.append("train", {"iteration": iteration + 1, "loss": loss.item()})
    save(None, iteration)
    logging.info("linear probe fitted in %.1f s", time.time() - started)

    # The chosen head (best.pth with --keep_best, else the final one) on the raw embeddings.
    chosen_path, chosen = chosen_checkpoint(model, dirs, run, best, checkpoint_path(
        dirs["checkpoints"], iteration))
    if os.path.basename(chosen_path) != "best.pth":  # best.pth came folded; fold the final head
        model.load_state_dict(folded_state_dict(model, mean, std))
    finish_selection(lambda indices: (head_probabilities(model, features[indices], run.task),
                                      targets[indices]),
                     chosen_path, chosen, holdout_indices, test_indices, run, loss_func, statistics)
    statistics.statistics["finished"] = {"iteration": iteration, "early_stop": stop_early}
    statistics.dump()
    logging.info("finished; log %s", log_path)
    run_folder.release()
    return statistics.statistics, dirs
