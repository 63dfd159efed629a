"""The HEAR API (Holistic Evaluation of Audio Representations: hear-eval-kit, hearvalidator) over
every model this project reads: a training checkpoint, an official PANNs checkpoint, an .onnx
export.

    hear-validator pytorch.hear --model CKPT.pth
    python3 -m heareval.embeddings.runner pytorch.hear --model CKPT.pth

    from pytorch import hear
    model = hear.load_model("CKPT.pth")             # a torch.nn.Module: .to("cuda") moves it
    scene = hear.get_scene_embeddings(audio, model)  # audio: (sounds, samples) at model.sample_rate
    embeddings, timestamps_ms = hear.get_timestamp_embeddings(audio, model)

- Scene embeddings are what `inference` gives a file: the mean embedding over windows of the
  training clip (an official tagger: 10 s), the last aligned to the end, a short sound
  zero-padded; the windows of the whole batch go through the network together.
- Timestamp embeddings of a log-mel model come from one pass over each sound: the network's
  frame-level map (after its convolutions, before the pooling over time) through fc1, as the
  published decision-level models apply fc1 to every segment. One vector per segment of
  2**time_pools frames (Cnn14, MobileNetV2: 32 frames of 10 ms, 320 ms), stamped at the segment's
  centre: a regular grid, the same for every sound of a batch. hearvalidator warns that 320 ms
  is coarser than the 50 ms it suggests for transcription; finer stamps would interpolate, not
  resolve. An .onnx file has no frame-level output (nor do the waveform models): its timestamp
  embeddings are clip embeddings of training-clip windows centred on the same grid (one pass
  per stamp: slower, and smoother).
"""
import numpy as np
import torch

from pytorch.models import MODELS, tagger_of
from pytorch.predictor import TorchPredictor, load_predictor
from pytorch.windows import stream_windows
from utils.audio import fix_length

WINDOWS_PER_PASS = 16  # training-clip windows run through the network at a time


class HearModel(torch.nn.Module):
    """A loaded model with the attributes HEAR asks for. The torch network is a submodule, so
    `.to(device)` moves it and the next call runs there; an .onnx model stays on the CPU."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor
        self.network = predictor.model if isinstance(predictor, TorchPredictor) else None
        run = predictor.run
        self.sample_rate = run.audio.sample_rate
        self.clip_samples = run.audio.clip_samples
        tagger_class = MODELS[run.model_type]
        tagger_class = getattr(tagger_class, "base_class", None) or tagger_class
        self.embedding_size = tagger_class.embedding_size
        self.scene_embedding_size = self.timestamp_embedding_size = self.embedding_size
        self.frame_level = self.network is not None and hasattr(
            tagger_of(self.network), "spectrogram_extractor")
        # Samples from one timestamp to the next: a segment of the last feature map (log-mel
        # models), else a quarter second.
        if tagger_class.time_pools and run.audio.hop_size:
            self.segment_samples = 2 ** tagger_class.time_pools * run.audio.hop_size
        else:
            self.segment_samples = self.sample_rate // 4

    @property
    def device(self):
        return getattr(self.predictor, "device", torch.device("cpu"))  # .onnx: the CPU

    def clip_embeddings(self, windows):
        """(windows, samples) float32 NumPy -> (windows, embedding) float32 NumPy: the
        predictor's embeddings (on the device the network is on now)."""
        return np.concatenate([self.predictor(windows[start:start + WINDOWS_PER_PASS])["embedding"]
                               for start in range(0, len(windows), WINDOWS_PER_PASS)]
                              ).astype(np.float32)

    @torch.no_grad()
    def frame_embeddings(self, audio):
        """(sounds, samples) tensor -> (sounds, segments, embedding): fc1 on every segment of
        the frame-level map, one pass."""
        tagger = tagger_of(self.network)
        samples = max(audio.shape[1], tagger.min_samples())
        waveform = torch.nn.functional.pad(audio, (0, samples - audio.shape[1]))
        feature_map = tagger.feature_map(waveform.clamp(-1.0, 1.0), None)  # (sounds, C, T')
        return torch.relu(tagger.fc1(feature_map.transpose(1, 2))).float()

    def timestamps_ms(self, count):
        """The centres of `count` segments from the start of a sound, in milliseconds."""
        return (np.arange(count) + 0.5) * self.segment_samples * 1000.0 / self.sample_rate


def load_model(model_file_path=""):
    """A HearModel of a training checkpoint, an official PANNs checkpoint or an .onnx file,
    on the CPU (weights-only loading, as everywhere in this project)."""
    if not model_file_path:
        raise ValueError("pytorch.hear.load_model needs the path of a checkpoint or .onnx file "
                         "(hearvalidator: --model PATH)")
    return HearModel(load_predictor(model_file_path, flag="model_file_path"))


def as_numpy(audio):
    return audio.detach().float().cpu().numpy() if torch.is_tensor(audio) else \
        np.asarray(audio, dtype=np.float32)


def get_scene_embeddings(audio, model):
    """(sounds, samples) audio at model.sample_rate -> (sounds, scene_embedding_size) float32,
    on the audio's device."""
    sounds = as_numpy(audio)
    windows, owners = [], []
    for index, sound in enumerate(sounds):
        for _, _, window in stream_windows([sound], model.clip_samples, model.clip_samples):
            windows.append(window)
            owners.append(index)
    embeddings = model.clip_embeddings(np.stack(windows).astype(np.float32))
    owners = np.asarray(owners)
    scene = np.stack([embeddings[owners == index].mean(axis=0) for index in range(len(sounds))])
    return torch.from_numpy(scene.astype(np.float32)).to(device_of(audio))


def get_timestamp_embeddings(audio, model):
    """(sounds, samples) audio -> ((sounds, stamps, timestamp_embedding_size) float32,
    (sounds, stamps) timestamps in ms at the segments' centres), on the audio's device."""
    if model.frame_level:
        tensor = audio if torch.is_tensor(audio) else torch.from_numpy(as_numpy(audio))
        embeddings = model.frame_embeddings(tensor.float().to(model.device)).cpu()
        stamps = model.timestamps_ms(embeddings.shape[1])
    else:
        stamps = model.timestamps_ms(max(1, audio.shape[1] // model.segment_samples))
        embeddings = torch.from_numpy(centred_window_embeddings(model, as_numpy(audio), stamps))
    times = torch.from_numpy(np.tile(stamps, (len(embeddings), 1)).astype(np.float32))
    device = device_of(audio)
    return embeddings.to(device), times.to(device)


def centred_window_embeddings(model, sounds, stamps_ms):
    """Clip embeddings of training-clip windows centred on each stamp (zero beyond the sound)."""
    half = model.clip_samples // 2
    result = []
    for sound in sounds:
        padded = np.concatenate([np.zeros(half, np.float32), sound,
                                 np.zeros(model.clip_samples, np.float32)])
        centres = np.round(np.asarray(stamps_ms) * model.sample_rate / 1000.0).astype(int)
        windows = np.stack([fix_length(padded[centre:centre + model.clip_samples],
                                       model.clip_samples) for centre in centres])
        result.append(model.clip_embeddings(windows))
    return np.stack(result).astype(np.float32)


def device_of(audio):
    return audio.device if torch.is_tensor(audio) else torch.device("cpu")
