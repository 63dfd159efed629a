"""Label audio files of any length with a trained checkpoint (it carries labels and settings),
or tag them with the 527 AudioSet classes of an official PANNs checkpoint.

    python3 pytorch/main.py inference --checkpoint_path=P --audio_path=FILE_OR_DIR \\
        [--window=SECONDS] [--hop=SECONDS] [--top_k=3] [--output=predictions.csv|.json] [--cuda]

An official checkpoint (e.g. Cnn14_mAP=0.431.pth, under any file name) is recognised from its
tensors (pytorch/published.py). As the original inference did, it reads a file of up to
WHOLE_FILE_SECONDS whole and runs it in one pass; a longer file (or one whose length the header
does not tell) goes in windows of the AudioSet clip length (10 s), averaged, so memory stays
bounded whatever the length (a 3-hour recording needs what a minute needs); --whole_file reads
every file whole, --window and --hop choose other windows. The decision-level models
(Cnn14_DecisionLevel*) also give frame-wise probabilities for the files read whole: with
--output, each file's frame-wise CSV and plot go to OUTPUT_framewise/ (sound event detection).

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
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from pytorch.checkpoints import stored_thresholds
from pytorch.restore import load_trained_model
from pytorch.models import TransferModel, tagger_of
from pytorch.pytorch_utils import probabilities_from_output, select_device
from utils.audio import (AudioReadError, audio_duration, fix_length, stream_audio,
                         walk_audio_files)
from utils.config import AUDIO_EXTENSIONS, SINGLE_LABEL
from utils.arguments import add_flags, positive_float, positive_int
from utils.plot_statistics import save_figure
from utils.utilities import UsageError, check_output_file, write_csv, write_json

# An AudioSet tagger reads files up to this long whole, in one pass (Cnn14: ~1 GB at 60 s).
WHOLE_FILE_SECONDS = 60.0

OUTPUT_FORMATS = (".csv", ".json")


def window_samples_of(audio, window=None, hop=None):
    """(window_samples, hop_samples) from seconds; the window defaults to the training clip.

    `audio` is the checkpoint's AudioConfig; window and hop are positive (checked by the flags).
    """
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
    return window_samples, hop_samples


def check_window_fits_model(model, window_samples, sample_rate):
    """A window too short for the CNN's pooling fails here, naming the flag, not mid-run."""
    tagger = getattr(model, "base", model)
    if hasattr(tagger, "check_clip_length"):
        try:
            tagger.check_clip_length(window_samples)
        except UsageError as error:
            raise UsageError(f"--window={window_samples / sample_rate:g}: {error}") from None


@torch.no_grad()
def stream_windows(blocks, window_samples, hop_samples):
    """The model inputs of a file given as blocks of samples: windows starting every hop, the
    last one aligned to the end of the file, a file shorter than a window zero-padded to it
    (see the module doc). Holds at most a window plus a block: memory does not grow with the
    file. Yields (window, file samples so far)."""
    buffer, buffer_start, next_start, last_end, total = np.zeros(0, np.float32), 0, 0, 0, 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        total += len(block)
        while next_start + window_samples <= total:
            offset = next_start - buffer_start
            yield buffer[offset:offset + window_samples], total
            last_end = next_start + window_samples
            next_start += hop_samples
        # Keep what a later window may need: from the next start, and the file's last window.
        keep_from = max(buffer_start, min(next_start, total - window_samples))
        buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
    if total < window_samples:
        yield fix_length(buffer, window_samples), total
    elif last_end < total:
        yield buffer[-window_samples:], total


@torch.no_grad()
def predict_blocks(model, task, blocks, window_samples, hop_samples, batch_size=8,
                   device=torch.device("cpu")):
    """Mean class probabilities over the windows of a file given as blocks of samples;
    returns (probabilities, windows, samples)."""
    model.eval()
    sums, windows, samples, pending = [], 0, 0, []

    def run(batch):
        # Packing stored clips as int16, saturating beyond full scale: clip the same way.
        inputs = torch.from_numpy(np.clip(np.stack(batch), -1.0, 1.0)).to(device)
        output = model(inputs)["clipwise_output"]
        sums.append(probabilities_from_output(output.float(), task).double().sum(dim=0).cpu().numpy())

    for window, samples in stream_windows(blocks, window_samples, hop_samples):
        pending.append(window)
        windows += 1
        if len(pending) == batch_size:
            run(pending)
            pending = []
    if pending:
        run(pending)
    return np.sum(sums, axis=0) / windows, windows, samples


