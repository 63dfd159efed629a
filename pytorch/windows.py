"""Files of any length as model inputs: decoded a block at a time, cut into windows, run
through a Predictor a batch of windows at a time, averaged (inference, the Python API) or kept
window by window (timelines, embeddings). Memory holds a window and a block, whatever the file.

How a file becomes model input, and why:
- It is decoded to mono at the checkpoint's sample rate as packing did (utils.audio.stream_audio:
  a block at a time, so a 3-hour recording needs the memory of a short one).
- A file no longer than the window is zero-padded to the window. Packing zero-pads short clips
  to the training clip length in exactly this way, so a short file gets the input, and the
  prediction, that training and evaluation gave it; run at its own length, the time pooling
  would see different statistics from any clip the model was trained on.
- A longer file is cut into windows of --window seconds (default: the training clip length)
  starting every --hop seconds (default: the window). When the last window would run past the
  end it is aligned to the end of the file instead (overlapping the one before) rather than
  zero-padded: every window is then full of real audio, like the full-length training clips.
- The windows' probabilities are averaged. Single-label probabilities are softmax
  probabilities (exp of the model's log-softmax: in [0, 1], summing to 1); multi-label ones
  are the per-class sigmoid probabilities, each in [0, 1] on its own.
"""
import math
import numbers

import numpy as np

from utils.audio import audio_duration, fix_length, stream_audio
from utils.config import SINGLE_LABEL
from utils.data_generator import available_ram_bytes
from utils.utilities import UsageError

# A file padded to more than twice its length gets a note beside its prediction.
PADDING_NOTE = 0.5
# An AudioSet tagger reads files up to this long whole, in one pass (Cnn14: ~1 GB at 60 s).
WHOLE_FILE_SECONDS = 60.0


# Inference memory per log-mel frame and mel bin: the first CNN block's 64 channels in fp32,
# about three tensors alive at once, doubled for safety (Cnn14 and Cnn6; the MobileNets need
# less). A window is refused when a batch of it would need over half the available memory.
ACTIVATION_BYTES = 64 * 4 * 3 * 2


def check_window_memory(audio, window_samples, batch_size, flag="--window"):
    """Before any audio is read: the window's activations fit in memory (a 100000-s window
    was killed by the kernel at 24 GB)."""
    frames = window_samples // audio.hop_size + 1
    needed = frames * audio.mel_bins * ACTIVATION_BYTES * max(1, batch_size)
    available = available_ram_bytes()
    if available and needed > available / 2:
        seconds = window_samples / audio.sample_rate
        raise UsageError(f"{flag}={seconds:g}: a batch of {max(1, batch_size)} window(s) of "
                         f"{seconds:g} s needs about {needed / 2**30:.1f} GiB for the network's "
                         f"activations, more than half the memory available "
                         f"({available / 2**30:.1f} GiB); lower {flag} (or --batch_size)")


def window_samples_of(audio, window=None, hop=None, batch_size=1):
    """(window_samples, hop_samples) from seconds; the window defaults to the training clip.

    `audio` is the checkpoint's AudioConfig; window and hop are positive finite seconds
    (checked here too: the Python API passes them unparsed).
    """
    for name, value in (("window", window), ("hop", hop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value) or value <= 0):
            raise UsageError(f"--{name}={value!r}: give a positive number of seconds")
    if window is None:
        window_samples = audio.clip_samples
    else:
        window_samples = int(round(window * audio.sample_rate))
    if hop is None:
        hop_samples = window_samples
    elif hop > window_samples / audio.sample_rate:
        raise UsageError(f"--hop={hop}: must be at most the window "
                         f"({window_samples / audio.sample_rate:g} s); a longer hop skips audio")
    else:
        hop_samples = max(1, int(round(hop * audio.sample_rate)))
    check_window_memory(audio, window_samples, batch_size)
    return window_samples, hop_samples


def check_window_fits_model(predictor, window_samples, sample_rate):
    """A window too short for the CNN's pooling fails here, naming the flag, not mid-run."""
    if window_samples < predictor.min_samples:
        raise UsageError(f"--window={window_samples / sample_rate:g}: audio of {window_samples} "
                         f"samples is too short for {predictor.run.model_type}: it needs at "
                         f"least {predictor.min_samples} samples "
                         f"({predictor.min_samples / sample_rate:.3f} s); raise --window")


def stream_windows(blocks, window_samples, hop_samples):
    """The model inputs of a file given as blocks of samples: windows starting every hop, the
    last one aligned to the end of the file, a file shorter than a window zero-padded to it
    (see the module doc). Holds at most a window plus a block: memory does not grow with the
    file. Yields (start, end, window): the samples of the file the window covers."""
    buffer, buffer_start, next_start, last_end, total = np.zeros(0, np.float32), 0, 0, 0, 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        total += len(block)
        while next_start + window_samples <= total:
            offset = next_start - buffer_start
            yield next_start, next_start + window_samples, buffer[offset:offset + window_samples]
            last_end = next_start + window_samples
            next_start += hop_samples
        # Keep what a later window may need: from the next start, and the file's last window.
        keep_from = max(buffer_start, min(next_start, total - window_samples))
        buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
    if total < window_samples:
        yield 0, total, fix_length(buffer, window_samples)
    elif last_end < total:
        yield total - window_samples, total, buffer[-window_samples:]


