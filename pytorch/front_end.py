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

An ONNX export computes the same mel power by matrix products (mel_power_by_matmuls), not by
ONNX's STFT op: onnxruntime's STFT took 165 ms of the 1.3 s an int8 Cnn14 spent on 8 clips of
10 s (2-core AVX2 CPU), more than any convolution, and the products take about 50.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
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
    """|STFT|^2, (batch, freq, frames)."""
    stft = torch.stft(waveform, n_fft=window.shape[0], hop_length=hop_size,
                      win_length=window.shape[0], window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    return stft.real.square() + stft.imag.square()


def centred_frames(waveform, n_fft, hop_size):
    """torch.stft's frames (center=True, reflect padding), (batch, frames, n_fft), by slices:
    the padded signal cut into hop-long blocks, and each frame the next ceil(n_fft / hop)
    blocks side by side (a Gather of every sample's index cost more than the FFT)."""
    padded = F.pad(waveform[:, None], (n_fft // 2, n_fft // 2), mode="reflect")[:, 0]
    batch, length = padded.shape
    frames = 1 + (length - n_fft) // hop_size
    pieces = -(-n_fft // hop_size)
    blocks = frames - 1 + pieces  # the last frame's blocks end less than a hop past `length`
    padded = F.pad(padded, (0, hop_size))[:, :blocks * hop_size]
    cut = padded.reshape(batch, blocks, hop_size)
    parts = [cut[:, piece:piece + frames] for piece in range(pieces)]
    parts[-1] = parts[-1][..., :n_fft - (pieces - 1) * hop_size]
    return torch.cat(parts, -1)


def fft_factors(n):
    """n = n1 * n2, n1 the largest divisor of n up to its square root (1024: 32 x 32)."""
    n1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n1, n // n1


def mel_power_by_matmuls(waveform, window, hop_size, mel_matrix):
    """The mel power (batch, frames, mel_bins) of power_spectrogram's transform, by one
    Cooley-Tukey step written as matrix products, for ONNX graphs (their STFT op is slow in
    onnxruntime). With n = n2 a + b and k = k1 + n1 k2 (n1 n2 = n_fft):
        X[k] = sum_b exp(-2 pi i b k2 / n2) exp(-2 pi i b k1 / n_fft)
                     sum_a exp(-2 pi i a k1 / n1) x[n2 a + b],
    an n1-point DFT over a, a twiddle, an n2-point DFT over b: about 2 sqrt(n_fft) products a
    sample where the transform as one matrix takes n_fft. Only the k2 that reach the bins up
    to n_fft / 2 are computed, and the mel matrix's rows are put in (k1, k2) order, with zeros
    for the bins above n_fft / 2, so that the power goes into it with no reordering."""
    n_fft = window.shape[0]
    n1, n2 = fft_factors(n_fft)
    k2_count = n_fft // (2 * n1) + 1
    a, b = torch.arange(n1, dtype=torch.float64), torch.arange(n2, dtype=torch.float64)
    k2 = torch.arange(k2_count, dtype=torch.float64)
    first = -2 * math.pi * torch.outer(a, a) / n1                    # (k1, a)
    twiddle = -2 * math.pi * torch.outer(a, b) / n_fft               # (k1, b)
    second = -2 * math.pi * torch.outer(b, k2) / n2                  # (b, k2)
    dft_a = torch.cat([first.cos(), first.sin()]).float()            # (re; im of k1, a)
    # [re, im] @ [[cos, sin], [-sin, cos]]: the complex product in real arithmetic
    dft_b = torch.cat([torch.cat([second.cos(), second.sin()], 1),
                       torch.cat([-second.sin(), second.cos()], 1)]).float()
    bins = (a[:, None] + n1 * k2).long().reshape(-1)                 # (k1, k2) -> k
    with_zero_row = torch.cat([mel_matrix.float(), mel_matrix.new_zeros(1, mel_matrix.shape[1])])
    mel_rows = with_zero_row[bins.clamp_max(n_fft // 2 + 1)]         # k above n_fft/2: zeros

    frames = centred_frames(waveform, n_fft, hop_size)
    batch, count = frames.shape[:2]
    spectrum = torch.matmul(dft_a, frames.reshape(batch, count, n1, n2) * window.view(n1, n2))
    real, imag = spectrum[:, :, :n1], spectrum[:, :, n1:]            # (batch, frames, k1, b)
    cos, sin = twiddle.cos().float(), twiddle.sin().float()
    turned = torch.cat([real * cos - imag * sin, real * sin + imag * cos], -1)
    spectrum = torch.matmul(turned, dft_b)                           # (batch, frames, k1, 2 k2)
    power = spectrum[..., :k2_count].square() + spectrum[..., k2_count:].square()
    return torch.matmul(power.reshape(batch, count, n1 * k2_count), mel_rows)


def logmel(waveform, window, hop_size, mel_matrix):
    """(batch, samples) -> (batch, 1, frames, mel_bins) log-mel in fp32 (autocast off: the
    squared magnitude overflows fp16)."""
    with torch.autocast(device_type=waveform.device.type, enabled=False):
        if torch.onnx.is_in_onnx_export():
            mel = mel_power_by_matmuls(waveform.float(), window, hop_size, mel_matrix)
        else:
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
