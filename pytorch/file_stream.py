"""Many files as one stream through the model: decoded ahead in worker processes, the windows of
different files packed into full batches, each file's result given as soon as its last window
has run, in the order of the files.

Why: a folder of short clips run file by file gives the model batches of one or two windows and
makes it wait for every decode. Here the workers decode (and resample) the next files while the
model runs, and a batch takes windows from as many files as it needs.

Memory stays bounded whatever the number and length of the files: at most `prefetch` decoded
files wait for the model, a batch holds `batch_size` windows, and a file longer than
STREAM_FILE_SECONDS is not handed to a worker but read a block at a time in this process
(pytorch/windows.py). Results go to the caller as they complete; nothing
here keeps them.
"""
import collections
import concurrent.futures
import multiprocessing
import os
import sys

import numpy as np
from tqdm import tqdm

from pytorch.windows import (WHOLE_FILE_SECONDS, file_result, format_prediction,
                             predict_blocks, predict_whole, stream_windows, whole_file,
                             whole_input, window_samples_of)
from utils.audio import AudioReadError, audio_duration, stream_audio
from utils.utilities import progress

# Files up to this long are decoded whole by a worker (a 10-minute file is 77 MB of float32 at
# 32 kHz); longer ones are streamed here, a block at a time.
STREAM_FILE_SECONDS = 600.0


def decode_inputs(path, sample_rate, window_samples, hop_samples, whole_samples):
    """In a worker: (path, inputs (windows, samples) float32, spans [(start, end)], samples of
    the file) or (path, None, error message, 0). `whole_samples`: read the file whole, padded
    to at least this many samples (AudioSet taggers), instead of windows."""
    try:
        blocks = stream_audio(path, sample_rate)
        if whole_samples:
            waveform, samples = whole_input(blocks, whole_samples)
            return path, waveform[None], [(0, samples)], samples
        spans, windows = [], []
        for start, end, window in stream_windows(blocks, window_samples, hop_samples):
            spans.append((start, end))
            windows.append(np.array(window, dtype=np.float32))
        return path, np.stack(windows), spans, max(end for _, end in spans)
    except AudioReadError as error:
        return path, None, str(error), 0


class FileSlot:
    """One file's outputs as its windows come back from the batches."""

    def __init__(self, path, windows, samples):
        self.path, self.expected, self.samples = path, windows, samples
        self.sums, self.done = {}, 0

    def add(self, outputs):
        for key, value in outputs.items():
            value = value.astype(np.float32 if key == "framewise" else np.float64)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.done += 1

    @property
    def complete(self):
        return self.done == self.expected

    def mean(self):
        return {key: value / self.done for key, value in self.sums.items()}


class Batcher:
    """Windows of any files in, full batches through the predictor; a batch holds inputs of one
    length only (whole files of another length start a new one)."""

    def __init__(self, predictor, batch_size):
        self.predictor, self.batch_size = predictor, batch_size
        self.pending = []  # (slot, window)

    def add(self, slot, window):
        if self.pending and len(self.pending[0][1]) != len(window):
            self.flush()
        self.pending.append((slot, window))
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        outputs = self.predictor(np.stack([window for _, window in self.pending]))
        for index, (slot, _) in enumerate(self.pending):
            slot.add({key: value[index] for key, value in outputs.items()
                      if key in ("probabilities", "embedding", "framewise")})
        self.pending = []


def worker_count(num_workers):
    """Decoding processes: as asked, at most the CPUs there are; 0 or 1 decodes here."""
    return min(num_workers, os.cpu_count() or 1) if num_workers > 1 else 0


