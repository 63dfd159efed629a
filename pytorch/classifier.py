"""The pipeline's inference from Python: the same code `main.py inference` and `main.py embed`
run, on a training checkpoint, an official PANNs checkpoint or an exported .onnx file.

    from pytorch.classifier import Classifier
    classifier = Classifier.from_checkpoint("best.pth", device="cpu")
    classifier.labels                                   # the model's labels, in output order
    classifier.predict("song.wav")["predicted"]         # or an array with sample_rate=...
    classifier.timeline("set.wav", hop=5.0)             # one row per window
    classifier.embed("song.wav")                        # (width,) float32

Audio may be a file path or an array (mono (samples,), (channels, samples) or (samples,
channels); float in [-1, 1], or integer PCM scaled as files are) at `sample_rate`, resampled to
the model's rate as packing resamples (soxr, VHQ). Bad arguments are one-line UsageErrors.
"""
import math
import numbers
import os

import numpy as np
import soxr
import torch

from pytorch.live import resampled, stream_rows
from pytorch.predictor import load_predictor
from pytorch.windows import (WHOLE_FILE_SECONDS, check_window_fits_model, predict_audio, predict_blocks,
                             predicted_labels, window_outputs, window_samples_of, whole_file)
from utils.audio import stream_audio
from utils.config import ARRAY_SAMPLE_RATES
from utils.utilities import UsageError, require_file


MAX_CHANNELS = 16  # an axis this short next to a longer one holds channels, not samples


def check_sample_rate(sample_rate):
    if sample_rate is None:
        raise UsageError("an array needs its sample_rate=... (samples per second)")
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real)
            or not math.isfinite(sample_rate)
            or not ARRAY_SAMPLE_RATES[0] <= sample_rate <= ARRAY_SAMPLE_RATES[1]):
        raise UsageError(f"sample_rate={sample_rate!r}: give the array's rate in samples per "
                         f"second, a number from {ARRAY_SAMPLE_RATES[0]} to {ARRAY_SAMPLE_RATES[1]}")


def mono_waveform(audio):
    """An array of samples as mono float32: integer PCM scaled as audio files are (int16 /
    32768), the channel axis found by its length ((samples, channels) or (channels, samples))
    and averaged; other kinds of array are refused."""
    array = np.asarray(audio)
    if array.dtype.kind in "i":
        array = array / np.float32(2 ** (8 * array.dtype.itemsize - 1))
    elif array.dtype == np.uint8:  # 8-bit WAV: unsigned, centred on 128
        array = (array.astype(np.float32) - 128) / 128
    elif array.dtype.kind != "f":
        raise UsageError(f"audio of dtype {array.dtype}: give float samples in [-1, 1] or "
                         "integer PCM (int16, int32, uint8)")
    if array.ndim == 2:
        short = [axis for axis in (0, 1) if array.shape[axis] <= MAX_CHANNELS < array.shape[1 - axis]]
        if not short:
            raise UsageError(f"audio of shape {array.shape}: cannot tell channels from samples; "
                             "give (samples,), (channels, samples) or (samples, channels)")
        array = array.mean(axis=short[0])
    if array.ndim != 1 or not len(array) or not np.isfinite(array).all():
        raise UsageError(f"audio of shape {array.shape}: give finite samples, (samples,), "
                         "(channels, samples) or (samples, channels)")
    return np.ascontiguousarray(array, dtype=np.float32)


