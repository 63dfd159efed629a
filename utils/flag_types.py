"""Checked command-line value types: each raises argparse.ArgumentTypeError("VALUE: reason"),
which utils.arguments.Parser turns into `error: --flag=VALUE: reason`. Imports nothing of the
project, so the typed configs (utils/config.py) can declare their options with them."""
import argparse
import math


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


def str2bool(text):
    """--freeze_base alone, or --freeze_base=True/False as some scripts write it."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text}: expected True or False")


def auto_yes_no(text):
    """--in_memory: auto, yes (True) or no (False)."""
    values = {"auto": "auto", "yes": True, "no": False}
    if text not in values:
        raise argparse.ArgumentTypeError(f"{text}: use auto, yes or no")
    return values[text]
