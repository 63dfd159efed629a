"""Command-line parsing shared by every entry point: one-line errors and checked flag types.

A bad flag value is reported as `error: --flag=value: what is wrong` on one line, exit code 2,
with no usage dump and no traceback (argparse's own error() prints the usage block first).
"""
import argparse
import math
import sys

from utils.config import FOLDS_NUM


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors; subcommand parsers inherit it."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text):
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text):
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def finite_float(text):
    return _number(float, text)


def positive_float(text):
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def probability(text):
    """A decision threshold: strictly between 0 and 1."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1")
    return value


def holdout_fold(text):
    """1..FOLDS_NUM as an int, or 'all'."""
    if text == "all":
        return text
    if text.isdigit() and 1 <= int(text) <= FOLDS_NUM:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: use 1..{FOLDS_NUM} or all")


def str2bool(text):
    """--freeze_base alone, or --freeze_base=True/False as some scripts write it."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text}")


def add_trust_flag(parser):
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="the checkpoint files come from a source you trust: allow them to "
                             "hold pickled Python objects (loading such a file runs code)")
