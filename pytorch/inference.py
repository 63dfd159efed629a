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

With --timeline, one CSV row per window (file, start, end, every label's probability, the
predicted labels) and a label-by-time picture per file (pytorch/timeline.py). An exported .onnx
file (main.py export) runs through onnxruntime with the same outputs (pytorch/predictor.py).
How files are cut into windows: pytorch/windows.py.
"""
import contextlib
import csv
import glob
import json
import math
import os
import sys

import numpy as np
import torch

from pytorch.predictor import RUNTIMES, load_predictor
from pytorch.pytorch_utils import select_device, usable_cores
from pytorch.live import run_stream
from pytorch.timeline import timeline_dir, write_timelines
from pytorch.file_stream import stream_predictions
from pytorch.windows import WHOLE_FILE_SECONDS, check_window_fits_model, window_samples_of
from utils.audio import walk_audio_files
from utils.config import AUDIO_EXTENSIONS, SINGLE_LABEL
from utils.arguments import add_flags, positive_float, positive_int
from utils.figures import save_figure
from utils.utilities import (UsageError, atomic_path, check_output_file, json_safe, write_csv)

OUTPUT_FORMATS = (".csv", ".json")


PATH_LISTS = (".txt", ".lst")


def listed_paths(list_path):
    """The paths in a text file, one per line (blank lines and '#' comments skipped), relative
    ones taken from the list's folder."""
    folder = os.path.dirname(os.path.abspath(list_path))
    with open(list_path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    paths = [os.path.join(folder, line) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise UsageError(f"--audio_path={list_path}: the list names no file")
    return paths


def find_audio_files(audio_path):
    """The files to label, in a fixed order: a file as given; a text file of paths (.txt,
    .lst) in its order; a quoted glob's matches, sorted; a folder's audio files (recursively,
    sorted by path, each file once; folders that cannot be read are said in a warning). Listed
    files that cannot be read are reported one by one, as the run reaches them."""
    if os.path.isfile(audio_path):
        return listed_paths(audio_path) if audio_path.lower().endswith(PATH_LISTS) else [audio_path]
    if not os.path.isdir(audio_path):
        if glob.has_magic(audio_path):
            paths = sorted(path for path in glob.glob(audio_path, recursive=True)
                           if os.path.isfile(path))
            if not paths:
                raise UsageError(f"--audio_path={audio_path}: the pattern matches no file")
            return paths
        raise UsageError(f"--audio_path={audio_path}: no such file or folder")
    paths, unreadable = walk_audio_files(audio_path)
    for folder, reason in unreadable:
        print(f"warning: {folder}: cannot be read ({reason}); its files are skipped",
              file=sys.stderr)
    if not paths:
        raise UsageError(f"--audio_path={audio_path}: no audio files in this folder "
                         f"(looked for {' '.join(AUDIO_EXTENSIONS)})")
    return paths


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


def csv_row(result, top_k):
    if "error" in result:
        return [result["file"]] + [""] * (2 * top_k + 3) + [result["error"]]
    ranked = [value for label, probability in result["top"]
              for value in (label, f"{probability:.6f}")]
    return ([result["file"]] + ranked + [""] * (2 * top_k - len(ranked))
            + [f"{result['duration_s']:.3f}", result["windows"], ";".join(result["predicted"]), ""])


def json_entry(result, run):
    if "error" in result:
        return result
    return {"file": result["file"], "duration_s": result["duration_s"],
            "windows": result["windows"], "padding": result["padding"],
            "predicted": result["predicted"],
            "top": [{"label": label, "probability": probability}
                    for label, probability in result["top"]],
            "probabilities": dict(zip(run.labels, result["probabilities"].tolist()))}


@contextlib.contextmanager
def predictions_writer(path, run, top_k, window_s, hop_s, thresholds=None):
    """write(result) for each file as it completes. CSV: file, label_1, prob_1, ...,
    duration_s, windows, predicted, error. JSON: every probability too. Rows go to a
    temporary file beside `path` as they come (memory does not grow with the files), renamed
    over `path` when all are written; an error or a kill leaves `path` as it was."""
    if path is None:
        yield lambda result: None
        return
    with atomic_path(path) as temp_path, open(temp_path, "w", newline="") as f:
        if path.lower().endswith(".csv"):
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file"] + [f"{kind}_{rank}" for rank in range(1, top_k + 1)
                                        for kind in ("label", "prob")]
                            + ["duration_s", "windows", "predicted", "error"])
            yield lambda result: writer.writerow(csv_row(result, top_k))
            return
        header = {"model_type": run.model_type, "task": run.task, "labels": list(run.labels),
                  "window_s": window_s, "hop_s": hop_s, "top_k": top_k,
                  "thresholds": thresholds if thresholds is not None else run.threshold}
        f.write(json.dumps(json_safe(header), indent=2)[:-2] + ',\n  "files": [')
        written = []

        def write(result):
            f.write(("," if written else "") + "\n    " + json.dumps(
                json_safe(json_entry(result, run)), allow_nan=False))
            written.append(None)
        yield write
        f.write("\n  ]\n}\n")


