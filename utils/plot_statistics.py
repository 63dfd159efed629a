"""Plot validation metrics and training loss against iteration from statistics pickles.

    python3 utils/plot_statistics.py --workspace=WS [--holdout_fold=F|all] [--model_type=M]
        [--filter key=value ...] [--statistics_paths P1 P2 ...] [--output=PREFIX] [--compare]

Writes PREFIX.png and PREFIX.pdf (default PREFIX: WS/figures/statistics).
- one run: its curves;
- several folds of one configuration: each fold as a thin line, their mean over the
  iterations all folds reached as a thick line, and the min-max range across folds shaded;
- several configurations (or --compare): one colour per configuration, each drawn as the mean
  over its folds with its min-max range; the legend names the key=value parts that differ.
Panels: validation accuracy (single-label) or validation mAP and macro-F1 (multi-label), then
training loss.
"""
import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from utils.config import MULTI_LABEL
from utils.arguments import Parser, add_flags
from utils.figures import save_figure
from utils.statistics_files import (FOLD_KEY, Run, MODEL_KEY, metric_curve, parse_filters,
                                    require_statistics, runs_from_paths)
from utils.utilities import UsageError, remove_stale_temporaries, run_cli

VALIDATION_PANELS = {  # task -> [(metric key, axis title)]
    "single_label": [("accuracy", "Validation accuracy")],
    MULTI_LABEL: [("mAP", "Validation mAP"), ("macro_f1", "Validation macro-F1")],
}
LOSS_PANEL = ("loss", "Training loss (trailing mean over a 25th of the run)")


def mean_curve(curves):
    """Mean, min and max of several (iterations, values) curves over the iterations all share.

    Folds may stop at different iterations (one still running, one stopped early), so only
    iterations present in every curve are averaged. Returns (iterations, mean, low, high).
    """
    curves = [curve for curve in curves if curve[0]]
    if not curves:
        return [], np.array([]), np.array([]), np.array([])
    common = sorted(set.intersection(*(set(iterations) for iterations, _ in curves)))
    stacked = np.array([[dict(zip(*curve))[iteration] for iteration in common] for curve in curves])
    return common, stacked.mean(axis=0), stacked.min(axis=0), stacked.max(axis=0)


def group_by_configuration(runs):
    """{configuration: [runs]} in first-seen order."""
    groups = {}
    for run in runs:
        groups.setdefault(run.configuration, []).append(run)
    return groups


def describe_configurations(groups):
    """(legend label per configuration, title naming what they share)."""
    infos = [{key: value for key, value in runs[0].info.items() if key != FOLD_KEY}
             for runs in groups.values()]
    keys = list(dict.fromkeys(key for info in infos for key in info))
    differing = [key for key in keys if len({info.get(key) for info in infos}) > 1]
    shared = [key for key in keys if key not in differing]

    def describe(info, chosen_keys):
        return ", ".join(info[key] if key == MODEL_KEY else f"{key}={info[key]}"
                         for key in chosen_keys if key in info)

    labels = [describe(info, differing) or config for info, config in zip(infos, groups)]
    return labels, describe(infos[0], shared)


