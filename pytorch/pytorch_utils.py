"""Torch helpers shared by training, evaluation and inference."""
import contextlib
import logging
import os
import random

import numpy as np
import torch

from utils.audio import INT16_SCALE
from utils.config import SINGLE_LABEL
from utils.data_generator import ReadAhead, collate_fn
from utils.utilities import UsageError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Mixup:
    """Per-pair mixing weights, as the original: clips 2k and 2k+1 get lam and 1 - lam."""

    def __init__(self, mixup_alpha=1.0, seed=1234):
        self.mixup_alpha = mixup_alpha
        self.random_state = np.random.RandomState(seed)

    def get_lambda(self, batch_size):
        lambdas = []
        for _ in range(0, batch_size, 2):
            lam = self.random_state.beta(self.mixup_alpha, self.mixup_alpha)
            lambdas += [lam, 1.0 - lam]
        return np.array(lambdas, dtype=np.float32)


def do_mixup(x, mixup_lambda):
    """Mix consecutive pairs: out[k] = x[2k] * lam[2k] + x[2k+1] * lam[2k+1] (halves the batch)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    return x[0::2] * mixup_lambda[0::2].view(shape) + x[1::2] * mixup_lambda[1::2].view(shape)


def set_seed(seed):
    """Python's, NumPy's and torch's global generators (dropout, SpecAugment, initial weights)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(use_cuda):
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    if use_cuda:
        logging.warning("--cuda was given but no CUDA device is available; using the CPU")
    return torch.device("cpu")


def native_bf16():
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX). Elsewhere oneDNN
    emulates it: a training step 7-13x slower than fp32 on an AVX2 CPU (docs/benchmarks.md)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def usable_cores():
    """The CPUs this process may run on (its affinity mask: a container's or taskset's share,
    not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_precision(precision, device):
    """fp16 needs a GPU: CPU autocast runs fp16 convolutions ~10x slower than fp32 (no native
    fp16 arithmetic), and bf16 has fp32's range, so the CPU takes bf16 without a grad scaler."""
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision=fp16 needs a CUDA GPU (fp16 on the CPU is emulated and "
                         "about 10x slower than fp32); on the CPU use --precision=bf16")


def fast_defaults(device):
    """The settings a run takes when the user names none: on a GPU bf16, channels-last and
    torch.compile; on the CPU fp32 and neither (measured slower or no faster there)."""
    on_gpu = device.type == "cuda"
    return {"precision": "bf16" if on_gpu else "fp32", "compile": on_gpu,
            "channels_last": on_gpu}


def resolve_precision(precision, device):
    """--precision as given, else the device's default; checked against the device."""
    precision = precision or fast_defaults(device)["precision"]
    check_precision(precision, device)
    return precision


def autocast(device, precision):
    """Mixed precision for the CNN; the models keep their STFT/log-mel front end in fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def tensor_collate(items):
    """collate_fn with the arrays as tensors: DataLoader(pin_memory=True) pins tensors only, and
    only a copy from pinned memory runs asynchronously under .to(device, non_blocking=True)."""
    return {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            for key, value in collate_fn(items).items()}


def make_loader(dataset, batch_sampler, num_workers, seed, device):
    """A DataLoader streaming clips from the HDF5 (or from RAM) in worker processes; the kernel
    is asked to read each batch's clips a few batches ahead (ReadAhead)."""
    # Loaders draw worker seeds from generators of their own, never from the global RNG that
    # dropout and SpecAugment use: a resumed run then replays exactly.
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=ReadAhead(batch_sampler, dataset.clips), num_workers=num_workers,
        collate_fn=tensor_collate, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed))


def waveform_to_tensor(waveform, device):
    """Batch of int16 or float32 clips -> float32 on device; int16 is scaled on the device
    (half the bytes to copy; the same values as the dataset's own float32 conversion)."""
    tensor = torch.as_tensor(waveform).to(device, non_blocking=True)
    if tensor.dtype == torch.int16:
        return tensor.float().div_(INT16_SCALE)
    return tensor.float()


class ResidentClips:
    """A dataset held whole in memory: batches are gathered by index, without loader workers.

    On a GPU the int16 clips are copied to it once, which takes the loader out of the step
    entirely (no workers, no host copies, no pinning); on the CPU batches are gathered from the
    dataset's memory-mapped files (one copy per node, whatever the number of ranks).
    waveform_to_tensor scales the int16 per batch.
    """

    def __init__(self, dataset, device):
        self.device = device
        self.audio_names = dataset.audio_names
        self.clips = dataset.clips
        self.waveforms = None
        if device.type == "cuda":
            self.waveforms = torch.empty((len(dataset.clips), dataset.clips.clip_samples),
                                         dtype=torch.int16, device=device)
            start = 0
            for block in dataset.clips.blocks():
                self.waveforms[start:start + len(block)] = torch.from_numpy(block)
                start += len(block)
        self.targets = torch.from_numpy(dataset.targets).to(device)

    def gather(self, indices):
        if self.waveforms is None:
            return torch.from_numpy(self.clips.read_batch(indices)), self.targets[indices]
        # non_blocking: from pageable memory the copy is staged at once, and the GPU is not
        # synchronised (a blocking copy would stall it every step).
        index = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        return self.waveforms[index], self.targets[index]

    def batches(self, batch_sampler):
        """An iterable of batches {'audio_name', 'waveform', 'target'}, one per sampled index list."""
        return _ResidentBatches(self, batch_sampler)


class _ResidentBatches:
    def __init__(self, clips, batch_sampler):
        self.clips, self.batch_sampler = clips, batch_sampler

    def __iter__(self):
        for indices in self.batch_sampler:
            waveform, target = self.clips.gather(indices)
            yield {"audio_name": [self.clips.audio_names[i] for i in indices],
                   "waveform": waveform, "target": target}

    def __len__(self):
        return len(self.batch_sampler)


def probabilities_from_output(clipwise_output, task):
    """Single-label models output log-probabilities; multi-label ones sigmoid probabilities."""
    return clipwise_output.exp() if task == SINGLE_LABEL else clipwise_output


@torch.no_grad()
def forward_loader(model, loader, device, task, precision="fp32", key="clipwise_output"):
    """Run a model over a loader of clips; returns names, probabilities, targets (numpy).
    With key="embedding", the embeddings instead of the probabilities."""
    model.eval()
    names, probabilities, targets = [], [], []
    for batch in loader:
        with autocast(device, precision):
            output = model(waveform_to_tensor(batch["waveform"], device))[key].float()
        if key == "clipwise_output":
            output = probabilities_from_output(output, task)
        probabilities.append(output.cpu().numpy())
        targets.append(torch.as_tensor(batch["target"]).cpu().numpy())
        names += batch["audio_name"]
    return names, np.concatenate(probabilities), np.concatenate(targets)