def check_inference_output(args):
    """--output before the work, not after it."""
    if args.timeline:
        if not (args.output and args.output.lower().endswith(".csv")):
            raise UsageError("--timeline writes one row per window: give --output=timeline.csv")
    elif args.output and not args.output.lower().endswith(OUTPUT_FORMATS):
        raise UsageError(f"--output={args.output}: use a .csv or .json file name")
    if args.output:
        check_output_file(args.output, "--output")


def open_predictor(args):
    """(predictor, window_samples, hop_samples) of the inference-like commands' flags."""
    torch.set_num_threads(usable_cores())
    predictor = load_predictor(args.checkpoint_path, select_device(args.cuda),
                               args.trust_checkpoint, args.model_type,
                               runtime=getattr(args, "runtime", None),
                               precision=getattr(args, "precision", None))
    audio = predictor.run.audio
    window_samples, hop_samples = window_samples_of(audio, args.window, args.hop,
                                                    args.batch_size)
    check_window_fits_model(predictor, window_samples, audio.sample_rate)
    return predictor, window_samples, hop_samples


def run_inference(args):
    if args.stream:
        if args.output or args.timeline:
            raise UsageError("--stream writes its rows to standard output as they come: drop "
                             "--output/--timeline and redirect it (> rows.csv)")
        run_stream(args, *open_predictor(args))
        return
    check_inference_output(args)
    paths = find_audio_files(args.audio_path)
    predictor, window_samples, hop_samples = open_predictor(args)
    run = predictor.run
    sample_rate = run.audio.sample_rate
    if args.timeline:
        rows, failed = write_timelines(predictor, paths, args.output, window_samples,
                                       hop_samples, args.batch_size,
                                       none_read=none_read(args.audio_path, len(paths), args.output))
        print(f"Wrote {rows} windows of {len(paths) - failed} files to {args.output}, and "
              f"their pictures to {timeline_dir(args.output)}")
        return
    whole_file_seconds = math.inf if args.whole_file else WHOLE_FILE_SECONDS
    if predictor.audioset_tagger and args.window is None:
        print(f"{args.checkpoint_path}: AudioSet tagger {run.model_type}; "
              + ("each file is read whole, in one pass" if args.whole_file else
                 f"files up to {WHOLE_FILE_SECONDS:g} s are read whole, longer ones in "
                 f"{window_samples / sample_rate:g}-s windows (--whole_file: all whole)"))
    top_k = min(args.top_k, len(run.labels))
    results = stream_predictions(predictor, paths, args.window, args.hop, top_k, args.batch_size,
                                 whole_file_seconds, args.num_workers)
    labelled, failed, framewise = 0, 0, 0
    with predictions_writer(args.output, run, top_k, window_samples / sample_rate,
                            hop_samples / sample_rate, predictor.thresholds) as write:
        for result in results:
            failed, labelled = failed + ("error" in result), labelled + ("error" not in result)
            write(result)
            if args.output and "framewise" in result:
                os.makedirs(framewise_dir(args.output), exist_ok=True)
                write_framewise(result, framewise_dir(args.output), run)
                framewise += 1
        check_some_read(args.audio_path, len(paths), failed, args.output)
    if run.task == SINGLE_LABEL:
        note = "softmax probabilities (sum to 1 over the classes)"
    else:
        note = "sigmoid probabilities (one per class, independent)"
    print(f"labelled {labelled} of {len(paths)} files ({failed} skipped); {note}")
    if args.output:
        print(f"Wrote {args.output}")
    if framewise:
        print(f"Wrote frame-wise probabilities of {framewise} files to "
              f"{framewise_dir(args.output)}")
    if failed:  # the exit code says some files were skipped (2: none could be read)
        raise SystemExit(1)


