"""One training run: a holdout fold of a packed HDF5, a transfer model and mixup, in one loop.

    train(run_config, workspace, resume_iteration=0, trust_checkpoint=False)

The loop carries mixed precision, DistributedDataParallel (under torchrun, pytorch/distributed.py)
and torch.compile. Every eval_every iterations the holdout fold is validated and the statistics
pickle dumped (pytorch/selection.py); every save_every iterations (and at the stop) a checkpoint
holds everything needed to resume exactly: model, optimizer, grad scaler, sampler position,
best-so-far and every random state (each rank's own, under torchrun). Rank 0 alone validates
and writes statistics, logs and checkpoints.
"""
import copy
import logging
import math
import os
import time

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from pytorch.checkpoints import Checkpointer, load_checkpoint_file
from pytorch.distributed import (RankShare, all_rank_rng_states, barrier, broadcast_flag,
                                 gather_from_ranks, global_mean, rank_mixup_lambda,
                                 restore_rng_states, rng_states, setup_distributed, wrap_model)
from pytorch.linear_probe import fit_initial_head
from pytorch.losses import LOSSES
from pytorch.metrics_stream import open_metrics_stream
from pytorch.optimization import clip_gradients, make_optimizer, set_learning_rates
from pytorch.pytorch_utils import (Mixup, autocast, check_precision, do_mixup, forward_loader,
                                   set_seed, waveform_to_tensor)
from pytorch.run_setup import (batch_source, build_model, check_resumable, configure_backends,
                               load_dataset, make_sampler, open_run)
from pytorch.selection import Selection, chosen_checkpoint, finish_selection, validate
from utils.data_generator import EvaluateSampler
from utils.runs import STATISTICS_FILE, checkpoint_path
from utils.statistics_files import StatisticsContainer, statistics_meta
from utils.utilities import UsageError, host_memory_mb, progress

LOG_EVERY = 10  # training steps between metric records (each one syncs the GPU once)


