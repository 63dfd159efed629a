"""One training run: a holdout fold of a packed HDF5, a transfer model and mixup, in one loop.

The loop carries mixed precision, DistributedDataParallel (under torchrun) and torch.compile.
Every eval_every iterations the holdout fold is validated and the statistics pickle dumped;
every save_every iterations (and at the stop) a checkpoint holds everything needed to resume
exactly: model, optimizer, grad scaler, sampler position, best-so-far and every random state
(each rank's own, under torchrun).

Under torchrun every rank draws the same global batches and mixup weights (same seeds) and
trains on its contiguous share; DDP averages the gradients, so the step equals one process
training the global batch (exactly so when BatchNorm uses running statistics, i.e. with a
frozen base; otherwise each rank normalises with its own share unless --sync_batchnorm).
Rank 0 alone validates and writes statistics, logs and checkpoints.
"""
import atexit
import copy
import datetime
import logging
import math
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pytorch.checkpoints import load_checkpoint_file, save_checkpoint_file
from pytorch.losses import LOSSES, resolve_loss_type
from pytorch.models import TransferModel, create_model, tagger_of
from pytorch.published import identify_checkpoint
from pytorch.pytorch_utils import (Mixup, ResidentClips, autocast, check_precision, do_mixup,
                                   forward_loader, make_loader, select_device, set_seed,
                                   waveform_to_tensor)
from utils import config
from utils.config import AudioConfig, RunConfig
from utils.data_generator import (BalancedTrainSampler, EvaluateSampler, TrainSampler,
                                  WaveformDataset, read_hdf5_info)
from utils.metrics import compute_metrics, tune_thresholds, tuned_scores
from utils.runs import STATISTICS_FILE, RunFolder, checkpoint_path, format_changes, write_run_file
from utils.splits import split_train_eval_indices
from utils.utilities import UsageError, atomic_pickle_dump, create_logging, safe_pickle_load


FRONT_END_FLAGS = ("window_size", "hop_size", "mel_bins", "fmin", "fmax")


def architecture(args, sample_rate):
    """(model_type, front-end settings): given flags first, then what the pretrained checkpoint
    holds (pytorch/published.py), then the Cnn14 defaults."""
    found = None
    if args.pretrained_checkpoint_path:
        try:
            found = identify_checkpoint(args.pretrained_checkpoint_path, args.trust_checkpoint)
        except UsageError as error:
            if not args.model_type:
                raise
            # Not a published model: the flags say what it is, and loading checks it strictly.
            logging.warning("%s; using --model_type=%s and the front-end flags", error,
                            args.model_type)
    if found:
        if found.audio["sample_rate"] != sample_rate:
            # Repacking resamples once, with soxr VHQ, and the HDF5 then records the rate;
            # resampling on load would cost every epoch and hide the mismatch.
            raise UsageError(
                f"--pretrained_checkpoint_path={args.pretrained_checkpoint_path}: {found.name} "
                f"was trained on {found.audio['sample_rate']} Hz audio, but --features="
                f"{args.features} holds {sample_rate} Hz; repack the audio with utils/features.py "
                f"--sample_rate={found.audio['sample_rate']} and pass that file as --features")
    defaults = found.audio if found else AudioConfig().front_end()
    front_end = {key: defaults[key] if getattr(args, key, None) is None else getattr(args, key)
                 for key in FRONT_END_FLAGS}
    model_type = args.model_type or (f"Transfer_{found.name}" if found else "Transfer_Cnn14")
    return model_type, front_end


