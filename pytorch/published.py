"""The published PANNs models (metadata/panns_models.json) and which of them a checkpoint holds.

`identify` reads the architecture and the audio settings from a state dict alone:
- the architecture: the published model whose parameter and buffer names and shapes are exactly
  the checkpoint's. Cnn14, Cnn14_DecisionLevelMax and Cnn14_DecisionLevelAvg hold the same
  tensors; there (only) the file name decides, and a name that says nothing gives Cnn14 with a
  warning naming --model_type;
- the window: the STFT kernel's length; the mel bins: the mel matrix's width;
- the sample rate and band: the published settings whose mel matrix equals the checkpoint's
  (librosa's slaney mel filters, as torchlibrosa builds them), so a 16 kHz file is known as such;
- the hop, which no tensor holds: the published one (10 ms).
Networks without an STFT (LeeNet, DaiNet, Res1dNet, Wavegram_Cnn14) take their published settings.
"""
import csv
import functools
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from pytorch.checkpoints import SOURCE_HEAD, read_pretrained, source_head_rows
from utils.config import (AUDIOSET_CLASSES_NUM, AUDIOSET_CLIP_DURATION, AUDIOSET_LABELS_CSV, METADATA_DIR, MULTI_LABEL,
                          AudioConfig, RunConfig)
from utils.utilities import UsageError

PUBLISHED_JSON = os.path.join(METADATA_DIR, "panns_models.json")
STFT_KERNEL = "spectrogram_extractor.stft.conv_real.weight"
MEL_MATRIX = "logmel_extractor.melW"
AUDIO_KEYS = ("sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax")


@functools.lru_cache(maxsize=None)
def published_models():
    """{name: {'checkpoint', 'audioset_mAP', 'audio', 'parameters', 'state_dict'}}, in the
    published order; 'state_dict' entries read 'name 2048x1024' (empty shape: a scalar)."""
    with open(PUBLISHED_JSON, encoding="utf-8") as f:
        return json.load(f)["models"]


def signature(state_dict):
    """The names and shapes of a state dict, as the published list writes them."""
    return _signature({key: tuple(value.shape) for key, value in state_dict.items()})


def _signature(shapes):
    return {f"{key} {'x'.join(map(str, shape))}" for key, shape in shapes.items()}


def source_classes(state_dict):
    """The width of the output layer (fc_audioset): 527 in the AudioSet files; a backbone
    pretrained on another label set (scripts/pretrain_backbone.sh) has one row per label."""
    rows = source_head_rows(state_dict)
    return AUDIOSET_CLASSES_NUM if rows is None else rows


def architecture_signature(state_dict):
    """signature() with the output layer's rows as AudioSet's 527: the architecture is the same
    whatever the number of labels its source task had."""
    shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
    if source_classes(state_dict) != AUDIOSET_CLASSES_NUM:
        shapes[SOURCE_HEAD[0]] = (AUDIOSET_CLASSES_NUM, shapes[SOURCE_HEAD[0]][1])
        shapes[SOURCE_HEAD[1]] = (AUDIOSET_CLASSES_NUM,)
    return _signature(shapes)


@dataclass(frozen=True)
class Identified:
    name: str
    audio: dict  # AUDIO_KEYS -> value
    notes: tuple = ()  # how each setting was found, for the log
    classes_num: int = AUDIOSET_CLASSES_NUM  # outputs of its fc_audioset (source labels)


def _closest(found):
    """The published model nearest to a signature, and what differs, for the error message."""
    def distance(name):
        return len(found ^ set(published_models()[name]["state_dict"]))
    name = min(published_models(), key=distance)
    expected = set(published_models()[name]["state_dict"])
    extra = sorted(found - expected)[:3]
    missing = sorted(expected - found)[:3]
    return name, "; ".join(part for part in (
        f"the file has {', '.join(extra)}" if extra else "",
        f"{name} has {', '.join(missing)}" if missing else "") if part)


def mel_matrix(sample_rate, window_size, mel_bins, fmin, fmax):
    """torchlibrosa's LogmelFilterBank.melW: librosa's slaney filters, (freq_bins, mel_bins)."""
    import librosa  # imported here: only identification needs it

    return librosa.filters.mel(sr=sample_rate, n_fft=window_size, n_mels=mel_bins, fmin=fmin,
                               fmax=fmax).T


def _audio_from_mel(state_dict, name, path, flag):
    """The sample rate and band whose mel matrix is the checkpoint's, among published settings."""
    window_size = state_dict[STFT_KERNEL].shape[-1]
    melW = state_dict[MEL_MATRIX].float().numpy()
    mel_bins = melW.shape[1]
    candidates = [dict(model["audio"]) for model in published_models().values()]
    candidates.sort(key=lambda audio: audio != published_models()[name]["audio"])
    for audio in candidates:
        if audio["window_size"] != window_size:
            continue
        audio.update(mel_bins=mel_bins)
        expected = mel_matrix(audio["sample_rate"], window_size, mel_bins, audio["fmin"],
                              audio["fmax"])
        if expected.shape == melW.shape and np.allclose(expected, melW, rtol=1e-4, atol=1e-6):
            return audio
    raise UsageError(
        f"{flag}={path}: its mel matrix ({mel_bins} bins, window "
        f"{window_size}) matches no published sample rate and band; give the settings it was "
        "trained with: --model_type, --window_size, --hop_size, --mel_bins, --fmin, --fmax, "
        "and pack the audio at its sample rate")