class Classifier:
    def __init__(self, predictor, batch_size=8):
        self.predictor, self.batch_size = predictor, batch_size

    @classmethod
    def from_checkpoint(cls, path, device="cpu", trusted=False, model_type=None, batch_size=8):
        """`trusted` allows a checkpoint that needs more than weights-only loading (only for a
        file you trust); `model_type` picks among published models with the same tensors."""
        return cls(load_predictor(path, torch.device(device), trusted, model_type,
                                  flag="checkpoint"), batch_size)

    @property
    def labels(self):
        return list(self.predictor.run.labels)

    @property
    def sample_rate(self):
        return self.predictor.run.audio.sample_rate

    def blocks(self, audio, sample_rate=None):
        """The audio as blocks of mono float32 samples at the model's rate, and its duration in
        seconds (None when only the file's header could tell)."""
        if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__"):
            return stream_audio(require_file(os.fsdecode(audio), "audio"), self.sample_rate), None
        check_sample_rate(sample_rate)
        waveform = mono_waveform(audio)
        if sample_rate != self.sample_rate:
            waveform = soxr.resample(waveform, sample_rate, self.sample_rate, quality="VHQ")
        return [np.ascontiguousarray(waveform, dtype=np.float32)], len(waveform) / self.sample_rate

    def predict(self, audio, sample_rate=None, window=None, hop=None, top_k=3):
        """{'probabilities' (classes,), 'predicted' [labels], 'top' [(label, probability)],
        'embedding', 'duration_s', 'windows'}, as `main.py inference` computes them."""
        self.window_samples(window, hop)  # checked before any audio is read
        blocks, duration = self.blocks(audio, sample_rate)
        path = audio if duration is None else None
        read_whole = whole_file(self.predictor, window, path, WHOLE_FILE_SECONDS, duration)
        return predict_audio(self.predictor, blocks, window, hop, top_k, self.batch_size,
                             read_whole)

    def window_samples(self, window, hop):
        """(window, hop) in samples, checked: numbers, and a window the model takes."""
        window_samples, hop_samples = window_samples_of(self.predictor.run.audio, window, hop,
                                                        self.batch_size)
        check_window_fits_model(self.predictor, window_samples, self.sample_rate)
        return window_samples, hop_samples

    def windows(self, audio, sample_rate=None, window=None, hop=None):
        window_samples, hop_samples = self.window_samples(window, hop)
        blocks, _ = self.blocks(audio, sample_rate)
        return window_outputs(self.predictor, blocks, window_samples, hop_samples,
                              self.batch_size)

    def stream(self, blocks, sample_rate, window=None, hop=None):
        """Live input: `blocks` an iterable of sample arrays as they arrive (a microphone
        callback's queue, a socket), mono or (samples, channels), at `sample_rate`; yields
        {'start_s', 'end_s', 'probabilities', 'predicted', 'latency_s'} for each window as
        soon as it is complete (pytorch/live.py), the last one aligned to the end when the
        blocks end. Memory holds a window and a block."""
        window_samples, hop_samples = self.window_samples(window, hop)
        check_sample_rate(sample_rate)
        mono = (mono_waveform(block).astype(np.float32) for block in blocks)
        return stream_rows(self.predictor, resampled(mono, sample_rate, self.sample_rate),
                           window_samples, hop_samples)

    def timeline(self, audio, sample_rate=None, window=None, hop=None):
        """{'start_s', 'end_s' (windows,), 'probabilities' (windows, classes), 'predicted'
        [labels per window]}: the rows of `main.py inference --timeline`."""
        starts, ends, probabilities = [], [], []
        for start, end, outputs in self.windows(audio, sample_rate, window, hop):
            starts.append(start)
            ends.append(end)
            probabilities.append(outputs["probabilities"])
        probabilities = np.stack(probabilities)
        run = self.predictor.run
        return {"start_s": np.asarray(starts) / self.sample_rate,
                "end_s": np.asarray(ends) / self.sample_rate, "probabilities": probabilities,
                "predicted": [predicted_labels(row, run, self.predictor.thresholds)
                              for row in probabilities]}

    def embed(self, audio, sample_rate=None, window=None, hop=None, timeline=False):
        """The embedding (width,), the windows' mean as `main.py embed` writes it; with
        `timeline`, (windows, width), one per window."""
        if timeline:
            return np.stack([outputs["embedding"] for _, _, outputs
                             in self.windows(audio, sample_rate, window, hop)])
        window_samples, hop_samples = self.window_samples(window, hop)
        outputs, _, _ = predict_blocks(self.predictor, self.blocks(audio, sample_rate)[0],
                                       window_samples, hop_samples, self.batch_size)
        return outputs["embedding"].astype(np.float32)
