"""Decoding, resampling and clip-length handling shared by packing and inference."""
import logging
import os
import warnings
import wave

import numpy as np
import soundfile
import soxr

from utils.config import AUDIO_EXTENSIONS


class AudioReadError(Exception):
    """A file that cannot be used as audio; the message says why."""


def is_audio_file(path):
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def _decode(path):
    """Return (float32 array of shape (samples, channels), sample rate)."""
    try:
        data, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        return data, sample_rate
    except Exception as soundfile_error:  # libsndfile can't read it; try librosa's audioread path
        try:
            import librosa
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, sample_rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
        except Exception as fallback_error:
            raise AudioReadError(f"cannot decode (soundfile: {soundfile_error}; "
                                 f"librosa: {type(fallback_error).__name__} {fallback_error})"
                                 ) from None
        data = np.atleast_2d(data).T  # librosa gives (channels, samples)
        return data, sample_rate


def load_audio(path, sample_rate):
    """Decode any supported file to mono float32 at `sample_rate` (soxr, very high quality).

    Any failure is an AudioReadError saying why: a bad file is the file's problem, never the run's.
    """
    try:
        return _load_audio(path, sample_rate)
    except AudioReadError:
        raise
    except Exception as error:
        raise AudioReadError(f"cannot decode: {error}") from None


def walk_audio_files(root):
    """(audio files under `root`, sorted; [(folder, reason)] of folders that could not be read).
    Links are followed, but each real folder and each real file is visited once, so a link
    loop ends and a file linked twice is listed once."""
    unreadable, folders_seen, files_seen, paths = [], set(), set(), []
    for folder, subfolders, names in os.walk(
            root, followlinks=True,
            onerror=lambda error: unreadable.append((error.filename, error.strerror))):
        real = os.path.realpath(folder)
        if real in folders_seen:
            subfolders[:] = []  # a link back to a folder already walked
            continue
        folders_seen.add(real)
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith(".") and is_audio_file(os.path.join(folder, name[1:])):
                # macOS's ._song.wav companions and hidden files: left out, but said so
                logging.warning("skipped %s: a hidden file (its name starts with '.'); rename "
                                "it to include it", path)
                continue
            if is_audio_file(path) and os.path.realpath(path) not in files_seen:
                files_seen.add(os.path.realpath(path))
                paths.append(path)
    return sorted(paths), unreadable


def audio_duration(path):
    """A file's length in seconds from its header (libsndfile formats), or None."""
    try:
        return soundfile.info(path).duration
    except Exception:  # not a libsndfile format (MP3 through audioread, M4A): unknown
        return None


def check_readable(path):
    """The reasons a file cannot be decoded that are not the decoder's, said as such."""
    if not os.path.isfile(path):
        raise AudioReadError("file not found")
    if not os.access(path, os.R_OK):
        raise AudioReadError("permission denied (not readable by this user)")
    if os.path.getsize(path) == 0:
        raise AudioReadError("empty file (0 bytes)")


def _load_audio(path, sample_rate):
    check_readable(path)
    data, source_rate = _decode(path)
    if data.shape[0] == 0:
        raise AudioReadError("no audio samples (zero length)")
    mono = data.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise AudioReadError("non-finite samples (NaN or Inf)")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="VHQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


STREAM_BLOCK_SECONDS = 10.0


def stream_audio(path, sample_rate, block_seconds=STREAM_BLOCK_SECONDS):
    """load_audio a block at a time: mono float32 blocks at `sample_rate` whose concatenation is
    the whole file, decoded and resampled (soxr's stream, same filter) as they are read, so
    memory is bounded by the block, not the file. Formats libsndfile cannot read (MP3 through
    audioread, M4A, ...) are decoded whole. Failures are AudioReadErrors, as in load_audio."""
    try:
        check_readable(path)
        try:
            sound = soundfile.SoundFile(path)
        except Exception:
            yield load_audio(path, sample_rate)
            return
        with sound:
            source_rate = sound.samplerate
            resampler = (soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32",
                                             quality="VHQ") if source_rate != sample_rate else None)
            block = max(1, int(block_seconds * source_rate))
            read = 0
            while True:
                data = sound.read(block, dtype="float32", always_2d=True)
                last = len(data) < block
                mono = data.mean(axis=1, dtype=np.float32)
                if not np.all(np.isfinite(mono)):
                    raise AudioReadError("non-finite samples (NaN or Inf)")
                read += len(mono)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if len(mono):
                    yield np.ascontiguousarray(mono, dtype=np.float32)
                if last:
                    break
        if read == 0:
            raise AudioReadError("no audio samples (zero length)")
    except AudioReadError:
        raise
    except Exception as error:
        raise AudioReadError(f"cannot decode: {error}") from None


def read_clip(path, sample_rate, clip_samples):
    """The first clip_samples of a file (zero-padded when shorter), reading no more of it than
    that needs: packing a 3-hour recording into 30-s clips takes the memory of a 30-s one."""
    blocks, samples = [], 0
    stream = stream_audio(path, sample_rate)
    for block in stream:
        blocks.append(block)
        samples += len(block)
        if samples >= clip_samples:
            stream.close()
            break
    return fix_length(np.concatenate(blocks), clip_samples)


def wav_truncation(path):
    """For a PCM WAV whose header promises more frames than the file holds (a download or copy
    cut short), what is missing; else None. libsndfile reads such files without a word."""
    if not path.lower().endswith(".wav"):
        return None
    try:
        with wave.open(path, "rb") as header:
            promised = header.getnframes()
        held = soundfile.info(path).frames
    except Exception:  # not PCM (wave reads PCM only) or unreadable: decoding will say
        return None
    if held < promised:
        return f"truncated: its header promises {promised} frames, the file holds {held}"
    return None


def fix_length(waveform, clip_samples):
    """Zero-pad or truncate to exactly clip_samples."""
    if len(waveform) >= clip_samples:
        return waveform[:clip_samples]
    return np.concatenate([waveform, np.zeros(clip_samples - len(waveform), dtype=waveform.dtype)])


INT16_SCALE = 32767.0  # packed clips are float32 in [-1, 1] times this, as int16


def float32_to_int16(waveform):
    """Clip to [-1, 1] and scale: values beyond full scale saturate, never wrap around."""
    return (np.clip(waveform, -1.0, 1.0) * INT16_SCALE).round().astype(np.int16)


def int16_to_float32(waveform):
    return (waveform / INT16_SCALE).astype(np.float32)
