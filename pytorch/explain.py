"""`main.py explain`: which time-frequency regions of a clip's log-mel drove a label.

    python3 pytorch/main.py explain --checkpoint_path=CKPT --audio_path=song.wav \\
        --output=explained/ [--label=jazz] [--start=S] [--method=gradient|occlusion]

One window of the file (the training clip long, from --start seconds; an official tagger: 10 s)
is explained for one label (default: the top one). Writes OUTPUT/<file>_<label>_<method>.png
(the log-mel, and the relevance over it) and .npy ((frames, mel_bins) float32 relevance: how much
each region raised the label's probability).

- gradient (default): gradient x (input - silence) of the label's log-probability with respect
  to the log-mel: one backward pass.
- occlusion: the log-mel is cut into patches of OCCLUSION_PATCH (frames, mel bins); each patch
  in turn is set to silence (the log-mel's floor) and the drop of the label's probability is
  that patch's relevance: one forward pass per patch (batched).
The default is the one that passed the deletion test at every depth on the demo holdout
(docs/benchmarks.md): deleting its top 5, 10 and 20% of patches left less of the label's
probability than deleting random ones; occlusion's single-patch drops ranked the first 5-10%
best but did worse than random at 20% (patches that matter together, not alone).
Both work on the network's own log-mel (the model's front end runs as in inference; the
network from bn0 on sees the edited log-mel), for any log-mel model, fine-tuned or official.
`scripts/explain_deletion.py` measures which one is faithful: deleting a clip's most relevant
patches should lower the label's probability more than deleting as many random patches.
"""
import contextlib
import os

import numpy as np
import torch

from pytorch.inference import open_predictor
from pytorch.models import tagger_of
from pytorch.predictor import TorchPredictor
from utils.arguments import add_flags, float_range
from utils.audio import AudioReadError, fix_length, load_audio
from utils.figures import save_figure
from utils.utilities import UsageError, atomic_path, create_folder, require_file

METHODS = ("gradient", "occlusion")  # the first is the default
OCCLUSION_PATCH = (16, 8)  # frames (10 ms each) x mel bins of one occluded region
OCCLUSION_BATCH = 32


@contextlib.contextmanager
def given_logmel(tagger, logmel):
    """The tagger computes from `logmel` instead of its waveform's (the rest of its forward
    pass unchanged): every log-mel model reads its input through tagger.logmel."""
    tagger.logmel = lambda waveform: logmel.expand(waveform.shape[0], -1, -1, -1) \
        if logmel.shape[0] == 1 else logmel
    try:
        yield
    finally:
        del tagger.logmel  # the class's method again


class Explainer:
    """A torch model, its task and the label-probability of edited log-mels."""

    def __init__(self, predictor):
        if not isinstance(predictor, TorchPredictor) or not hasattr(
                tagger_of(predictor.model), "spectrogram_extractor"):
            raise UsageError("explain needs a PyTorch checkpoint of a log-mel model (an .onnx "
                             "file or a waveform model has no log-mel to explain)")
        self.predictor, self.model = predictor, predictor.model.eval()
        self.tagger, self.run = tagger_of(self.model), predictor.run

    def logmel(self, waveform):
        """(1, 1, frames, mel_bins) log-mel of one window."""
        with torch.no_grad():
            waveform = torch.from_numpy(waveform[None]).to(self.predictor.device)
            return self.tagger.logmel(waveform).float()

    def label_log_probability(self, waveform, logmels, label):
        """(n,) log-probability of `label` for each of n log-mels (the waveform only sets the
        batch size)."""
        batch = torch.from_numpy(np.repeat(waveform[None], len(logmels), axis=0))
        batch = batch.to(self.predictor.device)
        with given_logmel(self.tagger, logmels):
            output = self.model(batch)["clipwise_output"][:, label].float()
        return output if self.run.task == "single_label" else output.clamp_min(1e-12).log()

    def probabilities(self, waveform, logmels, label):
        with torch.no_grad():
            return torch.cat([self.label_log_probability(
                waveform, logmels[start:start + OCCLUSION_BATCH], label).exp()
                for start in range(0, len(logmels), OCCLUSION_BATCH)]).cpu().numpy()

    def occlusion(self, waveform, logmel, label):
        frames, bins = logmel.shape[2:]
        silence = logmel.min()
        patches = patch_grid(frames, bins)
        edited = logmel.repeat(len(patches) + 1, 1, 1, 1)
        for index, (frame, mel) in enumerate(patches, 1):
            edited[index, :, frame:frame + OCCLUSION_PATCH[0], mel:mel + OCCLUSION_PATCH[1]] = silence
        probabilities = self.probabilities(waveform, edited, label)
        relevance = np.zeros((frames, bins), np.float32)
        for (frame, mel), probability in zip(patches, probabilities[1:]):
            relevance[frame:frame + OCCLUSION_PATCH[0], mel:mel + OCCLUSION_PATCH[1]] = \
                probabilities[0] - probability
        return relevance

    def gradient(self, waveform, logmel, label):
        x = logmel.clone().requires_grad_(True)
        self.label_log_probability(waveform, x, label).sum().backward()
        return (x.grad * (x - logmel.min())).detach()[0, 0].cpu().numpy().astype(np.float32)

    def explain(self, waveform, label, method):
        logmel = self.logmel(waveform)
        return getattr(self, method)(waveform, logmel, label), logmel[0, 0].cpu().numpy()


