"""One training run: a holdout fold of a packed HDF5, Transfer_Cnn14 and mixup, in one loop.

Every eval_every iterations the holdout fold is validated and the statistics pickle dumped;
every save_every iterations (and at the stop) a checkpoint holds everything needed to resume
exactly: model, optimizer, sampler position and every random state.
"""
import copy
import datetime
import logging
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from checkpoints import checkpoint_path, model_kwargs
from losses import LOSSES, resolve_loss_type
from models import create_model
from pytorch_utils import Mixup, autocast, do_mixup, forward_loader, select_device, waveform_to_tensor
from utils import config
from utils.data_generator import (EvaluateSampler, TrainSampler, WaveformDataset, collate_fn,
                                  split_indices)
from utils.metrics import compute_metrics
from utils.utilities import (UsageError, atomic_pickle_dump, atomic_torch_save, create_folder,
                             create_logging, run_dirs, run_subdir, set_seed)


def audio_settings(args, info):
    """Front-end settings: sample rate and clip length from the HDF5, the STFT/mel ones from flags."""
    return {"sample_rate": info["sample_rate"], "clip_samples": info["clip_samples"],
            "window_size": args.window_size, "hop_size": args.hop_size,
            "mel_bins": args.mel_bins, "fmin": args.fmin, "fmax": args.fmax}


class StatisticsContainer:
    """The original's statistics pickle, {'validate': [...], 'train': [...]}, plus run metadata."""

    def __init__(self, path, meta):
        self.path = path
        self.backup_path = "{}_{}.pickle".format(
            os.path.splitext(path)[0], datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
        self.statistics = {"validate": [], "train": [], "meta": meta}

    def append(self, kind, entry):
        self.statistics[kind].append(entry)

    def dump(self):
        atomic_pickle_dump(self.statistics, self.path)
        atomic_pickle_dump(self.statistics, self.backup_path)

    def load_until(self, iteration):
        """On resume: keep what was recorded before `iteration`, which is recomputed."""
        import pickle
        if os.path.isfile(self.path):
            with open(self.path, "rb") as f:
                old = pickle.load(f)
            for kind in ("validate", "train"):
                self.statistics[kind] = [entry for entry in old.get(kind, [])
                                         if entry["iteration"] < iteration
                                         or (kind == "train" and entry["iteration"] == iteration)]


def rng_states(mixup):
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "mixup": mixup.random_state.get_state() if mixup else None}


def restore_rng_states(states, mixup):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if mixup is not None and states["mixup"] is not None:
        mixup.random_state.set_state(states["mixup"])


def evaluate_holdout(model, loader, device, task, loss_func, threshold, precision):
    names, probabilities, targets = forward_loader(model, loader, device, task, precision)
    output = torch.from_numpy(probabilities)
    if task == config.SINGLE_LABEL:
        output = output.clamp_min(1e-12).log()
    loss = loss_func({"clipwise_output": output}, torch.from_numpy(targets)).item()
    metrics = compute_metrics(task, probabilities, targets, threshold)
    metrics = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
               for key, value in metrics.items()}
    return dict(metrics, loss=loss)