def train_step(model, batch, device, precision, loss_func, optimizer, scaler, mixup_lambda=None,
               grad_clip_norm=0.0):
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
    clip_gradients(model, optimizer, scaler, grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


class TrainingRun:
    """The state of one run between its steps; train() drives it.

    Built in two steps: the constructor checks and builds everything a step needs (data, model,
    optimizer, sampler) and writes nothing, so a run can be built to be inspected or tested;
    open(workspace) then claims the run folder, opens the log, writes run.json and the
    statistics, and restores a resumed run, all after every check has passed."""

    def __init__(self, run, resume_iteration=0, trust_checkpoint=False):
        self.run, self.iteration, self.resume_iteration = run, resume_iteration, resume_iteration
        self.rank, self.world_size, self.device = setup_distributed(run.cuda, run.batch_size)
        self.is_master = self.rank == 0
        if run.sync_batchnorm and self.world_size > 1 and self.device.type != "cuda":
            raise UsageError("--sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no "
                             "CPU kernel); drop it on CPUs")
        set_seed(run.seed)  # the same initial weights on every rank
        configure_backends(self.device)
        self.dataset, (self.train_indices, self.holdout_indices, self.test_indices) = \
            load_dataset(run)
        check_precision(run.precision, self.device)
        self.loss_func = LOSSES[run.loss_type]
        self.raw_model = build_model(run, self.device, trust_checkpoint)
        self.trust_checkpoint = trust_checkpoint
        if run.sync_batchnorm and self.world_size > 1:  # BatchNorm over the global batch
            self.raw_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.raw_model)
        self.optimizer = make_optimizer(self.raw_model, run, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=run.precision == "fp16")
        self.mixup = Mixup(mixup_alpha=run.mixup_alpha, seed=run.seed) if run.augmentation == "mixup" else None
        self.sampler = make_sampler(run, self.train_indices, self.dataset.targets,
                                    self.mixup is not None)
        self.pending_losses = []  # (iteration, loss on the device, learning rate)
        self.clips_timer = (time.perf_counter(), 0)  # since the last flush: (start, clips)
        self.dirs = self.log_path = self.model = None  # set by open()

    def open(self, workspace):
        """Claim the run's folders under `workspace`, open its log, statistics and run.json,
        restore a resumed run; returns self, ready to step."""
        run = self.run
        self.run_folder, self.log_path = open_run(run, workspace, self.resume_iteration,
                                                  self.raw_model, self.is_master)
        self.dirs = self.run_folder.dirs
        self.statistics = StatisticsContainer(
            os.path.join(self.dirs["statistics"], STATISTICS_FILE),
            meta=statistics_meta(run, self.world_size),
            stream=open_metrics_stream(run, self.dirs["statistics"], self.resume_iteration)
            if self.is_master else None)
        self.checkpointer = Checkpointer(self.dirs["checkpoints"], run, self.resume_iteration)
        self.selection = Selection(run, self.statistics, self.save_best)
        if self.resume_iteration > 0:
            self.resume()
        else:
            if run.head_init == "probe" and self.is_master:  # DDP then copies rank 0's weights
                self.statistics.record("head_init", fit_initial_head(
                    run, self.raw_model, self.dataset, self.train_indices, batch_source(
                        self.dataset, self.device, run.num_workers, run.seed), self.device,
                    self.trust_checkpoint))
            if self.rank > 0:  # dropout and SpecAugment differ per rank (rank 0: as one process)
                torch.manual_seed(run.seed + self.rank)
        self.model = wrap_model(self.raw_model, self.device, self.world_size, run.compile)
        self.open_loaders()
        return self

    def resume(self):
        path = checkpoint_path(self.dirs["checkpoints"], self.iteration)
        if not os.path.isfile(path):
            raise UsageError(f"--resume_iteration={self.iteration}: no checkpoint {path}")
        # Weights-only whatever --trust_checkpoint says: that trusts the file the user named,
        # and this project's own checkpoints never need more. On the CPU: RNG states must stay
        # CPU tensors; load_state_dict moves the rest over.
        checkpoint = load_checkpoint_file(path, "--resume_iteration", own=True)
        check_resumable(checkpoint, self.run, path)
        self.raw_model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.sampler.load_state_dict(checkpoint["sampler"])
        self.selection.best.load_state_dict(checkpoint["best"])
        rank_rng = checkpoint.get("rank_rng")
        same_ranks = rank_rng is not None and len(rank_rng) == self.world_size
        restore_rng_states(rank_rng[self.rank] if same_ranks else checkpoint["rng"], self.mixup,
                           self.device)
        if self.rank > 0 and not same_ranks:  # saved by another number of processes
            torch.manual_seed(self.run.seed + self.rank + self.iteration)
        self.statistics.load_until(self.iteration)
        logging.info("resumed from %s", path)

    def open_loaders(self):
        # The loader's batch sampler may run ahead of training (prefetch); `sampler` itself
        # advances one batch per trained iteration, so a checkpoint holds what was consumed.
        run = self.run
        self.batches = batch_source(self.dataset, self.device, run.num_workers, run.seed)
        self.train_iterator = iter(self.batches(
            RankShare(copy.deepcopy(self.sampler), self.rank, self.world_size)))
        self.holdout_loader = self.batches(EvaluateSampler(self.holdout_indices, run.batch_size))
        logging.info("task %s, %d classes, %d training clips, %d validation clips (%s), device "
                     "%s, %d process(es)", run.task, len(run.labels), len(self.train_indices),
                     len(self.holdout_indices), "filtered split" if run.split == "filtered"
                     else f"fold {run.holdout_fold}", self.device, self.world_size)

    def checkpoint(self, rank_rng):
        return {"iteration": self.iteration, "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "sampler": self.sampler.state_dict(), "best": self.selection.best.state_dict(),
                "rng": rank_rng[0], "rank_rng": rank_rng, "config": self.run.to_dict()}

    def save_best(self, iteration):  # for model selection, not for resuming
        self.checkpointer.save(self.checkpoint([rng_states(self.mixup, self.device)]), best=True)

    def flush_train_losses(self):
        """Losses stay on the device until here (every LOG_EVERY steps, and before validating
        or saving): a .item() per step would stall the GPU."""
        if not self.pending_losses:
            return
        values = torch.stack([loss for _, loss, _ in self.pending_losses]).float().cpu().tolist()
        started, clips = self.clips_timer
        clips_per_s = clips / max(time.perf_counter() - started, 1e-9)
        for (step, _, learning_rate), value in zip(self.pending_losses, values):
            if not math.isfinite(value):
                raise UsageError(
                    f"the training loss became {value} at iteration {step}; stopped without "
                    f"saving it (last good checkpoint: {self.checkpointer.last or 'none'}); "
                    "lower --learning_rate or check the data")
            self.statistics.append("train", {"iteration": step, "loss": value,
                                             "learning_rate": learning_rate,
                                             "clips_per_s": clips_per_s})
        self.pending_losses.clear()
        self.reset_clips_timer()

    def reset_clips_timer(self):
        """Training speed counts training steps only, not validation or saving."""
        self.clips_timer = (time.perf_counter(), 0)

    def validate_if_due(self):
        """Validate at every eval_every and at the stop (not again where it resumed);
        returns whether to stop early, rank 0's decision on every rank."""
        run, iteration = self.run, self.iteration
        resumed_here = iteration == self.resume_iteration > 0  # validated before the save
        if resumed_here or not (iteration % run.eval_every == 0 or iteration == run.stop_iteration):
            return False
        self.flush_train_losses()
        stop_early = False
        if self.is_master:
            result = validate(self.raw_model, self.holdout_loader, self.device, run, self.loss_func)
            stop_early = self.selection.after_validation(result, iteration)
        stop_early = broadcast_flag(stop_early, self.device, self.world_size)
        self.reset_clips_timer()
        return stop_early

    def save_if_due(self, at_end):
        if self.checkpointer.due(self.iteration, at_end):
            self.flush_train_losses()  # never save a model that went non-finite
            rank_rng = all_rank_rng_states(self.mixup, self.device, self.world_size)  # all join
            if self.is_master:
                self.checkpointer.save(self.checkpoint(rank_rng))
            self.reset_clips_timer()

    def step(self):
        batch = next(self.train_iterator)
        self.sampler.next_batch()
        mixup_lambda = None
        if self.mixup is not None:
            mixup_lambda = rank_mixup_lambda(self.mixup, len(batch["audio_name"]), self.rank,
                                             self.world_size)
        set_learning_rates(self.optimizer, self.run, self.iteration)
        loss = train_step(self.model, batch, self.device, self.run.precision, self.loss_func,
                          self.optimizer, self.scaler, mixup_lambda, self.run.grad_clip_norm)
        self.iteration += 1
        self.pending_losses.append((self.iteration, global_mean(loss, self.world_size),
                                    self.optimizer.param_groups[0]["lr"]))
        started, clips = self.clips_timer
        self.clips_timer = (started, clips + self.run.batch_size)
        if len(self.pending_losses) >= LOG_EVERY:
            self.flush_train_losses()

    def finish(self, stopped_early):
        """The chosen checkpoint's thresholds and test score; the run marked finished."""
        self.checkpointer.check_final()
        memory = gather_from_ranks(host_memory_mb(), self.world_size)  # every rank joins
        if self.is_master and all(memory) and self.world_size == 1:
            logging.info("host memory: %.0f MB resident", memory[0]["rss"])
        elif self.is_master and all(memory):
            logging.info("host memory per rank, MB (PSS: shared pages split between their "
                         "processes; anon: the rank's own; file: its share of mapped files, "
                         "libraries included): %s",
                         "; ".join(f"rank {rank} RSS {m['rss']:.0f} PSS {m['pss']:.0f} anon "
                                   f"{m['anon']:.0f} file {m['file']:.0f}"
                                   for rank, m in enumerate(memory)))
        if self.is_master:
            run = self.run

            def predict(indices):
                loader = self.batches(EvaluateSampler(indices, run.batch_size))
                return forward_loader(self.raw_model, loader, self.device, run.task,
                                      run.precision)[1:]

            chosen_path, chosen = chosen_checkpoint(self.raw_model, self.dirs["checkpoints"], run,
                                                    self.selection.best, self.checkpointer.last)
            finish_selection(predict, chosen_path, chosen, self.holdout_indices,
                             self.test_indices, run, self.loss_func, self.statistics)
            # a finished run is skipped when --holdout_fold=all runs again
            self.statistics.record("finished", {"iteration": self.iteration,
                                                "early_stop": stopped_early})
            self.statistics.dump()
            self.statistics.close()
        self.run_folder.release()  # the next fold of --holdout_fold=all may run in this process
        barrier(self.world_size)


def train(run, workspace, resume_iteration=0, trust_checkpoint=False):
    """Train one holdout fold (or split) as `run` (a RunConfig) says, from scratch or from the
    checkpoint at `resume_iteration`; returns (statistics dict, run dirs)."""
    training = TrainingRun(run, resume_iteration, trust_checkpoint).open(workspace)
    started = time.time()
    bar = progress(total=run.stop_iteration, initial=training.iteration, desc="training",
                   unit="it", disable=not training.is_master)
    try:
        with logging_redirect_tqdm():
            while True:
                stopped_early = training.validate_if_due()
                at_end = training.iteration >= run.stop_iteration or stopped_early
                training.save_if_due(at_end)
                if at_end:
                    break
                training.step()
                bar.update(1)
    finally:
        bar.close()  # before any error line, which then stays the last one
    training.finish(stopped_early)
    logging.info("finished at iteration %d in %.1f s; log %s", training.iteration,
                 time.time() - started, training.log_path)
    return training.statistics.statistics, training.dirs
