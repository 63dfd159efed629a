"""Live input: audio read as it arrives, one row per hop as soon as its window is complete.

    arecord -f S16_LE -r 32000 -c 1 | python3 pytorch/main.py inference --stream \\
        --checkpoint_path=CKPT --audio_path=- --hop=1
    python3 pytorch/main.py inference --stream --checkpoint_path=CKPT --audio_path=growing.wav

- The source: standard input (`--audio_path=-`) or a file that may still be growing (read to
  its end, then watched; it is over after FOLLOW_IDLE_SECONDS without new bytes). WAV (its
  header says the format) or raw PCM (`--stream_format=s16le|f32le` with `--stream_rate` and
  `--stream_channels`). Channels are averaged; another rate is resampled block by block
  (soxr's streaming resampler), so nothing waits for the end.
- Windows are those of `inference --timeline` (pytorch/windows.stream_windows: every --hop, the
  training clip long): each row is written and flushed when its window's last sample has been
  read, and the window goes through the network alone, so a row waits for no other. When the
  source ends, the last window aligned to the end follows, as in a timeline: the rows of a
  finished stream are the timeline's rows of the same audio.
- Memory holds a window and a read block, whatever the stream's length.
- Latency, measured per row: from reading the window's last sample to writing its row (the
  network's time on one window); the end of the run prints its median and maximum. The
  window itself is the other part of the delay: a row describes the last --window seconds.
"""
import csv
import os
import struct
import sys
import time

import numpy as np

from pytorch.windows import predicted_labels, stream_windows
from utils.utilities import UsageError

READ_FRAMES = 3200           # frames per read: 0.1 s at 32 kHz, so rows are not held back
FOLLOW_IDLE_SECONDS = 5.0    # a followed file without new bytes this long has ended
FOLLOW_POLL_SECONDS = 0.05
RAW_FORMATS = {"s16le": ("<i2", 32768.0), "f32le": ("<f4", 1.0)}
WAV_CODES = {(1, 16): "s16le", (3, 32): "f32le", (0xFFFE, 16): "s16le", (0xFFFE, 32): "f32le"}


class FollowedFile:
    """A binary file read like a pipe: read(n) waits for bytes a writer has not written yet,
    and returns b'' once the file has not grown for `idle` seconds."""

    def __init__(self, path, idle=None):
        self.file, self.idle = open(path, "rb"), FOLLOW_IDLE_SECONDS if idle is None else idle

    def read(self, size):
        data, waited = b"", 0.0
        while len(data) < size:
            more = self.file.read(size - len(data))
            if more:
                data, waited = data + more, 0.0
                continue
            if data or waited >= self.idle:
                return data  # what there is now: a partial block is still worth a row
            time.sleep(FOLLOW_POLL_SECONDS)
            waited += FOLLOW_POLL_SECONDS
        return data

    def close(self):
        self.file.close()


def read_exactly(source, size):
    """`size` bytes, fewer only at the end of the source."""
    data = b""
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def read_wav_header(source, name):
    """(format, channels, rate) from a WAV header, leaving `source` at the first sample. A
    streaming writer may put 0 or 0xFFFFFFFF in the size fields; they are not used."""
    if read_exactly(source, 12)[:4] != b"RIFF":
        raise UsageError(f"--audio_path={name}: not a WAV stream (no RIFF header); for raw PCM "
                         "give --stream_format=s16le or f32le")
    found = None
    while True:
        chunk = read_exactly(source, 8)
        if len(chunk) < 8:
            raise UsageError(f"--audio_path={name}: the WAV header ended before its data")
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            if found is None:
                raise UsageError(f"--audio_path={name}: a WAV data chunk before its fmt chunk")
            return found
        body = read_exactly(source, size + size % 2)
        if chunk_id == b"fmt ":
            code, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if (code, bits) not in WAV_CODES:
                raise UsageError(f"--audio_path={name}: WAV of format {code} with {bits}-bit "
                                 "samples; --stream reads 16-bit PCM or 32-bit float")
            found = (WAV_CODES[(code, bits)], channels, rate)