def run_config(args, info=None):
    """The run's RunConfig: the data's settings from the HDF5 (`info`), the architecture and
    front end from the pretrained checkpoint unless flags say otherwise, the rest from the flags."""
    info = info or read_hdf5_info(args.features)
    model_type, front_end = architecture(args, info["sample_rate"])
    audio = AudioConfig(sample_rate=info["sample_rate"], clip_samples=info["clip_samples"],
                        **front_end)
    flags = {name: getattr(args, name) for name in RunConfig.__dataclass_fields__
             if hasattr(args, name)}
    on_gpu = bool(args.cuda) and torch.cuda.is_available()
    flags.update(precision=args.precision or ("bf16" if on_gpu else "fp32"),
                 compile=on_gpu if args.compile is None else args.compile,
                 channels_last=on_gpu if args.channels_last is None else args.channels_last)
    flags.update(model_type=model_type, task=info["task"], labels=list(info["labels"]), audio=audio,
                 features=os.path.abspath(args.features), clips=len(info["audio_names"]),
                 pretrained_checkpoint_path=(os.path.abspath(args.pretrained_checkpoint_path)
                                             if args.pretrained_checkpoint_path else None),
                 loss_type=resolve_loss_type(args.loss_type, info["task"]),
                 spec_augment=not args.no_spec_augment)
    select_by = getattr(args, "select_by", None)
    if select_by and select_by not in config.SELECTION_METRICS[info["task"]]:
        raise UsageError(f"--select_by={select_by}: a {info['task']} run is scored by "
                         f"{', '.join(config.SELECTION_METRICS[info['task']])}")
    probe = getattr(args, "linear_probe", False)
    flags["learning_rate"] = args.learning_rate or (1e-3 if probe else 1e-4)
    if probe:
        if not args.pretrained_checkpoint_path:
            raise UsageError("--linear_probe: needs --pretrained_checkpoint_path, the backbone "
                             "whose embeddings it probes")
        # The head alone learns, on embeddings of the clips as they are.
        flags.update(freeze_base=True, augmentation="none", spec_augment=False)
    return RunConfig(**flags)


def statistics_meta(run, world_size):
    return {"task": run.task, "labels": run.labels, "holdout_fold": run.holdout_fold,
            "split": run.split, "model_type": run.model_type, "loss_type": run.loss_type,
            "primary_metric": run.primary_metric, "world_size": world_size}


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
            old = safe_pickle_load(f)
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


# The whole dataset stays in GPU memory when it takes less than this share of the free memory.
GPU_RESIDENT_FRACTION = 0.25


def rng_states(mixup, device):
    """This process's random states (CUDA: the training device's generator only)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "mixup": mixup.random_state.get_state() if mixup else None}


def restore_rng_states(states, mixup, device):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    if mixup is not None and states["mixup"] is not None:
        mixup.random_state.set_state(states["mixup"])


def all_rank_rng_states(mixup, device, world_size):
    """Every rank's random states, gathered on each rank (a collective: all ranks call it)."""
    states = rng_states(mixup, device)
    if world_size == 1:
        return [states]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, states)
    return gathered


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
        # Rank 0 validates alone while the others wait at a broadcast: allow a long validation.
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if backend == "nccl" else None)
        atexit.register(dist.destroy_process_group)
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


def resident_clips(dataset, device):
    """The dataset held whole on the training device, or None to stream it through loaders.

    In-memory datasets stay on the CPU as they are; on a GPU when they take less than
    GPU_RESIDENT_FRACTION of its free memory (GTZAN's 1,000 x 30 s clips are 1.9 GB in int16).
    """
    if not dataset.in_memory:
        return None
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if dataset.waveforms.nbytes > GPU_RESIDENT_FRACTION * free_bytes:
            return None
    return ResidentClips(dataset, device)


def batch_source(dataset, device, num_workers, seed):
    """A function batch_sampler -> iterable of batches: gathered on the device when the dataset
    fits there, else a DataLoader with `num_workers` workers."""
    resident = resident_clips(dataset, device)
    if resident is not None:
        logging.info("the dataset (%.2f GB) stays on %s for the run",
                     dataset.waveforms.nbytes / 1e9, device)
        return resident.batches
    return lambda batch_sampler: make_loader(dataset, batch_sampler, num_workers, seed, device)


def make_sampler(run, train_indices, targets, mixup=False):
    if run.sampler == "balanced":
        return BalancedTrainSampler(train_indices, targets, run.batch_size, mixup, run.seed)
    return TrainSampler(train_indices, run.batch_size, mixup=mixup, seed=run.seed)


