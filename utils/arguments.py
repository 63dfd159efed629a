"""Command-line parsing shared by every entry point: one-line errors and checked flag types.

A bad flag value is reported as `error: --flag=value: what is wrong` on one line, exit code 2,
with no usage dump and no traceback (argparse's own error() prints the usage block first).
The type functions below raise ArgumentTypeError("VALUE: reason") for that form.
"""
import argparse
import re
import sys

from utils import config
from utils.config import FOLDS_NUM
from utils.flag_types import (  # noqa: F401 (the types, for the commands)
    auto_yes_no, float_range, int_range, non_negative_int, positive_float, positive_int,
    probability, str2bool)


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


# Every flag that more than one command takes and that is no config option, declared once: one
# type, one default, one meaning. A command lists the ones it takes (add_flags); a default of
# None means "decided by the command from the data or the checkpoint", as each help says. The
# training options (--batch_size, --cuda, --threshold...) are declared on RunConfig and
# AudioConfig (utils/config.option) and taken from there.
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
    "trust_checkpoint": dict(action="store_true",
                             help="the checkpoint files come from a source you trust: allow "
                                  "them to hold pickled Python objects (loading such a file "
                                  "runs code)"),
    "filter": dict(nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="keep runs whose run.json has KEY=VALUE, e.g. learning_rate=0.0005"),
}


def add_flags(parser, *names, required=()):
    """Add the flags `names` to a parser (shared flags, or options of RunConfig); those in
    `required` must be given."""
    declared = {**config.options(config.RunConfig), **config.options(config.AudioConfig)}
    for name in names:
        if name in SHARED_FLAGS:
            flag, settings = name, dict(SHARED_FLAGS[name])
        else:
            flag, settings = config.option_flag(declared[name])
        if name in required:
            settings.pop("default", None)
            settings["required"] = True
        parser.add_argument(f"--{flag}", **settings)


def add_config_options(parser, config_class, group_titles):
    """Every option of `config_class` as a flag, listed under its group's title."""
    groups = {None: parser}
    for field in config.options(config_class).values():
        group = field.metadata["option"]["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(group_titles.get(group, group))
        flag, settings = config.option_flag(field)
        groups[group].add_argument(f"--{flag}", **settings)