def predict_waveform(model, task, waveform, window_samples, hop_samples, batch_size=8,
                     device=torch.device("cpu")):
    """Mean class probabilities over the windows of one waveform; returns (probabilities, windows)."""
    probabilities, windows, _ = predict_blocks(model, task, [np.asarray(waveform, np.float32)],
                                               window_samples, hop_samples, batch_size, device)
    return probabilities, windows


@torch.no_grad()
def predict_whole(model, blocks, device=torch.device("cpu")):
    """An AudioSet tagger over a whole file in one pass, as the original inference: returns
    (clipwise probabilities, framewise (frames, classes) or None, samples). A file shorter
    than the network's pooling takes is zero-padded to that length."""
    model.eval()
    waveform = np.concatenate(list(blocks) or [np.zeros(0, np.float32)])
    samples = len(waveform)
    waveform = fix_length(waveform, max(samples, tagger_of(model).min_samples()))
    inputs = torch.from_numpy(np.clip(waveform, -1.0, 1.0)[None]).to(device)
    output = model(inputs)
    framewise = output.get("framewise_output")
    return (output["clipwise_output"][0].double().cpu().numpy(),
            None if framewise is None else framewise[0].float().cpu().numpy(), samples)


def predicted_labels(probabilities, run, thresholds=None):
    """The labels a file is given: the top class (single-label), or every label at or above its
    threshold (multi-label: the per-label thresholds tuned on validation when the checkpoint
    has them, else its --threshold)."""
    if run.task == SINGLE_LABEL:
        return [run.labels[int(np.argmax(probabilities))]]
    limits = np.asarray(thresholds if thresholds is not None else run.threshold, dtype=np.float64)
    return [label for label, on in zip(run.labels, probabilities >= limits) if on]


