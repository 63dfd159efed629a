"""One run over several processes (torchrun): process group, each rank's share of a batch,
random states per rank, and the DDP/compile wrapping.

Under torchrun every rank draws the same global batches and mixup weights (same seeds) and
trains on its contiguous share; DDP averages the gradients, so the step equals one process
training the global batch (exactly so when BatchNorm uses running statistics, i.e. with a
frozen base; otherwise each rank normalises with its own share unless --sync_batchnorm).
"""
import atexit
import datetime
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pytorch.pytorch_utils import select_device
from utils.utilities import UsageError


def setup_distributed(cuda, batch_size):
    """(rank, world_size, device). Under torchrun: NCCL on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return 0, 1, select_device(cuda)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if batch_size % world_size:
        raise UsageError(f"--batch_size={batch_size} must be divisible by the "
                         f"{world_size} processes (it is the global batch)")
    if cuda and torch.cuda.is_available():
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
    return gather_from_ranks(rng_states(mixup, device), world_size)


def gather_from_ranks(value, world_size):
    """Every rank's `value` (picklable), in rank order, on each rank (a collective)."""
    if world_size == 1:
        return [value]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


class RankShare:
    """Each rank's contiguous share of every global batch (mixup pairs stay on one rank)."""

    def __init__(self, batch_sampler, rank, world_size):
        self.batch_sampler, self.rank, self.world_size = batch_sampler, rank, world_size

    def __iter__(self):
        for batch in self.batch_sampler:
            share = len(batch) // self.world_size
            yield batch[self.rank * share:(self.rank + 1) * share]


def rank_mixup_lambda(mixup, rank_batch_size, rank, world_size):
    """This rank's share of mixup weights drawn for the whole global batch: every rank's
    generator stays in step, and the weights equal those of one process on the global batch."""
    lambdas = mixup.get_lambda(rank_batch_size * world_size)
    return torch.from_numpy(lambdas[rank * rank_batch_size:(rank + 1) * rank_batch_size])


def global_mean(value, world_size):
    """The mean over ranks of each rank's mean over its (equal) share: the global batch's mean."""
    if world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)  # SUM, then divide: gloo has no AVG
    return value / world_size


def broadcast_flag(flag, device, world_size):
    """Rank 0's boolean decision on every rank (early stopping)."""
    if world_size == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


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


def barrier(world_size):
    """Every rank waits here for the others (nothing to wait for in one process)."""
    if world_size > 1:
        dist.barrier()
