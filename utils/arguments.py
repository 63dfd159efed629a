"""Command-line parsing shared by every entry point: one-line errors and checked flag types.

A bad flag value is reported as `error: --flag=value: what is wrong` on one line, exit code 2,
with no usage dump and no traceback (argparse's own error() prints the usage block first).
The type functions below raise ArgumentTypeError("VALUE: reason") for that form.
"""
import argparse
import math
import re
import sys

from utils.config import FOLDS_NUM


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors; subcommand parsers inherit it."""

    def error(self, message):
        # "argument --flag: VALUE: reason" (from the types below) -> "--flag=VALUE: reason"
        match = re.fullmatch(r"argument (--[\w-]+)(?:/\S+)?: (\S+): (.*)", message, re.S)
        if match:
            message = f"{match[1]}={match[2]}: {match[3]}"
        else:
            message = re.sub(r"^argument (--[\w-]+)(?:/\S+)?: ", r"\1: ", message)
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text}: not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: not a finite number")
    return value


def _in_range(kind, low, high, text, reason):
    value = _number(kind, text)
    if not ((low is None or value >= low) and (high is None or value <= high)):
        raise argparse.ArgumentTypeError(f"{text}: {reason}")
    return value


def int_range(low, high=None):
    """A flag type: an integer in [low, high]."""
    reason = f"must be {low}..{high}" if high is not None else f"must be at least {low}"
    return lambda text: _in_range(int, low, high, text, reason)


def float_range(low, high):
    """A flag type: a finite number in [low, high]."""
    return lambda text: _in_range(float, low, high, text, f"must be between {low:g} and {high:g}")


positive_int = int_range(1)
non_negative_int = int_range(0)


def positive_float(text):
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be positive")
    return value


def probability(text):
    """A decision threshold: strictly between 0 and 1."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 1")
    return value


def fold_number(text):
    """1..FOLDS_NUM as an int."""
    if text.isdigit() and 1 <= int(text) <= FOLDS_NUM:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text}: use 1..{FOLDS_NUM}")


NAMED_HOLDOUTS = ("all", "filtered", "subsets")


def holdout_fold(text):
    """1..FOLDS_NUM as an int, or 'all' (every fold in turn), or a named split's validation set
    ('filtered', 'subsets': the same as --split=filtered or subsets)."""
    if text in NAMED_HOLDOUTS:
        return text
    try:
        return fold_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text}: use 1..{FOLDS_NUM} or {', '.join(NAMED_HOLDOUTS)}") from None


def shard(text):
    """--shard: 'I/N' -> (I, N), 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text}: expected I/N with 1 <= I <= N, e.g. 3/8")
    return int(match.group(1)), int(match.group(2))


def iteration_or_last(text):
    """--resume_iteration: an iteration (0: from scratch), or 'last': where this run stopped."""
    if text == "last":
        return text
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text}: use an iteration (0: from scratch) or last") from None


def str2bool(text):
    """--freeze_base alone, or --freeze_base=True/False as some scripts write it."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text}: expected True or False")


# Every flag that more than one command takes, declared once: one type, one default, one
# meaning. A command lists the ones it takes (add_flags); a default of None means "decided by
# the command from the data or the checkpoint", as each help says.
SHARED_FLAGS = {
    "workspace": dict(help="the workspace: features/, statistics/, checkpoints/, logs/, results/"),
    "features": dict(default=None, nargs="+",
                     help="the packed HDF5: a file, or several shards as one dataset (files, a "
                          "folder of .h5 files or a quoted glob; default: WS/features/waveform.h5,"
                          " or for a checkpoint the files it was trained on)"),
    "holdout_fold": dict(type=holdout_fold, default=None,
                         help=f"1..{FOLDS_NUM}: the fold held out (training default 1; "
                              "evaluation: the checkpoint's); all: every fold in turn; "
                              "filtered, subsets: those splits' validation sets"),
    "split": dict(default=None, choices=["folds", "filtered", "subsets", "all"],
                  help="folds: the HDF5's 10 folds; filtered: GTZAN's artist-filtered lists "
                       "(Kereliuk, Sturm & Larsen 2015); subsets: the train/valid/test sets the "
                       "HDF5 was packed with (seed CSVs); all: every clip (evaluation only). "
                       "Default: folds for training, the checkpoint's for evaluation"),
    "model_type": dict(default=None, help="a published PANNs model, or Transfer_ + one (default: "
                                          "what the checkpoint holds)"),
    "pretrained_checkpoint_path": dict(default=None, help="an official PANNs checkpoint: its "
                                                          "tensors give the architecture and front end"),
    "checkpoint_path": dict(help="a training checkpoint (.pth) or, for tagging, an official one"),
    "batch_size": dict(type=positive_int, default=32,
                       help="clips per batch (inference: windows per forward pass)"),
    "num_workers": dict(type=non_negative_int, default=2,
                        help="worker processes that decode or read the data (0 or 1: none; "
                             "training data held in memory needs none)"),
    "cuda": dict(action="store_true", help="use the GPU when there is one"),
    "precision": dict(default=None, choices=["fp32", "bf16", "fp16"],
                      help="default bf16 with --cuda on a GPU, else fp32"),
    "threshold": dict(type=probability, default=None,
                      help="multi-label decision threshold (default 0.5, or the checkpoint's)"),
    "trust_checkpoint": dict(action="store_true",
                             help="the checkpoint files come from a source you trust: allow "
                                  "them to hold pickled Python objects (loading such a file "
                                  "runs code)"),
    "filter": dict(nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="keep runs whose run.json has KEY=VALUE, e.g. learning_rate=0.0005"),
}


def add_flags(parser, *names, required=()):
    """Add the shared flags `names` to a parser; those in `required` must be given."""
    for name in names:
        options = dict(SHARED_FLAGS[name])
        if name in required:
            options.pop("default", None)
            options["required"] = True
        parser.add_argument(f"--{name}", **options)