def build_model(run, device, trust_checkpoint=False):
    """The model to train, on `device` (unwrapped: its state_dict is what checkpoints hold)."""
    model = create_model(run.model_type, **run.audio.front_end(),
                         classes_num=len(run.labels), task=run.task,
                         freeze_base=run.freeze_base,
                         pretrained_checkpoint_path=run.pretrained_checkpoint_path,
                         trust_checkpoint=trust_checkpoint)
    tagger = tagger_of(model)
    if not run.spec_augment and hasattr(tagger, "spec_augmenter"):
        tagger.spec_augmenter = torch.nn.Identity()
    if isinstance(model, TransferModel):
        # The transfer head reads the base's embedding, never its AudioSet classifier, whose
        # parameters would get no gradient: DDP fails on such unused parameters.
        model.base.audioset_classifier().requires_grad_(False)
    model.to(device)
    if run.channels_last:  # conv weights channels-last; the activations follow them
        model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(model, learning_rate, device):
    """The recipe's Adam (AMSGrad) over the trainable parameters; one fused kernel on CUDA."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                            lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            amsgrad=True, fused=True if device.type == "cuda" else None)


def wrap_model(raw_model, device, world_size, compile_model):
    """DDP across processes, then torch.compile: compiling the DDP module lets dynamo split the
    graph at DDP's gradient buckets, so their all-reduce overlaps the backward pass."""
    model = raw_model
    if world_size > 1:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True)  # gradients live in the buckets: one copy fewer
    if compile_model:
        model = torch.compile(model)
    return model


def rank_mixup_lambda(mixup, rank_batch_size, rank, world_size):
    """This rank's share of mixup weights drawn for the whole global batch: every rank's
    generator stays in step, and the weights equal those of one process on the global batch."""
    lambdas = mixup.get_lambda(rank_batch_size * world_size)
    return torch.from_numpy(lambdas[rank * rank_batch_size:(rank + 1) * rank_batch_size])


def train_step(model, batch, device, precision, loss_func, optimizer, scaler, mixup_lambda=None):
    """One optimisation step on a batch of clips; returns the loss (detached, on the device)."""
    model.train()
    waveform = waveform_to_tensor(batch["waveform"], device)
    target = torch.as_tensor(batch["target"]).to(device, non_blocking=True)
    with autocast(device, precision):
        if mixup_lambda is not None:
            mixup_lambda = mixup_lambda.to(device, non_blocking=True)  # no GPU sync per step
            output = model(waveform, mixup_lambda)
            target = do_mixup(target, mixup_lambda)
        else:
            output = model(waveform)
        loss = loss_func(output, target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def global_mean(value, world_size):
    """The mean over ranks of each rank's mean over its (equal) share: the global batch's mean."""
    if world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)  # SUM, then divide: gloo has no AVG
    return value / world_size


def evaluate(model, loader, device, task, loss_func, threshold, precision):
    """Loss and metrics of a model on a loader's clips (metrics as plain Python values)."""
    _, probabilities, targets = forward_loader(model, loader, device, task, precision)
    return score(probabilities, targets, task, loss_func, threshold)


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


def check_training_classes(targets, labels, task):
    """A single-label run needs two classes to tell apart (one class "trains" to accuracy 1.0);
    a label without training clips cannot be learned: say so before training."""
    present = targets.sum(axis=0) > 0
    if task == config.SINGLE_LABEL and present.sum() < 2:
        raise UsageError(f"the training clips hold {int(present.sum())} class(es) "
                         f"({', '.join(l for l, p in zip(labels, present) if p) or 'none'}); "
                         "a classifier needs at least two: pack more classes")
    missing = [label for label, here in zip(labels, present) if not here]
    if missing:
        logging.warning("no training clip has the label(s) %s: they cannot be learned",
                        "; ".join(missing))


def checkpoint_bytes(model):
    """About how large a training checkpoint of `model` is: the weights plus Adam's (AMSGrad)
    three moments per trainable weight, with a margin."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return int(1.1 * (weights + 3 * trainable)) + 2**20


def check_resumable(checkpoint, run, path):
    """The checkpoint's run must be this run in everything that shapes a step."""
    if "config" not in checkpoint:
        return  # written before RunConfig: the run folder's run.json was compared instead
    stored = RunConfig.from_dict(checkpoint["config"], path)
    fixed = stored.differences(run, resumable=False)
    if fixed:
        raise UsageError(f"--resume_iteration: {path} was trained with other settings "
                         f"({format_changes(fixed)}); resume with the same ones, or start a new run with "
                         "--run_name=NAME")