def smoothed(curve, points=None):
    """(iterations, trailing mean of the last `points` values): one batch's loss is noise.
    Default: a 25th of the curve, so the shape shows whatever the run's length."""
    iterations, values = curve
    if not iterations:
        return curve
    points = points or max(1, len(values) // 25)
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    counts = np.minimum(np.arange(1, len(values) + 1), points)
    ends = np.arange(1, len(values) + 1)
    return iterations, list((sums[ends] - sums[ends - counts]) / counts)


def _panels(task):
    return VALIDATION_PANELS.get(task, VALIDATION_PANELS["single_label"]) + [LOSS_PANEL]


def _draw_mean(axes, curves, color, label, band_label=None):
    iterations, mean, low, high = mean_curve(curves)
    if not iterations:
        return
    axes.plot(iterations, mean, color=color, linewidth=2.2, label=label)
    if len(curves) > 1:
        axes.fill_between(iterations, low, high, color=color, alpha=0.15, linewidth=0,
                          label=band_label)


def _draw_panel(axes, groups, labels, panel, mode):
    metric_key, title = panel
    section = "train" if panel == LOSS_PANEL else "validate"
    colors = [f"C{i % 10}" for i in range(len(groups))]
    drawn = False
    for runs, label, color in zip(groups.values(), labels, colors):
        curves = [metric_curve(run.stats, metric_key, section) for run in runs]
        drawn = drawn or any(iterations for iterations, _ in curves)
        if section == "train":
            if mode == "single":  # the raw batch losses faintly behind their mean
                axes.plot(*curves[0], color=color, linewidth=0.5, alpha=0.3)
            curves = [smoothed(curve) for curve in curves]
        if mode == "single":
            axes.plot(*curves[0], color=color, marker="." if len(curves[0][0]) < 50 else None,
                      label=f"fold {runs[0].fold}")
        elif mode == "folds":
            for index, (run, curve) in enumerate(zip(runs, curves)):
                axes.plot(*curve, color=f"C{index % 10}", linewidth=0.8, alpha=0.7,
                          label=f"fold {run.fold}")
            _draw_mean(axes, curves, "black", f"mean of {len(runs)} folds", "min-max over folds")
        else:
            _draw_mean(axes, curves, color, f"{label} ({len(runs)} fold{'s' * (len(runs) > 1)})")
    axes.set_title(title)
    axes.set_xlabel("Iteration")
    axes.grid(True, alpha=0.3)
    if drawn:
        axes.legend(fontsize=7)
    else:
        axes.text(0.5, 0.5, f"no '{metric_key}' recorded", ha="center", va="center",
                  transform=axes.transAxes, color="gray")


def plot_statistics(runs, output_prefix, compare=False):
    """Plot the runs (statistics.Run objects, or statistics pickle paths); returns
    [PREFIX.png, PREFIX.pdf]."""
    from matplotlib.figure import Figure

    if not runs:
        raise UsageError("no statistics files to plot")
    # temporaries of a plot killed mid-write
    remove_stale_temporaries([os.path.dirname(os.path.abspath(output_prefix))],
                             prefix=f".{os.path.basename(output_prefix)}.")
    if not isinstance(runs[0], Run):
        runs = runs_from_paths(runs)
    paths = [run.path for run in runs]
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        raise UsageError(f"cannot plot single-label and multi-label runs together: {', '.join(paths)}")
    groups = group_by_configuration(runs)
    if compare or len(groups) > 1:
        mode = "compare"
    else:
        mode = "single" if len(runs) == 1 else "folds"
    labels, shared_title = describe_configurations(groups)

    panels = _panels(tasks.pop())
    figure = Figure(figsize=(5.5 * len(panels), 4.5), layout="constrained")
    for index, panel in enumerate(panels):
        _draw_panel(figure.add_subplot(1, len(panels), index + 1), groups, labels, panel, mode)
    titles = {"compare": shared_title, "folds": runs[0].configuration,
              "single": f"{FOLD_KEY}={runs[0].fold}/{runs[0].configuration}"}
    figure.suptitle(titles[mode], fontsize=9)

    written = []
    for extension in ("png", "pdf"):
        path = f"{output_prefix}.{extension}"
        save_figure(figure, path)
        written.append(path)
    return written


def parse_arguments(argv=None):
    parser = Parser(description=__doc__.split("\n")[0])
    add_flags(parser, "workspace", "holdout_fold", "model_type", "filter")
    parser.add_argument("--statistics_paths", nargs="+", metavar="PICKLE",
                        help="plot these files instead of searching the workspace")
    parser.add_argument("--output", help="output path without extension "
                                         "(default WS/figures/statistics)")
    parser.add_argument("--compare", action="store_true",
                        help="one curve per configuration (mean over its folds)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    filters = parse_filters(args.filter)
    if args.statistics_paths:
        runs = runs_from_paths(args.statistics_paths)
    else:
        if not args.workspace:
            raise UsageError("--workspace is required (or give --statistics_paths and --output)")
        runs = require_statistics(args.workspace, args.holdout_fold, args.model_type, filters)
    output = args.output
    if not output:
        if not args.workspace:
            raise UsageError("--output is required when --workspace is not given")
        output = os.path.join(args.workspace, "figures", "statistics")
    for path in plot_statistics(runs, output, compare=args.compare):
        print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
