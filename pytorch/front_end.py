"""The PANNs front end, fast: log-mel spectrogram by torch.stft and SpecAugment on the device.

Published PANNs compute the STFT with torchlibrosa, as a 1024-tap Conv1d over the waveform (a
slow cuDNN kernel: ~9x cuFFT on an H100), and SpecAugment with a Python loop over the batch that
draws each stripe with a host-side random number. The official checkpoints hold torchlibrosa's
STFT kernels and mel matrix, so the modules stay (same state-dict names, shapes and buffers,
loaded strictly); only the computation changes:
- power spectrogram: torch.stft with the same periodic Hann window, centring, reflect padding,
  power 2 (equal to the conv's to fp32 rounding);
- log-mel: one matmul with the module's own mel matrix (the checkpoint's, once loaded), then
  10 log10(max(x, amin)), as torchlibrosa with ref=1 and top_db=None;
- SpecAugment: the same stripe distribution as torchlibrosa's DropStripes, drawn for the whole
  batch at once on the device from torch's generator (seeded and checkpointed like dropout).
"""
import math

import torch
import torch.nn as nn
from torchlibrosa.stft import LogmelFilterBank, Spectrogram

AMIN = 1e-10
REF = 1.0


def torchlibrosa_extractors(sample_rate, window_size, hop_size, mel_bins, fmin, fmax):
    """(spectrogram_extractor, logmel_extractor): the published modules, kept for their state
    (the official checkpoints' STFT kernels and mel matrix), not for their computation."""
    spectrogram = Spectrogram(n_fft=window_size, hop_length=hop_size, win_length=window_size,
                              window="hann", center=True, pad_mode="reflect",
                              freeze_parameters=True)
    logmel = LogmelFilterBank(sr=sample_rate, n_fft=window_size, n_mels=mel_bins, fmin=fmin,
                              fmax=fmax, ref=REF, amin=AMIN, top_db=None, freeze_parameters=True)
    return spectrogram, logmel


def stft_window(window_size):
    """librosa's get_window('hann', fftbins=True): the window torchlibrosa's kernels hold."""
    return torch.hann_window(window_size, periodic=True)


def power_spectrogram(waveform, window, hop_size):
    """|STFT|^2, (batch, freq, frames). ONNX's STFT has no complex type, so an export traces the
    real-and-imaginary form of the same transform (same values)."""
    n_fft = window.shape[0]
    exporting = torch.onnx.is_in_onnx_export()
    stft = torch.stft(waveform, n_fft=n_fft, hop_length=hop_size, win_length=n_fft,
                      window=window, center=True, pad_mode="reflect",
                      return_complex=not exporting)
    if exporting:
        return stft[..., 0].square() + stft[..., 1].square()
    return stft.real.square() + stft.imag.square()


def logmel(waveform, window, hop_size, mel_matrix):
    """(batch, samples) -> (batch, 1, frames, mel_bins) log-mel in fp32 (autocast off: the
    squared magnitude overflows fp16)."""
    with torch.autocast(device_type=waveform.device.type, enabled=False):
        power = power_spectrogram(waveform.float(), window, hop_size)  # (batch, freq, frames)
        mel = torch.matmul(power.transpose(1, 2), mel_matrix)
        return (10.0 * torch.log10(mel.clamp_min(AMIN))
                - 10.0 * math.log10(max(AMIN, REF))).unsqueeze(1)


def drop_stripes(x, dim, drop_width, stripes_num):
    """Zero `stripes_num` stripes per example along `dim` (2: time, 3: frequency) of a
    (batch, channels, time, freq) tensor.

    The distribution is torchlibrosa's DropStripes: per example and stripe, a width uniform in
    0..drop_width-1 and a start uniform in 0..size-width-1 (here size-width when that is 0,
    where torchlibrosa fails); stripes may overlap. All drawn at once on x's device.
    """
    batch, size = x.shape[0], x.shape[dim]
    widths = torch.randint(0, drop_width, (batch, stripes_num), device=x.device).clamp_max(size)
    starts = (torch.rand(batch, stripes_num, device=x.device) * (size - widths)).long()
    positions = torch.arange(size, device=x.device)
    inside = ((positions >= starts[..., None]) & (positions < (starts + widths)[..., None]))
    keep = ~inside.any(dim=1)  # (batch, size)
    shape = [batch, 1, 1, 1]
    shape[dim] = size
    return x * keep.view(shape).to(x.dtype)


class SpecAugment(nn.Module):
    """Time and frequency stripes dropped in training mode (torchlibrosa's SpecAugmentation
    settings of PANNs: 2 time stripes < 64 frames, 2 frequency stripes < 8 bins)."""

    def __init__(self, time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
                 freq_stripes_num=2):
        super().__init__()
        self.time = (time_drop_width, time_stripes_num)
        self.freq = (freq_drop_width, freq_stripes_num)

    def forward(self, x):
        if not self.training:
            return x
        x = drop_stripes(x, 2, *self.time)
        return drop_stripes(x, 3, *self.freq)
