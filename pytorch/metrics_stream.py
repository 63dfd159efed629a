"""The metrics of a run as they happen, for tools other than this pipeline: a TensorBoard event
file and metrics.csv, both in the run's statistics folder (beside statistics.pickle and
run.json). `tensorboard --logdir WS/statistics` shows every run, the ten folds of
--holdout_fold=all side by side.

Every record the statistics receive is streamed: training (loss, learning_rate, clips_per_s)
and every validation, each number it holds under `validate/<metric>` and, for per-label lists,
`validate/<metric>/<label>`; the end-of-run test score under `test/...`. metrics.csv is long
format, one value per line (iteration, tag, value), appended and flushed as it comes. On resume
both drop what came after the checkpoint (TensorBoard's purge_step; the CSV rewritten
atomically), so a resumed run's curves are those of one uninterrupted run. With
WANDB_PROJECT set and wandb installed, the same scalars also go to Weights & Biases.
"""
import csv
import math
import numbers
import os

from utils.utilities import atomic_path

METRICS_CSV = "metrics.csv"
CSV_HEADER = ["iteration", "tag", "value"]


def scalars(kind, entry, labels):
    """[(tag, value)] of one statistics record: its finite numbers, per-label lists by label,
    nested dicts by key (the multi-label averages); strings, the iteration and matrices
    are left out."""
    found = []

    def walk(prefix, value):
        if isinstance(value, bool):
            return
        if isinstance(value, numbers.Real):
            if math.isfinite(value):
                found.append((prefix, float(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}/{key}", item)
        elif (isinstance(value, (list, tuple)) and len(value) == len(labels)
              and all(isinstance(item, numbers.Real) for item in value)):
            for label, item in zip(labels, value):
                walk(f"{prefix}/{label}", item)

    for key, value in entry.items():
        if key != "iteration":
            walk(f"{kind}/{key}", value)
    return found


class CsvStream:
    def __init__(self, folder, resume_iteration):
        self.path = os.path.join(folder, METRICS_CSV)
        keep = self.rows_until(resume_iteration) if resume_iteration > 0 else []
        with atomic_path(self.path) as temp_path, open(temp_path, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([CSV_HEADER] + keep)
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file, lineterminator="\n")

    def rows_until(self, iteration):
        if not os.path.isfile(self.path):
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        return [row for row in rows if len(row) == 3 and row[0].isdigit()
                and int(row[0]) <= iteration]

    def write(self, iteration, values):
        self.writer.writerows([iteration, tag, repr(value)] for tag, value in values)
        self.file.flush()

    def close(self):
        self.file.close()


class TensorBoardStream:
    def __init__(self, folder, resume_iteration):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: ~2 s

        # Events from the checkpoint's next iteration on (all of them, on a fresh start) that an
        # earlier attempt left in the folder are hidden from readers.
        self.writer = SummaryWriter(folder, purge_step=resume_iteration + 1
                                    if resume_iteration > 0 else 0)

    def write(self, iteration, values):
        for tag, value in values:
            self.writer.add_scalar(tag, value, iteration)
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandbStream:
    def __init__(self, wandb, run_name, config):
        self.run = wandb.init(project=os.environ["WANDB_PROJECT"], name=run_name, config=config,
                              resume="allow")

    def write(self, iteration, values):
        self.run.log(dict(values), step=iteration)

    def close(self):
        self.run.finish()


def wandb_module():
    """wandb when WANDB_PROJECT asks for it and it is installed; else None (costs nothing)."""
    if not os.environ.get("WANDB_PROJECT"):
        return None
    try:
        import wandb
    except ImportError:
        return None
    return wandb


class MetricsStream:
    """The statistics' records, streamed to every sink as they are appended."""

    def __init__(self, folder, labels, resume_iteration=0, run_name=None, config=None):
        self.labels = labels
        self.sinks = [CsvStream(folder, resume_iteration),
                      TensorBoardStream(folder, resume_iteration)]
        wandb = wandb_module()
        if wandb is not None:
            self.sinks.append(WandbStream(wandb, run_name, config))

    def write(self, kind, entry, iteration):
        values = scalars(kind, entry, self.labels)
        for sink in self.sinks:
            sink.write(iteration, values)

    def close(self):
        for sink in self.sinks:
            sink.close()


def open_metrics_stream(run, statistics_dir, resume_iteration=0):
    """The MetricsStream of a run (a RunConfig) writing in its statistics folder."""
    name = os.path.join(*[part for part in os.path.normpath(statistics_dir).split(os.sep)[-4:]])
    return MetricsStream(statistics_dir, run.labels, resume_iteration, run_name=name,
                         config=run.to_dict())
