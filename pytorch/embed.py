"""`main.py embed`: a model's embeddings of audio files or of a packed HDF5's clips, for other
tools (clustering, retrieval, a classifier of one's own).

    python3 pytorch/main.py embed --checkpoint_path=CKPT(.pth|.onnx) --audio_path=DIR \\
        --output=embeddings.npy [--timeline] [--window=S] [--hop=S]
    python3 pytorch/main.py embed --checkpoint_path=CKPT --features=waveform.h5 --output=E.npy

Writes OUTPUT.npy, float32 (rows, width): `numpy.load` reads it, and OUTPUT.csv beside it,
one line per row (row, file, start_s, end_s): `pandas.read_csv` reads it. A row is a file (its
windows' embeddings averaged, the windows cut as inference cuts them) or, with --timeline, a
window; with --features, a packed clip (its name as packed, and its fold). The embedding is the
network's fc1 output (2048 values for Cnn14), what a fine-tuned model's head reads. Rows are
written as they are computed: memory does not grow with the files or the clips. Both files
appear under their names only when complete.
"""
import csv
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from pytorch.embeddings import NpyRows, loader_embeddings
from pytorch.inference import add_window_flags, find_audio_files, none_read, open_predictor
from pytorch.pytorch_utils import make_loader, waveform_to_tensor
from pytorch.windows import predict_blocks, window_outputs
from utils.arguments import add_flags
from utils.audio import AudioReadError, stream_audio
from utils.data_generator import EvaluateSampler, WaveformDataset, features_flag
from utils.utilities import (UsageError, atomic_path, check_output_file, progress,
                             remove_stale_temporaries)


INDEX_HEADER = ["file", "start_s", "end_s"]  # after 'row'; 'fold' follows for packed clips


def index_path(output):
    return os.path.splitext(output)[0] + ".csv"


def file_rows(predictor, paths, window_samples, hop_samples, batch_size, per_window):
    """Yields ([file, start_s, end_s], embedding) per file, or per window with `per_window`."""
    sample_rate = predictor.run.audio.sample_rate
    for path in progress(paths, desc="embed", unit="file", disable=len(paths) < 2):
        blocks = stream_audio(path, sample_rate)
        try:
            if per_window:
                for start, end, outputs in window_outputs(predictor, blocks, window_samples,
                                                          hop_samples, batch_size):
                    yield [path, start / sample_rate, end / sample_rate], outputs["embedding"]
            else:
                outputs, _, samples = predict_blocks(predictor, blocks, window_samples,
                                                     hop_samples, batch_size)
                yield [path, 0.0, samples / sample_rate], outputs["embedding"]
        except AudioReadError as error:
            tqdm.write(f"skipped {path}: {error}", file=sys.stderr)


def clip_rows(predictor, features, batch_size, num_workers):
    """Yields ([name, 0, clip seconds, fold], embedding) per clip of a packed HDF5."""
    dataset = WaveformDataset(features, in_memory=False, as_int16=True)
    info, audio = dataset.info, predictor.run.audio
    if info["sample_rate"] != audio.sample_rate:
        raise UsageError(f"{features_flag(features)}: packed at {info['sample_rate']} Hz, the model "
                         f"takes {audio.sample_rate} Hz; pack the audio at its rate")
    if info["clip_samples"] < predictor.min_samples:
        raise UsageError(f"{features_flag(features)}: its clips are shorter than "
                         f"{predictor.run.model_type} takes ({predictor.min_samples} samples)")
    seconds = info["clip_samples"] / info["sample_rate"]
    cpu = torch.device("cpu")  # the loader's side; the predictor moves batches to its device
    loader = make_loader(dataset, EvaluateSampler(np.arange(len(dataset)), batch_size),
                         num_workers, 0, cpu)
    folds, row = info["folds"], 0
    for names, embeddings in loader_embeddings(
            lambda waveform: predictor(waveform_to_tensor(waveform, cpu).numpy())["embedding"],
            loader, f"--checkpoint_path={predictor.source}"):
        for name, embedding in zip(names, embeddings):
            yield [name, 0.0, seconds, int(folds[row])], embedding
            row += 1


def check_index_is_ours(output):
    """OUTPUT.csv is replaced only when it is an index that embed wrote (a seed's train.csv
    beside train.npy is not)."""
    path = index_path(output)
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError as error:
        raise UsageError(f"--output={output}: its index {path} cannot be read ({error.strerror})"
                         ) from None
    if not first.startswith(",".join(["row"] + INDEX_HEADER)):
        raise UsageError(f"--output={output}: {path} exists and is not an embedding index (its "
                         f"first line is {first[:60]!r}); name another --output, or move it")


def write_embeddings(rows, output, header, none_read=None):
    """OUTPUT.npy and its index OUTPUT.csv from (index row, embedding) pairs, as they come;
    returns (rows, width). With no row, `none_read` is raised and neither file is replaced."""
    with atomic_path(output) as npy_temp, atomic_path(index_path(output)) as csv_temp:
        with open(npy_temp, "wb") as npy, open(csv_temp, "w", newline="") as index:
            values, writer = NpyRows(npy), csv.writer(index, lineterminator="\n")
            writer.writerow(["row"] + header)
            for fields, embedding in rows:
                writer.writerow([values.rows] + [f"{field:.3f}" if isinstance(field, float)
                                                 else field for field in fields])
                values.write(embedding[None])
            values.close()
        if values.rows == 0 and none_read is not None:
            raise none_read  # inside the atomic writes: both temporaries are dropped
    return values.rows, values.width


def run_embed(args):
    if (args.audio_path is None) == (args.features is None):
        raise UsageError("give --audio_path (audio files) or --features (a packed HDF5), one of them")
    if not args.output.lower().endswith(".npy"):
        raise UsageError(f"--output={args.output}: name the file .npy (its index goes to "
                         f"{index_path(args.output)})")
    check_output_file(args.output, "--output")
    check_output_file(index_path(args.output), "--output")
    check_index_is_ours(args.output)
    for path in (args.output, index_path(args.output)):  # left by a killed embed
        remove_stale_temporaries([os.path.dirname(os.path.abspath(path))],
                                 prefix=f".{os.path.basename(path)}.")
    paths = find_audio_files(args.audio_path) if args.audio_path else None
    predictor, window_samples, hop_samples = open_predictor(args)
    if paths is None:
        rows = clip_rows(predictor, args.features, args.batch_size, args.num_workers)
        header = INDEX_HEADER + ["fold"]
    else:
        rows = file_rows(predictor, paths, window_samples, hop_samples, args.batch_size,
                         args.timeline)
        header = INDEX_HEADER
    count, width = write_embeddings(rows, args.output, header, none_read(
        args.audio_path or args.features, len(paths or []), args.output))
    print(f"Wrote {count} embeddings of {width} values to {args.output} "
          f"(rows named in {index_path(args.output)})")


def add_embed_parser(subparsers):
    parser = subparsers.add_parser("embed", help="write a model's embeddings of audio or clips")
    add_flags(parser, "checkpoint_path", "model_type", "features", "batch_size", "num_workers",
              "cuda", "trust_checkpoint", required=("checkpoint_path",))
    parser.add_argument("--audio_path", default=None, help="an audio file, or a folder")
    parser.add_argument("--output", required=True, help="embeddings.npy (index: embeddings.csv)")
    parser.add_argument("--timeline", action="store_true", help="one row per window, not per file")
    add_window_flags(parser)
    parser.set_defaults(handler=run_embed)
    return parser
