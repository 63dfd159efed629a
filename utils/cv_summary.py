"""Cross-validation summary of one configuration: best and final metrics per fold, mean and std.

    python3 utils/cv_summary.py --workspace=WS [--model_type=M] [--filter key=value ...]
        [--out_dir=DIR]

Rebuilds the summary from statistics pickles already on disk, e.g. after folds were trained on
separate machines and their workspaces merged. Runs are grouped by configuration (the run.json
settings that name the run folder, all but holdout_fold). Each configuration gets its own summary in
WS/results/<configuration path>/ (cv_summary.csv, cv_summary.md, cv_summary.png); an explicit
--out_dir needs the filters to leave exactly one configuration.

Conventions:
- best_<metric> is the highest value over the fold's evaluations of a trained model (iteration
  0, the untrained model, only when nothing else was evaluated: training never selects it
  either), best_<metric>_iteration the first iteration reaching it; final_<metric> is the value
  at the last evaluation.
- std is the sample standard deviation over folds (ddof=1); with a single fold it is NaN
  ("nan" in the CSV, "n/a" in the Markdown): one fold says nothing about the spread.
- Only numbered holdout folds are summarized; a 'filtered' (fixed split) run is not a fold.
"""
import csv
import io
import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from utils.config import MULTI_LABEL, SINGLE_LABEL
from utils.arguments import Parser, add_flags
from utils.figures import save_figure
from utils.plot_statistics import group_by_configuration, mean_curve
from utils.statistics_files import (fold_sort_key, load_statistics, metric_curve, parse_filters,
                                    require_statistics, runs_from_paths)
from utils.utilities import UsageError, atomic_write_text, remove_stale_temporaries, run_cli

SUMMARY_METRICS = {SINGLE_LABEL: ["accuracy", "macro_f1"], MULTI_LABEL: ["mAP", "macro_f1"]}
MEAN_ROW, STD_ROW = "mean", "std"


def summary_columns(metrics):
    columns = ["fold"]
    for metric in metrics:
        columns += [f"best_{metric}", f"best_{metric}_iteration"]
    columns += ["final_iteration"] + [f"final_{metric}" for metric in metrics]
    return columns + ["finished", "statistics_path"]


def _value_columns(metrics):
    """The columns averaged over folds (metric values, not iterations or paths)."""
    return [f"{kind}_{metric}" for metric in metrics for kind in ("best", "final")]


def _summary_metrics(runs):
    """The primary metric first, then the task's other metrics that every fold recorded."""
    primary = runs[0].stats["meta"]["primary_metric"]
    candidates = [primary] + [m for m in SUMMARY_METRICS.get(runs[0].task, []) if m != primary]
    recorded = [metric for metric in candidates
                if all(metric_curve(run.stats, metric)[0] for run in runs)]
    if primary not in recorded:
        missing = [run.path for run in runs if not metric_curve(run.stats, primary)[0]]
        raise UsageError(f"{missing[0]}: no '{primary}' in its validation entries")
    return recorded


def fold_row(run, metrics):
    """One fold's best and final values of each metric."""
    # An interrupted fold's numbers are partial: the row says so (older files: not recorded).
    row = {"fold": run.fold, "statistics_path": run.path,
           "finished": "yes" if "finished" in run.stats else "no"}
    for metric in metrics:
        iterations, values = metric_curve(run.stats, metric)
        trained = [index for index, iteration in enumerate(iterations) if iteration > 0]
        candidates = trained or list(range(len(values)))
        best = candidates[int(np.argmax([values[index] for index in candidates]))]  # first max
        row[f"best_{metric}"] = values[best]
        row[f"best_{metric}_iteration"] = iterations[best]
        row.setdefault("final_iteration", iterations[-1])  # the primary metric's last evaluation
        row[f"final_{metric}"] = values[-1]
    return row


def summarize_runs(runs):
    """Rows for one configuration's folds, then a 'mean' row and a 'std' (ddof=1) row."""
    runs = sorted(runs, key=lambda run: fold_sort_key(run.fold))
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        raise UsageError(f"{runs[0].configuration}: folds mix single-label and multi-label statistics")
    metrics = _summary_metrics(runs)
    rows = [fold_row(run, metrics) for run in runs]
    mean_row, std_row = {"fold": MEAN_ROW}, {"fold": STD_ROW}
    for column in _value_columns(metrics):
        values = np.array([row[column] for row in rows], dtype=np.float64)
        mean_row[column] = float(values.mean())
        std_row[column] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return rows + [mean_row, std_row]


def _load_runs(source, model_type=None, filters=None):
    """Runs from a workspace folder (searched) or from a list of statistics paths."""
    if isinstance(source, (str, os.PathLike)):
        return require_statistics(source, None, model_type, filters)
    return runs_from_paths(source)


