"""One training run: a holdout fold of a packed HDF5, a transfer model and mixup, in one loop.

The loop carries mixed precision, DistributedDataParallel (under torchrun) and torch.compile.
Every eval_every iterations the holdout fold is validated and the statistics pickle dumped;
every save_every iterations (and at the stop) a checkpoint holds everything needed to resume
exactly: model, optimizer, grad scaler, sampler position, best-so-far and every random state.
"""
import copy
import datetime
import logging
import os
import pickle
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from checkpoints import checkpoint_path, model_kwargs
from losses import LOSSES, resolve_loss_type
from models import create_model
from pytorch_utils import (Mixup, autocast, do_mixup, forward_loader, select_device,
                           waveform_to_tensor)
from utils import config
from utils.data_generator import EvaluateSampler, TrainSampler, WaveformDataset, collate_fn
from utils.metrics import compute_metrics
from utils.splits import split_train_eval_indices
from utils.utilities import (UsageError, atomic_pickle_dump, atomic_torch_save, create_folder,
                             create_logging, run_dirs, run_subdir, set_seed)


def audio_settings(args, info):
    """Front-end settings: sample rate and clip length from the HDF5, the STFT/mel ones from flags."""
    return {"sample_rate": info["sample_rate"], "clip_samples": info["clip_samples"],
            "window_size": args.window_size, "hop_size": args.hop_size,
            "mel_bins": args.mel_bins, "fmin": args.fmin, "fmax": args.fmax}


def run_directories(args, loss_type):
    pretrain = bool(args.pretrained_checkpoint_path)
    subdir = run_subdir(args.holdout_fold, args.model_type, pretrain, loss_type,
                        args.augmentation, args.batch_size, args.freeze_base)
    return run_dirs(args.workspace, subdir)


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
        """On resume: keep what was recorded up to the checkpoint's iteration."""
        if not os.path.isfile(self.path):
            return
        with open(self.path, "rb") as f:
            old = pickle.load(f)
        self.statistics["validate"] = [e for e in old["validate"] if e["iteration"] <= iteration]
        self.statistics["train"] = [e for e in old["train"] if e["iteration"] <= iteration]


class BestTracker:
    """Best validation score so far, and how many evaluations have passed without improving."""

    def __init__(self, metric):
        self.metric = metric
        self.best = -float("inf")
        self.best_iteration = None
        self.evaluations_without_improvement = 0

    def update(self, result, iteration):
        """Returns True when `result` is a new best."""
        score = result[self.metric]
        if score > self.best:
            self.best, self.best_iteration = score, iteration
            self.evaluations_without_improvement = 0
            return True
        self.evaluations_without_improvement += 1
        return False

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        self.__dict__.update(state)


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


def setup_distributed(args):
    """(rank, world_size, device). Under torchrun: NCCL on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return 0, 1, select_device(args.cuda)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if args.batch_size % world_size:
        raise UsageError(f"--batch_size={args.batch_size} must be divisible by the "
                         f"{world_size} processes (it is the global batch)")
    if args.cuda and torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return rank, world_size, device


class RankShare:
    """Each rank's contiguous share of every global batch (mixup pairs stay on one rank)."""

    def __init__(self, batch_sampler, rank, world_size):
        self.batch_sampler, self.rank, self.world_size = batch_sampler, rank, world_size

    def __iter__(self):
        for batch in self.batch_sampler:
            share = len(batch) // self.world_size
            yield batch[self.rank * share:(self.rank + 1) * share]


def configure_backends(device):
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_loader(dataset, batch_sampler, args, device):
    # Loaders draw worker seeds from generators of their own, never from the global RNG that
    # dropout and SpecAugment use: a resumed run then replays exactly.
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=args.num_workers,
        collate_fn=collate_fn, pin_memory=device.type == "cuda",
        persistent_workers=args.num_workers > 0,
        generator=torch.Generator().manual_seed(args.seed))


def evaluate(model, loader, device, task, loss_func, threshold, precision):
    """Loss and metrics of a model on a loader's clips (metrics as plain Python values)."""
    _, probabilities, targets = forward_loader(model, loader, device, task, precision)
    output = torch.from_numpy(probabilities)
    if task == config.SINGLE_LABEL:
        output = output.clamp_min(1e-12).log()
    loss = loss_func({"clipwise_output": output}, torch.from_numpy(targets)).item()
    metrics = compute_metrics(task, probabilities, targets, threshold)
    metrics = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
               for key, value in metrics.items()}
    return dict(metrics, loss=loss)