def top_labels(probabilities, labels, top_k):
    """[(label, probability)] of the top_k classes, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [(labels[index], float(probabilities[index])) for index in order]


def predict_file(model, run, path, window=None, hop=None, top_k=3, batch_size=8,
                 device=torch.device("cpu"), thresholds=None,
                 whole_file_seconds=WHOLE_FILE_SECONDS):
    """Predict one file with the model of RunConfig `run`:
    {'file', 'duration_s', 'windows', 'probabilities', 'top', 'predicted'}.

    Raises AudioReadError when the file cannot be decoded.
    """
    sample_rate = run.audio.sample_rate
    result = {"file": path}
    if whole_file(model, window, path, whole_file_seconds):
        probabilities, framewise, samples = predict_whole(model, stream_audio(path, sample_rate),
                                                          device)
        windows = 1
        if framewise is not None:
            result["framewise"] = framewise
    else:
        window_samples, hop_samples = window_samples_of(run.audio, window, hop)
        probabilities, windows, samples = predict_blocks(
            model, run.task, stream_audio(path, sample_rate), window_samples, hop_samples,
            batch_size, device)
    result.update(duration_s=samples / sample_rate, windows=windows, probabilities=probabilities,
                  top=top_labels(probabilities, run.labels, top_k),
                  predicted=predicted_labels(probabilities, run, thresholds))
    return result


def whole_file(model, window, path, whole_file_seconds=WHOLE_FILE_SECONDS):
    """An AudioSet tagger reads a file whole when it is no longer than `whole_file_seconds`
    (infinite: every file), unless --window asks for windows; trained models always window."""
    if window is not None or isinstance(model, TransferModel):
        return False
    if math.isinf(whole_file_seconds):
        return True
    duration = audio_duration(path)
    return duration is not None and duration <= whole_file_seconds


def predict_paths(model, run, paths, window=None, hop=None, top_k=3, batch_size=8,
                  device=torch.device("cpu"), verbose=True, thresholds=None,
                  whole_file_seconds=WHOLE_FILE_SECONDS):
    """predict_file over many files; an unreadable one gives {'file', 'error'} and a stderr line.

    With `verbose`, each file's top labels are printed as it is done.
    """
    results = []
    for path in tqdm(paths, desc="inference", unit="file", disable=len(paths) < 2):
        try:
            result = predict_file(model, run, path, window, hop, top_k, batch_size, device,
                                  thresholds, whole_file_seconds)
        except AudioReadError as error:
            tqdm.write(f"skipped {path}: {error}", file=sys.stderr)
            results.append({"file": path, "error": str(error)})
            continue
        if verbose:
            tqdm.write(format_prediction(result))
        results.append(result)
    return results


def find_audio_files(audio_path):
    """A file as given, or a folder's audio files (recursively, sorted by path, each file once;
    folders that cannot be read are said in a warning)."""
    if os.path.isfile(audio_path):
        return [audio_path]
    if not os.path.isdir(audio_path):
        raise UsageError(f"--audio_path={audio_path}: no such file or folder")
    paths, unreadable = walk_audio_files(audio_path)
    for folder, reason in unreadable:
        print(f"warning: {folder}: cannot be read ({reason}); its files are skipped",
              file=sys.stderr)
    if not paths:
        raise UsageError(f"--audio_path={audio_path}: no audio files in this folder "
                         f"(looked for {' '.join(AUDIO_EXTENSIONS)})")
    return paths


def format_prediction(result):
    top = "  ".join(f"{label} {probability:.3f}" for label, probability in result["top"])
    plural = "" if result["windows"] == 1 else "s"
    return f"{result['file']} ({result['duration_s']:.1f} s, {result['windows']} window{plural}): {top}"


def framewise_dir(output):
    return os.path.splitext(output)[0] + "_framewise"


def write_framewise(result, folder, run, top_k=10):
    """A decision-level model's frame-wise probabilities of one file: a CSV (time_s, then the
    file's top_k classes by peak probability) and a PNG of the same (sound event detection)."""
    from matplotlib.figure import Figure

    framewise = result["framewise"]
    seconds_per_frame = run.audio.hop_size / run.audio.sample_rate
    classes = np.argsort(-framewise.max(axis=0), kind="stable")[:top_k]
    stem = os.path.join(folder, os.path.splitext(os.path.basename(result["file"]))[0])
    rows = [["time_s"] + [run.labels[index] for index in classes]]
    rows += [[f"{frame * seconds_per_frame:.3f}"] + [f"{value:.6f}" for value in values]
             for frame, values in enumerate(framewise[:, classes])]
    write_csv(rows, stem + ".csv")
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots()
    image = axes.imshow(framewise[:, classes].T, aspect="auto", origin="upper",
                        interpolation="nearest", vmin=0, vmax=1, cmap="jet",
                        extent=(0, len(framewise) * seconds_per_frame, len(classes) - 0.5, -0.5))
    axes.set_yticks(range(len(classes)), [run.labels[index] for index in classes])
    axes.set_xlabel("seconds")
    axes.set_title(f"{os.path.basename(result['file'])}: frame-wise probabilities ({run.model_type})")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    save_figure(figure, stem + ".png")
    return stem + ".csv"


def write_predictions(results, path, run, top_k, window_s, hop_s, thresholds=None):
    """CSV: file, label_1, prob_1, ..., duration_s, windows, error. JSON: all probabilities too."""
    if path.lower().endswith(".csv"):
        header = ["file"] + [f"{kind}_{rank}" for rank in range(1, top_k + 1)
                             for kind in ("label", "prob")] + ["duration_s", "windows",
                                                               "predicted", "error"]
        rows = [header]
        for result in results:
            if "error" in result:
                rows.append([result["file"]] + [""] * (2 * top_k + 3) + [result["error"]])
                continue
            ranked = [value for label, probability in result["top"]
                      for value in (label, f"{probability:.6f}")]
            rows.append([result["file"]] + ranked + [""] * (2 * top_k - len(ranked))
                        + [f"{result['duration_s']:.3f}", result["windows"],
                           ";".join(result["predicted"]), ""])
        write_csv(rows, path)
        return
    files = []
    for result in results:
        if "error" in result:
            files.append(result)
            continue
        files.append({"file": result["file"], "duration_s": result["duration_s"],
                      "windows": result["windows"], "predicted": result["predicted"],
                      "top": [{"label": label, "probability": probability}
                              for label, probability in result["top"]],
                      "probabilities": dict(zip(run.labels, result["probabilities"].tolist()))})
    write_json({"model_type": run.model_type, "task": run.task, "labels": list(run.labels),
                "window_s": window_s, "hop_s": hop_s, "top_k": top_k,
                "thresholds": thresholds if thresholds is not None else run.threshold,
                "files": files}, path)


