"""Torch helpers shared by training, evaluation and inference."""
import contextlib
import logging

import numpy as np
import torch

from utils.config import SINGLE_LABEL

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


def select_device(use_cuda):
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    if use_cuda:
        logging.warning("--cuda was given but no CUDA device is available; using the CPU")
    return torch.device("cpu")


def autocast(device, precision):
    """Mixed precision for the CNN; the models keep their STFT/log-mel front end in fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def waveform_to_tensor(waveform, device):
    """Batch of int16 or float32 clips -> float32 on device; int16 is scaled on the device."""
    tensor = torch.as_tensor(waveform).to(device, non_blocking=True)
    if tensor.dtype == torch.int16:
        return tensor.float().div_(32767.0)
    return tensor.float()


def probabilities_from_output(clipwise_output, task):
    """Single-label models output log-probabilities; multi-label ones sigmoid probabilities."""
    return clipwise_output.exp() if task == SINGLE_LABEL else clipwise_output


@torch.no_grad()
def forward_loader(model, loader, device, task, precision="fp32"):
    """Run a model over a loader of clips; returns names, probabilities, targets (numpy)."""
    model.eval()
    names, probabilities, targets = [], [], []
    for batch in loader:
        with autocast(device, precision):
            output = model(waveform_to_tensor(batch["waveform"], device))["clipwise_output"]
        probabilities.append(probabilities_from_output(output.float(), task).cpu().numpy())
        targets.append(batch["target"])
        names += batch["audio_name"]
    return names, np.concatenate(probabilities), np.concatenate(targets)