def patch_grid(frames, bins, patch=OCCLUSION_PATCH):
    """(frame, mel bin) corners of the patches that tile a log-mel."""
    return [(frame, mel) for frame in range(0, frames, patch[0]) for mel in range(0, bins, patch[1])]


def patch_scores(relevance, patch=OCCLUSION_PATCH):
    """Each patch's mean relevance, in patch_grid's order."""
    return np.array([relevance[frame:frame + patch[0], mel:mel + patch[1]].mean()
                     for frame, mel in patch_grid(*relevance.shape, patch)])


def delete_patches(explainer, waveform, label, order, fractions):
    """The label's probability after setting the first `fraction` of patches in `order` to
    silence, for each fraction; and before (fraction 0)."""
    logmel = explainer.logmel(waveform)
    patches = patch_grid(*logmel.shape[2:])
    edited = logmel.repeat(len(fractions) + 1, 1, 1, 1)
    for row, fraction in enumerate(fractions, 1):
        for index in order[:int(round(fraction * len(patches)))]:
            frame, mel = patches[index]
            edited[row, :, frame:frame + OCCLUSION_PATCH[0], mel:mel + OCCLUSION_PATCH[1]] = \
                logmel.min()
    return explainer.probabilities(waveform, edited, label)


def save_explanation(logmel, relevance, title, path):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6))
    top, bottom = figure.subplots(2, 1, sharex=True)
    seconds = logmel.shape[0] / 100.0
    extent = (0, seconds, 0, logmel.shape[1])
    top.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=extent)
    top.set_ylabel("mel bin")
    top.set_title(title)
    limit = float(np.abs(relevance).max()) or 1.0
    bottom.imshow(logmel.T, origin="lower", aspect="auto", cmap="gray", extent=extent)
    shown = bottom.imshow(relevance.T, origin="lower", aspect="auto", cmap="RdBu_r",
                          vmin=-limit, vmax=limit, alpha=0.7, extent=extent)
    bottom.set_ylabel("mel bin")
    bottom.set_xlabel("seconds")
    figure.colorbar(shown, ax=[top, bottom], label="relevance (red: raised the label)")
    save_figure(figure, path)


def window_of(path, predictor, window_samples, start_s):
    rate = predictor.run.audio.sample_rate
    try:
        waveform = load_audio(path, rate)
    except AudioReadError as error:
        raise UsageError(f"--audio_path={path}: {error}") from None
    start = int(round(start_s * rate))
    if start and start >= len(waveform):
        raise UsageError(f"--start={start_s:g}: the file is {len(waveform) / rate:.1f} s long")
    return fix_length(waveform[start:start + window_samples], window_samples).astype(np.float32)


def run_explain(args):
    require_file(args.audio_path, "--audio_path")
    create_folder(args.output)
    predictor, window_samples, _ = open_predictor(args)
    explainer = Explainer(predictor)
    labels = list(predictor.run.labels)
    waveform = window_of(args.audio_path, predictor, window_samples, args.start)
    probabilities = predictor(waveform[None])["probabilities"][0]
    if args.label is None:
        label = int(np.argmax(probabilities))
    elif args.label in labels:
        label = labels.index(args.label)
    else:
        raise UsageError(f"--label={args.label}: not one of the model's labels "
                         f"({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
    relevance, logmel = explainer.explain(waveform, label, args.method)
    name = os.path.splitext(os.path.basename(args.audio_path))[0]
    stem = f"{name}_{labels[label]}_{args.method}"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    npy = os.path.join(args.output, stem + ".npy")
    with atomic_path(npy) as temp_path, open(temp_path, "wb") as f:
        np.save(f, relevance)
    png = os.path.join(args.output, stem + ".png")
    save_explanation(logmel, relevance, f"{os.path.basename(args.audio_path)} from "
                     f"{args.start:g} s: {labels[label]} ({probabilities[label]:.3f}), "
                     f"{args.method}", png)
    print(f"{labels[label]} {probabilities[label]:.3f}: wrote {png} and {npy}")


def add_explain_parser(subparsers):
    parser = subparsers.add_parser("explain", help="draw which time-frequency regions of a "
                                                   "clip drove a label")
    add_flags(parser, "checkpoint_path", "model_type", "cuda", "trust_checkpoint",
              required=("checkpoint_path",))
    parser.add_argument("--audio_path", required=True, help="the audio file")
    parser.add_argument("--output", required=True, help="folder for the .png and .npy")
    parser.add_argument("--label", default=None, help="the label to explain (default: the top)")
    parser.add_argument("--start", type=float_range(0.0, 1e9), default=0.0,
                        help="seconds into the file where the explained window starts")
    parser.add_argument("--method", default=METHODS[0], choices=METHODS,
                        help="gradient: gradient x input (faithful by the deletion test, "
                             "docs/benchmarks.md); occlusion: each patch silenced in turn")
    parser.set_defaults(handler=run_explain, window=None, hop=None, batch_size=8, runtime="torch")
    return parser