def run_inference(args):
    if args.output and not args.output.lower().endswith(OUTPUT_FORMATS):
        raise UsageError(f"--output={args.output}: use a .csv or .json file name")
    if args.output:  # before the work, not after it
        check_output_file(args.output, "--output")
    paths = find_audio_files(args.audio_path)
    device = select_device(args.cuda)
    model, checkpoint, run = load_trained_model(args.checkpoint_path, device,
                                                trusted=args.trust_checkpoint, audioset_tagger=True,
                                                model_type=args.model_type)
    # tuned per label on validation, multi-label only
    thresholds = stored_thresholds(checkpoint, run, args.checkpoint_path)
    sample_rate = run.audio.sample_rate
    window_samples, hop_samples = window_samples_of(run.audio, args.window, args.hop)
    check_window_fits_model(model, window_samples, sample_rate)
    whole_file_seconds = math.inf if args.whole_file else WHOLE_FILE_SECONDS
    if not isinstance(model, TransferModel) and args.window is None:
        print(f"{args.checkpoint_path}: AudioSet tagger {run.model_type}; "
              + ("each file is read whole, in one pass" if args.whole_file else
                 f"files up to {WHOLE_FILE_SECONDS:g} s are read whole, longer ones in "
                 f"{window_samples / sample_rate:g}-s windows (--whole_file: all whole)"))
    top_k = min(args.top_k, len(run.labels))

    results = predict_paths(model, run, paths, args.window, args.hop, top_k, args.batch_size,
                            device, thresholds=thresholds, whole_file_seconds=whole_file_seconds)
    failed = sum("error" in result for result in results)
    if failed == len(results):
        raise UsageError(f"--audio_path={args.audio_path}: none of the {len(results)} audio "
                         "files could be read")
    if run.task == SINGLE_LABEL:
        note = "softmax probabilities (sum to 1 over the classes)"
    else:
        note = "sigmoid probabilities (one per class, independent)"
    print(f"labelled {len(results) - failed} of {len(results)} files ({failed} skipped); {note}")
    if args.output:
        write_predictions(results, args.output, run, top_k,
                          window_samples and window_samples / sample_rate,
                          hop_samples and hop_samples / sample_rate, thresholds)
        print(f"Wrote {args.output}")
        framewise = [result for result in results if "framewise" in result]
        if framewise:
            folder = framewise_dir(args.output)
            os.makedirs(folder, exist_ok=True)
            for result in framewise:
                write_framewise(result, folder, run)
            print(f"Wrote frame-wise probabilities of {len(framewise)} files to {folder}")


def add_inference_parser(subparsers):
    parser = subparsers.add_parser("inference", help="label audio files with a trained checkpoint")
    add_flags(parser, "checkpoint_path", "model_type", "batch_size", "cuda", "trust_checkpoint",
              required=("checkpoint_path",))
    parser.add_argument("--audio_path", required=True,
                        help="an audio file, or a folder searched recursively")
    parser.add_argument("--window", type=positive_float, default=None,
                        help="seconds per model input (default: the training clip length; "
                             "an AudioSet tagger: the whole file)")
    parser.add_argument("--hop", type=positive_float, default=None,
                        help="seconds between window starts (default: the window)")
    parser.add_argument("--top_k", type=positive_int, default=3, help="labels printed per file")
    parser.add_argument("--whole_file", action="store_true",
                        help="an AudioSet tagger reads every file whole, in one pass (memory "
                             f"grows with the file; default: files up to {WHOLE_FILE_SECONDS:g} s)")
    parser.add_argument("--output", default=None,
                        help="predictions.csv (top-k) or predictions.json (every probability)")
    parser.set_defaults(handler=run_inference)
    return parser