def train(args):
    """Train one holdout fold; returns the final statistics dict."""
    set_seed(args.seed)
    dataset = WaveformDataset(args.features, in_memory=args.in_memory)
    hdf5_info = dataset.info
    task = hdf5_info["task"]
    loss_type = resolve_loss_type(args.loss_type, task)
    pretrain = bool(args.pretrained_checkpoint_path)
    subdir = run_subdir(args.holdout_fold, args.model_type, pretrain, loss_type,
                        args.augmentation, args.batch_size, args.freeze_base)
    dirs = run_dirs(args.workspace, subdir)
    create_folder(dirs["checkpoints"])
    log_path = create_logging(dirs["logs"], "train")
    logging.info("arguments: %s", vars(args))
    device = select_device(args.cuda)

    settings = audio_settings(args, hdf5_info)
    model = create_model(args.model_type, **model_kwargs(settings, hdf5_info["labels"], task),
                         freeze_base=args.freeze_base,
                         pretrained_checkpoint_path=args.pretrained_checkpoint_path).to(device)
    if args.pretrained_checkpoint_path:
        logging.info("loaded pretrained base from %s", args.pretrained_checkpoint_path)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.learning_rate, betas=(0.9, 0.999),
                                 eps=1e-8, weight_decay=0.0, amsgrad=True)
    loss_func = LOSSES[loss_type]

    train_indices, holdout_indices = split_indices(hdf5_info["folds"], args.holdout_fold)
    mixup = Mixup(mixup_alpha=1.0, seed=args.seed) if args.augmentation == "mixup" else None
    sampler = TrainSampler(train_indices, args.batch_size, mixup=mixup is not None, seed=args.seed)

    statistics = StatisticsContainer(
        os.path.join(dirs["statistics"], "statistics.pickle"),
        meta={"task": task, "labels": hdf5_info["labels"], "holdout_fold": args.holdout_fold,
              "model_type": args.model_type, "loss_type": loss_type,
              "primary_metric": "accuracy" if task == config.SINGLE_LABEL else "mAP"})

    iteration = args.resume_iteration
    if iteration > 0:
        resume_path = checkpoint_path(dirs["checkpoints"], iteration)
        if not os.path.isfile(resume_path):
            raise UsageError(f"--resume_iteration={iteration}: no checkpoint {resume_path}")
        checkpoint = torch.load(resume_path, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sampler.load_state_dict(checkpoint["sampler"])
        restore_rng_states(checkpoint["rng"], mixup)
        statistics.load_until(iteration)
        logging.info("resumed from %s", resume_path)

    # The loader's batch sampler runs ahead of training (prefetch); `sampler` itself advances
    # one batch per trained iteration, so its state in a checkpoint is exactly what was consumed.
    loader_sampler = copy.deepcopy(sampler)
    loader_kwargs = {"num_workers": args.num_workers, "collate_fn": collate_fn,
                     "pin_memory": device.type == "cuda",
                     "persistent_workers": args.num_workers > 0}
    train_loader = torch.utils.data.DataLoader(dataset, batch_sampler=loader_sampler, **loader_kwargs)
    holdout_loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=EvaluateSampler(holdout_indices, args.batch_size), **loader_kwargs)

    logging.info("task %s, %d classes, %d training clips, %d holdout clips (fold %s), device %s",
                 task, len(hdf5_info["labels"]), len(train_indices), len(holdout_indices),
                 args.holdout_fold, device)

    def save_checkpoint():
        path = checkpoint_path(dirs["checkpoints"], iteration)
        atomic_torch_save({
            "iteration": iteration, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
            "rng": rng_states(mixup), "labels": hdf5_info["labels"], "task": task,
            "audio_settings": settings, "model_type": args.model_type, "args": vars(args),
        }, path)
        logging.info("saved %s", path)

    train_iterator = iter(train_loader)
    progress = tqdm(total=args.stop_iteration, initial=iteration, desc="training", unit="it")
    started = time.time()
    while True:
        if iteration % args.eval_every == 0 or iteration == args.stop_iteration:
            result = evaluate_holdout(model, holdout_loader, device, task, loss_func,
                                      args.threshold, args.precision)
            statistics.append("validate", dict(result, iteration=iteration))
            statistics.dump()
            logging.info("iteration %d: validate %s %.4f, loss %.4f (%.1f s)", iteration,
                         statistics.statistics["meta"]["primary_metric"],
                         result[statistics.statistics["meta"]["primary_metric"]],
                         result["loss"], time.time() - started)
        if iteration > args.resume_iteration and (
                iteration % args.save_every == 0 or iteration == args.stop_iteration):
            save_checkpoint()
        if iteration >= args.stop_iteration:
            break

        batch = next(train_iterator)
        sampler.next_batch()
        model.train()
        waveform = waveform_to_tensor(batch["waveform"], device)
        target = torch.as_tensor(batch["target"], device=device)
        with autocast(device, args.precision):
            if mixup is not None:
                mixup_lambda = torch.as_tensor(mixup.get_lambda(len(waveform)), device=device)
                output = model(waveform, mixup_lambda)
                target = do_mixup(target, mixup_lambda)
            else:
                output = model(waveform)
            loss = loss_func(output, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        statistics.append("train", {"iteration": iteration, "loss": loss.item()})
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.4f}")
    progress.close()
    logging.info("finished at iteration %d in %.1f s; log %s", iteration, time.time() - started,
                 log_path)
    return statistics.statistics, dirs