def identify(state_dict, path, flag="--pretrained_checkpoint_path", model_type=None):
    """The published architecture and audio settings of `state_dict` (read from `path`);
    `model_type` (--model_type) chooses among models that hold the same tensors."""
    found = architecture_signature(state_dict)
    names = [name for name, model in published_models().items()
             if set(model["state_dict"]) == found]
    if not names:
        closest, difference = _closest(found)
        raise UsageError(f"{flag}={path}: its tensors fit no published "
                         f"PANNs model (closest: {closest}: {difference}); is it a PANNs "
                         "AudioSet checkpoint?")
    notes = []
    if model_type and model_type not in names:
        raise UsageError(f"--model_type={model_type}: {path} holds the tensors of "
                         f"{', '.join(names)}, not of {model_type}")
    if model_type:
        name = model_type
        if len(names) > 1:
            notes.append(f"{', '.join(names)} hold the same tensors; {name} chosen by --model_type")
    elif len(names) == 1:
        name = names[0]
    else:
        file_name = os.path.basename(path).lower()
        named = [name for name in names if name.lower() in file_name]
        name = max(named, key=len) if named else names[0]
        how = ("its file name" if named else "default: its file name names none of them; "
               "pass --model_type to choose")
        notes.append(f"{', '.join(names)} hold the same tensors; {name} chosen by {how}")
        if not named:
            logging.warning("%s: %s", path, notes[-1])
    if MEL_MATRIX in state_dict:
        audio = _audio_from_mel(state_dict, name, path, flag)
        notes.append(f"window {audio['window_size']} from the STFT kernel, {audio['mel_bins']} "
                     f"mel bins, {audio['sample_rate']} Hz and {audio['fmin']}-{audio['fmax']} Hz "
                     f"from the mel matrix, hop {audio['hop_size']} as published")
    else:
        audio = dict(published_models()[name]["audio"])
        notes.append(f"no STFT in {name}: its published settings ({audio['sample_rate']} Hz)")
    classes = source_classes(state_dict)
    if classes != AUDIOSET_CLASSES_NUM:
        notes.append(f"an output layer of {classes} labels, not AudioSet's "
                     f"{AUDIOSET_CLASSES_NUM}: a backbone pretrained on another task")
    return Identified(name, audio, tuple(notes), classes)


def require_audioset_head(identified, path, flag):
    """Tagging AudioSet's 527 labels needs a file trained on them."""
    if identified.classes_num != AUDIOSET_CLASSES_NUM:
        raise UsageError(
            f"{flag}={path}: {identified.name} with an output layer of {identified.classes_num} "
            f"labels, not AudioSet's {AUDIOSET_CLASSES_NUM}: a backbone pretrained on another "
            "task, not an AudioSet tagger; fine-tune it (train --pretrained_checkpoint_path) or "
            "tag with the training checkpoint it was exported from")


def identify_checkpoint(path, trusted=False, flag="--pretrained_checkpoint_path",
                        model_type=None):
    """identify() on the state dict of the checkpoint file at `path` (the file is read once
    per process: pytorch/checkpoints.read_pretrained)."""
    pretrained = read_pretrained(path, trusted, flag)
    if _IDENTIFIED.get(pretrained.sha256, (None,))[0] != (path, model_type):
        identified = identify(pretrained.state_dict, path, flag, model_type)
        logging.info("%s: %s (%s)", path, identified.name, "; ".join(identified.notes))
        _IDENTIFIED[pretrained.sha256] = ((path, model_type), identified)
    return _IDENTIFIED[pretrained.sha256][1]


_IDENTIFIED = {}  # sha256 -> (path, Identified): the file name may decide the architecture


def audioset_labels():
    """The 527 AudioSet display names in the taggers' output order."""
    with open(AUDIOSET_LABELS_CSV, encoding="utf-8", newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


def audioset_tagger_config(identified, path, flag):
    """The RunConfig of an official AudioSet tagger: tagging needs no training run."""
    require_audioset_head(identified, path, flag)
    audio = AudioConfig(clip_samples=int(AUDIOSET_CLIP_DURATION * identified.audio["sample_rate"]),
                        **identified.audio)
    return RunConfig(model_type=identified.name, task=MULTI_LABEL, labels=audioset_labels(),
                     audio=audio, features="", holdout_fold=None, loss_type="clip_bce")