class FileStream:
    """stream(paths) yields, in the order of `paths`, (path, outputs, windows, samples) for each
    file that was read (outputs: mean 'probabilities', 'embedding'[, 'framewise']) and
    (path, None, error, 0) for each that was not.

    `read_whole(path)` says whether a file is read whole (AudioSet taggers); `min_samples`
    pads such a file to what the network's pooling needs."""

    def __init__(self, predictor, window_samples, hop_samples, batch_size=8, num_workers=2,
                 read_whole=lambda path: False, prefetch=None):
        self.predictor, self.batch_size = predictor, batch_size
        self.window_samples, self.hop_samples, self.read_whole = window_samples, hop_samples, read_whole
        self.sample_rate = predictor.run.audio.sample_rate
        self.workers = worker_count(num_workers)
        self.prefetch = prefetch or max(2, 4 * self.workers)

    def streamed_here(self, path):
        """A long file is read block by block here, not whole by a worker. A file whose header
        gives no length (MP3, M4A: decoded whole wherever it is read) goes to a worker."""
        duration = audio_duration(path)
        return duration is not None and duration > STREAM_FILE_SECONDS

    def job(self, path):
        whole = self.predictor.min_samples if self.read_whole(path) else 0
        return path, self.sample_rate, self.window_samples, self.hop_samples, whole

    def stream(self, paths):
        paths, executor = list(paths), None
        if self.workers and len(paths) > 1:  # one file: nothing to decode ahead of
            # spawn: a forked child would inherit torch's threads and locks mid-use
            executor = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield from self._stream(paths, executor)
        finally:
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def _stream(self, paths, executor):
        batcher = Batcher(self.predictor, self.batch_size)
        waiting = collections.deque()  # decoded or decoding files, in order
        order = collections.deque()    # slots (or errors) not yet given to the caller
        upcoming = iter(paths)

        def submit():
            for path in upcoming:
                if self.streamed_here(path):
                    waiting.append(("here", path))
                elif executor is not None:
                    waiting.append(("future", executor.submit(decode_inputs, *self.job(path))))
                else:
                    waiting.append(("decoded", decode_inputs(*self.job(path))))
                if len(waiting) >= self.prefetch:
                    return

        submit()
        while waiting:
            kind, item = waiting.popleft()
            submit()
            if kind == "here":  # a long file: flush, then run it block by block, in order
                batcher.flush()
                yield from self._ready(order)
                yield self._run_here(item)
                continue
            path, inputs, spans, samples = item.result() if kind == "future" else item
            if inputs is None:
                order.append((path, None, spans, 0))
            else:
                slot = FileSlot(path, len(inputs), samples)
                order.append(slot)
                for window in inputs:
                    batcher.add(slot, window)
            yield from self._ready(order)
        batcher.flush()
        yield from self._ready(order)

    @staticmethod
    def _ready(order):
        """The files at the front whose every window has run (or that failed), in order."""
        while order and (isinstance(order[0], tuple) or order[0].complete):
            entry = order.popleft()
            yield entry if isinstance(entry, tuple) else (
                entry.path, entry.mean(), entry.expected, entry.samples)

    def _run_here(self, path):
        try:
            blocks = stream_audio(path, self.sample_rate)
            if self.read_whole(path):
                outputs, samples = predict_whole(self.predictor, blocks)
                return path, outputs, 1, samples
            return (path, *predict_blocks(self.predictor, blocks, self.window_samples,
                                          self.hop_samples, self.batch_size))
        except AudioReadError as error:
            return path, None, str(error), 0


def stream_predictions(predictor, paths, window=None, hop=None, top_k=3, batch_size=8,
                       whole_file_seconds=WHOLE_FILE_SECONDS, num_workers=2, verbose=True):
    """predict_file of many files as one stream (pytorch/file_stream.py: decoded ahead in
    `num_workers` processes, windows of several files in each batch): yields each file's result
    in the order of `paths` as soon as it is complete; an unreadable file gives {'file',
    'error'} and a stderr line, and the others go on. With `verbose`, each file's top labels
    are printed as it is done; a progress bar counts files."""
    window_samples, hop_samples = window_samples_of(predictor.run.audio, window, hop, batch_size)
    stream = FileStream(predictor, window_samples, hop_samples, batch_size, num_workers,
                        lambda path: whole_file(predictor, window, path, whole_file_seconds))
    with progress(total=len(paths), desc="inference", unit="file", disable=len(paths) < 2) as bar:
        for path, outputs, windows, samples in stream.stream(paths):
            bar.update(1)
            if outputs is None:
                tqdm.write(f"skipped {path}: {windows}", file=sys.stderr)
                yield {"file": path, "error": windows}
                continue
            input_samples = max(samples, predictor.min_samples) if stream.read_whole(path) \
                else window_samples
            result = dict(file_result(predictor, outputs, windows, samples, top_k, input_samples),
                          file=path)
            if verbose:
                tqdm.write(format_prediction(result))
            yield result


def predict_paths(predictor, paths, window=None, hop=None, top_k=3, batch_size=8, verbose=True,
                  whole_file_seconds=WHOLE_FILE_SECONDS, num_workers=2):
    """stream_predictions as a list."""
    return list(stream_predictions(predictor, paths, window, hop, top_k, batch_size,
                                   whole_file_seconds, num_workers, verbose))