def train(args):
    """Train one holdout fold (or the filtered split); returns (statistics dict, run dirs)."""
    if getattr(args, "linear_probe", False):
        from pytorch.linear_probe import train_probe  # it builds on this module
        return train_probe(args)
    rank, world_size, device = setup_distributed(args)
    is_master = rank == 0
    sync_batchnorm = args.sync_batchnorm and world_size > 1
    if sync_batchnorm and device.type != "cuda":
        raise UsageError("--sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no CPU "
                         "kernel); drop it on CPUs")
    set_seed(args.seed)  # the same initial weights on every rank
    configure_backends(device)

    dataset = WaveformDataset(args.features, in_memory=args.in_memory, as_int16=True)
    info = dataset.info
    run = run_config(args, info)
    check_precision(run.precision, device)
    task, labels = run.task, run.labels
    loss_func = LOSSES[run.loss_type]
    raw_model = build_model(run, device, args.trust_checkpoint)
    run_folder = RunFolder(args.workspace, run)
    dirs = run_folder.dirs
    log_path = None
    if is_master:  # before any training: the folders are writable, free and this run's alone
        run_folder.claim(args.resume_iteration, checkpoint_bytes(raw_model))
        log_path = create_logging(dirs["logs"], "train")
        write_run_file(run, dirs["statistics"])
    logging.info("run configuration: %s", run)
    if run.pretrained_checkpoint_path:
        logging.info("loaded the pretrained base from %s", run.pretrained_checkpoint_path)
    if sync_batchnorm:  # BatchNorm statistics over the global batch, as one process would
        raw_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(raw_model)
    optimizer = make_optimizer(raw_model, run.learning_rate, device)
    scaler = torch.amp.GradScaler(device.type, enabled=run.precision == "fp16")

    train_indices, holdout_indices, test_indices = split_train_eval_indices(
        info, run.holdout_fold, run.split, run.test_fold)
    check_training_classes(dataset.targets[train_indices], labels, task)
    mixup = Mixup(mixup_alpha=1.0, seed=run.seed) if run.augmentation == "mixup" else None
    sampler = make_sampler(run, train_indices, dataset.targets, mixup is not None)
    primary_metric = run.selection_metric
    best = BestTracker(primary_metric)
    statistics = StatisticsContainer(os.path.join(dirs["statistics"], STATISTICS_FILE),
                                     meta=statistics_meta(run, world_size))

    iteration = args.resume_iteration
    if iteration > 0:
        resume_path = checkpoint_path(dirs["checkpoints"], iteration)
        if not os.path.isfile(resume_path):
            raise UsageError(f"--resume_iteration={iteration}: no checkpoint {resume_path}")
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest over.
        checkpoint = load_checkpoint_file(resume_path, "--resume_iteration", args.trust_checkpoint)
        check_resumable(checkpoint, run, resume_path)
        raw_model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        sampler.load_state_dict(checkpoint["sampler"])
        best.load_state_dict(checkpoint["best"])
        rank_rng = checkpoint.get("rank_rng")
        same_ranks = rank_rng is not None and len(rank_rng) == world_size
        restore_rng_states(rank_rng[rank] if same_ranks else checkpoint["rng"], mixup, device)
        if rank > 0 and not same_ranks:  # saved by another number of processes
            torch.manual_seed(run.seed + rank + iteration)
        statistics.load_until(iteration)
        logging.info("resumed from %s", resume_path)
    elif rank > 0:  # dropout and SpecAugment draw differently on each rank (rank 0: as one process)
        torch.manual_seed(run.seed + rank)

    model = wrap_model(raw_model, device, world_size, run.compile)

    # The loader's batch sampler may run ahead of training (prefetch); `sampler` itself advances
    # one batch per trained iteration, so its state in a checkpoint is exactly what was consumed.
    batches = batch_source(dataset, device, run.num_workers, run.seed)
    train_loader = batches(RankShare(copy.deepcopy(sampler), rank, world_size))
    holdout_loader = batches(EvaluateSampler(holdout_indices, run.batch_size))
    logging.info("task %s, %d classes, %d training clips, %d validation clips (%s), device %s, "
                 "%d process(es)", task, len(labels), len(train_indices), len(holdout_indices),
                 "filtered split" if run.split == "filtered" else f"fold {run.holdout_fold}",
                 device, world_size)

    def checkpoint_dict(rank_rng):
        return {"iteration": iteration, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "sampler": sampler.state_dict(), "best": best.state_dict(),
                "rng": rank_rng[0], "rank_rng": rank_rng, "config": run.to_dict()}

    saved = {"last": None, "failed": None}

    def save(path, rank_rng):
        """A failed save (disk full, folder gone) is said in one line; training goes on and the
        next save tries again, so the run is lost only if the final save fails too."""
        try:
            save_checkpoint_file(checkpoint_dict(rank_rng), path)
        except OSError as error:
            saved["failed"] = f"{path}: {error.strerror or error}"
            logging.error("could not save %s (%s); training goes on, the next save retries "
                          "(last good checkpoint: %s)", path, error.strerror or error,
                          saved["last"] or "none yet")
            return
        saved["last"], saved["failed"] = path, None
        logging.info("saved %s", path)

    def flush_train_losses(pending):
        """Losses stay on the device until here: a .item() per step would stall the GPU."""
        if pending:
            values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()
            for (step, _), value in zip(pending, values):
                if not math.isfinite(value):
                    raise UsageError(
                        f"the training loss became {value} at iteration {step}; stopped without "
                        f"saving it (last good checkpoint: {saved['last'] or 'none'}); lower "
                        "--learning_rate or check the data")
                statistics.append("train", {"iteration": step, "loss": value})
            pending.clear()

    pending_losses = []
    train_iterator = iter(train_loader)
    started = time.time()
    progress = tqdm(total=run.stop_iteration, initial=iteration, desc="training", unit="it",
                    disable=not is_master)
    with logging_redirect_tqdm():
        while True:
            stop_early = False
            resumed_here = iteration == args.resume_iteration > 0  # validated before the save
            if (iteration % run.eval_every == 0 or iteration == run.stop_iteration) and not resumed_here:
                flush_train_losses(pending_losses)
                if is_master:
                    result = evaluate(raw_model, holdout_loader, device, task, loss_func,
                                      run.threshold, run.precision)
                    statistics.append("validate", dict(result, iteration=iteration))
                    statistics.dump()
                    improved = best.update(result, iteration)
                    if run.keep_best and improved:  # for model selection, not for resuming
                        save(os.path.join(dirs["checkpoints"], "best.pth"),
                             [rng_states(mixup, device)])
                    trained = statistics.statistics["train"]
                    train_loss = f"{trained[-1]['loss']:.4f}" if trained else "-"
                    logging.info("iteration %d: validation %s %.4f, loss %.4f; train loss %s "
                                 "(%.1f s)", iteration, primary_metric, result[primary_metric],
                                 result["loss"], train_loss, time.time() - started)
                    stop_early = (run.early_stop_patience > 0 and
                                  best.evaluations_without_improvement >= run.early_stop_patience)
                    if stop_early:
                        logging.info("early stop: no better %s in %d evaluations (best %.4f at "
                                     "iteration %d)", primary_metric, run.early_stop_patience,
                                     best.best, best.best_iteration)
                if world_size > 1:  # every rank follows rank 0's early-stop decision
                    flag = torch.tensor([int(stop_early)], device=device)
                    dist.broadcast(flag, src=0)
                    stop_early = bool(flag.item())
            at_end = iteration >= run.stop_iteration or stop_early
            if iteration > args.resume_iteration and (iteration % run.save_every == 0 or at_end):
                flush_train_losses(pending_losses)  # never save a model that went non-finite
                rank_rng = all_rank_rng_states(mixup, device, world_size)  # every rank joins
                if is_master:
                    save(checkpoint_path(dirs["checkpoints"], iteration), rank_rng)
            if at_end:
                break

            batch = next(train_iterator)
            sampler.next_batch()
            mixup_lambda = None
            if mixup is not None:
                mixup_lambda = rank_mixup_lambda(mixup, len(batch["audio_name"]), rank, world_size)
            loss = train_step(model, batch, device, run.precision, loss_func, optimizer, scaler,
                              mixup_lambda)
            iteration += 1
            pending_losses.append((iteration, global_mean(loss, world_size)))
            progress.update(1)
    progress.close()
    if saved["failed"]:
        raise UsageError(f"the final checkpoint could not be saved ({saved['failed']}); the last "
                         f"good one is {saved['last'] or 'none'}: free space and resume from it")

    if is_master:
        def predict(indices):
            loader = batches(EvaluateSampler(indices, run.batch_size))
            return forward_loader(raw_model, loader, device, task, run.precision)[1:]

        chosen_path, chosen = chosen_checkpoint(raw_model, dirs, run, best, saved["last"])
        finish_selection(predict, chosen_path, chosen, holdout_indices, test_indices, run,
                         loss_func, statistics)
    if is_master:  # a finished run is skipped when --holdout_fold=all runs again
        statistics.statistics["finished"] = {"iteration": iteration, "early_stop": stop_early}
        statistics.dump()
    logging.info("finished at iteration %d in %.1f s; log %s", iteration,
                 time.time() - started, log_path)
    run_folder.release()  # the next fold of --holdout_fold=all may run in this process
    if world_size > 1:
        dist.barrier()
    return statistics.statistics, dirs