def window_outputs(predictor, blocks, window_samples, hop_samples, batch_size=8):
    """The predictor's outputs window by window over a file given as blocks of samples, run
    `batch_size` windows at a time: yields (start, end, {'probabilities', 'embedding'}) with
    start and end in samples of the file."""
    pending = []

    def run(windows):
        outputs = predictor(np.stack([window for _, _, window in windows]))
        for index, (start, end, _) in enumerate(windows):
            yield start, end, {key: value[index] for key, value in outputs.items()
                               if key in ("probabilities", "embedding")}

    for window in stream_windows(blocks, window_samples, hop_samples):
        pending.append(window)
        if len(pending) == batch_size:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)


def predict_blocks(predictor, blocks, window_samples, hop_samples, batch_size=8):
    """Mean class probabilities and embedding over the windows of a file given as blocks of
    samples; returns ({'probabilities', 'embedding'}, windows, samples)."""
    sums, windows, samples = {}, 0, 0
    for _, end, outputs in window_outputs(predictor, blocks, window_samples, hop_samples,
                                          batch_size):
        for key, value in outputs.items():
            sums[key] = sums.get(key, 0.0) + value.astype(np.float64)
        windows, samples = windows + 1, max(samples, end)
    return {key: value / windows for key, value in sums.items()}, windows, samples


def whole_input(blocks, min_samples):
    """(waveform, samples) of a file read whole: a file shorter than the network's pooling
    takes (`min_samples`) is zero-padded to that length."""
    waveform = np.concatenate(list(blocks) or [np.zeros(0, np.float32)])
    return fix_length(waveform, max(len(waveform), min_samples)), len(waveform)


def predict_whole(predictor, blocks):
    """An AudioSet tagger over a whole file in one pass, as the original inference: returns
    ({'probabilities', 'embedding'[, 'framewise' (frames, classes)]}, samples)."""
    waveform, samples = whole_input(blocks, predictor.min_samples)
    outputs = predictor(waveform[None])
    return {key: value[0].astype(np.float64 if key != "framewise" else np.float32)
            for key, value in outputs.items()}, samples


def predicted_mask(probabilities, run, thresholds=None):
    """Which labels are given (booleans over the last axis): the top class (single-label), or
    every label at or above its threshold (multi-label: the per-label thresholds tuned on
    validation when the checkpoint has them, else its --threshold)."""
    if run.task == SINGLE_LABEL:
        return np.eye(len(run.labels), dtype=bool)[np.argmax(probabilities, axis=-1)]
    limits = np.asarray(thresholds if thresholds is not None else run.threshold, dtype=np.float64)
    return probabilities >= limits


def predicted_labels(probabilities, run, thresholds=None):
    """The labels a file is given (predicted_mask)."""
    return [label for label, on in zip(run.labels, predicted_mask(probabilities, run, thresholds))
            if on]


def top_labels(probabilities, labels, top_k):
    """[(label, probability)] of the top_k classes, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [(labels[index], float(probabilities[index])) for index in order]


def predict_audio(predictor, blocks, window=None, hop=None, top_k=3, batch_size=8,
                  read_whole=False):
    """Predict one recording given as blocks of samples at the model's rate: {'duration_s',
    'windows', 'probabilities', 'embedding', 'top', 'predicted'} (and 'framewise' for a
    decision-level tagger reading it whole)."""
    if read_whole:
        outputs, samples = predict_whole(predictor, blocks)
        windows, input_samples = 1, max(samples, predictor.min_samples)
    else:
        input_samples, hop_samples = window_samples_of(predictor.run.audio, window, hop,
                                                       batch_size)
        outputs, windows, samples = predict_blocks(predictor, blocks, input_samples,
                                                   hop_samples, batch_size)
    return file_result(predictor, outputs, windows, samples, top_k, input_samples)


def file_result(predictor, outputs, windows, samples, top_k, input_samples):
    """A file's result: its mean outputs with 'duration_s', 'windows', 'top', 'predicted' and
    'padding': the share of the model's input that was silence added to a short file (0.0 when
    it was all audio), which format_prediction points out."""
    run, probabilities = predictor.run, outputs["probabilities"]
    return dict(outputs, duration_s=samples / run.audio.sample_rate, windows=windows,
                top=top_labels(probabilities, run.labels, top_k),
                predicted=predicted_labels(probabilities, run, predictor.thresholds),
                padding=max(0.0, 1.0 - samples / input_samples))


def predict_file(predictor, path, window=None, hop=None, top_k=3, batch_size=8,
                 whole_file_seconds=WHOLE_FILE_SECONDS):
    """predict_audio of a file, with 'file'. Raises AudioReadError when it cannot be decoded."""
    result = predict_audio(predictor, stream_audio(path, predictor.run.audio.sample_rate),
                           window, hop, top_k, batch_size,
                           whole_file(predictor, window, path, whole_file_seconds))
    return dict(result, file=path)


def whole_file(predictor, window, path, whole_file_seconds=WHOLE_FILE_SECONDS, duration=None):
    """An AudioSet tagger reads a file whole when it is no longer than `whole_file_seconds`
    (infinite: every file), unless --window asks for windows; trained models always window.
    `duration` in seconds where known, else read from the file's header."""
    if window is not None or not predictor.audioset_tagger:
        return False
    if math.isinf(whole_file_seconds):
        return True
    duration = audio_duration(path) if duration is None else duration
    return duration is not None and duration <= whole_file_seconds


def format_prediction(result):
    top = "  ".join(f"{label} {probability:.3f}" for label, probability in result["top"])
    plural = "" if result["windows"] == 1 else "s"
    line = f"{result['file']} ({result['duration_s']:.1f} s, {result['windows']} window{plural}): {top}"
    if result.get("padding", 0.0) >= PADDING_NOTE:
        line += (f"  [{result['padding']:.0%} of the model's input was silence padding this "
                 "short file: a weak basis for the prediction; --window=S shortens the window]")
    return line