def none_read(audio_path, files, output=None):
    """The error of a command none of whose audio files could be read."""
    kept = f"; {output} was left as it was" if output else ""
    return UsageError(f"--audio_path={audio_path}: none of the {files} audio file(s) could be "
                      f"read{kept}")


def check_some_read(audio_path, files, failed, output=None):
    if failed == files:
        raise none_read(audio_path, files, output)


def add_window_flags(parser):
    """The flags that choose the windows a file is cut into (inference and embed)."""
    parser.add_argument("--window", type=positive_float, default=None,
                        help="seconds per model input (default: the training clip length; "
                             "an AudioSet tagger: the whole file)")
    parser.add_argument("--hop", type=positive_float, default=None,
                        help="seconds between window starts (default: the window)")


def add_inference_parser(subparsers):
    parser = subparsers.add_parser("inference", help="label audio files with a trained checkpoint")
    add_flags(parser, "checkpoint_path", "model_type", "batch_size", "cuda", "trust_checkpoint",
              "num_workers", required=("checkpoint_path",))
    parser.add_argument("--audio_path", required=True,
                        help="an audio file, a folder searched recursively, a text file of "
                             "paths (one per line, relative to it), or a quoted glob")
    add_window_flags(parser)
    parser.add_argument("--timeline", action="store_true",
                        help="one row per window (file, start_s, end_s, every label's "
                             "probability, predicted) in --output=X.csv, and a label-by-time "
                             "picture per file in X_pictures/")
    parser.add_argument("--stream", action="store_true",
                        help="live input (pytorch/live.py): --audio_path=- (standard input) or "
                             "a file still being written; one CSV row per --hop on standard "
                             "output as soon as its window is complete")
    parser.add_argument("--stream_format", default="wav", choices=["wav", "s16le", "f32le"],
                        help="with --stream: a WAV stream (its header gives the rest) or raw "
                             "little-endian PCM")
    parser.add_argument("--stream_rate", type=positive_int, default=None,
                        help="with raw --stream_format: samples per second (default: the "
                             "model's; others are resampled as they come)")
    parser.add_argument("--stream_channels", type=positive_int, default=1,
                        help="with raw --stream_format: interleaved channels, averaged")
    parser.add_argument("--top_k", type=positive_int, default=3, help="labels printed per file")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="auto: PyTorch on a GPU and on CPUs with native bf16 (AVX-512 "
                             "BF16, AMX); on other CPUs the .onnx exported from the checkpoint "
                             "when it lies beside it (main.py export --output=SAME_NAME.onnx; "
                             "faster), else PyTorch; torch, onnx: that one")
    add_flags(parser, "precision")
    parser.add_argument("--whole_file", action="store_true",
                        help="an AudioSet tagger reads every file whole, in one pass (memory "
                             f"grows with the file; default: files up to {WHOLE_FILE_SECONDS:g} s)")
    parser.add_argument("--output", default=None,
                        help="predictions.csv (top-k) or predictions.json (every probability); "
                             "with --timeline, timeline.csv")
    parser.set_defaults(handler=run_inference)
    return parser