def chosen_checkpoint(model, dirs, run, best, final_path):
    """The checkpoint model selection picked, loaded into `model`: best.pth with --keep_best,
    else the final one. Returns (path, description)."""
    best_path = os.path.join(dirs["checkpoints"], "best.pth")
    if run.keep_best and os.path.isfile(best_path):
        model.load_state_dict(load_checkpoint_file(best_path, "best.pth")["model"])
        return best_path, f"best.pth (iteration {best.best_iteration}, best {best.metric})"
    return final_path, "the final model"


def store_thresholds(path, thresholds):
    """Add the tuned thresholds to a checkpoint file (rewritten atomically)."""
    checkpoint = load_checkpoint_file(path, "the chosen checkpoint")
    checkpoint["thresholds"] = [float(value) for value in thresholds]
    save_checkpoint_file(checkpoint, path)


def finish_selection(predict, chosen_path, chosen, holdout_indices, test_indices, run,
                     loss_func, statistics):
    """After training, with the chosen checkpoint (`predict(indices)` gives its probabilities
    and the targets): multi-label decision thresholds tuned per label on the validation clips
    (stored in that checkpoint, used by evaluate and inference); then the test set, if any,
    scored once, at the fixed threshold and at the tuned ones."""
    thresholds = None
    if run.task == config.MULTI_LABEL and chosen_path:
        probabilities, targets = predict(holdout_indices)
        thresholds = tune_thresholds(probabilities, targets, run.threshold)
        fixed = compute_metrics(run.task, probabilities, targets, run.threshold)["macro_f1"]
        tuned = tuned_scores(probabilities, targets, thresholds)
        statistics.statistics["thresholds"] = {
            "labels": run.labels, "values": thresholds.tolist(), "chosen": chosen,
            "validation_macro_f1_fixed": fixed, "validation_macro_f1_tuned": tuned["macro_f1"]}
        store_thresholds(chosen_path, thresholds)
        logging.info("thresholds tuned per label on the validation clips (%s): macro-F1 %.4f at "
                     "%g, %.4f tuned (%s); stored in %s", chosen, fixed, run.threshold,
                     tuned["macro_f1"], ", ".join(f"{label} {value:.2f}" for label, value
                                                  in zip(run.labels, thresholds)), chosen_path)
    if test_indices is not None:
        probabilities, targets = predict(test_indices)
        result = score(probabilities, targets, run.task, loss_func, run.threshold)
        if thresholds is not None:
            result["tuned"] = tuned_scores(probabilities, targets, thresholds)
        statistics.statistics["test"] = dict(result, chosen=chosen)
        metric = run.primary_metric
        logging.info("test set (%d clips), scored once with %s: %s %.4f%s", len(test_indices),
                     chosen, metric, result[metric],
                     f", macro-F1 {result['macro_f1']:.4f} at {run.threshold:g}, "
                     f"{result['tuned']['macro_f1']:.4f} at the tuned thresholds"
                     if thresholds is not None else "")
    statistics.dump()