def train(args):
    """Train one holdout fold (or the filtered split); returns (statistics dict, run dirs)."""
    rank, world_size, device = setup_distributed(args)
    is_master = rank == 0
    set_seed(args.seed)
    configure_backends(device)

    dataset = WaveformDataset(args.features, in_memory=args.in_memory, as_int16=True)
    info = dataset.info
    task, labels = info["task"], info["labels"]
    loss_type = resolve_loss_type(args.loss_type, task)
    loss_func = LOSSES[loss_type]
    dirs = run_directories(args, loss_type)
    log_path = None
    if is_master:
        create_folder(dirs["checkpoints"])
        log_path = create_logging(dirs["logs"], "train")
    run_arguments = {key: value for key, value in vars(args).items() if key not in ("handler", "argv")}
    logging.info("arguments: %s", run_arguments)

    settings = audio_settings(args, info)
    raw_model = create_model(args.model_type, **model_kwargs(settings, labels, task),
                             freeze_base=args.freeze_base,
                             pretrained_checkpoint_path=args.pretrained_checkpoint_path)
    if args.pretrained_checkpoint_path:
        logging.info("loaded the pretrained base from %s", args.pretrained_checkpoint_path)
    if args.no_spec_augment:
        raw_model.base.spec_augmenter = torch.nn.Identity()
    raw_model.to(device)
    if args.channels_last:
        raw_model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in raw_model.parameters() if p.requires_grad],
                                 lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0.0, amsgrad=True)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    train_indices, holdout_indices, test_indices = split_train_eval_indices(
        info["audio_names"], info["folds"], args.holdout_fold, args.split)
    mixup = Mixup(mixup_alpha=1.0, seed=args.seed) if args.augmentation == "mixup" else None
    sampler = TrainSampler(train_indices, args.batch_size, mixup=mixup is not None, seed=args.seed)
    primary_metric = "accuracy" if task == config.SINGLE_LABEL else "mAP"
    best = BestTracker(primary_metric)
    statistics = StatisticsContainer(
        os.path.join(dirs["statistics"], "statistics.pickle"),
        meta={"task": task, "labels": labels, "holdout_fold": args.holdout_fold,
              "split": args.split, "model_type": args.model_type, "loss_type": loss_type,
              "primary_metric": primary_metric, "world_size": world_size})

    iteration = args.resume_iteration
    if iteration > 0:
        resume_path = checkpoint_path(dirs["checkpoints"], iteration)
        if not os.path.isfile(resume_path):
            raise UsageError(f"--resume_iteration={iteration}: no checkpoint {resume_path}")
        checkpoint = torch.load(resume_path, map_location=device, weights_only=False)
        raw_model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        sampler.load_state_dict(checkpoint["sampler"])
        best.load_state_dict(checkpoint["best"])
        restore_rng_states(checkpoint["rng"], mixup)
        statistics.load_until(iteration)
        logging.info("resumed from %s", resume_path)

    model = raw_model
    if args.compile:
        model = torch.compile(model)
    if world_size > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # The loader's batch sampler runs ahead of training (prefetch); `sampler` itself advances
    # one batch per trained iteration, so its state in a checkpoint is exactly what was consumed.
    train_loader = make_loader(dataset, RankShare(copy.deepcopy(sampler), rank, world_size),
                               args, device)
    holdout_loader = make_loader(dataset, EvaluateSampler(holdout_indices, args.batch_size),
                                 args, device)
    logging.info("task %s, %d classes, %d training clips, %d validation clips (%s), device %s, "
                 "%d process(es)", task, len(labels), len(train_indices), len(holdout_indices),
                 "filtered split" if args.split == "filtered" else f"fold {args.holdout_fold}",
                 device, world_size)

    def checkpoint_dict():
        return {"iteration": iteration, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "sampler": sampler.state_dict(), "best": best.state_dict(),
                "rng": rng_states(mixup), "labels": labels, "task": task,
                "audio_settings": settings, "model_type": args.model_type,
                "args": run_arguments}

    def save(path):
        atomic_torch_save(checkpoint_dict(), path)
        logging.info("saved %s", path)

    def flush_train_losses(pending):
        """Losses stay on the device until here: a .item() per step would stall the GPU."""
        if pending:
            values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()
            for (step, _), value in zip(pending, values):
                statistics.append("train", {"iteration": step, "loss": value})
            pending.clear()

    pending_losses = []
    train_iterator = iter(train_loader)
    started = time.time()
    progress = tqdm(total=args.stop_iteration, initial=iteration, desc="training", unit="it",
                    disable=not is_master)
    with logging_redirect_tqdm():
        while True:
            stop_early = False
            resumed_here = iteration == args.resume_iteration > 0  # validated before the save
            if (iteration % args.eval_every == 0 or iteration == args.stop_iteration) and not resumed_here:
                flush_train_losses(pending_losses)
                if is_master:
                    result = evaluate(raw_model, holdout_loader, device, task, loss_func,
                                      args.threshold, args.precision)
                    statistics.append("validate", dict(result, iteration=iteration))
                    statistics.dump()
                    improved = best.update(result, iteration)
                    if args.keep_best and improved:
                        save(os.path.join(dirs["checkpoints"], "best.pth"))
                    train_loss = statistics.statistics["train"][-1]["loss"] if iteration else float("nan")
                    logging.info("iteration %d: validation %s %.4f, loss %.4f; train loss %.4f "
                                 "(%.1f s)", iteration, primary_metric, result[primary_metric],
                                 result["loss"], train_loss, time.time() - started)
                    stop_early = (args.early_stop_patience > 0 and
                                  best.evaluations_without_improvement >= args.early_stop_patience)
                    if stop_early:
                        logging.info("early stop: no better %s in %d evaluations (best %.4f at "
                                     "iteration %d)", primary_metric, args.early_stop_patience,
                                     best.best, best.best_iteration)
                if world_size > 1:  # every rank follows rank 0's early-stop decision
                    flag = torch.tensor([int(stop_early)], device=device)
                    dist.broadcast(flag, src=0)
                    stop_early = bool(flag.item())
            at_end = iteration >= args.stop_iteration or stop_early
            if is_master and iteration > args.resume_iteration and (
                    iteration % args.save_every == 0 or at_end):
                save(checkpoint_path(dirs["checkpoints"], iteration))
            if at_end:
                break

            batch = next(train_iterator)
            sampler.next_batch()
            model.train()
            waveform = waveform_to_tensor(batch["waveform"], device)
            target = torch.as_tensor(batch["target"]).to(device, non_blocking=True)
            if args.channels_last:
                waveform = waveform.contiguous()
            with autocast(device, args.precision):
                if mixup is not None:
                    # Drawn for the whole global batch on every rank, then each takes its share.
                    lambdas = mixup.get_lambda(len(waveform) * world_size)
                    share = slice(rank * len(waveform), (rank + 1) * len(waveform))
                    mixup_lambda = torch.as_tensor(lambdas[share]).to(device)
                    output = model(waveform, mixup_lambda)
                    target = do_mixup(target, mixup_lambda)
                else:
                    output = model(waveform)
                loss = loss_func(output, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            logged_loss = loss.detach()
            if world_size > 1:  # the recorded loss is the global batch's
                dist.all_reduce(logged_loss, op=dist.ReduceOp.AVG if device.type == "cuda"
                                else dist.ReduceOp.SUM)
                if device.type != "cuda":
                    logged_loss /= world_size
            pending_losses.append((iteration, logged_loss))
            progress.update(1)
    progress.close()

    if test_indices is not None and is_master:
        report_test(raw_model, dataset, test_indices, dirs, args, device, task, loss_func,
                    statistics, best)
    logging.info("finished at iteration %d in %.1f s; log %s", iteration,
                 time.time() - started, log_path)
    if world_size > 1:
        dist.barrier()
    return statistics.statistics, dirs


def report_test(model, dataset, test_indices, dirs, args, device, task, loss_func, statistics,
                best):
    """Filtered split: score the test set with the checkpoint chosen on the validation set."""
    best_path = os.path.join(dirs["checkpoints"], "best.pth")
    if args.keep_best and os.path.isfile(best_path):
        model.load_state_dict(torch.load(best_path, map_location=device,
                                         weights_only=False)["model"])
        chosen = f"best.pth (iteration {best.best_iteration})"
    else:
        chosen = "the final model"
    loader = make_loader(dataset, EvaluateSampler(test_indices, args.batch_size), args, device)
    result = evaluate(model, loader, device, task, loss_func, args.threshold, args.precision)
    statistics.statistics["test"] = dict(result, chosen=chosen)
    statistics.dump()
    metric = statistics.statistics["meta"]["primary_metric"]
    logging.info("test set (%d clips) with %s: %s %.4f", len(test_indices), chosen, metric,
                 result[metric])