def resampled(blocks, rate, model_rate):
    """Mono float32 blocks at `rate` as blocks at `model_rate`, each as soon as it comes
    (soxr's streaming resampler; the filter's tail follows the last block)."""
    if rate == model_rate:
        yield from blocks
        return
    import soxr

    resampler = soxr.ResampleStream(rate, model_rate, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield resampler.resample_chunk(np.asarray(block, dtype=np.float32))
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def pcm_blocks(source, sample_format, channels):
    """Mono float32 blocks from interleaved PCM, as the bytes arrive."""
    dtype, scale = RAW_FORMATS[sample_format]
    frame_bytes = np.dtype(dtype).itemsize * channels
    pending = b""
    while True:
        data = source.read(READ_FRAMES * frame_bytes)
        if not data:
            return
        data = pending + data
        usable = len(data) - len(data) % frame_bytes
        pending = data[usable:]
        block = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32) / scale
        yield np.clip(block.reshape(-1, channels).mean(axis=1), -1.0, 1.0)


def stream_rows(predictor, blocks, window_samples, hop_samples):
    """{'start_s', 'end_s', 'probabilities', 'predicted', 'latency_s'} per window, each as soon
    as the window is complete (one window per forward pass)."""
    rate = predictor.run.audio.sample_rate
    for start, end, window in stream_windows(blocks, window_samples, hop_samples):
        ready = time.perf_counter()
        probabilities = predictor(window[None])["probabilities"][0]
        yield {"start_s": start / rate, "end_s": end / rate, "probabilities": probabilities,
               "predicted": predicted_labels(probabilities, predictor.run, predictor.thresholds),
               "latency_s": time.perf_counter() - ready}


def open_source(audio_path):
    if audio_path == "-":
        return sys.stdin.buffer, "-"
    if not os.path.exists(audio_path):
        raise UsageError(f"--audio_path={audio_path}: no such file (--stream reads a file, "
                         "possibly still growing, or - for standard input)")
    if os.path.isdir(audio_path):
        raise UsageError(f"--audio_path={audio_path}: a folder; --stream reads one stream (a "
                         "file or - for standard input)")
    return FollowedFile(audio_path), audio_path


def run_stream(args, predictor, window_samples, hop_samples, output=sys.stdout):
    """`inference --stream`: CSV rows on standard output, flushed one by one."""
    source, name = open_source(args.audio_path)
    run = predictor.run
    if args.stream_format == "wav":
        sample_format, channels, rate = read_wav_header(source, name)
    else:
        sample_format, channels = args.stream_format, args.stream_channels
        rate = args.stream_rate or run.audio.sample_rate
    predictor(np.zeros((1, window_samples), np.float32))  # the first pass's set-up, not a row's
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(["start_s", "end_s"] + list(run.labels) + ["predicted"])
    output.flush()
    latencies = []
    blocks = resampled(pcm_blocks(source, sample_format, channels), rate, run.audio.sample_rate)
    for row in stream_rows(predictor, blocks, window_samples, hop_samples):
        writer.writerow([f"{row['start_s']:.3f}", f"{row['end_s']:.3f}"]
                        + [f"{value:.6f}" for value in row["probabilities"]]
                        + [";".join(row["predicted"])])
        output.flush()
        latencies.append(row["latency_s"])
    if hasattr(source, "close") and source is not sys.stdin.buffer:
        source.close()
    if latencies:
        print(f"{len(latencies)} rows; latency from a window's last sample to its row: median "
              f"{1000 * np.median(latencies):.1f} ms, max {1000 * np.max(latencies):.1f} ms "
              f"(plus the {window_samples / run.audio.sample_rate:g}-s window itself)",
              file=sys.stderr)
    else:
        print("the stream ended before one window was complete; no rows", file=sys.stderr)