def summarize_configurations(source, model_type=None, filters=None):
    """{configuration path: summary rows} for every configuration with numbered folds."""
    runs = _load_runs(source, model_type, filters)
    folds = []
    for run in runs:
        if not str(run.fold).isdigit():
            print(f"note: {run.path}: holdout_fold={run.fold} is not a cross-validation fold; "
                  f"left out of the summary", file=sys.stderr)
        elif not run.stats["validate"]:
            print(f"warning: {run.path}: no validation entries yet; left out of the summary",
                  file=sys.stderr)
        else:
            if "finished" not in run.stats:
                print(f"warning: {run.path}: fold {run.fold} did not finish (or predates the "
                      "record); its row is marked finished=no", file=sys.stderr)
            folds.append(run)
    if not folds:
        raise UsageError(f"no numbered holdout folds with validation entries among "
                         f"{len(runs)} statistics file(s), e.g. {runs[0].path}")
    return {config: summarize_runs(config_runs)
            for config, config_runs in group_by_configuration(folds).items()}


def summarize_folds(source, model_type=None, filters=None):
    """Summary rows (folds, then 'mean' and 'std') of the one configuration found in `source`.

    source: a workspace (searched under WS/statistics) or a list of statistics pickle paths.
    Several matching configurations are a UsageError listing them: add a filter.
    """
    summaries = summarize_configurations(source, model_type, filters)
    if len(summaries) > 1:
        raise UsageError(f"{len(summaries)} configurations match; narrow with --model_type or "
                         f"--filter: {'; '.join(summaries)}")
    return next(iter(summaries.values()))


def _split_rows(rows):
    folds = [row for row in rows if row["fold"] not in (MEAN_ROW, STD_ROW)]
    mean_row = next(row for row in rows if row["fold"] == MEAN_ROW)
    std_row = next(row for row in rows if row["fold"] == STD_ROW)
    return folds, mean_row, std_row


def _metrics_of(row):
    return [column[len("final_"):] for column in row
            if column.startswith("final_") and column != "final_iteration"]


def summary_csv(rows):
    columns = summary_columns(_metrics_of(rows[0]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _format(value):
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def summary_markdown(rows, title):
    folds, mean_row, std_row = _split_rows(rows)
    metrics = _metrics_of(rows[0])
    columns = summary_columns(metrics)[:-1]  # the path column would make the table unreadable
    lines = [
        f"# Cross-validation summary: {title}", "",
        f"Primary metric: {metrics[0]}. Folds: {', '.join(str(row['fold']) for row in folds)}. "
        f"mean ± std over folds; std is the sample standard deviation (ddof=1), n/a for one fold.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in folds:
        lines.append("| " + " | ".join(_format(row[column]) for column in columns) + " |")
    summary_cells = [f"{_format(mean_row[c])} ± {_format(std_row[c])}" if c in mean_row and c != "fold"
                     else "" for c in columns]
    lines.append("| mean ± std" + "".join(f" | {cell}" for cell in summary_cells[1:]) + " |")
    return "\n".join(lines) + "\n"


def wrap_path(text, width=70):
    """A long run path over several lines, broken after '/' (titles would be cut off)."""
    lines, line = [], ""
    for part in text.split("/"):
        piece = part if not line else "/" + part
        if line and len(line) + len(piece) > width:
            lines.append(line + "/")
            line = part
        else:
            line += piece
    return "\n".join(lines + [line])


def summary_figure(rows, title):
    """Every fold's validation curve of the primary metric, and their mean."""
    from matplotlib.figure import Figure

    folds, _, _ = _split_rows(rows)
    metric = _metrics_of(rows[0])[0]
    curves = [metric_curve(load_statistics(row["statistics_path"]), metric) for row in folds]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for index, (row, curve) in enumerate(zip(folds, curves)):
        axes.plot(*curve, color=f"C{index % 10}", linewidth=0.9, alpha=0.75, label=f"fold {row['fold']}")
    iterations, mean, _, _ = mean_curve(curves)
    if iterations:
        axes.plot(iterations, mean, color="black", linewidth=2.2, label=f"mean of {len(folds)} folds")
    axes.set_xlabel("Iteration")
    axes.set_ylabel(f"Validation {metric}")
    axes.set_title(wrap_path(title), fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def write_summary(rows, out_dir, title=None):
    """Write out_dir/cv_summary.{csv,md,png}; returns their paths."""
    title = title or out_dir
    paths = [os.path.join(out_dir, f"cv_summary.{extension}") for extension in ("csv", "md", "png")]
    remove_stale_temporaries([out_dir], prefix=".cv_summary.")  # of a summary killed mid-write
    atomic_write_text(summary_csv(rows), paths[0])
    atomic_write_text(summary_markdown(rows, title), paths[1])
    save_figure(summary_figure(rows, title), paths[2])
    return paths


def parse_arguments(argv=None):
    parser = Parser(description=__doc__.split("\n")[0])
    add_flags(parser, "workspace", "model_type", "filter", required=("workspace",))
    parser.add_argument("--out_dir", help="where to write (default WS/results/<configuration>); "
                                          "requires exactly one matching configuration")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    summaries = summarize_configurations(args.workspace, args.model_type, parse_filters(args.filter))
    if args.out_dir and len(summaries) > 1:
        raise UsageError(f"--out_dir={args.out_dir}: {len(summaries)} configurations match; "
                         f"narrow with --filter or drop --out_dir: {'; '.join(summaries)}")
    for config, rows in summaries.items():
        out_dir = args.out_dir or os.path.join(args.workspace, "results", config)
        for path in write_summary(rows, out_dir, title=config):
            print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
